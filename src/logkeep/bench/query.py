"""`logkeep bench query`: query latency at the API over a realistic 7-day data set.

Loads N rows (default 10 million) with binary COPY into a fresh database, compacts every
closed slice (all but the last minutes stay in the hot tier), serves the API on a local
port, and measures p50/p95 over repeated runs of the queries a log viewer makes: over the
default window, and over a window of each tier (the hot tier's open slices; a 24-hour
window of compressed chunks). Cold runs bump the cache generations first (as a write
would), so they measure PostgreSQL; cached runs repeat the same request. The match
histogram is measured twice: as a first count (the API also forgets what it counted in
each chunk before each run) and repeated after a write (each chunk's counts remembered).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from rich.console import Console

from logkeep.api.app import create_app
from logkeep.api.explore import chunk_counts
from logkeep.api.local import serve_locally
from logkeep.config import Settings
from logkeep.db import tiers
from logkeep.db.compaction import compact
from logkeep.db.database import Database
from logkeep.db.migrate import migrate
from logkeep.db.partitions import ensure_partitions
from logkeep.db.repositories import copy_entries
from logkeep.db.seed import seed
from logkeep.domain.entry import EntryLimits, LogEntry
from logkeep.domain.matching import TextCondition
from logkeep.domain.samples import SampleGenerator
from logkeep.domain.search import rfc3339
from logkeep.domain.timerange import TimeRange

console = Console()
CHUNK = 50_000


@dataclass(frozen=True)
class Figure:
    name: str
    p50_ms: float
    p95_ms: float


async def load_rows(db: Database, settings: Settings, rows: int) -> float:
    """Migrate, seed sources, then COPY `rows` generated entries over 7 days; rows/s."""
    async with db.pool.acquire() as conn:
        await migrate(conn)
    await seed(db.pool, settings, "dev", rows=0)
    async with db.pool.acquire() as conn:
        ids = {r["name"]: r["id"] for r in await conn.fetch("SELECT id, name FROM log_sources")}
        now = datetime.now(UTC)
        await ensure_partitions(conn, [(now - timedelta(days=d)).date() for d in range(9)])
    limits = EntryLimits(max_age=timedelta(days=8))
    generator = SampleGenerator(seed=17)
    started = time.perf_counter()
    span_days = 7.0
    for offset in range(0, rows, CHUNK):
        count = min(CHUNK, rows - offset)
        # Each chunk covers its own slice of the week, so rows arrive in time order.
        end = now - timedelta(days=span_days * (1 - (offset + count) / rows))
        days = span_days * count / rows
        batch = [
            LogEntry(
                s.message, ids[s.source], s.level, s.metadata, s.timestamp, limits=limits, now=now
            )
            for s in generator.generate(count, end=end, days=days)
        ]
        async with db.pool.acquire() as conn, conn.transaction():
            await copy_entries(conn, batch)
        if offset // CHUNK % 20 == 0:
            console.print(f"  loaded {offset + count:,} / {rows:,}")
    elapsed = time.perf_counter() - started
    async with db.pool.acquire() as conn:
        await conn.execute("ANALYZE log_entries")
        await conn.execute("ANALYZE log_metrics")
    return rows / elapsed


@asynccontextmanager
async def api(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings)
    async with (
        serve_locally(app) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=60) as client,
    ):
        yield app, client


def percentiles(timings: list[float]) -> tuple[float, float]:
    ordered = sorted(timings)
    return statistics.median(ordered), ordered[max(0, int(len(ordered) * 0.95) - 1)]


async def measure(
    client: httpx.AsyncClient,
    path: str,
    params: dict[str, Any],
    runs: int,
    before: Callable[[], Any] | None = None,
) -> tuple[tuple[float, float], tuple[float, float]]:
    """((p50, p95) seen by the HTTP client, (p50, p95) the server reports)."""
    seen: list[float] = []
    served: list[float] = []
    for _ in range(runs):
        if before is not None:
            await before()
        started = time.perf_counter()
        response = await client.get(path, params=params)
        seen.append((time.perf_counter() - started) * 1000)
        response.raise_for_status()
        served.append(float(response.headers["server-timing"].split("dur=")[1]))
    return percentiles(seen), percentiles(served)


async def load_recent(db: Database, rows: int) -> int:
    """The last 15 minutes at the data set's density, into the hot tier; how many."""
    count = max(1000, int(rows * timedelta(minutes=15) / timedelta(days=7)))
    async with db.pool.acquire() as conn:
        ids = {r["name"]: r["id"] for r in await conn.fetch("SELECT id, name FROM log_sources")}
    now = datetime.now(UTC)
    limits = EntryLimits(max_age=timedelta(days=8))
    samples = SampleGenerator(seed=18).generate(count, end=now, days=15 / (24 * 60))
    batch = [
        LogEntry(s.message, ids[s.source], s.level, s.metadata, s.timestamp, limits=limits, now=now)
        for s in samples
    ]
    async with db.pool.acquire() as conn, conn.transaction():
        await copy_entries(conn, batch)
    async with db.pool.acquire() as conn:
        await conn.execute("ANALYZE log_entries")
    return count


