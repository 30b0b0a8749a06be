"""Search SQL: WHERE clauses composed from constant fragments, values bound as $n.

Nothing from the request becomes SQL text: each filter is a fixed fragment whose only
variable parts are parameter numbers this module counts itself. Every statement bounds
"timestamp" from both sides, so PostgreSQL prunes the daily partitions outside the window.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from logkeep.cache.query_cache import QueryCache
from logkeep.db.replicas import ReadSource
from logkeep.db.repositories import timed
from logkeep.db.types import Conn
from logkeep.domain.search import Position, SearchQuery, rfc3339
from logkeep.domain.timerange import TimeRange

# The full-text document, exactly as indexed by 0002_search.sql: the planner uses the
# index only for this expression. Messages may hold 256 Ki characters, but a tsvector
# must stay under 1 MB of lexemes or its INSERT fails; words past the first 128 Ki
# characters (at most 512 KB of UTF-8) are left to `contains`.
FULLTEXT_CHARS = 131_072
FULLTEXT_DOCUMENT = f"to_tsvector('simple'::regconfig, left(message, {FULLTEXT_CHARS}))"

ENTRY_COLUMNS = (
    'le.id, le.source_id, le."timestamp", le.level, le.message, le.metadata, le.ingested_at'
)

# Constant fragments; `{}` is filled with a parameter reference such as `$4`.
WINDOW_START = 'le."timestamp" >= {}'
WINDOW_END = 'le."timestamp" < {}'
LEVELS = "le.level = ANY({}::log_level[])"
WORDS = (
    f"to_tsvector('simple'::regconfig, left(le.message, {FULLTEXT_CHARS}))"
    " @@ plainto_tsquery('simple'::regconfig, {})"
)
CONTAINS = "le.message ILIKE {} ESCAPE '\\'"
METADATA = "le.metadata @> {}::jsonb"
EXCLUDED_METADATA = "NOT le.metadata @> {}::jsonb"
# The row comparison walks the (source_id, "timestamp", id) key from the cursor; the
# plain bound beside it lets the planner prune partitions newer than the cursor.
AFTER = '(le."timestamp", le.id) < ({}, {}) AND le."timestamp" <= {}'
SOURCES_OUTER = "WHERE s.id = ANY({}::integer[])"
# One source as a plain equality: the planner may then walk that source's primary key in
# time order (an = ANY condition on the leading column loses the order).
ONE_SOURCE = "le.source_id = {}"
SOURCES = "le.source_id = ANY({}::integer[])"

# Each statement runs with these, in its own read-only transaction:
# - a custom plan every time: the statement text is the same for every word or metadata
#   value, and a generic plan cannot know whether "declined" matches 20 rows or 20
#   million, so after five executions it would plan blind;
# - no JIT: log_sources has too few rows for autovacuum to ever analyse it, the planner
#   assumes hundreds, the estimated cost crosses jit_above_cost, and compiling costs
#   60-90 ms on a query that runs in one.
PLANNER_SETTINGS = "SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL jit = off"
# With words to find, only the full-text index may drive (a bitmap scan, costing about
# the number of matches in the window). Otherwise the planner may walk a source's key in
# time order evaluating to_tsvector() on every row, expecting matches as frequent in that
# source as in the whole table: q=declined&source=nginx_access (which has none) took
# 7.2 s that way on 1M rows in 24 h, 54 ms from the index. The price: a word in half of
# the rows costs 340 ms instead of 2 ms.
FULLTEXT_PLANNER_SETTINGS = f"{PLANNER_SETTINGS}; SET LOCAL enable_indexscan = off"

# A page without filters: each source's newest rows come from walking its primary key
# (source_id, "timestamp", id) backwards, so the cost is about sources x limit rows, and
# then the newest `limit` of those win. Measured on 1M rows in 24 h: 0.7 ms, where the
# FILTERED shape reads the whole window (240 ms).
PER_SOURCE_PAGE = """
SELECT e.id, e.source_id, s.name AS source, e."timestamp", e.level, e.message, e.metadata,
       e.ingested_at
