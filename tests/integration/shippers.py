"""Shared by the protocol tests: logkeep served on a real port with a worker, rows read
back with their source, and the real clients' install locations (scripts/test installs
them; a test skips, naming what is missing, only when a client could not be installed)."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from logkeep.api.app import create_app
from logkeep.api.local import serve_locally
from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.ingest.runner import IngestTasks

CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
# Where scripts/test installs the npm clients and unpacks Debian's syslog-ng.
NPM_DIR = Path(os.environ.get("LOGKEEP_TEST_NPM_DIR") or CACHE / "logkeep-test-npm")
SYSLOG_NG_DIR = Path(os.environ.get("LOGKEEP_TEST_SYSLOG_NG_DIR") or CACHE / "logkeep-syslog-ng")


@dataclass
class Stack:
    url: str
    db: Database
    settings: Settings
    tasks: IngestTasks


@asynccontextmanager
async def shipper_stack(settings: Settings, *, worker: bool = True) -> AsyncIterator[Stack]:
    """The API on a local port and, with `worker`, an ingest worker writing quickly."""
    quick = settings.model_copy(update={"worker_batch_wait_ms": 20})
    async with Database(quick) as db:
        tasks = IngestTasks()
        if worker:
            await tasks.start(db, quick, worker=True, syslog_port=None)
        try:
            async with serve_locally(create_app(quick, database=db)) as url:
                yield Stack(url, db, quick, tasks)
        finally:
            await tasks.close()


ROWS = (
    "SELECT s.name AS source, e.level::text AS level, e.timestamp, e.message, e.metadata "
    "FROM log_entries e JOIN log_sources s ON s.id = e.source_id "
    "WHERE e.message LIKE $1 ORDER BY e.timestamp, e.id"
)


async def rows(db: Database, tag: str) -> list[dict[str, Any]]:
    async with db.pool.acquire() as conn:
        return [dict(r) for r in await conn.fetch(ROWS, f"%{tag}%")]


async def wait_rows(
    db: Database, tag: str, count: int, deadline_s: float = 20, settle_s: float = 0.3
) -> list[dict[str, Any]]:
    """The committed rows whose message holds `tag`, once there are `count` of them;
    then a moment more, so that an extra (duplicate) row would show too."""
    deadline = time.monotonic() + deadline_s
    while True:
        found = await rows(db, tag)
        if len(found) >= count:
            await asyncio.sleep(settle_s)
            return await rows(db, tag)
        if time.monotonic() > deadline:
            return found
        await asyncio.sleep(0.05)


def node_module(name: str) -> Path:
    """A package installed by scripts/test for the Node clients, or a skip."""
    if shutil.which("node") is None:
        pytest.skip("needs Node.js (scripts/test installs Debian's nodejs when root)")
    path = NPM_DIR / "node_modules" / name
    if not path.is_dir():
        pytest.skip(f"needs npm package {name} in {NPM_DIR} (scripts/test installs it)")
    return path


async def run_node(script: str, env: dict[str, str], timeout_s: float = 60) -> str:
    """A Node client script from tests/integration/node, with the cached packages."""
    path = Path(__file__).parent / "node" / script
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(path),
        env={**os.environ, "NODE_PATH": str(NPM_DIR / "node_modules"), **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout_s)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, f"{script} failed:\n{text}"
    return text
