"""One read interface over both storage tiers: the hot rows of log_entries and the
compressed chunks of log_chunks.

Every answer reads both tiers in one snapshot (callers hold a REPEATABLE READ
transaction, or run a single statement per tier inside one): compaction moves a slice
from one tier to the other in one transaction, so a reader sees each event exactly once.

- The hot tier is narrowed in SQL (window, sources, levels, metadata containment, ILIKE
  hints for words and substrings); words and substrings are then decided in Python
  (domain/matching.py), the same way as for chunks.
- Chunks are picked in SQL (time, source, levels, Bloom filter of words and metadata
  values), decoded, and filtered in Python.
- Ordered scans merge the two tiers by (timestamp, id), so keyset cursors work across
  them and across a compaction between two pages (an event keeps its id in a chunk).

No SQL text comes from input: fragments are constants, values are parameters.
"""

from __future__ import annotations

import asyncio
import heapq
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import AsyncGenerator, Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg

from logkeep.db.chunk_counts import (
    MINUTE_US,
    ChunkCounts,
    ChunkIdentity,
    Counts,
    add_counts,
    count_minutes,
    minute_counts,
)
from logkeep.db.types import Conn
from logkeep.domain import exactjson
from logkeep.domain.bloom import term_hashes
from logkeep.domain.chunks import (
    LEVEL_CODE,
    MISSING,
    ChunkEvent,
    DecodedChunk,
    decode_chunk,
    from_micros,
    micros,
)
from logkeep.domain.histogram import whole_minutes
from logkeep.domain.matching import TextCondition, TextMatcher, contains, metadata_terms
from logkeep.domain.search import SearchQuery
from logkeep.domain.timerange import TimeRange

T = TypeVar("T")
Key = tuple[int, int]  # (timestamp in microseconds, id)
# Held (shared) by a reader that cannot use one REPEATABLE READ snapshot, and
# (exclusive) by each compaction transaction: such a reader then sees no slice move
# between its statements.
TIERS_LOCK_KEY = 0x6C6F676B746965  # "logktie"
HOT_BATCH = 500
CHUNK_BATCH_FIRST = 4  # chunks fetched by the first query of a scan; doubling after
CHUNK_BATCH_MAX = 64
DAY = timedelta(days=1)
# Every instant an event can have (a window for reads that have none, like "recent").
EVERY_INSTANT = TimeRange(datetime(1970, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, tzinfo=UTC))


@dataclass(frozen=True)
class EventFilter:
    """Which events an answer reads: everything a search can ask, and a window."""

    window: TimeRange
    source_ids: tuple[int, ...] | None = None
    levels: tuple[str, ...] | None = None
    text: TextCondition = field(default_factory=lambda: TextCondition((), None))
    metadata: dict[str, Any] | None = None
    excluded: tuple[dict[str, Any], ...] = ()

    @classmethod
    def of(
        cls,
        query: SearchQuery,
        source_ids: Sequence[int] | None,
        window: TimeRange | None = None,
    ) -> EventFilter:
        return cls(
            window=window or query.page_window,
            source_ids=None if source_ids is None else tuple(sorted(set(source_ids))),
            levels=None if query.levels is None else tuple(lv.value for lv in query.levels),
            text=TextCondition.of(query.words, query.contains),
            metadata=query.metadata,
            excluded=query.excluded_metadata,
        )

    @property
    def row_filtered(self) -> bool:
        """Whether more than time, source and level decide (words, substrings, metadata)."""
        return not self.text.empty or self.metadata is not None or bool(self.excluded)

    def bloom_hashes(self) -> list[list[int]] | None:
        """h1 and h2 of every term a matching chunk must hold, as filter versions 1 and
        2 hash them (the BLOOM condition's four arrays)."""
        terms = self.text.required_words()
        if self.metadata is not None:
            terms += list(metadata_terms(self.metadata))
        if not terms:
            return None
        arrays: list[list[int]] = []
        for version in (1, 2):
            pairs = [term_hashes(t, version) for t in terms]
            arrays += [[a for a, _ in pairs], [b for _, b in pairs]]
        return arrays