FROM log_sources s
CROSS JOIN LATERAL (
    SELECT {columns}
    FROM log_entries le
    WHERE le.source_id = s.id AND {conditions}
    ORDER BY le."timestamp" DESC, le.id DESC
    LIMIT {limit}
) e
{sources}
ORDER BY e."timestamp" DESC, e.id DESC
LIMIT {limit}
"""

# With filters the planner drives from the most selective index (full-text or metadata
# GIN) over the window's partitions, once. Per source, as above, it guesses each source's
# share of matches from the whole table's statistics and may walk a source that has none
# to the end of the window: 8.1 s against 54 ms for q=declined on 1M rows in 24 h.
# Also the export: every matching row, newest first, read through a server-side cursor.
FILTERED = """
SELECT {columns}, s.name AS source
FROM log_entries le
JOIN log_sources s ON s.id = le.source_id
WHERE {conditions}
ORDER BY le."timestamp" DESC, le.id DESC
LIMIT {limit}
"""


# The newest slice a filtered page reads first; each next slice is four times longer.
FIRST_SLICE = timedelta(minutes=15)


class Arguments:
    """Positional parameters: `add` binds a value and returns its `$n`."""

    def __init__(self) -> None:
        self.values: list[Any] = []

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def filter_conditions(
    query: SearchQuery, args: Arguments, *, paged: bool, window: TimeRange | None = None
) -> list[str]:
    """The conditions on `le` (log_entries) that every search applies; `window` narrows
    the page's window to one slice of it."""
    window = window or (query.page_window if paged else query.window)
    conditions = [
        WINDOW_START.format(args.add(window.start)),
        WINDOW_END.format(args.add(window.end)),
    ]
    if query.levels is not None:
        conditions.append(LEVELS.format(args.add([lv.value for lv in query.levels])))
    if query.words is not None:
        conditions.append(WORDS.format(args.add(query.words)))
    if query.contains_pattern is not None:
        conditions.append(CONTAINS.format(args.add(query.contains_pattern)))
    if query.metadata is not None:
        conditions.append(METADATA.format(args.add(query.metadata)))
    for excluded in query.excluded_metadata:
        conditions.append(EXCLUDED_METADATA.format(args.add(excluded)))
    if paged and query.after is not None:
        at = args.add(query.after.timestamp)
        conditions.append(AFTER.format(at, args.add(query.after.id), at))
    return conditions


def planner_settings(query: SearchQuery) -> str:
    return PLANNER_SETTINGS if query.words is None else FULLTEXT_PLANNER_SETTINGS


def uses_filtered_shape(query: SearchQuery) -> bool:
    """Whether an index other than the primary key should drive the page (see FILTERED);
    levels alone are dense enough that walking each source's key finds them sooner."""
    return any(value is not None for value in (query.words, query.contains, query.metadata))


def _source_condition(source_ids: Sequence[int], args: Arguments) -> str:
    if len(source_ids) == 1:
        return ONE_SOURCE.format(args.add(source_ids[0]))
    return SOURCES.format(args.add(list(source_ids)))


def page_statement(
    query: SearchQuery,
    source_ids: Sequence[int] | None,
    window: TimeRange | None = None,
    rows: int | None = None,
) -> tuple[str, list[Any]]:
    """One page, plus one row to tell whether another page follows."""
    args = Arguments()
    conditions = filter_conditions(query, args, paged=True, window=window)
    wanted = query.limit + 1 if rows is None else rows
    if not uses_filtered_shape(query):
        limit = args.add(wanted)
        sources = "" if source_ids is None else SOURCES_OUTER.format(args.add(list(source_ids)))
        sql = PER_SOURCE_PAGE.format(
            columns=ENTRY_COLUMNS, conditions=" AND ".join(conditions), limit=limit, sources=sources
        )
        return sql, args.values
    if source_ids is not None:
        conditions.append(_source_condition(source_ids, args))
    sql = FILTERED.format(
        columns=ENTRY_COLUMNS, conditions=" AND ".join(conditions), limit=args.add(wanted)
    )
    return sql, args.values


def newest_slices(window: TimeRange, upper: datetime) -> Iterator[TimeRange]:
    """The window from `upper` back to its start, newest slice first, each slice four
    times as long as the one before: [upper-15m, upper), [upper-75m, upper-15m), ..."""
    width = FIRST_SLICE
    while upper > window.start:
        # Compared before subtracting, so a wide slice never steps outside the calendar.
        lower = window.start if upper - window.start <= width else upper - width
        yield TimeRange(lower, upper)
        upper = lower
        width *= 4


