"""The GELF receiver: UDP (plain, gzip or zlib; chunked messages reassembled with
Graylog's limits) and TCP (NUL-delimited) on one port, like the syslog receiver.

Messages are queued and flushed into the ingest stream in batches, through the same
preparation as the HTTP protocols (sources by `_source` or `host`, created on first use
as LOGKEEP_SOURCES_ON_FIRST_USE says; the receiver writes for the operator who started
it). When the stream cannot take them the queue holds them and retries; once it is full,
TCP connections stop being read and UDP datagrams are dropped and counted. A message
that cannot be an entry goes to the dead-letter table with the reason: there is nobody
to answer."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog

from logkeep.cache.ingest_buffer import RateLimited
from logkeep.config import Settings
from logkeep.domain.entry import InvalidLogEntry
from logkeep.domain.ingest import BodyError
from logkeep.domain.protocols import gelf
from logkeep.domain.protocols.common import Decoded, setting_keys
from logkeep.ingest.first_use import SourcesOnFirstUse
from logkeep.ingest.service import IngestService

log = structlog.get_logger(__name__)

FLUSH_EVENTS = 2000
FLUSH_INTERVAL_S = 0.05
MAX_QUEUED = 100_000
MAX_QUEUED_BYTES = 64 * 1024 * 1024
MAX_TCP_FRAME = 1024 * 1024  # a TCP message longer than this is cut off and refused


@dataclass
class GelfQueue:
    messages: list[bytes] = field(default_factory=list)
    size: int = 0
    has_room: asyncio.Event = field(default_factory=asyncio.Event)
    has_messages: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.has_room.set()

    def put(self, message: bytes) -> bool:
        if len(self.messages) >= MAX_QUEUED or self.size >= MAX_QUEUED_BYTES:
            self.has_room.clear()
            return False
        self.messages.append(message)
        self.size += len(message)
        if len(self.messages) >= FLUSH_EVENTS:
            self.has_messages.set()
        return True

    def taken(self, count: int) -> None:
        self.size -= sum(len(m) for m in self.messages[:count])
        del self.messages[:count]
        self.has_messages.clear()
        self.has_room.set()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, receiver: GelfReceiver) -> None:
        self._receiver = receiver

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        self._receiver.datagram(data)


class GelfReceiver:
    def __init__(
        self, service: IngestService, first_use: SourcesOnFirstUse, settings: Settings
    ) -> None:
        self._service = service
        self._resolve = first_use.resolver(None, "gelf")
        self._fields = setting_keys(settings.gelf_source_fields)
        self._fallback = settings.gelf_source
        self._limit = settings.ingest_max_line_bytes
        self._queue = GelfQueue()
        self._chunks = gelf.ChunkAssembler()
        self._tcp: asyncio.Server | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.received = 0
        self.dropped = 0  # UDP messages given up on: queue full, or chunks incomplete
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        self._tcp = await asyncio.start_server(self._serve_tcp, host, port)
        self.port = self._tcp.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(host, self.port)
        )
        self._flusher = asyncio.create_task(self._flush_forever())
        log.info("gelf_listening", host=host, port=self.port)

    def datagram(self, data: bytes) -> None:
        message = self._chunks.feed(data, time.monotonic())
        if message is not None and not self._queue.put(message):
            self.dropped += 1

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        buffer = bytearray()
        skipping = False  # the rest of an over-long message, up to its NUL
        try:
            while data := await reader.read(65536):
                if skipping:
                    end = data.find(b"\x00")
                    if end < 0:
                        continue
                    data, skipping = data[end + 1 :], False
                buffer += data
                frames, too_long = gelf.split_nul(buffer, MAX_TCP_FRAME)
                for frame in frames:
                    await self._put_waiting(frame)
                if too_long:
                    await self._put_waiting(bytes(buffer[:MAX_TCP_FRAME]))  # refused, kept
                    buffer.clear()
                    skipping = True
            if buffer.strip(b"\x00\r\n "):
                await self._put_waiting(bytes(buffer))
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _put_waiting(self, message: bytes) -> None:
        while not self._queue.put(message):
            await self._queue.has_room.wait()

    async def _flush_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.has_messages.wait(), FLUSH_INTERVAL_S)
            self._chunks.expire(time.monotonic())
            await self.flush()

    def _decode(self, messages: Sequence[bytes]) -> list[Decoded]:
        events: list[Decoded] = []
        for message in messages:
            try:
                events.append(gelf.decode(message, self._fields, None, self._fallback, self._limit))
            except BodyError as exc:
                events.append(InvalidLogEntry("gelf", str(exc)))
            except Exception as exc:  # noqa: BLE001 - a decoder bug must not hold the queue
                # Kept as a dead letter like any refused message; the ones after it go on.
                log.error("gelf_decode_failed", error=f"{type(exc).__name__}: {exc}")
                reason = f"could not be decoded ({type(exc).__name__})"
                events.append(InvalidLogEntry("gelf", reason))
        return events

    async def flush(self) -> None:
        """Send what is queued; on failure keep it and back off."""
        while self._queue.messages:
            messages = self._queue.messages[:FLUSH_EVENTS]
            try:
                batch = await self._service.prepare_events(
                    enumerate(self._decode(messages), start=1),
                    None,
                    allowed=None,
                    resolve=self._resolve,
                )
                for rejection in batch.rejected:  # nobody to tell: keep them, with why
                    raw = messages[rejection.line - 1]
                    batch.add_dead_letter(None, raw.decode("utf-8", "replace"), rejection.reason)
                batch.rejected.clear()
                batch.rejected_by_source.clear()
                await self._service.submit(batch)
            except RateLimited as exc:
                await asyncio.sleep(min(exc.retry_after_s, 5.0))
                return
            except Exception as exc:  # noqa: BLE001 - keep the messages, retry; never die
                log.warning(
                    "gelf_flush_failed",
                    error=f"{type(exc).__name__}: {exc}",
                    queued=len(self._queue.messages),
                )
                await asyncio.sleep(1.0)
                return
            self._queue.taken(len(messages))
            self.received += len(messages)

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
        while self._queue.messages and time.monotonic() < deadline:
            await self.flush()
        if self._queue.messages:
            log.error("gelf_messages_lost_at_stop", messages=len(self._queue.messages))
        dropped = self.dropped + self._chunks.dropped
        if dropped:
            log.warning("gelf_udp_dropped", messages=dropped)