async def table_size(db: Database) -> tuple[float, float, float]:
    """(hot bytes per hot event, compressed bytes per compressed event, raw message and
    metadata bytes per event), tables, TOAST and indexes included."""
    async with db.pool.acquire() as conn:
        sizes = await conn.fetchrow(
            """
            SELECT (SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits
                    WHERE inhparent = 'log_entries'::regclass) AS hot_bytes,
                   (SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits
                    WHERE inhparent = 'log_chunks'::regclass) AS chunk_bytes,
                   (SELECT count(*) FROM log_entries) AS hot_events,
                   (SELECT coalesce(sum(events), 0) FROM log_chunks) AS chunk_events,
                   (SELECT coalesce(sum(raw_bytes), 0) FROM log_chunks) AS chunk_raw
            """
        )
    assert sizes is not None  # scalar subqueries: one row
    hot = float(sizes["hot_bytes"]) / max(1, sizes["hot_events"])
    compressed = float(sizes["chunk_bytes"]) / max(1, sizes["chunk_events"])
    plain = float(sizes["chunk_raw"]) / max(1, sizes["chunk_events"])
    return hot, compressed, plain


async def rare_words(
    db: Database, hot_since: datetime, cold: tuple[datetime, datetime]
) -> tuple[str, str]:
    """An order number that occurs in the hot window, and one in the compressed window."""
    async with db.pool.acquire() as conn:
        hot = await conn.fetchval(
            "SELECT substring(message FROM 'ORD-[0-9]{6}') FROM log_entries "
            "WHERE \"timestamp\" >= $1 AND message LIKE '%ORD-%' LIMIT 1",
            hot_since,
        )
        flt = tiers.EventFilter(TimeRange(*cold), text=TextCondition(("declined",), None))
        async with conn.transaction(isolation="repeatable_read"):
            found = await tiers.first(conn, flt, 500)
    # Past the newest 250 where there are that many (a small data set may have fewer).
    message = next((e.message for e in found[len(found) // 2 :] if "ORD-" in e.message), "")
    cold_word = "ORD-" + message.split("ORD-")[1][:6] if message else "ORD-000000"
    return hot or "ORD-000000", cold_word


async def load_as_live(db: Database, settings: Settings, rows: int) -> None:
    """The data set as a live system holds it: `rows` events over 7 days, every closed
    slice compacted, then the last 15 minutes in the hot tier (loading takes long enough
    for every slice of the week to close)."""
    rate = await load_rows(db, settings, rows)
    console.print(f"loaded {rows:,} rows at {rate:,.0f} rows/s (binary COPY)")
    started = time.perf_counter()
    async with db.pool.acquire() as conn:
        # A whole week compacts at once here: one statement over 10M hot rows can pass the
        # API's statement timeout on a busy machine (it did at 10M, load average 5).
        await conn.execute("SET statement_timeout = 0")
        report = await compact(
            conn,
            slice_length=timedelta(seconds=settings.compaction_slice_s),
            grace=timedelta(seconds=settings.compaction_grace_s),
        )
        # Rewritten, not only vacuumed: after a whole week compacted at once, today's
        # partition keeps its emptied pages in front of the open slices' rows, and its BRIN
        # ranges summarized while the rows were there (autovacuum passes during the load
        # or the compaction) still cover them, so a past window read every empty page.
        # A live system compacting slice by slice reuses those pages instead.
        await conn.execute("VACUUM (FULL, ANALYZE) log_entries")
        await conn.execute("VACUUM ANALYZE log_chunks")
        hot_events = await conn.fetchval("SELECT count(*) FROM log_entries")
    console.print(
        f"compacted {report.events:,} events into {report.chunks:,} chunks in "
        f"{time.perf_counter() - started:,.0f} s; {hot_events:,} stay hot (the open slices)"
    )
    hot_rows = await load_recent(db, rows)
    console.print(f"then {hot_rows:,} events of the last 15 minutes into the hot tier")


async def run(settings: Settings, rows: int, runs: int) -> None:
    async with Database(settings) as db:
        await load_as_live(db, settings, rows)
        hot_bytes, chunk_bytes, _plain = await table_size(db)
        nginx = await db.pool.fetchval("SELECT id FROM log_sources WHERE name = 'nginx_access'")
        async with db.pool.acquire() as conn:
            hot_from = await conn.fetchval('SELECT min("timestamp") FROM log_entries')
        now = datetime.now(UTC)
        hot_window = {"from": rfc3339(hot_from), "to": rfc3339(now + timedelta(minutes=1))}
        cold_end = hot_from - timedelta(minutes=30)
        cold_window = {"from": rfc3339(cold_end - timedelta(hours=24)), "to": rfc3339(cold_end)}
        rare_hot, rare_cold = await rare_words(
            db, hot_from, (cold_end - timedelta(hours=24), cold_end)
        )

        async def bust() -> None:
            await db.cache.invalidate_sources([1, 2, 3, nginx])

        figures: list[Figure] = []
        async with api(settings) as (app, client):

            async def bust_and_forget() -> None:
                """As bust, and the API forgets what it counted in each chunk: a word
                nobody counted over this window before."""
                await bust()
                chunk_counts(app).clear()

            newest = {"source": "nginx_access", "level": "WARN", "limit": 100}
            cases: list[tuple[str, str, dict[str, Any], Callable[[], Any] | None]] = [
                ("recent_cold", "/api/v1/logs", newest, bust),
                ("recent_cached", "/api/v1/logs", newest, None),
                # "declined" is in about 2% of entries (PaymentDeclined errors).
                ("fulltext", "/api/v1/logs", {"q": "declined", "since": "24h", "limit": 100}, bust),
                (
                    "metadata",
                    "/api/v1/logs",
                    {"metadata.status": "503", "since": "24h", "limit": 100},
                    bust,
                ),
                ("histogram", "/api/v1/stats/histogram", {"since": "24h"}, bust),
                ("summary", "/api/v1/stats/summary", {"hours": 24}, bust),
            ]
            for tier, window, rare in (
                ("hot", hot_window, rare_hot),
                ("compressed", cold_window, rare_cold),
            ):
                cases += [
                    (f"recent_{tier}", "/api/v1/logs", {**newest, **window}, bust),
                    (
                        f"word2_{tier}",
                        "/api/v1/logs",
                        {"q": "declined", "limit": 100, **window},
                        bust,
                    ),
                    (f"rare_{tier}", "/api/v1/logs", {"q": rare, "limit": 100, **window}, bust),
                    (
                        f"metadata_{tier}",
                        "/api/v1/logs",
                        {"metadata.status": "503", "limit": 100, **window},
                        bust,
                    ),
                    (
                        f"match_histogram_{tier}",
                        "/api/v1/logs/histogram",
                        {"q": "declined", **window},
                        bust_and_forget,
                    ),
                    # The same after a write (a new cache generation), each chunk's
                    # counts remembered: a live explorer's next refresh, zoom or interval.
                    (
                        f"match_histogram_{tier}_repeat",
                        "/api/v1/logs/histogram",
                        {"q": "declined", **window},
                        bust,
                    ),
                ]
            for name, path, params, before in cases:
                await client.get(path, params=params)  # warm the plan cache and pool
                (p50, p95), (server_p50, server_p95) = await measure(
                    client, path, params, runs, before
                )
                figures.append(Figure(name, p50, p95))
                console.print(
                    f"{name:26} p50 {p50:8.2f} ms   p95 {p95:8.2f} ms   "
                    f"(server: p50 {server_p50:7.2f} ms, p95 {server_p95:7.2f} ms)"
                )
    by_name = {f.name: f for f in figures}
    speedup = by_name["recent_cold"].p50_ms / by_name["recent_cached"].p50_ms
    console.print(f"cache speed-up (newest 100, p50): {speedup:.1f}x")
    console.print(
        f"on disk: hot tier {hot_bytes:.0f} bytes/event, compressed tier {chunk_bytes:.0f} "
        "bytes/event (tables, TOAST and indexes)"
    )
    tiered = " ".join(
        f"{kind}_{tier}_p50_ms={by_name[f'{kind}_{tier}'].p50_ms:.2f}"
        for kind in ("recent", "word2", "rare", "metadata", "match_histogram")
        for tier in ("hot", "compressed")
    )
    print(
        f"query: recent_cold_p50_ms={by_name['recent_cold'].p50_ms:.2f} "
        f"recent_cached_p50_ms={by_name['recent_cached'].p50_ms:.2f} "
        f"fulltext_p50_ms={by_name['fulltext'].p50_ms:.2f} "
        f"histogram_p50_ms={by_name['histogram'].p50_ms:.2f} {tiered} "
        "match_histogram_compressed_repeat_p50_ms="
        f"{by_name['match_histogram_compressed_repeat'].p50_ms:.2f}"
    )