async def hold_still(conn: Conn) -> None:
    """Keep compaction from moving a slice until the caller's transaction ends (for
    READ COMMITTED transactions that read both tiers in several statements)."""
    await conn.execute("SELECT pg_advisory_xact_lock_shared($1)", TIERS_LOCK_KEY)


class _Args:
    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


# ---------------------------------------------------------------------------------------
# The hot tier

HOT_COLUMNS = (
    'le.id, le.source_id, le."timestamp", le.level::text AS level, le.message, le.metadata, '
    "le.ingested_at"
)
HOT_SCAN = """
SELECT {columns} FROM log_entries le
WHERE {conditions}
ORDER BY le."timestamp" {direction}, le.id {direction}
LIMIT {limit}
"""
# Unfiltered newest rows: each source's primary key walked backwards, then the newest of
# those (cost about sources x limit rows, however long the hot tier is).
HOT_NEWEST_PER_SOURCE = """
SELECT e.* FROM log_sources s
CROSS JOIN LATERAL (
    SELECT {columns} FROM log_entries le
    WHERE le.source_id = s.id AND {conditions}
    ORDER BY le."timestamp" DESC, le.id DESC
    LIMIT {limit}
) e
{sources}
ORDER BY e."timestamp" DESC, e.id DESC
LIMIT {limit}
"""
HINT = 'le.message ILIKE {} COLLATE "C"'


def hot_conditions(flt: EventFilter, args: _Args, *, with_sources: bool = True) -> list[str]:
    conditions = [
        f'le."timestamp" >= {args.add(flt.window.start)}',
        f'le."timestamp" < {args.add(flt.window.end)}',
    ]
    if with_sources and flt.source_ids is not None:
        if len(flt.source_ids) == 1:  # an equality keeps the key's order usable
            conditions.append(f"le.source_id = {args.add(flt.source_ids[0])}")
        else:
            conditions.append(f"le.source_id = ANY({args.add(list(flt.source_ids))}::integer[])")
    if flt.levels is not None:
        conditions.append(f"le.level = ANY({args.add(list(flt.levels))}::log_level[])")
    for hint in flt.text.hints():
        conditions.append(HINT.format(args.add(hint)))
    if flt.metadata is not None:
        conditions.append(f"le.metadata @> {args.add(flt.metadata)}::jsonb")
    for document in flt.excluded:
        conditions.append(f"NOT le.metadata @> {args.add(document)}::jsonb")
    return conditions


def _after_condition(after: Key, descending: bool, args: _Args) -> str:
    at = args.add(from_micros(after[0]))
    ident = args.add(after[1])
    if descending:
        return f'(le."timestamp", le.id) < ({at}, {ident}) AND le."timestamp" <= {at}'
    return f'(le."timestamp", le.id) > ({at}, {ident}) AND le."timestamp" >= {at}'


def _hot_event(row: asyncpg.Record) -> ChunkEvent:
    return ChunkEvent(
        row["id"],
        row["source_id"],
        row["timestamp"],
        row["level"],
        row["message"],
        row["metadata"],
        row["ingested_at"],
    )


def hot_statement(
    flt: EventFilter, after: Key | None, descending: bool, limit: int
) -> tuple[str, list[Any]]:
    args = _Args()
    if descending and not flt.row_filtered:
        conditions = hot_conditions(flt, args, with_sources=False)
        if after is not None:
            conditions.append(_after_condition(after, True, args))
        sources = ""
        if flt.source_ids is not None:
            sources = f"WHERE s.id = ANY({args.add(list(flt.source_ids))}::integer[])"
        sql = HOT_NEWEST_PER_SOURCE.format(
            columns=HOT_COLUMNS,
            conditions=" AND ".join(conditions),
            limit=args.add(limit),
            sources=sources,
        )
        return sql, args.values
    conditions = hot_conditions(flt, args)
    if after is not None:
        conditions.append(_after_condition(after, descending, args))
    sql = HOT_SCAN.format(
        columns=HOT_COLUMNS,
        conditions=" AND ".join(conditions),
        direction="DESC" if descending else "ASC",
        limit=args.add(limit),
    )
    return sql, args.values


