"""The compressed tier's chunk codec: events in, bytes and index terms out. Pure, no I/O.

A chunk holds up to CHUNK_EVENTS consecutive events of one source, ordered by
(timestamp, id), as columns, and the columns compressed together with zstd:

- ids, timestamps and ingestion times as 64-bit deltas from the previous event (small,
  mostly zero bytes, which zstd squeezes to almost nothing);
- levels as one byte each;
- messages as UTF-8 joined by NUL (PostgreSQL text cannot hold NUL);
- metadata by key: for each top-level key, the events that have it and their values in
  one JSON array (a column of statuses or hosts compresses far better than objects).

Measured on 200k benchmark events (about 502 bytes each as NDJSON; docs/storage.md):
these columns with zstd level 3 take 49 bytes per event against 109 for the same columns
as PostgreSQL arrays TOASTed with lz4 and 61 for zstd of the NDJSON lines themselves.

Beside the payload, a chunk carries a Bloom filter of its index terms: its messages'
words and its metadata's `path=value` scalars (matching.metadata_terms). A search asks
the filter for every word and metadata value it needs; PostgreSQL tests the bits
(`log_chunk_may_hold` in the schema) so that only chunks that may match are read.
"""

from __future__ import annotations

import struct
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache, cached_property
from itertools import chain
from operator import itemgetter
from typing import Any

import cramjam
import numpy as np
import numpy.typing as npt
import orjson

from logkeep.domain import exactjson
from logkeep.domain.bloom import Hashes, hashes_of_each
from logkeep.domain.matching import column_terms, metadata_terms, word_set, word_text

CHUNK_EVENTS = 1000
ZSTD_LEVEL = 3
FORMAT_VERSION = 1
LEVELS = ("DEBUG", "INFO", "WARN", "ERROR", "FATAL")
LEVEL_CODE = {name: index for index, name in enumerate(LEVELS)}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_SECTIONS = 6  # ids, timestamps, ingested_at, levels, messages, metadata
Int64s = npt.NDArray[np.int64]


MISSING: Any = object()  # a metadata key an event does not have (DecodedChunk.column)


class CorruptChunk(ValueError):
    """A payload this codec did not write (or a later one it cannot read)."""


def micros(instant: datetime) -> int:
    return (instant - _EPOCH) // _US


