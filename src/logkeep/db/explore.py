"""Reads for the web explorer: one entry, its context in its source, and the histogram of
a search's matches (when the rollups cannot answer it: words, substrings, metadata), all
over both storage tiers (db/tiers.py), each answer in one snapshot.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from logkeep.cache.query_cache import QueryCache
from logkeep.db import tiers
from logkeep.db.chunk_counts import ChunkCounts
from logkeep.db.replicas import ReadSource
from logkeep.db.repositories import timed
from logkeep.db.search import PLANNER_SETTINGS, item, source_names
from logkeep.domain.chunks import ChunkEvent, micros
from logkeep.domain.histogram import EPOCH, BucketCount, HistogramQuery, histogram_result
from logkeep.domain.search import SearchQuery
from logkeep.domain.timerange import TimeRange

# Counting every match of a broad word over a week can take long; the explorer shows the
# results without the chart rather than hold a connection that long.
COUNT_TIMEOUT_MS = 5000
_MICROSECOND = timedelta(microseconds=1)


class CountTooSlow(Exception):
    """Counting the matches took longer than COUNT_TIMEOUT_MS."""


def in_buckets(minutes: Mapping[tuple[int, str], int], interval: timedelta) -> list[BucketCount]:
    """Counts per (minute, level) summed into buckets of `interval` (whole minutes), as
    date_bin(interval, timestamp, EPOCH) bins."""
    step = interval // _MICROSECOND
    buckets: Counter[tuple[int, str]] = Counter()
    for (minute, level), n in minutes.items():
        buckets[(minute - minute % step, level)] += n
    return [
        BucketCount(EPOCH + timedelta(microseconds=start), level, n)
        for (start, level), n in buckets.items()
    ]


def match_histogram_statement(
    query: SearchQuery, plan: HistogramQuery, source_ids: Sequence[int] | None
) -> tuple[str, list[Any]]:
    """The hot tier's statement the match histogram reads (chunks are read beside it)."""
    flt = tiers.EventFilter.of(query, source_ids, window=plan.window)
    return tiers.hot_statement(flt, None, False, tiers.HOT_BATCH)


@dataclass(frozen=True, slots=True)
class EntryKey:
    """Where an entry lives: the primary key of log_entries."""

    source_id: int
    timestamp: datetime
    id: int


class ExploreRepository:
    def __init__(
        self,
        pool: ReadSource,
        cache: QueryCache,
        *,
        ttl_s: int,
        chunk_counts: ChunkCounts | None = None,
    ) -> None:
        self._pool = pool
        self._cache = cache
        self._ttl_s = ttl_s
        self._chunk_counts = chunk_counts

    async def match_histogram(
        self, query: SearchQuery, plan: HistogramQuery, source_ids: Sequence[int] | None
    ) -> dict[str, Any]:
        """Matches per bucket and level, in the shape of /api/v1/stats/histogram."""

        async def load() -> dict[str, Any]:
            flt = tiers.EventFilter.of(query, source_ids, window=plan.window)
            try:
                async with (
                    timed("match_histogram"),
                    self._pool.acquire() as conn,
                    conn.transaction(readonly=True, isolation="repeatable_read"),
                ):
                    await conn.execute(PLANNER_SETTINGS)
                    minutes = await asyncio.wait_for(
                        tiers.counts_per_minute(conn, flt, self._chunk_counts),
                        COUNT_TIMEOUT_MS / 1000,
                    )
            except TimeoutError:
                raise CountTooSlow from None
            return histogram_result(plan, in_buckets(minutes, plan.interval))

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
        async with (
            self._pool.acquire() as conn,
            conn.transaction(readonly=True, isolation="repeatable_read"),
        ):
            found = await tiers.entry(conn, key.source_id, key.timestamp, key.id)
            names = await source_names(conn)
        return None if found is None else item(found, names)

    async def context(
        self, key: EntryKey, *, before: int, after: int, oldest: datetime, newest: datetime
    ) -> dict[str, Any]:
        """Up to `before` entries of the same source before `key` and `after` after it,
        both oldest first, and whether more lie beyond each end (by lines, not time)."""
        position = (micros(key.timestamp), key.id)
        async with (
            self._pool.acquire() as conn,
            conn.transaction(readonly=True, isolation="repeatable_read"),
        ):
            older: list[ChunkEvent] = []
            newer: list[ChunkEvent] = []
            if before:
                window = TimeRange(oldest, key.timestamp + _MICROSECOND)
                flt = tiers.EventFilter(window, source_ids=(key.source_id,))
                older = await tiers.first(conn, flt, before + 1, after=position)
            if after:
                window = TimeRange(key.timestamp, newest + _MICROSECOND)
                flt = tiers.EventFilter(window, source_ids=(key.source_id,))
                newer = await tiers.first(conn, flt, after + 1, descending=False, after=position)
            names = await source_names(conn)
        return {
            "before": [item(r, names) for r in reversed(older[:before])],
            "after": [item(r, names) for r in newer[:after]],
            "more_before": len(older) > before,
            "more_after": len(newer) > after,
        }


def context_bounds(
    now: datetime, retention: timedelta, future: timedelta
) -> tuple[datetime, datetime]:
    """The instants entries can exist between: retention (plus a day of partition slack)
    back, and the accepted future skew ahead."""
    return now - retention - timedelta(days=1), now + future
