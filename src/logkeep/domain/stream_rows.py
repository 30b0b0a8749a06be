"""The ingest stream's records as PostgreSQL's binary COPY tuples: pure.

The API encodes each event once into the tuple COPY takes for log_entries (source_id,
timestamp, level, message, metadata; the id comes from its column default), so the
worker sends a stream entry's records to COPY as they are, without decoding them into
Python objects and encoding them again. A tuple carries its own lengths, so records are
joined with nothing between them. A dead letter is a tuple of 3 fields (source id or
NULL, raw line, reason), which no log_entries row has: the worker tells them apart by
their field count and stores them elsewhere.

Format (https://www.postgresql.org/docs/current/sql-copy.html#id-1.9.3.55.9.4): a 16-bit
field count, then each field as a 32-bit length (-1: NULL) and its bytes, big-endian;
int4 and int8 as such, timestamptz as microseconds since 2000-01-01 UTC, an enum and text
as their UTF-8 text, jsonb as the byte 1 and the JSON text."""

from __future__ import annotations

import struct
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from logkeep.domain import exactjson
from logkeep.domain.entry import MAX_SOURCE_ID, Level

ROW_FIELDS = 5
DEAD_LETTER_FIELDS = 3
COPY_COLUMNS = ["source_id", "timestamp", "level", "message", "metadata"]
COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
COPY_TRAILER = b"\xff\xff"
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 UTC in Unix microseconds
MINUTE_US = 60_000_000
PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

_ROW_HEAD = struct.Struct(">hiiiqi")  # fields, 4, source_id, 8, timestamp, level length
_LENGTH = struct.Struct(">i")
_DEAD_HEAD = struct.Struct(">hi")  # fields, source id length (4 or -1)
_LEVELS = {level.value.encode(): level.value for level in Level}
# Every level's own bytes: the row header up to the level, then the level's length.
_LEVEL_FIELD = {level: _LENGTH.pack(len(level.value)) + level.value.encode() for level in Level}
_ROW_START = struct.Struct(">hiiiq")
_JSONB_VERSION = b"\x01"


class CorruptRecord(ValueError):
    """A stream entry that is not what the ingest script writes."""


def encode_row(source_id: int, ts_us: int, level: Level, message: bytes, metadata: bytes) -> bytes:
    """One log_entries tuple: `ts_us` in Unix microseconds, `message` UTF-8, `metadata`
    the JSON text as LogEntry encoded it."""
    return b"".join(
        (
            _ROW_START.pack(ROW_FIELDS, 4, source_id, 8, ts_us - PG_EPOCH_US),
            _LEVEL_FIELD[level],
            _LENGTH.pack(len(message)),
            message,
            _LENGTH.pack(len(metadata) + 1),
            _JSONB_VERSION,
            metadata,
        )
    )


def encode_dead_letter(source_id: int | None, raw: str, reason: str) -> bytes:
    """A line that could not become an entry, kept for the dead-letter table (`raw` is
    printable already: see domain/ingest.printable)."""
    raw_bytes, reason_bytes = raw.encode(), reason.encode()
    source = b"\xff\xff\xff\xff" if source_id is None else _LENGTH.pack(4) + _LENGTH.pack(source_id)
    return b"".join(
        (
            struct.pack(">h", DEAD_LETTER_FIELDS),
            source,
            _LENGTH.pack(len(raw_bytes)),
            raw_bytes,
            _LENGTH.pack(len(reason_bytes)),
            reason_bytes,
        )
    )


@dataclass(frozen=True, slots=True)
class DeadLetter:
    source_id: int | None
    raw: str
    reason: str


# (source id, minute as Unix microseconds of its start, level)
RollupKey = tuple[int, int, str]


@dataclass(slots=True)
class Scanned:
    """A stream entry's records, walked once: the runs of row bytes to COPY as they
    are, where each row starts, their per-minute counts, and the dead letters."""

    runs: list[memoryview]
    starts: list[int]
    counts: Counter[RollupKey]
    dead: list[DeadLetter]

    @property
    def rows(self) -> int:
        return len(self.starts)


def _field(payload: bytes, at: int, end: int) -> tuple[bytes, int]:
    (length,) = _LENGTH.unpack_from(payload, at)
    at += 4
    if length < 0 or at + length > end:
        raise CorruptRecord("a field runs past the end of the entry")
    return payload[at : at + length], at + length


