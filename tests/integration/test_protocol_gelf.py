"""GELF from the real clients: graypy over UDP (a message over 8 KB, chunked and
compressed) and TCP into the receiver, and pygelf over HTTP (`POST /gelf`, zlib labelled
gzip). Plus what no client sends on purpose: broken compression, lost chunks."""

from __future__ import annotations

import asyncio
import logging
import secrets
import signal
import socket
import time
import uuid
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import graypy
import orjson
import pytest
from pygelf import GelfHttpHandler

from logkeep.api.local import free_port
from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.ingest.runner import IngestTasks
from tests.integration.shippers import shipper_stack, wait_rows
from tests.integration.test_cli import LOGKEEP, clean_env


@dataclass
class Receiver:
    port: int
    db: Database
    tasks: IngestTasks


@pytest.fixture
async def receiver(settings: Settings, db: Database) -> AsyncIterator[Receiver]:
    quick = settings.model_copy(update={"worker_batch_wait_ms": 20})
    tasks = IngestTasks()
    await tasks.start(db, quick, worker=True, syslog_port=None, gelf_port=0)
    assert tasks.gelf is not None
    try:
        yield Receiver(tasks.gelf.port, db, tasks)
    finally:
        await tasks.close()


def python_logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)
    return logger


async def test_graypy_udp_chunked_over_8k_exactly_once(receiver: Receiver) -> None:
    tag = uuid.uuid4().hex
    handler = graypy.GELFUDPHandler("127.0.0.1", receiver.port, localname="Web-01.example.com")
    logger = python_logger(f"gelf.udp.{tag}", handler)
    big = secrets.token_hex(6000)  # 12 KB that compression cannot shrink below a chunk
    try:
        logger.warning("big payload %s %s", tag, big, extra={"request_id": "r-1"})
        record = logger.makeRecord(logger.name, logging.ERROR, __file__, 7, "once %s", (tag,), None)
        packed = handler.makePickle(record)
        handler.send(packed)
        handler.send(packed)  # the same message again: stored once
    finally:
        logger.removeHandler(handler)
        handler.close()
    stored = await wait_rows(receiver.db, tag, 2)
    assert len(stored) == 2
    large, once = sorted(stored, key=lambda r: r["level"] != "WARN")
    assert {r["source"] for r in stored} == {"web-01.example.com"}  # host, as a name
    assert large["message"] == f"big payload {tag} {big}"
    assert large["level"] == "WARN"
    assert large["metadata"]["request_id"] == "r-1"
    assert large["metadata"]["host"] == "Web-01.example.com"
    assert large["metadata"]["thread_name"]  # graypy's debugging fields, underscore dropped
    assert once["level"] == "ERROR"
    assert abs(once["timestamp"] - datetime.fromtimestamp(record.created, UTC)) < timedelta(
        milliseconds=1
    )


async def test_graypy_tcp(receiver: Receiver) -> None:
    tag = uuid.uuid4().hex
    handler = graypy.GELFTCPHandler("127.0.0.1", receiver.port)
    logger = python_logger(f"gelf.tcp.{tag}", handler)
    try:
        for i in range(3):
            await asyncio.to_thread(
                logger.info, "tcp %d %s", i, tag, extra={"source": "orders", "attempt": i}
            )
        await asyncio.to_thread(logger.critical, "tcp down %s", tag, extra={"source": "orders"})
    finally:
        logger.removeHandler(handler)
        handler.close()
    stored = await wait_rows(receiver.db, tag, 4)
    assert len(stored) == 4
    assert {r["source"] for r in stored} == {"orders"}  # _source wins over host
    assert sorted(r["level"] for r in stored) == ["FATAL", "INFO", "INFO", "INFO"]
    assert sorted(r["metadata"].get("attempt", -1) for r in stored) == [-1, 0, 1, 2]


# pygelf sends and drops its connection without reading the answer (and without closing
# the socket, which Python reports when it collects it): that is the client under test.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_pygelf_http_with_mislabelled_compression(settings: Settings) -> None:
    tag = uuid.uuid4().hex
    async with shipper_stack(settings) as stack:
        port = int(stack.url.rsplit(":", 1)[1])
        handler = GelfHttpHandler(
            host="127.0.0.1", port=port, path="/gelf", compress=True, _source="pygelf-http"
        )
        logger = python_logger(f"gelf.http.{tag}", handler)
        try:
            await asyncio.to_thread(logger.error, "http says %s", tag)
            try:
                raise KeyError("sku-9")
            except KeyError as exc:  # handed over: the sending thread has no exception
                await asyncio.to_thread(logger.error, "http failed %s", tag, exc_info=exc)
        finally:
            logger.removeHandler(handler)
            handler.close()
        stored = await wait_rows(stack.db, tag, 2)
    assert len(stored) == 2
    says, failed = sorted(stored, key=lambda r: "failed" in r["message"])
    assert {r["source"] for r in stored} == {"pygelf-http"}
    assert says["level"] == "ERROR"
    assert says["message"] == f"http says {tag}"
    assert "KeyError: 'sku-9'" in failed["metadata"]["full_message"]


