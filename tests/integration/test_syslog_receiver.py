"""The syslog receiver, fed by util-linux `logger` over TCP and UDP."""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.ingest.runner import IngestTasks

pytestmark = pytest.mark.skipif(shutil.which("logger") is None, reason="needs util-linux logger")


@pytest.fixture
async def receiver(settings: Settings, db: Database) -> AsyncIterator[int]:
    quick = settings.model_copy(update={"worker_batch_wait_ms": 20})
    tasks = IngestTasks()
    await tasks.start(db, quick, worker=True, syslog_port=0)
    assert tasks.receiver is not None
    try:
        yield tasks.receiver.port
    finally:
        await tasks.close()


async def logger(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec("logger", *args)
    assert await proc.wait() == 0


async def wait_for_rows(db: Database, tag: str, count: int, deadline_s: float = 10) -> list[Any]:
    deadline = time.monotonic() + deadline_s
    while True:
        async with db.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT e.level::text AS level, e.message, e.metadata, e.timestamp, s.name "
                "FROM log_entries e JOIN log_sources s ON s.id = e.source_id "
                "WHERE e.message LIKE $1 ORDER BY e.id",
                f"%{tag}%",
            )
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.05)


async def test_logger_tcp_rfc5424_with_structured_data(receiver: int, db: Database) -> None:
    tag = uuid.uuid4().hex
    await logger(
        "--server", "127.0.0.1", "--port", str(receiver), "--tcp", "--rfc5424",
        "--sd-id", "zoo@32473", "--sd-param", 'tiger="hungry"', "--msgid", "TEST",
        "-t", "myapp", "-p", "local0.err", f"tcp hello {tag}",
    )  # fmt: skip
    rows = await wait_for_rows(db, tag, 1)
    assert len(rows) == 1
    row = rows[0]
    assert row["name"] == "syslog"
    assert row["level"] == "ERROR"
    assert row["message"].endswith(f"tcp hello {tag}")
    meta = row["metadata"]
    assert meta["app_name"] == "myapp"
    assert meta["msgid"] == "TEST"
    assert meta["facility"] == "local0"
    assert meta["hostname"]
    assert meta["structured_data"]["zoo@32473"] == {"tiger": "hungry"}


async def test_logger_udp_rfc3164(receiver: int, db: Database) -> None:
    tag = uuid.uuid4().hex
    await logger(
        "--server", "127.0.0.1", "--port", str(receiver), "--udp", "--rfc3164",
        "-t", "cron", "-p", "daemon.warning", f"udp hello {tag}",
    )  # fmt: skip
    rows = await wait_for_rows(db, tag, 1)
    assert len(rows) == 1
    assert rows[0]["level"] == "WARN"
    assert rows[0]["metadata"]["app_name"] == "cron"
    assert rows[0]["metadata"]["facility"] == "daemon"


async def test_logger_octet_counting_and_many_lines(receiver: int, db: Database) -> None:
    tag = uuid.uuid4().hex
    args = ["--server", "127.0.0.1", "--port", str(receiver), "--tcp", "--octet-count"]
    for i in range(5):
        await logger(*args, "--rfc5424", "-t", "batch", f"line {i} {tag}")
    rows = await wait_for_rows(db, tag, 5)
    assert sorted(r["message"].split(" ")[-2] for r in rows) == ["0", "1", "2", "3", "4"]


async def test_raw_tcp_frames_newlines_and_bad_bytes(receiver: int, db: Database) -> None:
    """What rsyslog forwards (RFC 3164 over TCP, newline framed), plus garbage."""
    tag = uuid.uuid4().hex
    stamp = time.strftime("%b %e %H:%M:%S", time.gmtime())
    payload = (
        f"<38>{stamp} web-01 sshd[1234]: Accepted publickey {tag}\n"
        f"<13>{stamp} web-01 app: invalid utf8 \xff {tag}\n".encode("latin-1")
        + f"<13>{stamp} web-01 app: nul \x00 byte {tag}\n".encode()
    )
    with socket.create_connection(("127.0.0.1", receiver)) as conn:
        conn.sendall(payload)
    rows = await wait_for_rows(db, tag, 2)
    assert len(rows) == 2
    assert rows[0]["metadata"]["app_name"] == "sshd"
    assert rows[0]["metadata"]["procid"] == "1234"
    assert rows[0]["level"] == "INFO"
    assert "\ufffd" in rows[1]["message"]  # undecodable bytes replaced, message kept
    # The NUL line cannot be an entry: it is a dead letter, with its reason.
    deadline = time.monotonic() + 5
    while True:
        async with db.pool.acquire() as conn2:
            dead = await conn2.fetch(
                "SELECT reason, raw FROM ingest_dead_letters WHERE raw LIKE $1", f"%{tag}%"
            )
        if dead or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert len(dead) == 1
    assert "NUL" in dead[0]["reason"]