def from_micros(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


@dataclass(frozen=True, slots=True)
class ChunkEvent:
    """One event as both tiers hold it."""

    id: int
    source_id: int
    timestamp: datetime
    level: str
    message: str
    metadata: dict[str, Any]
    ingested_at: datetime

    def __getitem__(self, column: str) -> Any:
        """Columns by name, as rows are read (alerting reads events like records)."""
        return getattr(self, column)


@dataclass(frozen=True)
class EncodedChunk:
    source_id: int
    events: int
    min_ts: datetime
    max_ts: datetime
    level_counts: list[int]  # per LEVELS
    payload: bytes
    term_filter: bytes  # its Bloom filter, version 2 (domain/bloom.py)
    terms: int
    plain_bytes: int  # the columns before compression


@dataclass(frozen=True, eq=False)  # __eq__ below: numpy arrays compare elementwise
class EventColumns:
    """Events of one source as the columns a chunk holds: what compaction reads from the
    hot tier and encodes without building an object per event (ids and instants as
    numpy arrays: one pass in C to read, check the order of and delta-encode them)."""

    source_id: int
    ids: Int64s
    timestamps: Int64s  # microseconds since the epoch
    ingested: Int64s
    levels: bytes  # a LEVEL_CODE each
    messages: list[bytes]  # UTF-8
    metadata: list[dict[str, Any]]

    @classmethod
    def of_events(cls, events: Sequence[ChunkEvent]) -> EventColumns:
        source_id = events[0].source_id
        if any(e.source_id != source_id for e in events):
            raise ValueError("a chunk holds the events of one source")
        return cls(
            source_id,
            np.array([e.id for e in events], np.int64),
            np.array([micros(e.timestamp) for e in events], np.int64),
            np.array([micros(e.ingested_at) for e in events], np.int64),
            bytes(LEVEL_CODE[e.level] for e in events),
            [e.message.encode("utf-8") for e in events],
            [e.metadata for e in events],
        )

    def __len__(self) -> int:
        return len(self.ids)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EventColumns):
            return NotImplemented
        return (
            self.source_id == other.source_id
            and all(
                np.array_equal(a, b)
                for a, b in zip(
                    (self.ids, self.timestamps, self.ingested),
                    (other.ids, other.timestamps, other.ingested),
                    strict=True,
                )
            )
            and (self.levels, self.messages, self.metadata)
            == (other.levels, other.messages, other.metadata)
        )

    def part(self, start: int, stop: int | None = None) -> EventColumns:
        return EventColumns(
            self.source_id,
            self.ids[start:stop],
            self.timestamps[start:stop],
            self.ingested[start:stop],
            self.levels[start:stop],
            self.messages[start:stop],
            self.metadata[start:stop],
        )

    def __add__(self, other: EventColumns) -> EventColumns:
        if other.source_id != self.source_id:
            raise ValueError("a chunk holds the events of one source")
        return EventColumns(
            self.source_id,
            np.concatenate((self.ids, other.ids)),
            np.concatenate((self.timestamps, other.timestamps)),
            np.concatenate((self.ingested, other.ingested)),
            self.levels + other.levels,
            self.messages + other.messages,
            self.metadata + other.metadata,
        )

    def in_order(self) -> EventColumns:
        """The same events ordered by (timestamp, id) (itself when every key is greater
        than the one before)."""
        stamps, ids = self.timestamps, self.ids
        later = stamps[1:] > stamps[:-1]
        tied = (stamps[1:] == stamps[:-1]) & (ids[1:] > ids[:-1])
        if bool(np.all(later | tied)):
            return self
        order = np.lexsort((ids, stamps))  # stable: equal keys keep their order
        positions = order.tolist()
        return EventColumns(
            self.source_id,
            ids[order],
            stamps[order],
            self.ingested[order],
            np.frombuffer(self.levels, np.uint8)[order].tobytes(),
            [self.messages[i] for i in positions],
            [self.metadata[i] for i in positions],
        )


def _deltas(values: Int64s) -> bytes:
    return np.diff(values, prepend=np.int64(0)).tobytes()


def _undeltas(data: bytes) -> Int64s:
    # Modulo 2**64 like _deltas, so every int64 column comes back as it was.
    return np.cumsum(np.frombuffer(data, np.int64))


def _undelta_list(data: bytes) -> list[int]:
    values: list[int] = _undeltas(data).tolist()
    return values


def _jsonb_key_order(key: str) -> tuple[int, bytes]:
    # jsonb keeps an object's keys shortest first, then bytewise; rebuilt objects follow
    # it so that both tiers hand back the same object in the same order.
    encoded = key.encode("utf-8")
    return (len(encoded), encoded)


def _metadata_columns(
    objects: Sequence[dict[str, Any]],
) -> list[tuple[str, list[int] | None, list[Any]]]:
    """(key, indices of the events that have it or None for all, their values) per key,
    in jsonb order. A key every event has (most of them: one source, one shape) is read
    with one itemgetter pass in C."""
    shape = objects[0].keys()
    if all(map(shape.__eq__, map(dict.keys, objects))):  # one shape: no counting
        counts = dict.fromkeys(shape, len(objects))
    else:
        counts = Counter(chain.from_iterable(objects))
    columns: list[tuple[str, list[int] | None, list[Any]]] = []
    for key in sorted(counts, key=_jsonb_key_order):
        if counts[key] == len(objects):
            columns.append((key, None, list(map(itemgetter(key), objects))))
        else:
            present = [i for i, obj in enumerate(objects) if key in obj]
            columns.append((key, present, [objects[i][key] for i in present]))
    return columns


def _key(event: ChunkEvent) -> tuple[datetime, int]:
    return (event.timestamp, event.id)


def _metadata_section(columns: list[tuple[str, list[int] | None, list[Any]]]) -> bytes:
    """A JSON index [[key, present indices or null for all, byte length], ...], then each
    key's values as one JSON array: a filter on one key parses only that key's bytes."""
    blobs = [exactjson.dumps(values) for _, _, values in columns]
    index = exactjson.dumps(
        [[key, present, len(blob)] for (key, present, _), blob in zip(columns, blobs, strict=True)]
    )
    return struct.pack("<I", len(index)) + index + b"".join(blobs)