async def test_broken_and_partial_udp_messages_are_accounted(receiver: Receiver) -> None:
    """Broken compression and bad JSON become dead letters with the reason; a chunked
    message missing a chunk is dropped after the timeout and counted. A level of "²"
    (which isdigit took and int() refused) held every later message back: the flush
    failed on it and kept it at the head of the queue."""
    tag = uuid.uuid4().hex
    good = orjson.dumps({"version": "1.1", "host": "h", "short_message": f"fine {tag}",
                         "timestamp": time.time(), "_source": "udp-nasty"})  # fmt: skip
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        target = ("127.0.0.1", receiver.port)
        udp.sendto(b"\x1f\x8b" + b"not gzip at all " + tag.encode(), target)
        udp.sendto(b'{"short_message": "' + tag.encode() + b'", "timestamp": "soon"}', target)
        udp.sendto(orjson.dumps({"short_message": tag, "level": "\u00b2"}), target)
        udp.sendto(zlib.compress(good), target)
        lonely = b"\x1e\x0f" + secrets.token_bytes(8) + bytes([0, 2]) + b'{"short_mess'
        udp.sendto(lonely, target)
    stored = await wait_rows(receiver.db, tag, 1)
    assert [r["message"] for r in stored] == [f"fine {tag}"]
    deadline = time.monotonic() + 10
    while True:
        async with receiver.db.pool.acquire() as conn:
            dead = await conn.fetch(
                "SELECT reason FROM ingest_dead_letters WHERE raw LIKE $1", f"%{tag}%"
            )
        if len(dead) >= 3 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    reasons = sorted(r["reason"] for r in dead)
    assert len(reasons) == 3
    assert any("gzip" in r for r in reasons)
    assert any("timestamp" in r for r in reasons)
    assert any(r.startswith("level: ") for r in reasons)


async def test_a_message_the_decoder_fails_on_holds_nothing_back(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decoder bug (an exception other than a refusal) is stood in for here: the message
    it fails on becomes a dead letter and the messages after it are stored."""
    from logkeep.domain.protocols import gelf

    tag = uuid.uuid4().hex
    real_decode = gelf.decode

    def decode_with_a_bug(message: bytes, *args: object) -> object:
        if b"trips-the-decoder" in message:
            raise RuntimeError("a decoder bug")
        return real_decode(message, *args)  # type: ignore[arg-type]  # the same arguments

    monkeypatch.setattr(gelf, "decode", decode_with_a_bug)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        target = ("127.0.0.1", receiver.port)
        udp.sendto(orjson.dumps({"short_message": f"trips-the-decoder {tag}"}), target)
        udp.sendto(orjson.dumps({"short_message": f"after it {tag}", "_source": "udp-bug"}), target)
    stored = await wait_rows(receiver.db, tag, 1)
    assert [r["message"] for r in stored] == [f"after it {tag}"]
    async with receiver.db.pool.acquire() as conn:
        dead = await conn.fetch(
            "SELECT reason FROM ingest_dead_letters WHERE raw LIKE $1", f"%{tag}%"
        )
    assert [r["reason"] for r in dead] == ["gelf: could not be decoded (RuntimeError)"]


@pytest.mark.slow  # `logkeep gelf` as a subprocess
async def test_logkeep_gelf_command(settings: Settings, db: Database, tmp_path: Path) -> None:
    """The receiver as operators run it: `logkeep gelf --port P`, stopped by SIGTERM after
    flushing what it holds."""
    assert settings.database_url and settings.redis_url
    port = free_port()
    env = clean_env(
        LOGKEEP_DATABASE_URL=settings.database_url,
        LOGKEEP_REDIS_URL=settings.redis_url,
        LOGKEEP_REDIS_KEY_PREFIX=settings.redis_key_prefix,
        LOGKEEP_LOG_LEVEL="info",
    )
    log = tmp_path / "gelf.log"
    tag = uuid.uuid4().hex
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            str(LOGKEEP), "gelf", "--port", str(port), env=env, cwd=tmp_path,
            stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
        )  # fmt: skip
    worker = IngestTasks()
    await worker.start(
        db, settings.model_copy(update={"worker_batch_wait_ms": 20}), worker=True, syslog_port=None
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                assert proc.returncode is None, log.read_text()
                assert time.monotonic() < deadline, f"not listening: {log.read_text()}"
                await asyncio.sleep(0.1)
        handler = graypy.GELFTCPHandler("127.0.0.1", port)
        logger = python_logger(f"gelf.cli.{tag}", handler)
        try:
            await asyncio.to_thread(logger.error, "from the command %s", tag)
        finally:
            logger.removeHandler(handler)
            handler.close()
        stored = await wait_rows(db, tag, 1)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 30)
        await worker.close()
    assert code == 0, log.read_text()
    assert [(r["level"], r["message"]) for r in stored] == [("ERROR", f"from the command {tag}")]
    assert "gelf_listening" in log.read_text()
