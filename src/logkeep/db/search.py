"""Search: pages and exports over both storage tiers (db/tiers.py).

A page reads both tiers in one REPEATABLE READ snapshot: compaction moves a slice from
one tier to the other in one transaction, so a page sees every event once. Keyset
cursors hold (timestamp, id), which an event keeps when it is compacted, so the next
page continues exactly where the last one ended, whichever tier holds the rows then.

The hot tier's statements are composed in db/tiers.py from constant fragments whose only
variable parts are parameter numbers; nothing from the request becomes SQL text.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Any

from logkeep.cache.query_cache import QueryCache
from logkeep.db import tiers
from logkeep.db.replicas import ReadSource
from logkeep.db.repositories import timed
from logkeep.db.types import Conn
from logkeep.domain.chunks import ChunkEvent, micros
from logkeep.domain.search import Position, SearchQuery, rfc3339

# Each statement runs with these:
# - a custom plan every time: the statement text is the same for every word or metadata
#   value, and a generic plan cannot know whether a value matches 20 rows or 20 million;
# - no JIT: log_sources has too few rows for autovacuum to ever analyse it, the planner
#   assumes hundreds, the estimated cost crosses jit_above_cost, and compiling costs
#   60-90 ms on a query that runs in one.
PLANNER_SETTINGS = "SET LOCAL plan_cache_mode = force_custom_plan; SET LOCAL jit = off"
SOURCE_NAMES = "SELECT id, name FROM log_sources"


def planner_settings(query: SearchQuery | None = None) -> str:
    return PLANNER_SETTINGS


def page_statement(
    query: SearchQuery, source_ids: Sequence[int] | None, rows: int | None = None
) -> tuple[str, list[Any]]:
    """The hot tier's statement for a page (one row more than the page, to tell whether
    another follows); the compressed tier is read beside it (tiers.first)."""
    flt = tiers.EventFilter.of(query, source_ids)
    after = None if query.after is None else (micros(query.after.timestamp), query.after.id)
    return tiers.hot_statement(flt, after, True, query.limit + 1 if rows is None else rows)


def stream_statement(
    query: SearchQuery, source_ids: Sequence[int] | None, max_rows: int
) -> tuple[str, list[Any]]:
    """The hot tier's statement for an export: newest first, filtered."""
    flt = tiers.EventFilter.of(query, source_ids, window=query.window)
    return tiers.hot_statement(flt, None, True, max_rows)


async def source_names(conn: Conn) -> dict[int, str]:
    return {row["id"]: row["name"] for row in await conn.fetch(SOURCE_NAMES)}


def item(event: ChunkEvent, names: Mapping[int, str]) -> dict[str, Any]:
    """An event in the API's item shape (the shape of /api/v1/logs/recent)."""
    return {
        "id": event.id,
        "source_id": event.source_id,
        "source": names.get(event.source_id, str(event.source_id)),
        "timestamp": rfc3339(event.timestamp),
        "level": event.level,
        "message": event.message,
        "metadata": event.metadata,
        "ingested_at": rfc3339(event.ingested_at),
    }


async def newest_page(
    conn: Conn, query: SearchQuery, source_ids: Sequence[int] | None, limit: int
) -> list[ChunkEvent]:
    """Up to `limit` matches after the query's cursor, newest first (inside the caller's
    snapshot)."""
    flt = tiers.EventFilter.of(query, source_ids)
    after = None if query.after is None else (micros(query.after.timestamp), query.after.id)
    return await tiers.first(conn, flt, limit, after=after)


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
            async with (
                timed("search"),
                self._pool.acquire() as conn,
                # One snapshot for both tiers and every batch of the page.
                conn.transaction(readonly=True, isolation="repeatable_read"),
            ):
                await conn.execute(PLANNER_SETTINGS)
                events = await newest_page(conn, query, source_ids, query.limit + 1)
                names = await source_names(conn)
            more = len(events) > query.limit
            items = [item(event, names) for event in events[: query.limit]]
            next_cursor = None
            if more:
                last = events[query.limit - 1]
                next_cursor = query.next_cursor(Position(last.timestamp, last.id))
            return {"items": items, "next_cursor": next_cursor}

        result: dict[str, Any] = await self._cache.get_or_load(
            "search", query.cache_params(source_ids), source_ids, self._ttl_s, load
        )
        return result

    async def stream(
        self, query: SearchQuery, source_ids: Sequence[int] | None, batch_rows: int = 1000
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Every matching event of the window (up to the export limit), newest first, in
        batches, from both tiers in one snapshot. Bypasses the cache."""
        flt = tiers.EventFilter.of(query, source_ids, window=query.window)
        async with (
            self._pool.acquire() as conn,
            conn.transaction(readonly=True, isolation="repeatable_read"),
        ):
            await conn.execute(PLANNER_SETTINGS)
            names = await source_names(conn)
            batch: list[dict[str, Any]] = []
            sent = 0
            async for event in tiers.scan(conn, flt):
                batch.append(item(event, names))
                sent += 1
                if len(batch) >= batch_rows:
                    yield batch
                    batch = []
                if sent >= self._stream_max_rows:
                    break
            if batch:
                yield batch