async def hot_scan(
    conn: Conn,
    flt: EventFilter,
    *,
    descending: bool,
    after: Key | None = None,
    first_batch: int = HOT_BATCH,
) -> AsyncGenerator[ChunkEvent, None]:
    """The hot tier's matching events in (timestamp, id) order, in keyset batches (the
    first of `first_batch` rows: a page wants no more, and each row's metadata is parsed)."""
    matcher = None if flt.text.empty else flt.text.matcher()
    batch = max(1, first_batch)
    while True:
        sql, args = hot_statement(flt, after, descending, batch)
        rows = await conn.fetch(sql, *args)
        for row in rows:
            if matcher is None or matcher(row["message"]):
                yield _hot_event(row)
        if len(rows) < batch:
            return
        last = rows[-1]
        after = (micros(last["timestamp"]), last["id"])
        batch = min(batch * 4, 20_000)


# ---------------------------------------------------------------------------------------
# The compressed tier

CHUNK_SCAN = """
SELECT c.id, c.source_id, c.min_ts, c.max_ts, c.payload
FROM log_chunks c
WHERE {conditions}
ORDER BY {order}
LIMIT {limit}
"""


# Each chunk is probed with the hashes of its own filter version (domain/bloom.py):
# version 1 in `bloom` for chunks written before migration 0007, version 2 in
# `term_filter` since.
BLOOM = (
    "CASE WHEN c.term_filter IS NULL"
    " THEN log_chunk_may_hold(c.bloom, {}::bigint[], {}::bigint[])"
    " ELSE log_chunk_may_hold(c.term_filter, {}::bigint[], {}::bigint[]) END"
)


def chunk_conditions(flt: EventFilter, args: _Args, *, with_bloom: bool = True) -> list[str]:
    start, end = flt.window.start, flt.window.end
    # A chunk never spans a UTC day: one that reaches the window starts on its first
    # day or later, which prunes the older days' partitions.
    day_floor = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    conditions = [
        f"c.min_ts >= {args.add(day_floor)}",
        f"c.min_ts < {args.add(end)}",
        f"c.max_ts >= {args.add(start)}",
    ]
    if flt.source_ids is not None:
        conditions.append(f"c.source_id = ANY({args.add(list(flt.source_ids))}::integer[])")
    if flt.levels is not None:
        mask = sum(1 << LEVEL_CODE[level] for level in flt.levels)
        conditions.append(f"c.level_mask & {args.add(mask)}::smallint <> 0")
    hashes = flt.bloom_hashes() if with_bloom else None
    if hashes is not None:
        conditions.append(BLOOM.format(*map(args.add, hashes)))
    return conditions


@dataclass(frozen=True)
class _Header:
    id: int
    source_id: int
    min_ts: datetime
    max_ts: datetime
    payload: bytes


async def chunk_headers(
    conn: Conn, flt: EventFilter, *, descending: bool, after: Key | None = None
) -> AsyncGenerator[_Header, None]:
    """Chunks that may hold matches: newest max_ts first (descending), else oldest
    min_ts first, fetched in growing batches."""
    batch = CHUNK_BATCH_FIRST
    last: tuple[datetime, int] | None = None
    while True:
        args = _Args()
        conditions = chunk_conditions(flt, args)
        if after is not None:
            at = args.add(from_micros(after[0]))
            conditions.append(f"c.min_ts <= {at}" if descending else f"c.max_ts >= {at}")
        if last is not None:
            at, ident = args.add(last[0]), args.add(last[1])
            column = "c.max_ts" if descending else "c.min_ts"
            sign = "<" if descending else ">"
            conditions.append(f"({column}, c.id) {sign} ({at}, {ident})")
        order = "c.max_ts DESC, c.id DESC" if descending else "c.min_ts, c.id"
        sql = CHUNK_SCAN.format(
            conditions=" AND ".join(conditions), order=order, limit=args.add(batch)
        )
        rows = await conn.fetch(sql, *args.values)
        for row in rows:
            yield _Header(row["id"], row["source_id"], row["min_ts"], row["max_ts"], row["payload"])
        if len(rows) < batch:
            return
        tail = rows[-1]
        last = (tail["max_ts"] if descending else tail["min_ts"], tail["id"])
        batch = min(batch * 2, CHUNK_BATCH_MAX)


