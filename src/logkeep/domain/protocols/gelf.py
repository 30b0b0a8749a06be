"""GELF (Graylog Extended Log Format) 1.1, pure: messages into events, and the
reassembly of chunked UDP datagrams with Graylog's limits.

An event's metadata holds `host`, `full_message`, `facility`, `file`, `line` when sent,
and every additional field without its leading underscore (`_user_id` is `user_id`;
`_id` is ignored, as GELF reserves it). `level` is a syslog severity (0-7); a message
without one is INFO. `timestamp` is epoch seconds with optional decimals. As Graylog
does, these numbers may come as text ("3", "1700000000.25"), and a null one is absent.
`host`, `short_message` and `full_message` are text (a null `full_message`, `facility`,
`file` or `line` is absent); `version` is not checked. What is taken here is what the
OpenAPI document of `POST /gelf` says (api/gelf.py)."""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from logkeep.domain.entry import InvalidLogEntry
from logkeep.domain.protocols.common import Decoded, JSONDecodeError, json_loads, mapped_source
from logkeep.domain.protocols.compression import sniffed
from logkeep.domain.syslog import severity_level

CHUNK_MAGIC = b"\x1e\x0f"
CHUNK_HEADER = 12  # magic (2), message id (8), sequence number (1), sequence count (1)
MAX_CHUNKS = 128  # Graylog's limit
CHUNK_TIMEOUT_S = 5.0  # Graylog's: a message whose chunks are not all in by then is dropped
MAX_PENDING_BYTES = 32 * 1024 * 1024  # chunks held for incomplete messages, all together
STANDARD_FIELDS = {"host", "full_message", "facility", "file", "line"}
USED_FIELDS = {"version", "short_message", "timestamp", "level"}
# Numbers as text, whole (fullmatch): ASCII only, no spaces; the document states them.
LEVEL_TEXT = r"^0*[0-7]$"
EPOCH_TEXT = r"^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"
_LEVEL_TEXT = re.compile(LEVEL_TEXT)
_EPOCH_TEXT = re.compile(EPOCH_TEXT)


def decode(
    payload: bytes, source_fields: Sequence[str], override: str | None, fallback: str, limit: int
) -> Decoded:
    """One GELF message (plain, gzip or zlib, told by its first bytes) as an event;
    its InvalidLogEntry when it cannot be one. BodyError for broken compression."""
    data = sniffed(payload, limit)
    try:
        message = json_loads(data)
    except JSONDecodeError as exc:
        return InvalidLogEntry("gelf", f"is not valid JSON ({exc})")
    if not isinstance(message, dict):
        return InvalidLogEntry("gelf", f"must be a JSON object, got {type(message).__name__}")
    try:
        return event(message, source_fields, override, fallback)
    except InvalidLogEntry as exc:
        return exc


def event(
    message: dict[str, Any], source_fields: Sequence[str], override: str | None, fallback: str
) -> Decoded:
    short = message.get("short_message")
    if not isinstance(short, str) or not short.strip():
        raise InvalidLogEntry("short_message", "is required (a non-empty string)")
    if not isinstance(message.get("host", ""), str):  # null too, as Graylog
        raise InvalidLogEntry("host", "must be a string")
    full_message = message.get("full_message")
    if full_message is not None and not isinstance(full_message, str):
        raise InvalidLogEntry("full_message", "must be a string")
    metadata: dict[str, Any] = {}
    for key, value in message.items():
        if key in STANDARD_FIELDS:
            if value is not None:
                metadata[key] = value
        elif key.startswith("_") and key != "_id" and len(key) > 1:
            metadata[key[1:]] = value
    return {
        "source": mapped_source(message, source_fields, override, fallback),
        "message": short,
        "timestamp": _timestamp(message.get("timestamp")),
        "level": _level(message.get("level")),
        "metadata": metadata,
    }


