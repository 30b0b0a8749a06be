"""Ingest, the pure part: bodies into lines, lines and events into entries, entries into
the records the ingest stream carries, and the fingerprints dedup compares."""

from __future__ import annotations

import hashlib
import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, NamedTuple

import orjson

from logkeep.domain import exactjson, stream_rows
from logkeep.domain.entry import (
    DEFAULT_LIMITS,
    MAX_SOURCE_ID,
    EntryLimits,
    InvalidLogEntry,
    Level,
    LogEntry,
)
from logkeep.domain.parsers import LineParseError, LineParser, ParsedLine
from logkeep.domain.stream_rows import CorruptRecord, DeadLetter, StreamRow, encode_row

EVENT_FIELDS = frozenset({"source", "message", "timestamp", "level", "metadata", "event_id"})
MAX_EVENT_ID_CHARS = 256
PARSE_ERROR_KEY = "_parse_error"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
UTF8_BOM = b"\xef\xbb\xbf"
DedupMode = Literal["content", "event_id", "off"]
DEDUP_MODES: tuple[DedupMode, ...] = ("content", "event_id", "off")


class BodyError(ValueError):
    """The whole request body is unusable; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class SourceRules:
    """What ingest needs to know about a source, with its parser compiled once."""

    id: int
    name: str
    is_active: bool
    format_type: str
    parser: LineParser = field(repr=False, compare=False)
    rate_limit_eps: int | None = None
    rate_limit_burst: int | None = None
    dedup: DedupMode = "content"


class Prepared(NamedTuple):  # a tuple: made for every event, faster than a dataclass
    """A validated entry, its stream record (its COPY tuple: stream_rows.encode_row)
    and its dedup fingerprint when it can have one."""

    entry: LogEntry
    fingerprint: bytes | None
    record: bytes


@dataclass(frozen=True, slots=True)
class Rejection:
    line: int  # 1-based line (NDJSON, text) or array position (JSON array)
    reason: str


# -- bodies --------------------------------------------------------------------------------


def decompress(body: bytes, content_encoding: str | None, limit: int) -> bytes:
    """The body, gunzipped when declared so, refusing more than `limit` bytes of output
    (a small gzip bomb must not expand into gigabytes). Concatenated gzip members (what
    `cat a.gz b.gz` and pigz make) are all read; anything else after them is an error."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("identity", ""):
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise BodyError(415, f"Content-Encoding {encoding[:32]!r} is not supported (use gzip)")
    out = bytearray()
    rest = body
    while True:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(rest, limit + 1 - len(out))
            if len(out) > limit or inflater.unconsumed_tail:
                raise BodyError(413, f"body: decompressed size is over the {limit}-byte limit")
            out += inflater.flush()
        except zlib.error as exc:
            raise BodyError(400, f"body: not valid gzip data ({exc})") from None
        if not inflater.eof:
            raise BodyError(400, "body: gzip data is truncated")
        if len(out) > limit:
            raise BodyError(413, f"body: decompressed size is over the {limit}-byte limit")
        rest = inflater.unused_data
        if not rest:
            return bytes(out)


def split_lines(body: bytes) -> Iterator[tuple[int, bytes]]:
    """(1-based line number, line) for every non-blank line; CRLF endings are accepted."""
    for number, raw in enumerate(body.split(b"\n"), start=1):
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if line.strip():
            yield number, line


def decode_line(raw: bytes, max_bytes: int) -> str:
    """A line as text; InvalidLogEntry names what is wrong with it."""
    if len(raw) > max_bytes:
        raise InvalidLogEntry("line", f"is {len(raw)} bytes, over the {max_bytes}-byte line limit")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidLogEntry("line", f"is not valid UTF-8 (byte {exc.start})") from None


def parse_json_array(body: bytes) -> list[Any]:
    """A JSON array body; a malformed one can never become valid (400). Numbers are read
    exactly (exactjson); an escaped lone surrogate ("\\ud800", which JavaScript writes),
    NaN or a number out of range is refused with the one event holding it, by entry
    validation, instead of the whole body."""
    try:
        value = exactjson.loads(body.removeprefix(UTF8_BOM))
    except exactjson.JSONDecodeError as exc:
        raise BodyError(400, f"body: not valid JSON ({exc})") from None
    if isinstance(value, dict):
        return [value]
    if not isinstance(value, list):
        raise BodyError(400, f"body: expected a JSON array of events, got {type(value).__name__}")
    return value


def parse_json_line(line: str) -> Any:
    try:
        return exactjson.loads(line.removeprefix("\ufeff"))
    except exactjson.JSONDecodeError as exc:
        raise InvalidLogEntry("line", f"is not valid JSON ({exc})") from None


