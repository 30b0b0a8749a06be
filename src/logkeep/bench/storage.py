"""`logkeep bench storage`: bytes per event of each storage tier, against the raw NDJSON
and `zstd -3` of it, on the same events; and what compaction costs.

Loads N benchmark events (a day's worth at the query benchmark's density, 1.43 million
a day) into the hot tier with binary COPY, measures it, compacts every slice, measures
the compressed tier (tables, TOAST and indexes: everything on disk), and, on the same
events, the layout the codec was chosen against: one row per chunk of the same events
with PostgreSQL arrays, TOASTed with lz4 where the server has it (pglz otherwise).
CPU of compaction is this process plus its PostgreSQL backend.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cramjam
import orjson
from rich.console import Console

from logkeep.config import Settings
from logkeep.db.compaction import compact
from logkeep.db.database import Database
from logkeep.db.migrate import migrate
from logkeep.db.partitions import ensure_partitions
from logkeep.db.repositories import copy_entries
from logkeep.db.seed import seed
from logkeep.domain.chunks import load_filter_builder
from logkeep.domain.entry import EntryLimits, LogEntry
from logkeep.domain.samples import SampleGenerator

console = Console(soft_wrap=True)
EVENTS_PER_DAY = 1_430_000  # the query benchmark's 10 million over 7 days
BATCH = 50_000
CLOCK_TICKS = 100

TIER_BYTES = """
SELECT coalesce(sum(pg_total_relation_size(i.inhrelid)), 0)::bigint
FROM pg_inherits i WHERE i.inhparent = $1::regclass
"""
# The reference layout: the same chunks as rows of arrays, compressed by TOAST.
ARRAYS_LAYOUT = """
CREATE TABLE bench_array_chunks AS
SELECT source_id, chunk,
       array_agg(id ORDER BY "timestamp", id) AS ids,
       array_agg("timestamp" ORDER BY "timestamp", id) AS stamps,
       string_agg(left(level::text, 1), '' ORDER BY "timestamp", id) AS levels,
       array_agg(message ORDER BY "timestamp", id) AS messages,
       array_agg(metadata::text ORDER BY "timestamp", id) AS metadata,
       array_agg(ingested_at ORDER BY "timestamp", id) AS ingested
FROM (SELECT *, (row_number() OVER (PARTITION BY source_id ORDER BY "timestamp", id) - 1)
                / 1000 AS chunk
      FROM bench_events) e