@dataclass
class ChunkMatcher:
    """Which events of a decoded chunk match a filter, reading only the columns needed."""

    flt: EventFilter
    text: TextMatcher | None = None

    def __post_init__(self) -> None:
        if not self.flt.text.empty:
            self.text = self.flt.text.matcher()

    def span(self, chunk: DecodedChunk, after: Key | None, descending: bool) -> tuple[int, int]:
        """The positions [lo, hi) of the chunk's events in the window and beyond `after`
        in the scan's direction: events are in (timestamp, id) order, so two bisections."""
        stamps = chunk.timestamps
        lo = bisect_left(stamps, micros(self.flt.window.start))
        hi = bisect_left(stamps, micros(self.flt.window.end), lo)
        if after is None or lo >= hi:
            return lo, hi
        at, ident = after
        ids = chunk.ids
        # The first position whose (timestamp, id) is not below `after`...
        cut = bisect_left(stamps, at, lo, hi)
        while cut < hi and stamps[cut] == at and ids[cut] < ident:
            cut += 1
        if descending:  # ...ends the events before it
            return lo, cut
        if cut < hi and stamps[cut] == at and ids[cut] == ident:
            cut += 1  # ...and, past `after` itself, starts the events after it
        return max(lo, cut), hi

    def indices(self, chunk: DecodedChunk, after: Key | None, descending: bool) -> list[int]:
        chosen: list[int] = list(range(*self.span(chunk, after, descending)))
        if self.flt.levels is not None:
            levels = chunk.levels
            wanted = set(self.flt.levels)
            chosen = [i for i in chosen if levels[i] in wanted]
        if self.text is not None and chosen:
            chosen = self.text.select(chunk.messages, chosen)
        if self.flt.metadata is not None and chosen:
            for key, wanted_value in self.flt.metadata.items():  # a column at a time
                column = chunk.column(key)
                if type(wanted_value) is str:  # the common case, without the general rule
                    chosen = [
                        i for i in chosen if column[i] == wanted_value and type(column[i]) is str
                    ]
                    continue
                chosen = [
                    i
                    for i in chosen
                    if column[i] is not MISSING and contains(column[i], wanted_value)
                ]
        for document in self.flt.excluded:
            if not chosen:
                break
            columns = {key: chunk.column(key) for key in document}
            chosen = [
                i
                for i in chosen
                if not all(
                    columns[k][i] is not MISSING and contains(columns[k][i], v)
                    for k, v in document.items()
                )
            ]
        if descending:
            chosen.reverse()
        return chosen


# A chunk's event by its place: (timestamp in microseconds, id, the chunk, its index).
# Merges order these and build events only for what they hand on (ChunkEvent.metadata
# parses every metadata column of the chunk).
ChunkPosition = tuple[int, int, DecodedChunk, int]


async def chunk_scan(
    conn: Conn, flt: EventFilter, *, descending: bool, after: Key | None = None
) -> AsyncGenerator[ChunkEvent, None]:
    """The compressed tier's matching events in (timestamp, id) order: chunks are opened
    as long as one may hold an event ahead of the best one in hand."""
    positions = chunk_positions(conn, flt, descending=descending, after=after)
    try:
        async for _, _, chunk, index in positions:
            yield chunk.event(index)
    finally:
        await positions.aclose()


async def chunk_positions(
    conn: Conn, flt: EventFilter, *, descending: bool, after: Key | None = None
) -> AsyncGenerator[ChunkPosition, None]:
    """chunk_scan's events as positions, not yet built."""
    matcher = ChunkMatcher(flt)
    headers = chunk_headers(conn, flt, descending=descending, after=after)
    pending: _Header | None = await anext(headers, None)
    merged = _merge_chunks(headers, pending, matcher, after, descending)
    try:
        async for position in merged:
            yield position
    finally:
        await merged.aclose()
        await headers.aclose()


