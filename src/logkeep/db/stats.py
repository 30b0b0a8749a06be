"""Aggregates from the per-minute rollups (log_metrics), never a scan of log_entries.

Every write path adds its rollups in the same transaction as its entries, so the minute in
progress is in log_metrics as soon as its entries are committed, and the cache's
generation counters (bumped after that commit) make every cached answer that read an
affected source unreachable.

The SQL is built only from the constant fragments below; every value is a positional
parameter, the date_bin interval included.
"""

from __future__ import annotations

from typing import Any

from logkeep.cache.query_cache import QueryCache
from logkeep.db.replicas import ReadSource
from logkeep.db.repositories import timed
from logkeep.domain.histogram import (
    EPOCH,
    BucketCount,
    HistogramQuery,
    SourceLevelCount,
    histogram_result,
    summarise,
)
from logkeep.domain.timerange import TimeRange

# Counts per (bucket, level). $1 interval, $2 origin (the epoch, so buckets align in UTC),
# $3/$4 the window in whole minutes, $5 the levels counted.
_HISTOGRAM_SELECT = """
SELECT date_bin($1::interval, bucket, $2::timestamptz) AS start, level::text AS level,
       sum(count)::bigint AS count
FROM log_metrics
WHERE bucket >= $3::timestamptz AND bucket < $4::timestamptz AND level = ANY($5::log_level[])
"""
_HISTOGRAM_GROUP = "GROUP BY 1, 2"
# Across sources: a range scan of the rollups (BRIN on bucket).
HISTOGRAM_SQL = _HISTOGRAM_SELECT + _HISTOGRAM_GROUP
# Some sources ($6): the (source_id, bucket, level) key serves it. A separate statement
# rather than "$6 IS NULL OR ...", which a generic plan could not use the key for.
HISTOGRAM_BY_SOURCE_SQL = (
    _HISTOGRAM_SELECT + "AND source_id = ANY($6::integer[])\n" + _HISTOGRAM_GROUP
)

# Per source and level over [$1, $2): one pass over the window's rollups; sources without
# rollups in the window come back once with a NULL level.
SUMMARY_SQL = """
SELECT s.id AS source_id, s.name AS source, s.is_active AS active,
       m.level::text AS level, coalesce(m.count, 0)::bigint AS count, m.last_minute
FROM log_sources s
LEFT JOIN (
    SELECT source_id, level, sum(count) AS count, max(bucket) AS last_minute
    FROM log_metrics
    WHERE bucket >= $1::timestamptz AND bucket < $2::timestamptz
    GROUP BY source_id, level
) m ON m.source_id = s.id
ORDER BY s.id, m.level
"""


def histogram_args(query: HistogramQuery) -> tuple[str, list[Any]]:
    """The statement and its parameters for `query`."""
    args: list[Any] = [
        query.interval,
        EPOCH,
        query.window.start,
        query.window.end,
        [lv.value for lv in query.levels],
    ]
    if query.source_ids is None:
        return HISTOGRAM_SQL, args
    return HISTOGRAM_BY_SOURCE_SQL, [*args, list(query.source_ids)]