def _line_numbers(body: bytes, offsets: Iterable[int]) -> set[int]:
    """The numbers (as split_lines counts them) of the lines holding these offsets, which
    come in order."""
    numbers: set[int] = set()
    line, counted = 1, 0
    for at in offsets:
        line += body.count(b"\n", counted, at)
        counted = at
        numbers.add(line)
    return numbers


def read_json_lines(
    body: bytes, lines: Iterable[tuple[int, bytes]], max_bytes: int
) -> list[tuple[int, Any]]:
    """Each of the body's NDJSON `lines` (from split_lines) as (line number, event), or
    (line number, InvalidLogEntry) saying why it is none, exactly as decode_line and
    parse_json_line would say. One look at the whole body finds the rare lines holding a
    number that orjson would not read exactly (exactjson); orjson alone reads the others."""
    careful = _line_numbers(body, exactjson.inexact_numbers(body))
    events: list[tuple[int, Any]] = []
    append, loads = events.append, orjson.loads  # the loop runs for every line
    for number, raw in lines:
        if number not in careful and len(raw) <= max_bytes:
            try:
                # The bytes as they are: orjson checks UTF-8 itself, without the copy a
                # decode makes (a third of this loop's time).
                append((number, loads(raw)))
                continue
            except orjson.JSONDecodeError:
                pass  # not UTF-8, a BOM, NaN, 1e999, an escaped lone surrogate or no JSON: below
        try:
            text = decode_line(raw, max_bytes)
            if number in careful:  # what exactjson.loads does with it, without looking again
                append((number, exactjson.read_exactly(text.removeprefix("\ufeff"))))
            else:
                append((number, parse_json_line(text)))
        except exactjson.JSONDecodeError as exc:
            append((number, InvalidLogEntry("line", f"is not valid JSON ({exc})")))
        except InvalidLogEntry as exc:
            append((number, exc))
    return events


# -- entries -------------------------------------------------------------------------------


def fingerprint(
    source_id: int,
    event_id: str | None,
    entry: LogEntry | None,
    *,
    ts_us: int | None = None,
    message: bytes | None = None,
) -> bytes:
    """8 bytes naming an event for dedup: its source and event id, else its whole
    content (source, timestamp, level, message and metadata: two requests to one URL in
    one second from two clients are two events). 64 bits: at a million events in the
    window the chance that any two distinct events collide is about 3 in 100 million.
    `ts_us` and `message`: the entry's timestamp_us and UTF-8 message, when the caller
    has them already."""
    if event_id is not None:
        parts: tuple[bytes, ...] = (
            source_id.to_bytes(4, "big"),
            b"i",
            event_id.encode("utf-8", "surrogatepass"),
        )
    else:
        assert entry is not None
        parts = (
            # Source (4 bytes), "t" and the time (8, signed): one pack, not three calls.
            _CONTENT_HEAD.pack(
                source_id, b"t", timestamp_us(entry.timestamp) if ts_us is None else ts_us
            ),
            _LEVEL_BYTES[entry.level],
            _MESSAGE_CHARS.pack(len(entry.message)),
            entry.message.encode("utf-8") if message is None else message,
            entry.metadata_json,
        )
    # One call on the joined parts: the same digest as an update per part, for less.
    return hashlib.blake2b(b"".join(parts), digest_size=8).digest()


_LEVEL_BYTES = {level: level.value.encode() for level in Level}
_CONTENT_HEAD = struct.Struct(">Icq")
_MESSAGE_CHARS = struct.Struct(">I")


def dedup_fingerprint(
    source: SourceRules,
    event_id: str | None,
    has_timestamp: bool,
    entry: LogEntry,
    *,
    ts_us: int | None = None,
    message: bytes | None = None,
) -> bytes | None:
    """The fingerprint dedup compares, or None when the event cannot have one: without
    an id or a time of its own, a repeat cannot be told from a new event. A source's
    configuration may narrow dedup to event ids, or turn it off."""
    if source.dedup == "off" or (event_id is None and source.dedup == "event_id"):
        return None
    if event_id is None and not has_timestamp:
        return None
    return fingerprint(source.id, event_id, entry, ts_us=ts_us, message=message)