async def _merge_chunks(
    headers: AsyncGenerator[_Header, None],
    pending: _Header | None,
    matcher: ChunkMatcher,
    after: Key | None,
    descending: bool,
) -> AsyncGenerator[ChunkPosition, None]:
    sign = -1 if descending else 1
    # (ordering key, tie-breaker, the chunk's next position, the rest of that chunk)
    heap: list[tuple[int, int, int, ChunkPosition, Iterator[ChunkPosition]]] = []
    counter = 0

    def bound(header: _Header) -> int:
        return micros(header.max_ts if descending else header.min_ts)

    def push(position: ChunkPosition | None, rest: Iterator[ChunkPosition], number: int) -> None:
        if position is not None:
            heapq.heappush(heap, (sign * position[0], sign * position[1], number, position, rest))

    while True:
        while pending is not None and (not heap or sign * bound(pending) <= heap[0][0]):
            chunk = decode_chunk(pending.source_id, pending.payload)
            opened = _positions_of(chunk, matcher.indices(chunk, after, descending))
            counter += 1
            push(next(opened, None), opened, counter)
            pending = await anext(headers, None)
        if not heap:
            return
        _, _, number, position, rest = heapq.heappop(heap)
        yield position
        push(next(rest, None), rest, number)


def _positions_of(chunk: DecodedChunk, indices: list[int]) -> Iterator[ChunkPosition]:
    stamps, ids = chunk.timestamps, chunk.ids
    for index in indices:
        yield (stamps[index], ids[index], chunk, index)


# ---------------------------------------------------------------------------------------
# Both tiers


def key_of(event: ChunkEvent) -> Key:
    return (micros(event.timestamp), event.id)


async def scan(
    conn: Conn, flt: EventFilter, *, descending: bool = True, after: Key | None = None
) -> AsyncGenerator[ChunkEvent, None]:
    """Every matching event of both tiers in (timestamp, id) order, newest first when
    `descending`, strictly after `after` in that order."""
    sign = -1 if descending else 1
    hot = hot_scan(conn, flt, descending=descending, after=after)
    cold = chunk_scan(conn, flt, descending=descending, after=after)
    try:
        a = await anext(hot, None)
        b = await anext(cold, None)
        while a is not None or b is not None:
            if b is None or (
                a is not None
                and (sign * key_of(a)[0], sign * key_of(a)[1])
                < (sign * key_of(b)[0], sign * key_of(b)[1])
            ):
                assert a is not None
                yield a
                a = await anext(hot, None)
            else:
                yield b
                b = await anext(cold, None)
    finally:
        await hot.aclose()
        await cold.aclose()


async def first(
    conn: Conn,
    flt: EventFilter,
    limit: int,
    *,
    descending: bool = True,
    after: Key | None = None,
) -> list[ChunkEvent]:
    """The first `limit` events of `scan`. The hot tier is asked for at most `limit`;
    chunks are then merged with it only until the page is full, so a chunk is opened only
    when the page needs its events (the hot tier's 80 and a chunk's newest 21, not 101
    from chunks). When the hot tier fills the page, only chunks reaching past its last
    event can change it (usually none: the newest page is read without opening a chunk)."""
    if limit <= 0:
        return []
    hot = await _take(
        hot_scan(conn, flt, descending=descending, after=after, first_batch=limit), limit
    )
    if len(hot) == limit:
        flt = replace(flt, window=_up_to(flt.window, hot[-1].timestamp, descending))
        if flt.window.start >= flt.window.end:
            return hot
    sign = -1 if descending else 1
    page: list[ChunkEvent] = []
    cold = chunk_positions(conn, flt, descending=descending, after=after)
    try:
        position: ChunkPosition | None = None
        exhausted = False
        taken = 0  # of the hot events
        while len(page) < limit:
            if position is None and not exhausted:  # the next chunk event, when needed
                position = await anext(cold, None)
                exhausted = position is None
            event = hot[taken] if taken < len(hot) else None
            if position is None and event is None:
                break
            if position is None or (
                event is not None
                and (sign * micros(event.timestamp), sign * event.id)
                < (sign * position[0], sign * position[1])
            ):
                assert event is not None
                page.append(event)
                taken += 1
            else:
                page.append(position[2].event(position[3]))  # only these are built
                position = None
    finally:
        await cold.aclose()
    return page


def _up_to(window: TimeRange, edge: datetime, descending: bool) -> TimeRange:
    """The part of `window` from its far end up to `edge` included."""
    if descending:
        return TimeRange(max(window.start, edge), window.end)
    return TimeRange(window.start, min(window.end, edge + timedelta(microseconds=1)))