def encode_chunk(events: Sequence[ChunkEvent], *, ordered: bool = False) -> EncodedChunk:
    """The chunk of `events` (one source, sorted here by (timestamp, id) unless the
    caller says they are)."""
    if not events:
        raise ValueError("a chunk holds at least one event")
    return encode_columns(EventColumns.of_events(events if ordered else sorted(events, key=_key)))


def _metadata_terms(columns: list[tuple[str, list[int] | None, list[Any]]]) -> tuple[bytes, Hashes]:
    """Every metadata term (matching.column_terms) as UTF-8 joined by NUL; or, when a term
    holds a NUL (not from jsonb, which refuses it), their hashes one by one."""
    terms = [term for key, _, values in columns for term in column_terms(key, values)]
    text = "\x00".join(terms)
    if text.count("\x00") == max(0, len(terms) - 1):
        return text.encode("utf-8", "surrogatepass"), hashes_of_each([])
    return b"", hashes_of_each([term.encode("utf-8", "surrogatepass") for term in terms])


@cache
def load_filter_builder() -> float:
    """Load numba and the Bloom filter's compiled loops, as the first chunks a process
    writes would, once a process; the CPU seconds it took (compaction does it in a thread
    before its first slice; benchmarks leave it out of per-event costs)."""
    from logkeep.domain.bloom_build import warm_up

    started = time.process_time()
    warm_up()
    return time.process_time() - started


def _term_filter(
    messages: bytes, metadata: list[tuple[str, list[int] | None, list[Any]]]
) -> tuple[bytes, int]:
    """The Bloom filter of every word of the messages and every metadata term, and how
    many distinct terms it was sized for."""
    # numba takes half a second to load: only the processes that write chunks import it.
    from logkeep.domain.bloom_build import filter_of_terms

    text, hashes = _metadata_terms(metadata)
    return filter_of_terms([(word_text(messages), 0x20), (text, 0)], hashes)


def encode_columns(columns: EventColumns) -> EncodedChunk:
    """The chunk of events given as columns, in (timestamp, id) order."""
    count = len(columns)
    if not count:
        raise ValueError("a chunk holds at least one event")
    messages = b"\x00".join(columns.messages)
    if messages.count(0) != count - 1:
        raise ValueError("a message holds a NUL character")
    level_codes = columns.levels
    metadata = _metadata_columns(columns.metadata)
    sections = [
        _deltas(columns.ids),
        _deltas(columns.timestamps),
        _deltas(columns.ingested),
        level_codes,
        messages,
        _metadata_section(metadata),
    ]
    body = b"".join(struct.pack("<I", len(s)) + s for s in sections)
    payload = bytes([FORMAT_VERSION]) + bytes(cramjam.zstd.compress(body, level=ZSTD_LEVEL))
    term_filter, terms = _term_filter(messages, metadata)
    counts = [level_codes.count(code) for code in range(len(LEVELS))]
    if sum(counts) != count:
        raise ValueError("a level code is not one of LEVELS")
    return EncodedChunk(
        source_id=columns.source_id,
        events=count,
        min_ts=from_micros(int(columns.timestamps[0])),
        max_ts=from_micros(int(columns.timestamps[-1])),
        level_counts=counts,
        payload=payload,
        term_filter=term_filter,
        terms=terms,
        plain_bytes=len(body),
    )


def index_terms(messages: Sequence[str], metadata: Iterable[dict[str, Any]]) -> set[str]:
    """Every word of the messages and every indexed metadata `path=value` (see
    matching): what encode_chunk puts in a chunk's Bloom filter."""
    terms = word_set(messages)
    for obj in metadata:
        terms.update(metadata_terms(obj))
    return terms


# ---------------------------------------------------------------------------------------
# Decoding: columns on demand