def scan(payload: bytes) -> Scanned:
    """Walk the records of one stream entry; CorruptRecord if they are not well formed
    (what COPY would refuse of the values themselves, PostgreSQL says)."""
    view = memoryview(payload)
    runs: list[memoryview] = []
    starts: list[int] = []
    counts: Counter[RollupKey] = Counter()
    dead: list[DeadLetter] = []
    append_start, unpack_head = starts.append, _ROW_HEAD.unpack_from  # the loop runs per row
    unpack_length = _LENGTH.unpack_from
    end = len(payload)
    at = run_start = 0
    try:
        while at < end:
            fields = payload[at + 1] if payload[at] == 0 else -1
            if fields == ROW_FIELDS:
                _, four, source_id, eight, ts, level_length = unpack_head(payload, at)
                level = _LEVELS.get(payload[at + 26 : at + 26 + level_length])
                if four != 4 or eight != 8 or level is None:
                    raise CorruptRecord("a row's source, time or level is malformed")
                append_start(at)
                field_at = at + 26 + level_length
                (message_length,) = unpack_length(payload, field_at)
                field_at += 4 + message_length
                (metadata_length,) = unpack_length(payload, field_at)
                next_at = field_at + 4 + metadata_length
                if message_length < 0 or metadata_length < 1 or next_at > end:
                    raise CorruptRecord("a row's message or metadata is malformed")
                counts[(source_id, (ts + PG_EPOCH_US) // MINUTE_US * MINUTE_US, level)] += 1
                at = next_at
            elif fields == DEAD_LETTER_FIELDS:
                if at > run_start:
                    runs.append(view[run_start:at])
                letter, at = _dead_letter(payload, at, end)
                dead.append(letter)
                run_start = at
            else:
                raise CorruptRecord(f"a record of {fields} fields")
    except (struct.error, IndexError):
        raise CorruptRecord("a record runs past the end of the entry") from None
    if end > run_start:
        runs.append(view[run_start:end])
    return Scanned(runs, starts, counts, dead)


def _dead_letter(payload: bytes, at: int, end: int) -> tuple[DeadLetter, int]:
    _, source_length = _DEAD_HEAD.unpack_from(payload, at)
    at += 6
    source_id: int | None = None
    if source_length == 4:
        (source_id,) = _LENGTH.unpack_from(payload, at)
        at += 4
    elif source_length != -1:
        raise CorruptRecord("a dead letter's source is malformed")
    raw, at = _field(payload, at, end)
    reason, at = _field(payload, at, end)
    valid_source = source_id is not None and 0 < source_id <= MAX_SOURCE_ID
    return (
        DeadLetter(
            source_id if valid_source else None,
            raw.decode("utf-8", "backslashreplace"),
            reason.decode("utf-8", "backslashreplace"),
        ),
        at,
    )


def copy_data(runs: Sequence[memoryview | bytes]) -> bytes:
    """The whole binary COPY stream for these runs of rows."""
    return b"".join((COPY_HEADER, *runs, COPY_TRAILER))


@dataclass(frozen=True, slots=True)
class StreamRow:
    """A row read back into Python values (live tail, a refused entry's dead letters,
    and stream entries of the earlier JSON record format)."""

    source_id: int
    timestamp: datetime
    level: str
    message: str
    metadata_json: bytes  # as the API encoded it: stored as it is

    @property
    def metadata(self) -> dict[str, Any]:
        """Read when needed (live tail), not for every row written."""
        value: dict[str, Any] = exactjson.loads(self.metadata_json)
        return value

    def copy_record(self) -> tuple[int, datetime, str, str, bytes]:
        return (self.source_id, self.timestamp, self.level, self.message, self.metadata_json)

    def record_json(self) -> str:
        """The whole row as JSON text, for a dead letter."""
        return orjson.dumps(
            [
                self.source_id,
                self.timestamp.isoformat(),
                self.level,
                self.message,
                orjson.Fragment(self.metadata_json),
            ]
        ).decode()


def decode_row(payload: bytes, at: int) -> StreamRow:
    """The row starting at `at` (one of Scanned.starts)."""
    _, _, source_id, _, ts, level_length = _ROW_HEAD.unpack_from(payload, at)
    level = _LEVELS[payload[at + 26 : at + 26 + level_length]]
    end = len(payload)
    message, field_at = _field(payload, at + 26 + level_length, end)
    metadata, _ = _field(payload, field_at, end)
    return StreamRow(
        source_id,
        PG_EPOCH + timedelta(microseconds=ts),
        level,
        message.decode("utf-8", "backslashreplace"),
        metadata[1:],
    )