async def _take(events: AsyncGenerator[T, None], limit: int) -> list[T]:
    taken: list[T] = []
    try:
        async for event in events:
            taken.append(event)
            if len(taken) >= limit:
                break
    finally:
        await events.aclose()
    return taken


async def aggregate(
    conn: Conn,
    flt: EventFilter,
    key: Callable[[ChunkEvent], Hashable | None],
    *,
    reads_metadata: bool = True,
) -> Counter[Hashable]:
    """Matching events counted by `key` (None: not counted), over both tiers, unordered.
    A `key` that `reads_metadata=False` is given the compressed tier's events without
    their metadata."""
    counts: Counter[Hashable] = Counter()
    events = _unordered(conn, flt, reads_metadata)
    try:
        async for event in events:
            group = key(event)
            if group is not None:
                counts[group] += 1
    finally:
        await events.aclose()
    return counts


async def _unordered(
    conn: Conn, flt: EventFilter, with_metadata: bool
) -> AsyncGenerator[ChunkEvent, None]:
    hot = hot_scan(conn, flt, descending=False)
    headers = chunk_headers(conn, flt, descending=False)
    try:
        async for event in hot:
            yield event
        matcher = ChunkMatcher(flt)
        async for header in headers:
            chunk = decode_chunk(header.source_id, header.payload)
            for index in matcher.indices(chunk, None, False):
                yield chunk.event(index, with_metadata=with_metadata)
    finally:
        await hot.aclose()
        await headers.aclose()


# ---------------------------------------------------------------------------------------
# Counts per minute (the match histogram)

CHUNK_ALL = """
SELECT c.id, c.source_id, c.min_ts, c.compacted_at, c.payload
FROM log_chunks c
WHERE {conditions}
"""
CHUNK_IDENTITIES = """
SELECT c.id, c.source_id, c.min_ts, c.compacted_at
FROM log_chunks c
WHERE {conditions}
"""
# Chunks by primary key (the days they start on bound the partitions probed).
CHUNKS_BY_KEY = """
SELECT c.id, c.source_id, c.min_ts, c.compacted_at, c.payload
FROM log_chunks c
JOIN unnest($1::integer[], $2::timestamptz[], $3::bigint[]) AS k(source_id, min_ts, id)
    ON c.source_id = k.source_id AND c.min_ts = k.min_ts AND c.id = k.id
WHERE c.min_ts >= $4 AND c.min_ts <= $5
"""
NOTHING: Counts = array("q")  # what a chunk holds for a filter its Bloom filter rules out
CHUNK_FETCH_ROWS = 16  # payloads per round trip: about 1 MB


def _identity(row: asyncpg.Record) -> ChunkIdentity:
    return (row["id"], row["source_id"], row["min_ts"], row["compacted_at"])