class StatsRepository:
    """The histogram and the summary, through the generation-keyed query cache."""

    def __init__(
        self,
        pg_pool: ReadSource,
        cache: QueryCache,
        *,
        ttl_histogram_s: int = 30,
        ttl_summary_s: int = 60,
    ) -> None:
        self._pool = pg_pool
        self._cache = cache
        self._ttl_histogram_s = ttl_histogram_s
        self._ttl_summary_s = ttl_summary_s

    async def histogram(self, query: HistogramQuery) -> dict[str, Any]:
        async def load() -> dict[str, Any]:
            sql, args = histogram_args(query)
            async with timed("histogram"), self._pool.acquire() as conn:
                rows = await conn.fetch(sql, *args)
            return histogram_result(
                query, (BucketCount(r["start"], r["level"], r["count"]) for r in rows)
            )

        # The sources read decide which writes make this answer stale: a write to another
        # source leaves it reachable; None (all sources) is invalidated by any write.
        result: dict[str, Any] = await self._cache.get_or_load(
            "histogram", query.cache_params(), query.source_ids, self._ttl_histogram_s, load
        )
        return result

    async def summary(
        self, window: TimeRange, hours: int, source_ids: list[int] | None = None
    ) -> dict[str, Any]:
        """Totals, per-source figures and the error summary over `window` (whole minutes),
        of the given sources only when `source_ids` is not None."""
        wanted = None if source_ids is None else set(source_ids)

        async def load() -> dict[str, Any]:
            async with timed("stats_summary"), self._pool.acquire() as conn:
                rows = await conn.fetch(SUMMARY_SQL, window.start, window.end)
            return summarise(
                window,
                hours,
                (
                    SourceLevelCount(
                        r["source_id"],
                        r["source"],
                        r["active"],
                        r["level"],
                        r["count"],
                        r["last_minute"],
                    )
                    for r in rows
                    if wanted is None or r["source_id"] in wanted
                ),
            )

        params = {
            "hours": hours,
            "from": window.start.isoformat(),
            "to": window.end.isoformat(),
            "sources": source_ids,
        }
        result: dict[str, Any] = await self._cache.get_or_load(
            "summary", params, source_ids, self._ttl_summary_s, load
        )
        return result


# ---------------------------------------------------------------------------------------
# Storage per tier and per source (`logkeep stats storage`, docs/storage.md)

# Each tier's bytes on disk (tables, TOAST and indexes of every day partition), shared
# out among sources by what their rows or chunks take.
TIER_BYTES = """
SELECT coalesce(sum(pg_total_relation_size(i.inhrelid)), 0)::bigint
FROM pg_inherits i WHERE i.inhparent = $1::regclass
"""
HOT_BY_SOURCE = """
SELECT s.name AS source, count(*)::bigint AS events, sum(pg_column_size(le.*))::bigint AS bytes
FROM log_entries le JOIN log_sources s ON s.id = le.source_id
GROUP BY s.name ORDER BY s.name
"""
CHUNKS_BY_SOURCE = """
SELECT s.name AS source, sum(c.events)::bigint AS events, count(*)::bigint AS chunks,
       sum(octet_length(c.payload) + octet_length(c.bloom)
           + coalesce(octet_length(c.term_filter), 0) + 80)::bigint AS bytes
FROM log_chunks c JOIN log_sources s ON s.id = c.source_id
GROUP BY s.name ORDER BY s.name
"""


async def storage_report(conn: Any) -> list[dict[str, Any]]:
    """Rows of (tier, source, events, chunks, bytes, bytes_per_event), each tier's total
    first: what `logkeep stats storage` prints."""
    rows: list[dict[str, Any]] = []
    for tier, relation, query in (
        ("hot", "log_entries", HOT_BY_SOURCE),
        ("compressed", "log_chunks", CHUNKS_BY_SOURCE),
    ):
        total_bytes = int(await conn.fetchval(TIER_BYTES, relation))
        per_source = [dict(r) for r in await conn.fetch(query)]
        weight = sum(r["bytes"] or 0 for r in per_source) or 1
        events = sum(r["events"] for r in per_source)
        rows.append(_storage_row(tier, "(all)", events, total_bytes, per_source))
        for r in per_source:
            share = round(total_bytes * (r["bytes"] or 0) / weight)
            rows.append(_storage_row(tier, r["source"], r["events"], share, [r]))
    return rows


def _storage_row(
    tier: str, source: str, events: int, size: int, parts: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "tier": tier,
        "source": source,
        "events": events,
        "chunks": sum(p.get("chunks", 0) for p in parts),
        "bytes": size,
        "bytes_per_event": round(size / events, 1) if events else None,
    }
