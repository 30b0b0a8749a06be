"""Reads for the web explorer: one entry, its context in its source, and the histogram of
a search's matches (when the rollups cannot answer it: words, substrings, metadata).

The histogram statement is composed like db/search.py's, from constant fragments whose
only variable parts are parameter numbers; the context statements are named queries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from logkeep.cache.query_cache import QueryCache
from logkeep.db.queries import q
from logkeep.db.replicas import ReadSource
from logkeep.db.repositories import timed
from logkeep.db.search import (
    Arguments,
    filter_conditions,
    item,
    planner_settings,
)
from logkeep.domain.histogram import EPOCH, BucketCount, HistogramQuery, histogram_result
from logkeep.domain.search import SearchQuery

MATCH_HISTOGRAM = """
SELECT date_bin({interval}::interval, le."timestamp", {origin}::timestamptz) AS start,
       le.level::text AS level, count(*)::bigint AS count
FROM log_entries le
WHERE {conditions}
GROUP BY 1, 2
"""
SOURCES = "le.source_id = ANY({}::integer[])"
# Counting every match of a broad word over a week can take long; the explorer shows the
# results without the chart rather than hold a connection that long.
COUNT_TIMEOUT_MS = 5000
COUNT_SETTINGS = f"SET LOCAL statement_timeout = {COUNT_TIMEOUT_MS}"


class CountTooSlow(Exception):
    """Counting the matches took longer than COUNT_TIMEOUT_MS."""


def match_histogram_statement(
    query: SearchQuery, plan: HistogramQuery, source_ids: Sequence[int] | None
) -> tuple[str, list[Any]]:
    args = Arguments()
    interval, origin = args.add(plan.interval), args.add(EPOCH)
    conditions = filter_conditions(query, args, paged=False, window=plan.window)
    if source_ids is not None:
        conditions.append(SOURCES.format(args.add(list(source_ids))))
    sql = MATCH_HISTOGRAM.format(
        interval=interval, origin=origin, conditions=" AND ".join(conditions)
    )
    return sql, args.values


@dataclass(frozen=True, slots=True)
class EntryKey:
    """Where an entry lives: the primary key of log_entries."""

    source_id: int
    timestamp: datetime
    id: int


class ExploreRepository:
    def __init__(self, pool: ReadSource, cache: QueryCache, *, ttl_s: int) -> None:
        self._pool = pool
        self._cache = cache
        self._ttl_s = ttl_s

    async def match_histogram(
        self, query: SearchQuery, plan: HistogramQuery, source_ids: Sequence[int] | None
    ) -> dict[str, Any]:
        """Matches per bucket and level, in the shape of /api/v1/stats/histogram."""

        async def load() -> dict[str, Any]:
            sql, args = match_histogram_statement(query, plan, source_ids)
            try:
                async with (
                    timed("match_histogram"),
                    self._pool.acquire() as conn,
                    conn.transaction(readonly=True),
                ):
                    await conn.execute(f"{planner_settings(query)}; {COUNT_SETTINGS}")
                    rows = await conn.fetch(sql, *args)
            except asyncpg.QueryCanceledError:
                raise CountTooSlow from None
            return histogram_result(
                plan, (BucketCount(r["start"], r["level"], r["count"]) for r in rows)
            )

        params = {
            **query.cache_params(source_ids),
            "interval_s": plan.interval.total_seconds(),
            "hist_start": plan.window.start.isoformat(),
            "hist_end": plan.window.end.isoformat(),
        }
        result: dict[str, Any] = await self._cache.get_or_load(
            "match_histogram", params, source_ids, self._ttl_s, load
        )
        return result

    async def entry(self, key: EntryKey) -> dict[str, Any] | None:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(q("entry_by_key"), key.source_id, key.timestamp, key.id)
        return None if row is None else item(row)

    async def context(
        self, key: EntryKey, *, before: int, after: int, oldest: datetime, newest: datetime
    ) -> dict[str, Any]:
        """Up to `before` entries of the same source before `key` and `after` after it,
        both oldest first, and whether more lie beyond each end (by lines, not time)."""
        async with self._pool.acquire() as conn, conn.transaction(readonly=True):
            older: list[asyncpg.Record] = []
            newer: list[asyncpg.Record] = []
            if before:
                older = await conn.fetch(
                    q("entries_before"), key.source_id, key.timestamp, key.id, oldest, before + 1
                )
            if after:
                newer = await conn.fetch(
                    q("entries_after"), key.source_id, key.timestamp, key.id, newest, after + 1
                )
        return {
            "before": [item(r) for r in reversed(older[:before])],
            "after": [item(r) for r in newer[:after]],
            "more_before": len(older) > before,
            "more_after": len(newer) > after,
        }


def context_bounds(
    now: datetime, retention: timedelta, future: timedelta
) -> tuple[datetime, datetime]:
    """The instants entries can exist between: retention (plus a day of partition slack)
    back, and the accepted future skew ahead."""
    return now - retention - timedelta(days=1), now + future
