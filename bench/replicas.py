"""What reading from a streaming replica costs a search, against reading the primary.

Starts a primary and a streaming replica (`pg_basebackup -R`) on loopback ports, loads the
same realistic rows (logkeep's schema), and times the API's search statements (no cache)
three ways, in one run:

  (a) on the primary, as without LOGKEEP_DATABASE_READ_URLS (baseline)
  (b) through ReadPools on the replica, idle: the read-your-write fence costs one
      position query on the primary and one on the replica
  (c) the same while a writer commits a 100-row batch every 20 ms on the primary, so the
      fence waits for the replica to replay each commit before it reads

Run:  .venv/bin/python bench/replicas.py [--rows 100000] [--runs 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import statistics
import time
from datetime import UTC, datetime, timedelta

import asyncpg

from logkeep.api.local import free_port
from logkeep.cache.keys import Keys
from logkeep.cache.query_cache import QueryCache
from logkeep.db.database import _init_connection
from logkeep.db.migrate import migrate
from logkeep.db.partitions import ensure_partitions
from logkeep.db.replicas import ReadPools, ReadSource
from logkeep.db.search import LogSearch
from logkeep.db.seed import seed_sources
from logkeep.domain.entry import EntryLimits, LogEntry
from logkeep.domain.samples import SampleGenerator
from logkeep.domain.search import SearchQuery, parse_search
from logkeep.embedded import LoopbackPostgres, temporary_root

COLUMNS = ["source_id", "timestamp", "level", "message", "metadata"]
WRITE_EVERY_S = 0.02
WRITE_ROWS = 100


def search(**params: str) -> SearchQuery:
    return parse_search(
        list(params.items()),
        now=datetime.now(UTC),
        default_window=timedelta(hours=24),
        retention=timedelta(days=30),
        max_future=timedelta(hours=1),
    )


async def load(conn: asyncpg.Connection, rows: int, ids: dict[str, int]) -> None:
    end = datetime.now(UTC)
    limits = EntryLimits(max_age=timedelta(days=30))
    records = [
        LogEntry(
            s.message, ids[s.source], s.level, s.metadata, s.timestamp, limits=limits, now=end
        ).copy_record()
        for s in SampleGenerator(seed=5).generate(rows, end=end, days=0.9)
    ]
    for offset in range(0, len(records), 5000):
        await conn.copy_records_to_table(
            "log_entries", records=records[offset : offset + 5000], columns=COLUMNS
        )
    await conn.execute("ANALYZE")


Shape = tuple[str, SearchQuery, list[int] | None]


async def timed(reads: ReadSource, shapes: list[Shape], runs: int) -> dict[str, float]:
    """Median milliseconds of each shape's search page read from `reads` (never cached)."""
    engine = LogSearch(reads, QueryCache(None, Keys()), ttl_s=1, stream_max_rows=1)
    times: dict[str, list[float]] = {name: [] for name, _, _ in shapes}
    for _ in range(runs):
        for name, query, sources in shapes:
            started = time.perf_counter()
            await engine.page(query, sources)
            times[name].append((time.perf_counter() - started) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


async def writer(pool: asyncpg.Pool, source_id: int, stop: asyncio.Event) -> int:
    """A batch committed every WRITE_EVERY_S until stopped; the batches committed."""
    batches = 0
    while not stop.is_set():
        now = datetime.now(UTC)
        rows = [
            (source_id, now, "INFO", f"written while reading {batches}", b"{}")
            for _ in range(WRITE_ROWS)
        ]
        async with pool.acquire() as conn, conn.transaction():
            await conn.copy_records_to_table("log_entries", records=rows, columns=COLUMNS)
        batches += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), WRITE_EVERY_S)
    return batches


async def pool(dsn: str) -> asyncpg.Pool:
    made: asyncpg.Pool = await asyncpg.create_pool(
        dsn, min_size=1, max_size=4, init=_init_connection, server_settings={"jit": "off"}
    )
    return made


async def main(rows: int, runs: int) -> None:
    password = secrets.token_urlsafe(18)
    with temporary_root("lk-rbench-") as root:
        primary = LoopbackPostgres(root / "primary", free_port(), password)
        replica: LoopbackPostgres | None = None
        try:
            await asyncio.to_thread(primary.init)
            await asyncio.to_thread(primary.start)
            await asyncio.to_thread(primary.psql, "CREATE DATABASE logkeep")
            conn = await asyncpg.connect(primary.dsn())
            try:
                await migrate(conn)
                await _init_connection(conn)
                _, ids = await seed_sources(conn)
                today = datetime.now(UTC).date()
                await ensure_partitions(conn, [today + timedelta(days=d) for d in (-1, 0, 1)])
                await load(conn, rows, ids)
            finally:
                await conn.close()
            replica = await asyncio.to_thread(
                primary.replica, root / "replica", free_port(), ("hot_standby_feedback=on",)
            )
            await asyncio.to_thread(replica.start)
            await measure(primary, replica, ids, runs, rows)
        finally:
            for server in (replica, primary):
                if server is not None:
                    await asyncio.to_thread(server.stop)


async def measure(
    primary: LoopbackPostgres, replica: LoopbackPostgres, ids: dict[str, int], runs: int, rows: int
) -> None:
    primary_pool = await pool(primary.dsn())
    writer_pool = await pool(primary.dsn())
    reads = ReadPools(primary_pool, max_lag_s=2.0)
    await reads.start([replica.dsn()], pool, lambda dsn: "replica")
    one = [ids["app_errors"]]
    shapes: list[Shape] = [
        ("newest page, one source", search(), one),
        ("newest errors, every source", search(level="ERROR"), None),
        ("a word, every source", search(q="killed"), None),
    ]
    try:
        for reading in (primary_pool, reads):  # warm both servers' caches
            await timed(reading, shapes, 3)
        baseline = await timed(primary_pool, shapes, runs)
        idle = await timed(reads, shapes, runs)
        stop = asyncio.Event()
        writing = asyncio.create_task(writer(writer_pool, ids["nginx_access"], stop))
        try:
            busy = await timed(reads, shapes, runs)
        finally:
            stop.set()
            batches = await writing
        assert reads.replicas[0].in_rotation, reads.replicas[0]
        print(
            f"replica reads: {rows:,} rows, {runs} pages of each shape each way (no cache), "
            "primary and replica on one machine, loopback TCP; median ms"
        )
        print(f"{'':30} {'(a) primary':>12} {'(b) replica':>12} {'(c) +writes':>12}")
        for name, _, _ in shapes:
            a, b, c = baseline[name], idle[name], busy[name]
            print(f"{name:30} {a:>12.2f} {b:>8.2f} {b / a:.2f}x {c:>8.2f} {c / a:.2f}x")
        print(f"(c): {batches} commits of {WRITE_ROWS} rows every {WRITE_EVERY_S * 1000:.0f} ms")
    finally:
        await reads.close()
        await primary_pool.close()
        await writer_pool.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=200)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rows, arguments.runs))
