"""`logkeep bench ingest --workers N [--workers N2 ...] --api-processes M`: end-to-end
ingest with M `logkeep serve` and N `logkeep worker` processes on the same stores, for
each N in turn, on the same events, each run into its own database.

Prints events/s (and the ratio to the first N), the CPU seconds each part spent per event
(API processes, workers, PostgreSQL, Redis, the senders), and from those the events/s one
process of each kind sustains on one core. Then the sizing figures of docs/scale.md: Redis
memory the dedup window holds per 10,000 events/s, and PostgreSQL bytes (table, indexes,
rollups, ledger) and WAL per day per 1,000 events/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import redis.asyncio as aioredis

from logkeep.api.local import free_port
from logkeep.bench import wire
from logkeep.bench.ingest import (
    COMMITTED,
    MB,
    STALL_DEADLINE_S,
    Body,
    MemoryPeak,
    Sent,
    Service,
    _database_url,
    _ident,
    bodies_of,
    console,
    cpu_seconds,
    create_template,
    dedup_state,
    delete_keys,
    local_postgres_cpu_seconds,
    logkeep_process,
    pipeline_env,
    redis_cpu_seconds,
    sample_events,
    send_all,
    wait_drained,
    wait_ready,
)
from logkeep.cache.keys import Keys
from logkeep.config import Settings

DAY_S = 86_400
# Bytes PostgreSQL keeps per event: the entries with their indexes, the rollups, the ledger.
STORED_BYTES = """
SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
FROM pg_class c
WHERE c.relkind = 'r'
  AND (c.relname LIKE 'log_entries%' OR c.relname IN ('log_metrics', 'ingest_ledger'))
