"""The syslog receiver: RFC 5424 and RFC 3164 over UDP and TCP on one port.

Messages are queued and flushed into the ingest stream in batches (one stream entry per
flush). When the stream cannot take them (Redis away, backlog full, rate limited), the
queue holds them and retries; once it is full, TCP connections stop being read (the
sender's own buffer takes over) and UDP datagrams are dropped and counted, as UDP
senders expect. A message that cannot become an entry goes to the dead-letter table.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import structlog

from logkeep import metrics
from logkeep.cache.ingest_buffer import RateLimited
from logkeep.domain.entry import InvalidLogEntry
from logkeep.domain.ingest import SourceRules
from logkeep.domain.syslog import OctetFramer
from logkeep.ingest.service import IngestService

log = structlog.get_logger(__name__)

FLUSH_EVENTS = 2000
FLUSH_INTERVAL_S = 0.05
MAX_QUEUED = 100_000
MAX_QUEUED_BYTES = 64 * 1024 * 1024  # what bounds memory: messages can be 64 KiB each
MAX_FRAME_BYTES = 64 * 1024


def decode_frame(frame: bytes) -> str | InvalidLogEntry:
    """A frame as text. Syslog allows any bytes in MSG (RFC 5424 MSG-ANY): undecodable
    bytes become U+FFFD rather than costing the message."""
    text = frame.decode("utf-8", "replace").rstrip("\r\n")
    if not text.strip():
        return InvalidLogEntry("line", "is empty")
    return text


@dataclass
class SyslogQueue:
    """Decoded messages waiting for the ingest stream."""

    lines: list[str | InvalidLogEntry] = field(default_factory=list)
    size: int = 0  # characters queued
    has_room: asyncio.Event = field(default_factory=asyncio.Event)
    has_lines: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.has_room.set()

    def put(self, line: str | InvalidLogEntry) -> bool:
        if len(self.lines) >= MAX_QUEUED or self.size >= MAX_QUEUED_BYTES:
            self.has_room.clear()
            return False
        self.lines.append(line)
        self.size += len(line) if isinstance(line, str) else 0
        if len(self.lines) >= FLUSH_EVENTS:
            self.has_lines.set()
        return True


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, queue: SyslogQueue) -> None:
        self._queue = queue

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        if not self._queue.put(decode_frame(data[:MAX_FRAME_BYTES])):
            metrics.SYSLOG_DROPPED.inc()


class SyslogReceiver:
    def __init__(self, service: IngestService, source: SourceRules) -> None:
        self._service = service
        self._source = source
        self._queue = SyslogQueue()
        self._tcp: asyncio.Server | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.received = 0
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        self._tcp = await asyncio.start_server(self._serve_tcp, host, port)
        self.port = self._tcp.sockets[0].getsockname()[1]  # the chosen one when port=0
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self._queue), local_addr=(host, self.port)
        )
        self._flusher = asyncio.create_task(self._flush_forever())
        log.info("syslog_listening", host=host, port=self.port, source=self._source.name)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        framer = OctetFramer(MAX_FRAME_BYTES)
        try:
            while data := await reader.read(65536):
                for frame in framer.feed(data):
                    await self._put_waiting(frame)
            for frame in framer.flush():
                await self._put_waiting(frame)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _put_waiting(self, frame: bytes) -> None:
        """TCP: wait for room instead of dropping (the sender buffers meanwhile)."""
        line = decode_frame(frame)
        while not self._queue.put(line):
            await self._queue.has_room.wait()

    async def _flush_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.has_lines.wait(), FLUSH_INTERVAL_S)
            await self.flush()

    async def flush(self) -> None:
        """Send what is queued; on failure keep it and back off."""
        while self._queue.lines:
            lines = self._queue.lines[:FLUSH_EVENTS]
            batch = self._service.prepare_lines(
                enumerate(lines, start=1), self._source, dead_letter=True
            )
            try:
                await self._service.submit(batch)
            except RateLimited as exc:
                await asyncio.sleep(min(exc.retry_after_s, 5.0))
                return
            except Exception as exc:  # noqa: BLE001 - keep the lines, retry; never die
                log.warning(
                    "syslog_flush_failed",
                    error=f"{type(exc).__name__}: {exc}",
                    queued=len(self._queue.lines),
                )
                await asyncio.sleep(1.0)
                return
            del self._queue.lines[: len(lines)]
            self._queue.size -= sum(len(line) for line in lines if isinstance(line, str))
            self.received += len(lines)
            self._queue.has_lines.clear()
            self._queue.has_room.set()

    async def stop(self, grace_s: float = 5.0) -> None:
        """Stop listening, then flush what was received (for up to `grace_s`)."""
        if self._tcp is not None:
            self._tcp.close()
        if self._udp is not None:
            self._udp.close()
        for task in list(self._connections):
            task.cancel()
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        deadline = time.monotonic() + grace_s
        while self._queue.lines and time.monotonic() < deadline:
            await self.flush()
        if self._queue.lines:
            log.error("syslog_lines_lost_at_stop", lines=len(self._queue.lines))
