"""Fault tests with real processes: workers killed with SIGKILL, PostgreSQL stopped
under load. Every event acknowledged to a client must be stored exactly once."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import orjson
import pytest

from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.db.migrate import migrate
from logkeep.db.seed import seed
from logkeep.embedded import EmbeddedPostgres
from logkeep.ingest.worker import Worker
from tests.conftest import make_settings, running_app
from tests.integration.test_cli import LOGKEEP, clean_env

pytestmark = pytest.mark.slow

NDJSON = {"Content-Type": "application/x-ndjson"}


def worker_env(settings: Settings) -> dict[str, str]:
    assert settings.database_url and settings.redis_url
    return clean_env(
        LOGKEEP_DATABASE_URL=settings.database_url,
        LOGKEEP_REDIS_URL=settings.redis_url,
        LOGKEEP_REDIS_KEY_PREFIX=settings.redis_key_prefix,
        LOGKEEP_WORKER_BATCH_EVENTS="300",
        LOGKEEP_WORKER_BATCH_WAIT_MS="20",
        LOGKEEP_WORKER_CLAIM_IDLE_MS="500",
        LOGKEEP_LOG_LEVEL="warning",
    )


async def start_worker(settings: Settings, log: Path) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            str(LOGKEEP), "worker", env=worker_env(settings),
            stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
        )  # fmt: skip


async def send(api: httpx.AsyncClient, tag: str, requests: int, per_request: int) -> int:
    """Send events, retrying on 503; the number acknowledged (all of them, in the end)."""
    acknowledged = 0
    for r in range(requests):
        body = b"\n".join(
            orjson.dumps({"source": "app_errors", "message": f"{tag} {r}-{i}"})
            for i in range(per_request)
        )
        while True:
            response = await api.post("/api/v1/ingest", content=body, headers=NDJSON)
            if response.status_code != 503:
                break
            await asyncio.sleep(0.2)
        assert response.status_code == 202, response.text
        acknowledged += response.json()["accepted"]
        await asyncio.sleep(0.005)
    return acknowledged


async def stored(url: str, tag: str) -> tuple[int, int]:
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT count(*), count(DISTINCT message) FROM log_entries WHERE message LIKE $1",
            f"{tag} %",
        )
    finally:
        await conn.close()
    assert row is not None
    return row[0], row[1]


async def wait_stored(url: str, tag: str, expected: int, deadline_s: float = 60) -> tuple[int, int]:
    deadline = time.monotonic() + deadline_s
    while True:
        counts = await stored(url, tag)
        if counts[0] >= expected or time.monotonic() > deadline:
            return counts
        await asyncio.sleep(0.2)


async def test_worker_killed_mid_batch_loses_and_duplicates_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    assert settings.database_url
    tag = uuid.uuid4().hex
    log = tmp_path / "workers.log"
    workers = [await start_worker(settings, log)]
    try:
        async with running_app(settings) as api:
            sending = asyncio.create_task(send(api, tag, requests=60, per_request=200))
            kills = 0
            while not sending.done() and kills < 3:
                # Let the worker get into its stride, then kill it without warning.
                await asyncio.sleep(0.4)
                victim = workers.pop()
                victim.send_signal(signal.SIGKILL)
                await victim.wait()
                kills += 1
                workers.append(await start_worker(settings, log))
            # Two workers at once for the rest: they share the stream.
            workers.append(await start_worker(settings, log))
            acknowledged = await sending
        assert acknowledged == 60 * 200
        total, distinct = await wait_stored(settings.database_url, tag, acknowledged)
        assert (total, distinct) == (acknowledged, acknowledged), log.read_text()[-3000:]
    finally:
        for proc in workers:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                await proc.wait()


async def test_sigterm_finishes_the_batch_in_hand(settings: Settings, tmp_path: Path) -> None:
    assert settings.database_url
    tag = uuid.uuid4().hex
    async with running_app(settings) as api:
        acknowledged = await send(api, tag, requests=20, per_request=100)
    proc = await start_worker(settings, tmp_path / "worker.log")
    # Stop it once it is writing (a SIGTERM before it runs has nothing to finish).
    await wait_stored(settings.database_url, tag, 1)
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 30) == 0
    async with Database(settings) as db:
        pending = await db.redis.xpending(db.keys.ingest_stream(), "writers")
        assert pending["pending"] == 0  # nothing left half-done
        # Whatever it did not take is still in the stream for the next worker.
        await Worker(db, settings, name="after").drain()
    assert await stored(settings.database_url, tag) == (acknowledged, acknowledged)


@pytest.fixture
async def own_postgres(short_tmp: Path) -> AsyncIterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own, so it can be stopped and started."""
    server = EmbeddedPostgres(short_tmp / "pg")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_postgres_stopped_during_ingest_loses_nothing(
    own_postgres: EmbeddedPostgres, stores: object
) -> None:
    url = own_postgres.dsn()
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    settings = make_settings(
        url,
        stores.redis_url,  # type: ignore[attr-defined]
        worker_batch_wait_ms=20,
        connect_deadline_s=5.0,
    )
    async with Database(settings) as db:
        await seed(db.pool, settings, "test")
    tag = uuid.uuid4().hex
    stop = asyncio.Event()
    async with Database(settings) as worker_db, running_app(settings) as api:
        worker = asyncio.create_task(Worker(worker_db, settings, name="pg-fault").run(stop))
        sending = asyncio.create_task(send(api, tag, requests=40, per_request=100))
        await asyncio.sleep(0.5)
        own_postgres.stop()
        await asyncio.sleep(3)  # the API keeps accepting; the worker retries
        own_postgres.start()
        acknowledged = await sending
        total, distinct = await wait_stored(url, tag, acknowledged)
        stop.set()
        await worker
    assert acknowledged == 4000
    assert (total, distinct) == (acknowledged, acknowledged)