@dataclass
class DecodedChunk:
    """A chunk's columns, each decoded when first used."""

    source_id: int
    _sections: list[bytes] = field(repr=False)

    @cached_property
    def ids(self) -> list[int]:
        return _undelta_list(self._sections[0])

    @cached_property
    def timestamps(self) -> list[int]:
        """Microseconds since the epoch."""
        return _undelta_list(self._sections[1])

    @cached_property
    def ingested(self) -> list[int]:
        return _undelta_list(self._sections[2])

    @cached_property
    def levels(self) -> list[str]:
        return [LEVELS[code] for code in self._sections[3]]

    @cached_property
    def messages(self) -> list[str]:
        return self._sections[4].decode("utf-8").split("\x00")

    @cached_property
    def _metadata_index(self) -> dict[str, tuple[list[int] | None, int, int]]:
        """key -> (present indices or None for every event, start, end) in the section."""
        section = self._sections[5]
        (size,) = struct.unpack_from("<I", section, 0)
        offset = 4 + size
        found: dict[str, tuple[list[int] | None, int, int]] = {}
        for key, present, length in orjson.loads(section[4:offset]):
            found[key] = (present, offset, offset + length)
            offset += length
        return found

    def column(self, key: str) -> list[Any]:
        """One top-level metadata key's values, MISSING where an event lacks the key."""
        if key not in self._columns:
            self._columns[key] = self._read_column(key)
        return self._columns[key]

    @cached_property
    def _columns(self) -> dict[str, list[Any]]:
        return {}

    def _read_column(self, key: str) -> list[Any]:
        where = self._metadata_index.get(key)
        if where is None:
            return [MISSING] * len(self.ids)
        present, start, end = where
        values = exactjson.loads(self._sections[5][start:end])
        if present is None:
            return list(values)
        found: list[Any] = [MISSING] * len(self.ids)
        for index, value in zip(present, values, strict=True):
            found[index] = value
        return found

    @cached_property
    def metadata(self) -> list[dict[str, Any]]:
        objects: list[dict[str, Any]] = [{} for _ in range(len(self.ids))]
        for key in self._metadata_index:  # in jsonb's key order, as encoded
            for index, value in enumerate(self.column(key)):
                if value is not MISSING:
                    objects[index][key] = value
        return objects

    def __len__(self) -> int:
        return len(self.ids)

    def metadata_of(self, index: int) -> dict[str, Any]:
        """One event's metadata, from the columns (without building every object)."""
        if "metadata" in self.__dict__:
            return self.metadata[index]
        found: dict[str, Any] = {}
        for key in self._metadata_index:
            value = self.column(key)[index]
            if value is not MISSING:
                found[key] = value
        return found

    def event(self, index: int, *, with_metadata: bool = True) -> ChunkEvent:
        """One event; without its metadata ({}) when the caller reads none (a count by
        time and level need not parse every metadata column of the chunk)."""
        return ChunkEvent(
            id=self.ids[index],
            source_id=self.source_id,
            timestamp=from_micros(self.timestamps[index]),
            level=self.levels[index],
            message=self.messages[index],
            metadata=self.metadata_of(index) if with_metadata else {},
            ingested_at=from_micros(self.ingested[index]),
        )

    def events(self) -> list[ChunkEvent]:
        return [self.event(i) for i in range(len(self))]

    def columns(self) -> EventColumns:
        return EventColumns(
            self.source_id,
            _undeltas(self._sections[0]),
            _undeltas(self._sections[1]),
            _undeltas(self._sections[2]),
            self._sections[3],
            self._sections[4].split(b"\x00"),
            self.metadata,
        )


def decode_chunk(source_id: int, payload: bytes) -> DecodedChunk:
    if not payload or payload[0] != FORMAT_VERSION:
        raise CorruptChunk(f"chunk format {payload[:1].hex() or 'none'} is not {FORMAT_VERSION}")
    try:
        body = bytes(cramjam.zstd.decompress(payload[1:]))
    except cramjam.DecompressionError as exc:
        raise CorruptChunk(f"chunk payload does not decompress: {exc}") from None
    sections: list[bytes] = []
    offset = 0
    for _ in range(_SECTIONS):
        if offset + 4 > len(body):
            raise CorruptChunk("chunk payload is truncated")
        (size,) = struct.unpack_from("<I", body, offset)
        offset += 4
        sections.append(body[offset : offset + size])
        offset += size
    if offset != len(body):
        raise CorruptChunk("chunk payload has trailing bytes")
    return DecodedChunk(source_id, sections)