"""
WAL_POSITION = "SELECT pg_current_wal_lsn() - '0/0'::pg_lsn"


@dataclass
class Run:
    workers: int
    api_processes: int
    sent: Sent
    seconds: float
    stored: int
    cpu: dict[str, float]  # CPU seconds per part during the run
    stored_bytes: int
    wal_bytes: int
    dedup_bytes: int
    dedup_fingerprints: int
    redis_peak: int

    @property
    def rate(self) -> float:
        return self.sent.accepted / self.seconds

    def per_event_us(self, part: str) -> float:
        return self.cpu[part] / max(1, self.sent.accepted) * 1e6


def cpu_of(
    apis: Sequence[Service], workers: Sequence[Service], redis_s: float, pg: dict[int, float]
) -> tuple[dict[str, float], dict[int, float]]:
    parts = {
        "api": sum(cpu_seconds(s.process.pid) for s in apis),
        "worker": sum(cpu_seconds(s.process.pid) for s in workers),
        "redis": redis_s,
        "sender": time.process_time(),
    }
    return parts, pg


async def snapshot(
    apis: Sequence[Service],
    workers: Sequence[Service],
    conn: asyncpg.Connection,
    redis: aioredis.Redis,
) -> tuple[dict[str, float], dict[int, float]]:
    pids = [row["pid"] for row in await conn.fetch("SELECT pid FROM pg_stat_activity")]
    return cpu_of(apis, workers, await redis_cpu_seconds(redis), local_postgres_cpu_seconds(pids))


def used(
    before: tuple[dict[str, float], dict[int, float]],
    after: tuple[dict[str, float], dict[int, float]],
) -> dict[str, float]:
    spent = {name: after[0][name] - before[0][name] for name in before[0]}
    spent["postgres"] = sum(cpu - before[1].get(pid, 0.0) for pid, cpu in after[1].items())
    return spent


async def deliver_spread(
    urls: Sequence[str], bodies: Sequence[Body], conn: asyncpg.Connection, services: list[Service]
) -> Sent:
    """The bodies shared out over the API processes, sent at once; returns when the
    ledger counts every accepted event as committed."""
    shares = [bodies[i :: len(urls)] for i in range(len(urls))]
    sending = asyncio.gather(
        *(send_all(url, share) for url, share in zip(urls, shares, strict=True))
    )
    try:
        committed, progress_at = -1, time.monotonic()
        while True:
            now_committed: int = await conn.fetchval(COMMITTED)
            if sending.done():
                total = Sent()
                for part in sending.result():
                    total.accepted += part.accepted
                    total.duplicates += part.duplicates
                    total.rejected += part.rejected
                    total.retries += part.retries
                if now_committed >= total.accepted:
                    return total
            if now_committed != committed:
                committed, progress_at = now_committed, time.monotonic()
            elif time.monotonic() - progress_at > STALL_DEADLINE_S:
                raise RuntimeError(f"no commit for {STALL_DEADLINE_S:.0f}s at {committed:,} rows")
            for service in services:
                service.check()
            await asyncio.sleep(0.02)
    finally:
        if not sending.done():
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sending


async def one_run(
    settings: Settings, database_url: str, bodies: Sequence[Body], workers: int, apis: int
) -> Run:
    assert settings.redis_url is not None
    prefix = f"lkbench:{secrets.token_hex(4)}:"
    keys = Keys(prefix)
    env = pipeline_env(settings, database_url, prefix)
    redis = aioredis.from_url(settings.redis_url)
    conn = await asyncpg.connect(database_url)
    memory = MemoryPeak(redis)
    ports = [free_port() for _ in range(apis)]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        with ExitStack() as stack:
            logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lk-bench-scale-")))
            api_services = []
            for n, port in enumerate(ports):
                (logs / f"api{n}").mkdir()
                api_services.append(
                    stack.enter_context(
                        logkeep_process(["serve", "--port", str(port)], env, logs / f"api{n}")
                    )
                )
            worker_services = []
            for n in range(workers):
                (logs / f"worker{n}").mkdir()
                worker_services.append(
                    stack.enter_context(logkeep_process(["worker"], env, logs / f"worker{n}"))
                )
            services = [*api_services, *worker_services]
            for url in urls:
                await wait_ready(url, services, redis, keys)
            sampling_done = asyncio.Event()
            sampler = asyncio.create_task(memory.run(sampling_done))
            try:
                wal_before: int = int(await conn.fetchval(WAL_POSITION))
                before = await snapshot(api_services, worker_services, conn, redis)
                started = time.perf_counter()
                sent = await deliver_spread(urls, bodies, conn, services)
                seconds = time.perf_counter() - started
                cpu = used(before, await snapshot(api_services, worker_services, conn, redis))
                wal_bytes = int(await conn.fetchval(WAL_POSITION)) - wal_before
                await wait_drained(redis, keys)
            finally:
                sampling_done.set()
                await sampler
            dedup_bytes, _, fingerprints = await dedup_state(redis, keys)
        stored: int = await conn.fetchval("SELECT count(*) FROM log_entries")
        await conn.execute("CHECKPOINT")  # sizes as on disk, pending GIN lists included
        stored_bytes: int = await conn.fetchval(STORED_BYTES)
    finally:
        await delete_keys(redis, prefix)
        await redis.aclose()
        await conn.close()
    return Run(
        workers,
        apis,
        sent,
        seconds,
        stored,
        cpu,
        stored_bytes,
        wal_bytes,
        dedup_bytes,
        fingerprints,
        memory.peak,
    )


def _report(runs: list[Run], rows: int, settings: Settings) -> None:
    base = runs[0].rate
    console.print(
        f"{'workers':>7} {'APIs':>4} {'events/s':>9} {'ratio':>5}  {'CPU s/event':>11}  "
        "us/event: api worker postgres redis sender   exactly once"
    )
    for run in runs:
        total_us = sum(run.cpu.values()) / max(1, run.sent.accepted) * 1e6
        parts = " ".join(
            f"{run.per_event_us(p):>{len(p)}.1f}" for p in ("api", "worker", "postgres", "redis")
        )
        once = run.stored == run.sent.accepted == rows
        console.print(
            f"{run.workers:>7} {run.api_processes:>4} {run.rate:>9,.0f} {run.rate / base:>5.2f}  "
            f"{total_us / 1e6:>11.6f}  us/event: {parts} {run.per_event_us('sender'):>6.1f}   "
            f"{'yes' if once else f'NO: {run.stored:,} stored of {run.sent.accepted:,}'}"
        )
    best = min(runs, key=lambda r: r.per_event_us("worker") + r.per_event_us("api"))
    api_eps = 1e6 / best.per_event_us("api")
    worker_eps = 1e6 / best.per_event_us("worker")
    pg_eps = 1e6 / best.per_event_us("postgres")
    console.print(
        f"one core sustains: an API process {api_eps:,.0f} events/s, a worker process "
        f"{worker_eps:,.0f} events/s, PostgreSQL (COPY, rollups, ledger) {pg_eps:,.0f} events/s "
        f"(from the CPU per event of the {best.workers}-worker run)"
    )
    last = runs[-1]
    per_fingerprint = last.dedup_bytes / max(1, last.dedup_fingerprints)
    window = settings.dedup_window_s
    # Buckets are a fifth of the window: up to 1.25 windows of fingerprints are held.
    dedup_per_10k = per_fingerprint * 10_000 * window * 1.25
    stored_per_event = last.stored_bytes / max(1, last.stored)
    wal_per_event = last.wal_bytes / max(1, last.sent.accepted)
    console.print(
        f"Redis dedup: {per_fingerprint:.1f} bytes per event held; a {window} s window at "
        f"10,000 events/s holds {dedup_per_10k / MB:,.0f} MB (peak used_memory in the last "
        f"run {last.redis_peak / MB:.0f} MB, stream included)"
    )
    console.print(
        f"PostgreSQL: {stored_per_event:,.0f} bytes per event stored (entries, indexes, "
        f"rollups, ledger), {wal_per_event:,.0f} bytes of WAL per event: at 1,000 events/s "
        f"{stored_per_event * 1000 * DAY_S / 1e9:,.1f} GB/day on disk, "
        f"{wal_per_event * 1000 * DAY_S / 1e9:,.1f} GB/day of WAL (shipped to each replica)"
    )


async def run(settings: Settings, rows: int, workers: Sequence[int], api_processes: int) -> str:
    """One run per worker count, each into a database of its own; print and return the
    last line (events/s ratios to the first run)."""
    assert settings.database_url is not None
    run_id = secrets.token_hex(4)
    template = f"lkbench_{run_id}_tpl"
    databases = [f"lkbench_{run_id}_n{n}" for n in range(len(workers))]
    admin = await asyncpg.connect(settings.database_url)
    runs: list[Run] = []
    try:
        version = await admin.fetchval("SHOW server_version")
        console.print(
            f"ingest bench, scale: {rows:,} events per run, {api_processes} API process(es), "
            f"workers {', '.join(map(str, workers))}; PostgreSQL {version}, "
            f"{os.cpu_count()} cores; worker concurrency {settings.worker_concurrency}"
        )
        await create_template(admin, settings.database_url, template)
        for name in databases:
            await admin.execute(f"CREATE DATABASE {_ident(name)} TEMPLATE {_ident(template)}")
        events = [e for chunk in sample_events(rows, datetime.now(UTC)) for e in chunk]
        bodies = bodies_of(events, wire.NDJSON)
        del events
        for count, name in zip(workers, databases, strict=True):
            url = _database_url(settings.database_url, name)
            runs.append(await one_run(settings, url, bodies, count, api_processes))
    finally:
        for name in (*databases, template):
            await admin.execute(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")
        await admin.close()
    _report(runs, rows, settings)
    line = "scale: " + " ".join(
        f"workers{r.workers}={r.rate:.0f}/s({r.rate / runs[0].rate:.2f}x)" for r in runs
    )
    print(line)  # plain print: a script reads this line
    return line
