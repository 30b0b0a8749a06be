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

import hashlib
import struct
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property, lru_cache
from itertools import accumulate
from typing import Any

import cramjam
import orjson

from logkeep.domain import exactjson
from logkeep.domain.matching import column_terms, metadata_terms, word_set

CHUNK_EVENTS = 1000
ZSTD_LEVEL = 3
FORMAT_VERSION = 1
LEVELS = ("DEBUG", "INFO", "WARN", "ERROR", "FATAL")
LEVEL_CODE = {name: index for index, name in enumerate(LEVELS)}
# Bloom filters: at least BLOOM_BITS_PER_TERM bits a term (sizes are powers of two) and
# BLOOM_HASHES probes: under 0.7 % false positives, with half the work of the 7 probes
# that 10 bits would want. The schema's log_chunk_may_hold probes 4 bits too: change
# both together.
BLOOM_BITS_PER_TERM = 12
BLOOM_HASHES = 4
BLOOM_MIN_BITS = 256
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_SECTIONS = 6  # ids, timestamps, ingested_at, levels, messages, metadata


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
    bloom: bytes
    terms: int
    plain_bytes: int  # the columns before compression


def _deltas(values: Sequence[int]) -> bytes:
    previous = 0
    out = array("q")
    for value in values:
        out.append(value - previous)
        previous = value
    return out.tobytes()


def _undeltas(data: bytes) -> list[int]:
    deltas = array("q")
    deltas.frombytes(data)
    return list(accumulate(deltas))


def _jsonb_key_order(key: str) -> tuple[int, bytes]:
    # jsonb keeps an object's keys shortest first, then bytewise; rebuilt objects follow
    # it so that both tiers hand back the same object in the same order.
    encoded = key.encode("utf-8")
    return (len(encoded), encoded)


def _metadata_columns(objects: Sequence[dict[str, Any]]) -> list[tuple[str, list[int], list[Any]]]:
    """(key, indices of the events that have it, their values) per key, in jsonb order."""
    keys: dict[str, list[int]] = {}
    for index, obj in enumerate(objects):
        for key in obj:
            keys.setdefault(key, []).append(index)
    return [
        (key, keys[key], [objects[i][key] for i in keys[key]])
        for key in sorted(keys, key=_jsonb_key_order)
    ]


def _key(event: ChunkEvent) -> tuple[datetime, int]:
    return (event.timestamp, event.id)


def _metadata_section(columns: list[tuple[str, list[int], list[Any]]], events: int) -> bytes:
    """A JSON index [[key, present indices or null for all, byte length], ...], then each
    key's values as one JSON array: a filter on one key parses only that key's bytes."""
    blobs = [exactjson.dumps(values) for _, _, values in columns]
    index = exactjson.dumps(
        [
            [key, None if len(present) == events else present, len(blob)]
            for (key, present, _), blob in zip(columns, blobs, strict=True)
        ]
    )
    return struct.pack("<I", len(index)) + index + b"".join(blobs)


def encode_chunk(events: Sequence[ChunkEvent], *, ordered: bool = False) -> EncodedChunk:
    """The chunk of `events` (one source, sorted here by (timestamp, id) unless the
    caller says they are)."""
    if not events:
        raise ValueError("a chunk holds at least one event")
    return _encode(list(events) if ordered else sorted(events, key=_key))


def _encode(ordered: list[ChunkEvent]) -> EncodedChunk:
    source_id = ordered[0].source_id
    if any(e.source_id != source_id for e in ordered):
        raise ValueError("a chunk holds the events of one source")
    messages = [e.message for e in ordered]
    joined = "\x00".join(messages)
    if joined.count("\x00") != len(messages) - 1:
        raise ValueError("a message holds a NUL character")
    level_codes = bytes(LEVEL_CODE[e.level] for e in ordered)
    columns = _metadata_columns([e.metadata for e in ordered])
    sections = [
        _deltas([e.id for e in ordered]),
        _deltas([micros(e.timestamp) for e in ordered]),
        _deltas([micros(e.ingested_at) for e in ordered]),
        level_codes,
        joined.encode("utf-8"),
        _metadata_section(columns, len(ordered)),
    ]
    body = b"".join(struct.pack("<I", len(s)) + s for s in sections)
    payload = bytes([FORMAT_VERSION]) + bytes(cramjam.zstd.compress(body, level=ZSTD_LEVEL))
    terms = word_set(messages)
    for key, _, values in columns:
        terms.update(column_terms(key, values))
    counts = [0] * len(LEVELS)
    for code in level_codes:
        counts[code] += 1
    return EncodedChunk(
        source_id=source_id,
        events=len(ordered),
        min_ts=ordered[0].timestamp,
        max_ts=ordered[-1].timestamp,
        level_counts=counts,
        payload=payload,
        bloom=bloom_filter(terms),
        terms=len(terms),
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
# Bloom filters


@lru_cache(maxsize=200_000)  # words, hosts and statuses repeat from chunk to chunk
def term_hashes(term: str) -> tuple[int, int]:
    """The two 31-bit hashes whose combinations h1 + i*h2 are a term's probes."""
    digest = hashlib.blake2b(term.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    h1, h2 = struct.unpack("<II", digest)
    return h1 & 0x7FFFFFFF, (h2 & 0x7FFFFFFF) | 1


def bloom_filter(terms: Iterable[str]) -> bytes:
    hashed = [term_hashes(t) for t in terms]
    bits = BLOOM_MIN_BITS
    while bits < len(hashed) * BLOOM_BITS_PER_TERM:
        bits *= 2
    mask = bits - 1  # a power of two: modulo is a mask
    filled = bytearray(bits // 8)
    for h1, h2 in hashed:  # BLOOM_HASHES probes, unrolled
        p = h1 & mask
        filled[p >> 3] |= 1 << (p & 7)
        p = (h1 + h2) & mask
        filled[p >> 3] |= 1 << (p & 7)
        p = (h1 + 2 * h2) & mask
        filled[p >> 3] |= 1 << (p & 7)
        p = (h1 + 3 * h2) & mask
        filled[p >> 3] |= 1 << (p & 7)
    return bytes(filled)


def may_hold(bloom: bytes, term: str) -> bool:
    """What the schema's log_chunk_may_hold answers, for one term (tests compare them)."""
    bits = len(bloom) * 8
    h1, h2 = term_hashes(term)
    for i in range(BLOOM_HASHES):
        position = (h1 + i * h2) % bits
        if not bloom[position >> 3] & (1 << (position & 7)):
            return False
    return True


# ---------------------------------------------------------------------------------------
# Decoding: columns on demand


@dataclass
class DecodedChunk:
    """A chunk's columns, each decoded when first used."""

    source_id: int
    _sections: list[bytes] = field(repr=False)

    @cached_property
    def ids(self) -> list[int]:
        return _undeltas(self._sections[0])

    @cached_property
    def timestamps(self) -> list[int]:
        """Microseconds since the epoch."""
        return _undeltas(self._sections[1])

    @cached_property
    def ingested(self) -> list[int]:
        return _undeltas(self._sections[2])

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
