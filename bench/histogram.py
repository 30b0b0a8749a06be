"""A 24-hour histogram from the per-minute rollups against the same histogram computed by
scanning log_entries, measured in one run on one throwaway embedded PostgreSQL.

Loads N realistic entries over 7 days the way the ingest path does (binary COPY plus the
rollups, one transaction per batch), then times both queries alternately, each answer
shaped into the same buckets by the same code, and checks that they agree:

    .venv/bin/python bench/histogram.py [--rows 1000000] [--runs 40]

No cache: both sides go to PostgreSQL every time.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from logkeep.cache.keys import Keys
from logkeep.cache.query_cache import QueryCache
from logkeep.db.database import _init_connection
from logkeep.db.migrate import migrate
from logkeep.db.partitions import ensure_partitions
from logkeep.db.repositories import copy_entries
from logkeep.db.seed import seed_sources
from logkeep.db.stats import StatsRepository
from logkeep.domain.entry import EntryLimits, LogEntry
from logkeep.domain.histogram import (
    EPOCH,
    BucketCount,
    HistogramQuery,
    histogram_result,
    plan_histogram,
)
from logkeep.domain.samples import SampleGenerator
from logkeep.domain.timerange import TimeRange
from logkeep.embedded import EmbeddedPostgres, temporary_root

BATCH = 10_000
DAYS = 7

# The same histogram as db/stats.py's, counted from the raw rows (BRIN on timestamp
# prunes the partitions and block ranges outside the window; the rest is read).
SCAN_SQL = """
SELECT date_bin($1::interval, "timestamp", $2::timestamptz) AS start, level::text AS level,
       count(*) AS count
FROM log_entries
WHERE "timestamp" >= $3::timestamptz AND "timestamp" < $4::timestamptz
  AND level = ANY($5::log_level[])
GROUP BY 1, 2
"""


async def load(pool: asyncpg.Pool, rows: int, end: datetime) -> None:
    """`rows` entries over the DAYS before `end`, generated and copied a day at a time."""
    limits = EntryLimits(max_age=timedelta(days=DAYS + 1))
    generator = SampleGenerator(seed=7)
    async with pool.acquire() as conn:
        _, ids = await seed_sources(conn)
        await ensure_partitions(conn, {(end - timedelta(days=d)).date() for d in range(DAYS + 1)})
        started = time.perf_counter()
        for day in range(DAYS):
            count = rows // DAYS + (1 if day < rows % DAYS else 0)
            day_end = end - timedelta(days=DAYS - 1 - day)
            entries = [
                LogEntry(
                    s.message,
                    ids[s.source],
                    s.level,
                    s.metadata,
                    s.timestamp,
                    limits=limits,
                    now=end,
                )
                for s in generator.generate(count, end=day_end, days=1)
            ]
            for offset in range(0, len(entries), BATCH):
                async with conn.transaction():
                    await copy_entries(conn, entries[offset : offset + BATCH])
            print(f"  day {day + 1}/{DAYS}: {len(entries)} rows", flush=True)
        elapsed = time.perf_counter() - started
        # What autovacuum would have done by the time anyone looks at a chart.
        await conn.execute("VACUUM ANALYZE log_entries")
        await conn.execute("VACUUM ANALYZE log_metrics")
        metric_rows = await conn.fetchval("SELECT count(*) FROM log_metrics")
    print(f"loaded {rows} rows in {elapsed:.1f}s (generate, COPY, rollups)")
    print(f"log_metrics: {metric_rows} rows (per source, minute and level)")


async def scan_histogram(pool: asyncpg.Pool, query: HistogramQuery) -> dict[str, Any]:
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            SCAN_SQL,
            query.interval,
            EPOCH,
            query.window.start,
            query.window.end,
            [lv.value for lv in query.levels],
        )
    return histogram_result(query, (BucketCount(r["start"], r["level"], r["count"]) for r in rows))


def percentiles(samples: list[float]) -> tuple[float, float]:
    cuts = statistics.quantiles(samples, n=20, method="inclusive")
    return statistics.median(samples), cuts[18]


async def run(dsn: str, rows: int, runs: int) -> None:
    pool = await asyncpg.create_pool(
        dsn, min_size=1, max_size=2, init=_init_connection, server_settings={"timezone": "UTC"}
    )
    try:
        async with pool.acquire() as conn:
            await migrate(conn)
        end = datetime.now(UTC)
        await load(pool, rows, end)
        now = datetime.now(UTC)
        query = plan_histogram(
            TimeRange(now - timedelta(hours=24), now),
            interval=None,
            levels=[],
            min_level=None,
            source_ids=None,
        )
        stats = StatsRepository(pool, QueryCache(None, Keys()))  # no Redis: never cached
        sides: dict[str, Callable[[], Awaitable[dict[str, Any]]]] = {
            "rollups": lambda: stats.histogram(query),
            "scan": lambda: scan_histogram(pool, query),
        }
        answers = {name: await side() for name, side in sides.items()}  # also warms up
        if answers["rollups"] != answers["scan"]:
            raise SystemExit("the rollups and the raw rows disagree")
        total = answers["rollups"]["total"]
        buckets = len(answers["rollups"]["buckets"])
        print(f"24h histogram: {buckets} buckets of {query.interval}, {total} entries counted")
        timings: dict[str, list[float]] = {name: [] for name in sides}
        for _ in range(runs):  # alternate, so both sides see the same machine
            for name, side in sides.items():
                started = time.perf_counter()
                await side()
                timings[name].append((time.perf_counter() - started) * 1000)
        p50_r, p95_r = percentiles(timings["rollups"])
        p50_s, p95_s = percentiles(timings["scan"])
        print(f"{'':10} {'p50 ms':>9} {'p95 ms':>9}   ({runs} runs each)")
        print(f"{'rollups':10} {p50_r:9.2f} {p95_r:9.2f}")
        print(f"{'scan':10} {p50_s:9.2f} {p95_s:9.2f}")
        print(
            f"histogram: rows={rows} rollup_p50_ms={p50_r:.2f} rollup_p95_ms={p95_r:.2f} "
            f"scan_p50_ms={p50_s:.2f} scan_p95_ms={p95_s:.2f} "
            f"scan_over_rollup_p50={p50_s / p50_r:.1f}"
        )
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    if args.rows < DAYS or args.runs < 2:
        parser.error(f"--rows must be at least {DAYS} and --runs at least 2")
    with temporary_root("lk-bench-") as root:
        server = EmbeddedPostgres(root / "pg", ephemeral=True)
        try:
            server.start()
            asyncio.run(run(server.dsn(), args.rows, args.runs))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