async def fetch_filtered_page(
    conn: Conn, query: SearchQuery, source_ids: Sequence[int] | None
) -> list[asyncpg.Record]:
    """A filtered page read newest slice first, stopping once the page is full.

    Matches of a word are spread over the window; the newest page of them sits in its
    last minutes. One query over 24 h fetches and sorts every match (about 0.8 s for a
    word in 2% of 1.4M rows); the slices stop after the first few. Slices are disjoint and
    in order, so their rows concatenate into exactly the one query's answer."""
    window = query.page_window
    upper = window.end
    if query.after is not None:  # rows before the cursor only; the bound is exclusive
        upper = min(upper, query.after.timestamp + timedelta(microseconds=1))
    rows: list[asyncpg.Record] = []
    for part in newest_slices(window, upper):
        sql, args = page_statement(query, source_ids, window=part, rows=query.limit + 1 - len(rows))
        rows.extend(await conn.fetch(sql, *args))
        if len(rows) > query.limit:
            break
    return rows


def stream_statement(
    query: SearchQuery, source_ids: Sequence[int] | None, max_rows: int
) -> tuple[str, list[Any]]:
    """Every matching row of the window (the cursor's position is not used), newest first."""
    args = Arguments()
    conditions = filter_conditions(query, args, paged=False)
    if source_ids is not None:
        conditions.append(_source_condition(source_ids, args))
    sql = FILTERED.format(
        columns=ENTRY_COLUMNS, conditions=" AND ".join(conditions), limit=args.add(max_rows)
    )
    return sql, args.values


def item(row: asyncpg.Record) -> dict[str, Any]:
    """A row in the API's item shape (the shape of /api/v1/logs/recent)."""
    return {
        "id": row["id"],
        "source_id": row["source_id"],
        "source": row["source"],
        "timestamp": rfc3339(row["timestamp"]),
        "level": row["level"],
        "message": row["message"],
        "metadata": row["metadata"],
        "ingested_at": rfc3339(row["ingested_at"]),
    }


class LogSearch:
    """Answers searches: pages through the query cache, exports straight from PostgreSQL."""

    def __init__(
        self, pool: ReadSource, cache: QueryCache, *, ttl_s: int, stream_max_rows: int
    ) -> None:
        self._pool = pool
        self._cache = cache
        self._ttl_s = ttl_s
        self._stream_max_rows = stream_max_rows

    async def page(self, query: SearchQuery, source_ids: Sequence[int] | None) -> dict[str, Any]:
        """{"items": [...], "next_cursor": str | None}, newest first."""

        async def load() -> dict[str, Any]:
            sql, args = page_statement(query, source_ids)
            async with (
                timed("search"),
                self._pool.acquire() as conn,
                # One snapshot for every slice of the page, as one query would have.
                conn.transaction(readonly=True, isolation="repeatable_read"),
            ):
                await conn.execute(planner_settings(query))
                if uses_filtered_shape(query):
                    rows = await fetch_filtered_page(conn, query, source_ids)
                else:
                    rows = await conn.fetch(sql, *args)
            more = len(rows) > query.limit
            items = [item(row) for row in rows[: query.limit]]
            next_cursor = None
            if more:
                last = rows[query.limit - 1]
                next_cursor = query.next_cursor(Position(last["timestamp"], last["id"]))
            return {"items": items, "next_cursor": next_cursor}

        result: dict[str, Any] = await self._cache.get_or_load(
            "search", query.cache_params(source_ids), source_ids, self._ttl_s, load
        )
        return result

    async def stream(
        self, query: SearchQuery, source_ids: Sequence[int] | None, batch_rows: int = 1000
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Every matching row (up to the export limit) in batches, read with a server-side
        cursor so that neither side holds the whole result. Bypasses the cache."""
        sql, args = stream_statement(query, source_ids, self._stream_max_rows)
        async with self._pool.acquire() as conn, conn.transaction(readonly=True):
            await conn.execute(planner_settings(query))
            batch: list[dict[str, Any]] = []
            async for row in conn.cursor(sql, *args, prefetch=batch_rows):
                batch.append(item(row))
                if len(batch) >= batch_rows:
                    yield batch
                    batch = []
            if batch:
                yield batch