GROUP BY source_id, chunk
"""


def backend_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0  # a remote server: its CPU is not ours to read
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def run(settings: Settings, rows: int) -> str:
    async with Database(settings) as db:
        async with db.pool.acquire() as conn:
            await migrate(conn)
        await seed(db.pool, settings, "dev", rows=0)
        now = datetime.now(UTC)
        span = timedelta(days=rows / EVENTS_PER_DAY)
        async with db.pool.acquire() as conn:
            ids = {r["name"]: r["id"] for r in await conn.fetch("SELECT id, name FROM log_sources")}
            days = int(span / timedelta(days=1)) + 2
            await ensure_partitions(conn, [(now - timedelta(days=d)).date() for d in range(days)])
            lz4 = await conn.fetchval(
                "SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
                "WHERE name = 'default_toast_compression'"
            )
        generator = SampleGenerator(seed=23)
        limits = EntryLimits(max_age=span + timedelta(days=2))
        raw = 0
        zstd = cramjam.zstd.Compressor(level=3)
        started = time.perf_counter()
        for offset in range(0, rows, BATCH):
            count = min(BATCH, rows - offset)
            end = now - timedelta(minutes=1) - span * (1 - (offset + count) / rows)
            samples = generator.generate(
                count, end=end, days=span / timedelta(days=1) * count / rows
            )
            lines = b"".join(
                orjson.dumps(
                    {
                        "source": s.source,
                        "message": s.message,
                        "timestamp": s.timestamp,
                        "level": s.level.value,
                        "metadata": s.metadata,
                    }
                )
                + b"\n"
                for s in samples
            )
            raw += len(lines)
            zstd.compress(lines)  # the frame grows in the compressor
            batch = [
                LogEntry(
                    s.message,
                    ids[s.source],
                    s.level,
                    s.metadata,
                    s.timestamp,
                    limits=limits,
                    now=now,
                )
                for s in samples
            ]
            async with db.pool.acquire() as conn, conn.transaction():
                await copy_entries(conn, batch)
        zstd_bytes = len(zstd.finish())
        console.print(
            f"loaded {rows:,} events over {span} in {time.perf_counter() - started:.0f} s"
        )
        async with db.pool.acquire() as conn:
            await conn.execute("VACUUM ANALYZE log_entries")
            hot_bytes = await conn.fetchval(TIER_BYTES, "log_entries")
            await conn.execute("CREATE TABLE bench_events AS SELECT * FROM log_entries")
            loading = load_filter_builder()  # once a process: not a cost per event
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            cpu_before = time.process_time(), backend_cpu(pid)
            started = time.perf_counter()
            report = await compact(
                conn, slice_length=timedelta(minutes=15), grace=timedelta(minutes=-15)
            )
            wall = time.perf_counter() - started
            python_cpu = time.process_time() - cpu_before[0]
            pg_cpu = backend_cpu(pid) - cpu_before[1]
            await conn.execute("VACUUM ANALYZE log_chunks")
            compacted_bytes = await conn.fetchval(TIER_BYTES, "log_chunks")
            left = await conn.fetchval("SELECT count(*) FROM log_entries")
            await conn.execute(f"SET default_toast_compression = {'lz4' if lz4 else 'pglz'}")
            await conn.execute(ARRAYS_LAYOUT)
            arrays_bytes = await conn.fetchval(
                "SELECT pg_total_relation_size('bench_array_chunks')"
            )
    events = report.events
    if left or events != rows:
        raise RuntimeError(f"compaction moved {events:,} of {rows:,} events ({left:,} left)")
    per_event = compacted_bytes / rows
    hot_per_event = hot_bytes / rows
    raw_per_event = raw / rows
    cpu_us = (python_cpu + pg_cpu) / rows * 1e6
    console.print(f"hot tier (log_entries, primary key and BRIN): {hot_per_event:,.1f} bytes/event")
    console.print(
        f"compressed tier (log_chunks with TOAST, indexes and Bloom filters): {per_event:,.1f} "
        f"bytes/event in {report.chunks:,} chunks"
    )
    console.print(
        f"same chunks as PostgreSQL arrays, TOAST {'lz4' if lz4 else 'pglz'}: "
        f"{arrays_bytes / rows:,.1f} bytes/event ({arrays_bytes / compacted_bytes:.2f}x the codec)"
    )
    console.print(
        f"raw NDJSON {raw_per_event:,.1f} bytes/event; zstd -3 of it {zstd_bytes / rows:,.1f}"
    )
    console.print(
        f"compaction: {events / wall:,.0f} events/s wall, {cpu_us:.1f} us CPU/event "
        f"(logkeep {python_cpu / rows * 1e6:.1f}, PostgreSQL {pg_cpu / rows * 1e6:.1f}): one "
        f"core compacts {1e6 / cpu_us:,.0f} events/s (and {loading:.2f} s of CPU once, loading "
        "numba and the Bloom filter's compiled loops)"
    )
    line = (
        f"storage: compacted_bytes_per_event={per_event:.1f} "
        f"hot_bytes_per_event={hot_per_event:.1f} raw_bytes_per_event={raw_per_event:.1f} "
        f"ratio={per_event / raw_per_event:.3f} zstd_ratio={zstd_bytes / raw:.3f}"
    )
    print(line)  # plain print: a script reads this line
    return line