async def counts_per_minute(
    conn: Conn, flt: EventFilter, known: ChunkCounts | None = None
) -> dict[tuple[int, str], int]:
    """Matching events of both tiers per (minute start in microseconds since the epoch,
    level). Chunks are counted from their timestamp and level columns (no event is
    built), while the next batch of payloads is on its way. With `known` (and a window of
    whole minutes), chunks counted before for the same filter are not read again."""
    counts: dict[tuple[int, str], int] = {}
    hot = hot_scan(conn, flt, descending=False)
    try:
        async for event in hot:
            at = micros(event.timestamp)
            key = (at - at % MINUTE_US, event.level)
            counts[key] = counts.get(key, 0) + 1
    finally:
        await hot.aclose()
    if known is None or whole_minutes(flt.window) != flt.window:
        args = _Args()
        conditions = " AND ".join(chunk_conditions(flt, args))
        matcher = ChunkMatcher(flt)
        async for row in _in_batches(conn, CHUNK_ALL.format(conditions=conditions), args.values):
            chunk = decode_chunk(row["source_id"], row["payload"])
            count_minutes(
                counts, chunk.timestamps, chunk.levels, matcher.indices(chunk, None, False)
            )
        return counts
    # Each chunk's counts cover all its events and levels; the window and levels are
    # applied when adding them up.
    condition = (
        flt.text,
        None if flt.metadata is None else exactjson.dumps(flt.metadata),
        tuple(exactjson.dumps(document) for document in flt.excluded),
    )
    start_us, end_us = micros(flt.window.start), micros(flt.window.end)
    wanted = None if flt.levels is None else frozenset(LEVEL_CODE[lv] for lv in flt.levels)
    # The window's chunks without their Bloom filters (testing them in SQL costs more
    # than the rest of a repeated count): those counted before are summed, the filters
    # of the others tested once and remembered, the ones that pass read.
    args = _Args()
    conditions = " AND ".join(chunk_conditions(flt, args, with_bloom=False))
    missing: list[ChunkIdentity] = []
    for row in await conn.fetch(CHUNK_IDENTITIES.format(conditions=conditions), *args.values):
        found = known.get(_identity(row), condition)
        if found is None:
            missing.append(_identity(row))
        else:
            add_counts(counts, found, start_us, end_us, wanted)
    if not missing:
        return counts
    matcher = ChunkMatcher(replace(flt, window=EVERY_INSTANT, levels=None))
    values: list[Any] = [
        [m[1] for m in missing],
        [m[2] for m in missing],
        [m[0] for m in missing],
        min(m[2] for m in missing),
        max(m[2] for m in missing),
    ]
    sql = CHUNKS_BY_KEY
    hashes = flt.bloom_hashes()
    if hashes is not None:
        sql += " AND " + BLOOM.format("$6", "$7", "$8", "$9")
        values += hashes
    unread = set(missing)
    async for row in _in_batches(conn, sql, values):
        chunk = decode_chunk(row["source_id"], row["payload"])
        found = minute_counts(chunk.timestamps, chunk.levels, matcher.indices(chunk, None, False))
        known.put(_identity(row), condition, found)
        unread.discard(_identity(row))
        add_counts(counts, found, start_us, end_us, wanted)
    for identity in unread:  # ruled out by its Bloom filter
        known.put(identity, condition, NOTHING)
    return counts


async def _in_batches(
    conn: Conn, sql: str, values: Sequence[Any]
) -> AsyncGenerator[asyncpg.Record, None]:
    """The statement's rows through one cursor (inside the caller's transaction), in
    batches of CHUNK_FETCH_ROWS: each is asked for before the caller handles the last,
    so PostgreSQL reads and sends payloads while Python decodes."""
    cursor = await conn.cursor(sql, *values)
    pending = asyncio.ensure_future(cursor.fetch(CHUNK_FETCH_ROWS))
    try:
        while True:
            rows = await pending
            if len(rows) == CHUNK_FETCH_ROWS:
                pending = asyncio.ensure_future(cursor.fetch(CHUNK_FETCH_ROWS))
                await asyncio.sleep(0)  # let it send the request before decoding starts
            for row in rows:
                yield row
            if len(rows) < CHUNK_FETCH_ROWS:
                return
    finally:
        if not pending.done():  # a connection cannot leave a reply half read
            await asyncio.wait({pending})
        if not pending.cancelled():
            pending.exception()  # retrieved: whatever ends the scan early is raised already


ENTRY_HOT = """
SELECT {columns} FROM log_entries le
WHERE le.source_id = $1 AND le."timestamp" = $2 AND le.id = $3
"""
ENTRY_CHUNKS = """
SELECT c.payload FROM log_chunks c
WHERE c.source_id = $1 AND c.min_ts <= $2 AND c.max_ts >= $2 AND c.min_ts >= $3
"""


async def entry(conn: Conn, source_id: int, at: datetime, entry_id: int) -> ChunkEvent | None:
    """One event by its key, from whichever tier holds it."""
    row = await conn.fetchrow(ENTRY_HOT.format(columns=HOT_COLUMNS), source_id, at, entry_id)
    if row is not None:
        return _hot_event(row)
    wanted = (micros(at), entry_id)
    day_floor = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    for chunk_row in await conn.fetch(ENTRY_CHUNKS, source_id, at, day_floor):
        chunk = decode_chunk(source_id, chunk_row["payload"])
        for index, key in enumerate(zip(chunk.timestamps, chunk.ids, strict=True)):
            if key == wanted:
                return chunk.event(index)
    return None