def _timestamp(value: object) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        if not _EPOCH_TEXT.fullmatch(value):
            raise InvalidLogEntry("timestamp", "must be epoch seconds")
        value = float(value)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidLogEntry("timestamp", "must be epoch seconds")
    try:
        return datetime.fromtimestamp(value, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise InvalidLogEntry("timestamp", f"{value} is out of range") from None


def _level(value: object) -> Any:
    if value is None:
        return None
    if isinstance(value, str) and _LEVEL_TEXT.fullmatch(value):
        value = int(value[-1])  # "3", "03"; isdigit and int took "²" and raised
    elif isinstance(value, float) and value.is_integer():
        value = int(value)  # 3.0 is 3 to a JSON writer
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 7:
        raise InvalidLogEntry("level", f"must be a syslog severity 0 to 7, got {str(value)[:20]}")
    return severity_level(value)


# -- chunked UDP -------------------------------------------------------------------------


@dataclass
class _Pending:
    count: int
    started: float
    chunks: dict[int, bytes] = field(default_factory=dict)
    size: int = 0


class ChunkAssembler:
    """Chunked GELF datagrams back into messages: at most MAX_CHUNKS chunks a message,
    incomplete messages dropped after CHUNK_TIMEOUT_S, and at most `max_pending_bytes`
    held for incomplete ones (the oldest are dropped first). `dropped` counts messages
    given up on; `now` is a monotonic clock reading, passed in."""

    def __init__(
        self,
        timeout_s: float = CHUNK_TIMEOUT_S,
        max_pending_bytes: int = MAX_PENDING_BYTES,
    ) -> None:
        self.timeout_s = timeout_s
        self.max_pending_bytes = max_pending_bytes
        self.dropped = 0
        self._pending: OrderedDict[bytes, _Pending] = OrderedDict()
        self._size = 0

    @property
    def pending_bytes(self) -> int:
        return self._size

    def feed(self, datagram: bytes, now: float) -> bytes | None:
        """A whole message when `datagram` is one or completes one, else None."""
        if not datagram.startswith(CHUNK_MAGIC):
            return datagram
        self.expire(now)
        if len(datagram) < CHUNK_HEADER:
            self.dropped += 1
            return None
        message_id = datagram[2:10]
        number, count = datagram[10], datagram[11]
        if not 0 < count <= MAX_CHUNKS or number >= count:
            self._forget(message_id)
            self.dropped += 1
            return None
        pending = self._pending.get(message_id)
        if pending is None:
            pending = self._pending[message_id] = _Pending(count, now)
        elif pending.count != count:
            self._forget(message_id)
            self.dropped += 1
            return None
        chunk = datagram[CHUNK_HEADER:]
        if number not in pending.chunks:
            pending.chunks[number] = chunk
            pending.size += len(chunk)
            self._size += len(chunk)
        if len(pending.chunks) == count:
            self._forget(message_id)
            return b"".join(pending.chunks[i] for i in range(count))
        while self._size > self.max_pending_bytes and self._pending:
            oldest = next(iter(self._pending))
            self._forget(oldest)
            self.dropped += 1
        return None

    def expire(self, now: float) -> None:
        """Drop messages whose chunks did not all arrive within the timeout."""
        while self._pending:
            message_id, pending = next(iter(self._pending.items()))
            if now - pending.started < self.timeout_s:
                return
            self._forget(message_id)
            self.dropped += 1

    def _forget(self, message_id: bytes) -> None:
        pending = self._pending.pop(message_id, None)
        if pending is not None:
            self._size -= pending.size


def split_nul(buffer: bytearray, max_frame: int) -> tuple[list[bytes], bool]:
    """Complete NUL-terminated frames (GELF over TCP) taken from `buffer`, and whether
    the rest is already longer than `max_frame` (the connection is then unusable)."""
    frames: list[bytes] = []
    start = 0
    while (end := buffer.find(b"\x00", start)) >= 0:
        if end > start:
            frames.append(bytes(buffer[start:end]))
        start = end + 1
    del buffer[:start]
    return frames, len(buffer) > max_frame