def prepared(
    entry: LogEntry, source: SourceRules, event_id: str | None, has_timestamp: bool
) -> Prepared:
    """The entry with its stream record (its COPY tuple) and fingerprint; its time
    converted and its message encoded once for both."""
    ts_us = timestamp_us(entry.timestamp)
    message = entry.message.encode()  # valid UTF-8: LogEntry checked it
    return _new_tuple(  # as Prepared(...) makes it, without the call of its generated __new__
        Prepared,
        (
            entry,
            dedup_fingerprint(source, event_id, has_timestamp, entry, ts_us=ts_us, message=message),
            encode_row(entry.source_id, ts_us, entry.level, message, entry.metadata_json),
        ),
    )


_new_tuple = tuple.__new__


def _event_id(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise InvalidLogEntry(
            "event_id", f"must be a string or integer, got {type(value).__name__}"
        )
    text = str(value)
    if not text or len(text) > MAX_EVENT_ID_CHARS:
        raise InvalidLogEntry("event_id", f"must be 1 to {MAX_EVENT_ID_CHARS} characters")
    return text


def _parsed(parser: LineParser, text: str) -> tuple[ParsedLine, dict[str, Any]]:
    """The line parsed by its source's rules; a line that does not parse is kept whole,
    with the reason in its metadata (never dropped without a trace)."""
    try:
        parsed = parser(text)
    except LineParseError as exc:
        return ParsedLine(message=text), {PARSE_ERROR_KEY: str(exc)[:200]}
    return parsed, parsed.metadata  # LogEntry copies it


def entry_from_line(
    text: str,
    source: SourceRules,
    *,
    limits: EntryLimits = DEFAULT_LIMITS,
    now: datetime | None = None,
) -> Prepared:
    """A raw line (text body, syslog, file) made an entry by its source's rules."""
    parsed, metadata = _parsed(source.parser, text)
    entry = LogEntry(
        parsed.message,
        source.id,
        level=parsed.level or Level.INFO,
        metadata=metadata,
        timestamp=parsed.timestamp,
        limits=limits,
        now=now,
    )
    # A line that carries no time of its own gets the time it arrived: hashing that
    # would never match a retry, and two equal lines are two events. No fingerprint.
    return prepared(entry, source, parsed.event_id, parsed.timestamp is not None)


def event_source_ref(event: object, default: str | None) -> str | int:
    """The source an event names (or the request's default); InvalidLogEntry otherwise."""
    if type(event) is not dict and not isinstance(event, Mapping):  # dict: no ABC check
        raise InvalidLogEntry("event", f"must be a JSON object, got {type(event).__name__}")
    ref = event.get("source", default)
    if ref is None:
        raise InvalidLogEntry("source", "is required (in the event or as ?source=)")
    if isinstance(ref, bool) or not isinstance(ref, str | int):
        raise InvalidLogEntry("source", f"must be a name or an id, got {type(ref).__name__}")
    return ref


def entry_from_event(
    event: Mapping[str, Any],
    source: SourceRules,
    *,
    parse_message: bool = False,
    limits: EntryLimits = DEFAULT_LIMITS,
    now: datetime | None = None,
) -> Prepared:
    """A JSON event made an entry. Fields other than the known ones join its metadata
    (shippers add host, file and the like); an explicit `metadata` object wins.
    With `parse_message`, the message is a raw line to parse by the source's rules,
    and the event's own fields override what parsing found."""
    message = event.get("message")
    if not isinstance(message, str):
        raise InvalidLogEntry("message", "is required" if message is None else "must be a string")
    metadata_value = event.get("metadata")
    if (
        metadata_value is not None
        and type(metadata_value) is not dict
        and not isinstance(metadata_value, Mapping)
    ):
        raise InvalidLogEntry("metadata", f"must be an object, got {type(metadata_value).__name__}")
    event_id = event.get("event_id")
    if event_id is not None:
        event_id = _event_id(event_id)
    timestamp = event.get("timestamp")
    level = event.get("level")
    metadata: Mapping[str, Any] = {} if metadata_value is None else metadata_value
    if parse_message or type(metadata) is not dict or not EVENT_FIELDS.issuperset(event):
        merged: dict[str, Any] = {}
        if parse_message:
            parsed, found = _parsed(source.parser, message)
            merged.update(found)
            message = parsed.message
            timestamp = parsed.timestamp if timestamp is None else timestamp
            level = parsed.level if level is None else level
            event_id = parsed.event_id if event_id is None else event_id
        merged.update((k, v) for k, v in event.items() if k not in EVENT_FIELDS)
        merged.update(metadata)
        metadata = merged
    # else (most events): the metadata object as it came, which LogEntry copies
    entry = LogEntry(
        message,
        source.id,
        level=level or Level.INFO,
        metadata=metadata,
        timestamp=timestamp,
        limits=limits,
        now=now,
    )
    return prepared(entry, source, event_id, timestamp is not None)


# -- stream records ------------------------------------------------------------------------
# Stream entries carry a request's accepted events as COPY tuples (domain/stream_rows.py),
# joined by the ingest script without parsing them. Entries written before that carried
# newline-separated JSON arrays (encode_entry): decode_records still reads those.


_MICROSECOND = timedelta(microseconds=1)


def timestamp_us(ts: datetime) -> int:
    return (ts - EPOCH) // _MICROSECOND  # exact: timedeltas are whole microseconds


def encode_entry(entry: LogEntry, *, ts_us: int | None = None) -> bytes:
    """[source_id, epoch microseconds, level, message, metadata] as one JSON line.
    `ts_us`: the entry's timestamp_us, when the caller has it already."""
    return orjson.dumps(
        [
            entry.source_id,
            timestamp_us(entry.timestamp) if ts_us is None else ts_us,
            entry.level,  # a str enum: orjson writes its value
            entry.message,
            orjson.Fragment(entry.metadata_json),
        ]
    )


MAX_DEAD_LETTER_CHARS = 64 * 1024


def printable(text: str, limit: int = MAX_DEAD_LETTER_CHARS) -> str:
    """`text` as PostgreSQL can store it: undecodable bytes and NUL written as escapes."""
    cut = text[:limit]
    return cut.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


def encode_dead_letter(source_id: int | None, raw: str, reason: str) -> bytes:
    """A line that could not become an entry, as a stream record for the dead-letter
    table (domain/stream_rows.py)."""
    return stream_rows.encode_dead_letter(source_id, printable(raw), printable(reason))


def _row(item: Any, payload: bytes, start: int, end: int) -> StreamRow:
    """The entry record at payload[start:end]."""
    source_id, ts_us, level, message, metadata = item
    if not (
        isinstance(source_id, int)
        and isinstance(ts_us, int)
        and isinstance(level, str)
        and isinstance(message, str)
        and isinstance(metadata, dict)
    ):
        raise CorruptRecord("an entry record has a field of the wrong type")
    # The metadata's own bytes, as encode_entry wrote them: orjson may have read a big
    # number inexactly above, and re-encoding every row would cost more than this.
    # orjson writes a value the same way every time: the metadata starts where the first
    # four fields, written again, end.
    cut = start + len(orjson.dumps([source_id, ts_us, level, message]))
    if cut < end and payload[cut - 1 : cut + 1] == b",{" and payload[end - 2 : end] == b"}]":
        metadata_json = payload[cut : end - 1]
    else:  # written some other way (by hand?): read and write it exactly
        metadata_json = exactjson.dumps(exactjson.loads(payload[start:end])[4])
    return StreamRow(
        source_id,
        EPOCH + timedelta(microseconds=ts_us),
        Level(level).value,
        message,
        metadata_json,
    )


def _dead_letter(item: dict[str, Any]) -> DeadLetter:
    source_id, raw, reason = item.get("source_id"), item["raw"], item["reason"]
    if not isinstance(raw, str) or not isinstance(reason, str):
        raise CorruptRecord("a dead-letter record has a field of the wrong type")
    valid_source = isinstance(source_id, int) and 0 < source_id <= MAX_SOURCE_ID
    return DeadLetter(source_id if valid_source else None, raw, reason)


def decode_records(payload: bytes) -> tuple[list[StreamRow], list[DeadLetter]]:
    """Entries and dead letters of one stream entry; CorruptRecord if it is malformed."""
    try:
        # orjson: each record's metadata is then taken from its line as it is (_row).
        items = orjson.loads(b"[" + payload.replace(b"\n", b",") + b"]")
    except orjson.JSONDecodeError as exc:
        raise CorruptRecord(f"payload is not the ingest record format: {exc}") from None
    if len(items) != payload.count(b"\n") + 1:
        raise CorruptRecord("payload is not one record per line")
    rows: list[StreamRow] = []
    dead: list[DeadLetter] = []
    start = 0
    try:
        for item in items:
            end = payload.find(b"\n", start)
            end = len(payload) if end < 0 else end
            if isinstance(item, list) and len(item) == 5:
                rows.append(_row(item, payload, start, end))
            elif isinstance(item, dict) and {"raw", "reason"} <= item.keys():
                dead.append(_dead_letter(item))
            else:
                raise CorruptRecord(f"unexpected record {str(item)[:80]!r}")
            start = end + 1
    except (TypeError, ValueError, OverflowError) as exc:
        raise CorruptRecord(f"bad record: {exc}") from None
    return rows, dead
