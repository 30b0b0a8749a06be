"""`logkeep bench ingest`: rows/s through the whole ingest pipeline, against the physical
limit and against the brief's way, on one PostgreSQL, one schema, the same rows.

(a) end to end: NDJSON over HTTP to `logkeep serve`, through the Redis Stream, COPYed by
    `logkeep worker`, until the ingest ledger counts every row as committed;
(b) the physical limit: the same rows in one binary COPY;
(c) the brief's way: one INSERT per entry from 20 concurrent tasks (on at most 20,000
    rows: it is a rate, and at a million rows it would take minutes).

Each method gets its own database cloned from one migrated template with partitions for
the days the rows fall in. It also reports the worker's peak RSS, Redis memory before,
at its peak and after the stream drained, and what the dedup window holds per event.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import redis.asyncio as aioredis
from redis.exceptions import ResponseError
from rich.console import Console

from logkeep.api.local import free_port
from logkeep.bench import wire
from logkeep.bench.wire import Wire
from logkeep.cache.keys import Keys
from logkeep.cache.replies import as_text
from logkeep.config import Settings
from logkeep.db.database import _init_connection, session_settings
from logkeep.db.migrate import migrate
from logkeep.db.partitions import ensure_partitions
from logkeep.db.seed import seed_sources
from logkeep.db.types import Conn
from logkeep.domain.chunks import load_filter_builder
from logkeep.domain.entry import LogEntry
from logkeep.domain.samples import SampleGenerator
from logkeep.ingest.worker import GROUP

console = Console(soft_wrap=True)  # long lines stay whole in logs and pipes

LOGKEEP = Path(sys.executable).parent / "logkeep"
Record = tuple[int, datetime, str, str, bytes]  # LogEntry.copy_record()
COLUMNS = ["source_id", "timestamp", "level", "message", "metadata"]  # id: the sequence
INSERT_ONE = (
    'INSERT INTO log_entries (source_id, "timestamp", level, message, metadata) '
    "VALUES ($1, $2, $3, $4, $5)"
)
COMMITTED = "SELECT coalesce(sum(events), 0) FROM ingest_ledger"

SEED = 29
GENERATE_CHUNK = 50_000  # rows generated at a time, each chunk its own slice of the hour
EVENTS_PER_REQUEST = 1000
SENDERS = 3  # concurrent HTTP clients; 2, 3 and 4 measured alike (the API is one process)
PER_ROW_TASKS = 20
PER_ROW_MAX_ROWS = 20_000
SAMPLE_EVERY_S = 0.1  # Redis memory sampling period during (a)
START_DEADLINE_S = 60.0
STALL_DEADLINE_S = 120.0  # (a) gives up when nothing commits for this long
STOP_TIMEOUT_S = 30.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MB = 1024 * 1024


# ---------------------------------------------------------------------------------------
# Databases


def _database_url(base_url: str, name: str) -> str:
    """`base_url` pointing at database `name` instead."""
    return urlunsplit(urlsplit(base_url)._replace(path=f"/{name}"))


def _ident(name: str) -> str:
    # Identifiers cannot be parameters; every name is made here from a hex run id.
    assert re.fullmatch(r"[a-z0-9_]+", name), name
    return f'"{name}"'


async def create_template(admin: asyncpg.Connection, base_url: str, name: str) -> dict[str, int]:
    """A database at the latest schema with the sample sources and partitions from
    yesterday to tomorrow (the rows span the last hour); returns source ids by name."""
    await admin.execute(f"CREATE DATABASE {_ident(name)} TEMPLATE template0")
    conn = await asyncpg.connect(_database_url(base_url, name))
    try:
        await migrate(conn)
        await _init_connection(conn)  # seed_sources passes jsonb as Python objects
        _, ids = await seed_sources(conn)
        today = datetime.now(UTC).date()
        await ensure_partitions(conn, [today + timedelta(days=d) for d in (-1, 0, 1)])
    finally:
        await conn.close()  # CREATE DATABASE ... TEMPLATE needs it without connections
    return ids


# ---------------------------------------------------------------------------------------
# The rows, prepared before any clock starts


def sample_events(rows: int, now: datetime) -> Iterator[list[dict[str, Any]]]:
    """The benchmark's events in chunks of GENERATE_CHUNK, timestamps spread over the
    last hour in time order, every one distinct."""
    generator = SampleGenerator(seed=SEED)
    span = timedelta(hours=1)
    previous = now - 2 * span
    for offset in range(0, rows, GENERATE_CHUNK):
        count = min(GENERATE_CHUNK, rows - offset)
        end = now - span * (1 - (offset + count) / rows)
        samples = generator.generate(count, end=end, days=span / timedelta(days=1) * count / rows)
        events: list[dict[str, Any]] = []
        for s in samples:
            # Dedup takes the same source, time and message for one event, and a million
            # random microseconds in an hour do repeat: make every timestamp distinct.
            previous = max(s.timestamp, previous + timedelta(microseconds=1))
            events.append(
                {
                    "source": s.source,
                    "message": s.message,
                    "timestamp": previous,  # orjson writes RFC 3339
                    "level": s.level.value,
                    "metadata": s.metadata,
                }
            )
        yield events


Body = tuple[bytes, int]  # a request body and the events in it


def bodies_of(events: Sequence[dict[str, Any]], way: Wire) -> list[Body]:
    """Request bodies of EVENTS_PER_REQUEST events each, encoded for `way`."""
    chunks = (events[i : i + EVENTS_PER_REQUEST] for i in range(0, len(events), EVENTS_PER_REQUEST))
    return [(way.encode(chunk), len(chunk)) for chunk in chunks]


def prepare(rows: int, source_ids: dict[str, int]) -> tuple[list[Body], list[Record]]:
    """NDJSON request bodies of EVENTS_PER_REQUEST events, and the same rows as COPY
    records, with timestamps spread over the last hour in time order."""
    now = datetime.now(UTC)
    bodies: list[Body] = []
    records: list[Record] = []
    for events in sample_events(rows, now):
        # GENERATE_CHUNK is a multiple of EVENTS_PER_REQUEST: no request spans two chunks.
        bodies += bodies_of(events, wire.NDJSON)
        records += [
            LogEntry(
                e["message"],
                source_ids[e["source"]],
                e["level"],
                e["metadata"],
                e["timestamp"],
                now=now,
            ).copy_record()
            for e in events
        ]
    return bodies, records


# ---------------------------------------------------------------------------------------
# Processes


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (0 when it cannot be read)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rpartition(")")[2].split()  # the command name may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the most resident memory the process has held."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM in /proc/{pid}/status")


@dataclass
class Service:
    """A `logkeep` subprocess and its log."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    def check(self) -> None:
        """Raise with the end of its log if it has exited."""
        code = self.process.poll()
        if code is not None:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"`logkeep {self.name}` exited with {code}:\n{tail}")


@contextlib.contextmanager
def logkeep_process(args: list[str], env: dict[str, str], logs: Path) -> Iterator[Service]:
    """Run `logkeep ARGS` until the block ends; SIGTERM lets it finish what it holds."""
    log = logs / f"{args[0]}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our own console script, an argv list
            [str(LOGKEEP), *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Service(args[0], process, log)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def pipeline_env(settings: Settings, database_url: str, key_prefix: str) -> dict[str, str]:
    assert settings.redis_url is not None
    return {
        **os.environ,
        "LOGKEEP_ENV": "test",
        # A throwaway local stack: no credentials, as in dev (auth costs are not measured).
        "LOGKEEP_AUTH_REQUIRED": "false",
        "LOGKEEP_DATABASE_URL": database_url,
        "LOGKEEP_REDIS_URL": settings.redis_url,
        "LOGKEEP_REDIS_KEY_PREFIX": key_prefix,
        "LOGKEEP_RATE_LIMIT_SOURCE_EPS": "0",
        "LOGKEEP_RATE_LIMIT_CLIENT_EPS": "0",
        "LOGKEEP_DEDUP_WINDOW_S": str(settings.dedup_window_s),
        "LOGKEEP_WORKER_BATCH_EVENTS": str(settings.worker_batch_events),
        "LOGKEEP_MAINTENANCE_INTERVAL_S": "0",
        # Compaction is measured on its own after the run (run: compaction_cost).
        "LOGKEEP_COMPACTION_INTERVAL_S": "0",
        "LOGKEEP_LOG_LEVEL": "warning",
    }


async def wait_ready(
    base_url: str, services: Sequence[Service], redis: aioredis.Redis, keys: Keys
) -> None:
    """Until the API answers /readyz and the worker has created its consumer group."""
    deadline = time.monotonic() + START_DEADLINE_S
    api_ready = worker_ready = False
    async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
        while not (api_ready and worker_ready):
            for service in services:
                service.check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"API and worker not ready within {START_DEADLINE_S:.0f}s")
            with contextlib.suppress(httpx.TransportError):
                api_ready = api_ready or (await client.get("/readyz")).status_code == 200
            with contextlib.suppress(ResponseError):  # no stream yet
                # The worker creates its group once connected to both stores (a blocked
                # XREADGROUP does not show as a consumer on every Redis version).
                groups = await redis.xinfo_groups(keys.ingest_stream())
                worker_ready = any(as_text(g["name"]) == GROUP for g in groups)
            await asyncio.sleep(0.1)


# ---------------------------------------------------------------------------------------
# (a) end to end


@dataclass
class Sent:
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    retries: int = 0  # 429 and 503 answers waited out


async def send_all(base_url: str, bodies: Sequence[Body], way: Wire = wire.NDJSON) -> Sent:
    """POST every body from SENDERS clients at once, honouring Retry-After."""
    sent = Sent()
    queue = iter(bodies)  # shared: each sender takes the next body

    async def sender() -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=60) as client:
            for body, count in queue:
                while True:
                    response = await client.post(way.path, content=body, headers=way.headers)
                    if response.status_code not in (429, 503):
                        break
                    sent.retries += 1
                    await asyncio.sleep(float(response.headers.get("retry-after", "1")))
                if response.status_code != way.ok:
                    raise RuntimeError(
                        f"{way.path} answered {response.status_code}: {response.text[:500]}"
                    )
                accepted, duplicates, rejected = way.taken(response, count)
                sent.accepted += accepted
                sent.duplicates += duplicates
                sent.rejected += rejected

    await asyncio.gather(*(sender() for _ in range(SENDERS)))
    return sent


async def deliver(
    base_url: str,
    bodies: Sequence[Body],
    conn: asyncpg.Connection,
    services: Sequence[Service],
    way: Wire = wire.NDJSON,
) -> Sent:
    """Send everything and return once the ledger counts every accepted event."""
    sending = asyncio.create_task(send_all(base_url, bodies, way))
    try:
        committed, progress_at = -1, time.monotonic()
        while True:
            now_committed: int = await conn.fetchval(COMMITTED)
            if sending.done() and now_committed >= sending.result().accepted:
                return sending.result()
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


class MemoryPeak:
    """Redis used_memory, sampled every SAMPLE_EVERY_S while `run` runs."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis
        self.peak = 0

    async def used(self) -> int:
        info: dict[str, Any] = await self._redis.info("memory")
        used = int(info["used_memory"])
        self.peak = max(self.peak, used)
        return used

    async def run(self, stop: asyncio.Event) -> None:
        """Sample until `stop` is set. (Not cancelled: a cancellation that lands inside a
        redis-py command can be swallowed, and the sampler would then never end.)"""
        while not stop.is_set():
            await self.used()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_S)


async def redis_cpu_seconds(redis: aioredis.Redis) -> float:
    info: dict[str, Any] = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def local_postgres_cpu_seconds(pids: list[int]) -> dict[int, float]:
    """CPU so far of the PostgreSQL processes among `pids` that run on this machine
    (none when the server is remote: the pids are not ours to read, or not postgres)."""
    found: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().startswith("postgres"):
                found[pid] = cpu_seconds(pid)
    return found


async def cpu_snapshot(
    api: Service, worker: Service, conn: asyncpg.Connection, redis: aioredis.Redis
) -> tuple[dict[str, float], dict[int, float]]:
    """CPU seconds so far of each part of the pipeline, and of each PostgreSQL process."""
    parts = {
        "api": cpu_seconds(api.process.pid),
        "worker": cpu_seconds(worker.process.pid),
        "redis": await redis_cpu_seconds(redis),
        "sender": time.process_time(),  # this process: the HTTP clients and polling
    }
    pids = [row["pid"] for row in await conn.fetch("SELECT pid FROM pg_stat_activity")]
    return parts, local_postgres_cpu_seconds(pids)


def cpu_used(
    before: tuple[dict[str, float], dict[int, float]],
    after: tuple[dict[str, float], dict[int, float]],
) -> dict[str, float]:
    used = {name: after[0][name] - before[0][name] for name in before[0]}
    # Backends that started in between (a new pool connection) count from zero.
    used["postgres"] = sum(cpu - before[1].get(pid, 0.0) for pid, cpu in after[1].items())
    return used


@dataclass
class EndToEnd:
    sent: Sent
    seconds: float
    stored: int
    worker_peak_rss_mb: float
    redis_before: int
    redis_peak: int
    redis_after: int
    dedup_bytes: int
    dedup_keys: int
    dedup_fingerprints: int
    tail_bytes: int
    cpu: dict[str, float]  # CPU seconds per part during the run


async def dedup_state(redis: aioredis.Redis, keys: Keys) -> tuple[int, int, int]:
    """(bytes, keys, fingerprints) of the dedup buckets."""
    pattern = keys.dedup_bucket(0).removesuffix("0") + "*"  # every bucket of this prefix
    size = count = members = 0
    async for key in redis.scan_iter(match=pattern, count=1000):
        size += await redis.memory_usage(key, samples=0) or 0
        members += await redis.scard(key)
        count += 1
    return size, count, members


async def wait_drained(redis: aioredis.Redis, keys: Keys) -> None:
    """Until the worker has acknowledged and deleted every stream entry."""
    deadline = time.monotonic() + START_DEADLINE_S
    while await redis.xlen(keys.ingest_stream()) > 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the ingest stream did not drain after the last commit")
        await asyncio.sleep(0.05)


async def delete_keys(redis: aioredis.Redis, prefix: str) -> None:
    batch = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
    for offset in range(0, len(batch), 1000):
        await redis.unlink(*batch[offset : offset + 1000])


async def end_to_end(
    settings: Settings, database_url: str, bodies: Sequence[Body], way: Wire = wire.NDJSON
) -> EndToEnd:
    assert settings.redis_url is not None
    prefix = f"lkbench:{secrets.token_hex(4)}:"  # a Redis of our own inside any Redis
    keys = Keys(prefix)
    base_url = f"http://127.0.0.1:{free_port()}"
    env = pipeline_env(settings, database_url, prefix)
    redis = aioredis.from_url(settings.redis_url)
    conn = await asyncpg.connect(database_url)
    memory = MemoryPeak(redis)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="lk-bench-ingest-") as logs,
            logkeep_process(
                ["serve", "--port", base_url.rpartition(":")[2]], env, Path(logs)
            ) as api,
            logkeep_process(["worker"], env, Path(logs)) as worker,
        ):
            await wait_ready(base_url, [api, worker], redis, keys)
            before = await memory.used()
            sampling_done = asyncio.Event()
            sampler = asyncio.create_task(memory.run(sampling_done))
            try:
                cpu_before = await cpu_snapshot(api, worker, conn, redis)
                started = time.perf_counter()
                sent = await deliver(base_url, bodies, conn, [api, worker], way)
                seconds = time.perf_counter() - started
                cpu = cpu_used(cpu_before, await cpu_snapshot(api, worker, conn, redis))
                await wait_drained(redis, keys)
            finally:
                sampling_done.set()
                await sampler
            after = await memory.used()
            dedup_bytes, dedup_keys, fingerprints = await dedup_state(redis, keys)
            tail_bytes = await redis.memory_usage(keys.tail_stream(), samples=0) or 0
            rss = peak_rss_mb(worker.process.pid)  # just before it is stopped
        stored: int = await conn.fetchval("SELECT count(*) FROM log_entries")
    finally:
        await delete_keys(redis, prefix)
        await redis.aclose()
        await conn.close()
    return EndToEnd(
        sent,
        seconds,
        stored,
        rss,
        before,
        memory.peak,
        after,
        dedup_bytes,
        dedup_keys,
        fingerprints,
        tail_bytes,
        cpu,
    )


# ---------------------------------------------------------------------------------------
# (b) one binary COPY and (c) one INSERT per entry


async def copy_rows(database_url: str, records: list[Record]) -> float:
    """Seconds to COPY every record in one statement."""
    conn = await asyncpg.connect(database_url)
    try:
        await _init_connection(conn)  # the jsonb codec the worker uses
        started = time.perf_counter()
        await conn.copy_records_to_table("log_entries", records=records, columns=COLUMNS)
        seconds = time.perf_counter() - started
        await _check_count(conn, len(records))
    finally:
        await conn.close()
    return seconds


async def insert_rows(database_url: str, records: list[Record]) -> float:
    """Seconds to INSERT every record on its own from PER_ROW_TASKS tasks."""
    pool = await asyncpg.create_pool(
        database_url, min_size=PER_ROW_TASKS, max_size=PER_ROW_TASKS, init=_init_connection
    )
    try:

        async def task(share: list[Record]) -> None:
            for record in share:
                await pool.execute(INSERT_ONE, *record)

        started = time.perf_counter()
        await asyncio.gather(*(task(records[i::PER_ROW_TASKS]) for i in range(PER_ROW_TASKS)))
        seconds = time.perf_counter() - started
        async with pool.acquire() as conn:
            await _check_count(conn, len(records))
    finally:
        await pool.close()
    return seconds


async def _check_count(conn: Conn, expected: int) -> None:
    stored = await conn.fetchval("SELECT count(*) FROM log_entries")
    if stored != expected:
        raise RuntimeError(f"{stored:,} rows in log_entries, {expected:,} expected")


# ---------------------------------------------------------------------------------------
# The row store (the path before the storage tiers) and what compaction costs

# The indexes the hot tier no longer has (0001 and 0002, dropped by 0006): with them,
# log_entries is the row store that kept every event with full-text search before.
ROW_STORE_INDEXES = (
    "CREATE INDEX log_entries_metadata_gin ON log_entries USING gin (metadata jsonb_path_ops) "
    "WITH (gin_pending_list_limit = 32768)",
    "CREATE INDEX log_entries_message_fulltext ON log_entries USING gin "
    "(to_tsvector('simple'::regconfig, left(message, 131072))) "
    "WITH (gin_pending_list_limit = 4096)",
)


async def make_row_store(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        for statement in ROW_STORE_INDEXES:
            await conn.execute(statement)
    finally:
        await conn.close()


async def compaction_cost(settings: Settings, database_url: str) -> tuple[int, float]:
    """Compact everything the run stored: (events, CPU seconds of this process and its
    PostgreSQL backend), on a session set up as logkeep's own are."""
    from logkeep.db.compaction import compact

    loading = load_filter_builder()
    conn = await asyncpg.connect(database_url, server_settings=session_settings(settings, "bench"))
    try:
        pid = await conn.fetchval("SELECT pg_backend_pid()")
        before = time.process_time() + cpu_seconds(pid)
        report = await compact(
            conn, slice_length=timedelta(minutes=15), grace=timedelta(minutes=-15)
        )
        used = time.process_time() + cpu_seconds(pid) - before
    finally:
        await conn.close()
    console.print(
        f"    (loading numba and the Bloom filter's compiled loops took {loading:.2f} s of CPU, "
        "once a process: not counted per event)"
    )
    return report.events, used


# ---------------------------------------------------------------------------------------
# The run


def _report_end_to_end(e2e: EndToEnd, rows: int, settings: Settings) -> None:
    sent = e2e.sent
    rate = sent.accepted / e2e.seconds
    once = (
        "exactly once"
        if e2e.stored == sent.accepted == rows
        else f"[red]{e2e.stored:,} stored of {sent.accepted:,} accepted, {rows:,} sent[/red]"
    )
    console.print(
        f"(a) end to end      {sent.accepted:>10,} rows in {e2e.seconds:7.2f} s  "
        f"{rate:>9,.0f} rows/s  ({SENDERS} senders, {sent.retries} 429/503 retries, "
        f"{sent.duplicates} duplicates, {sent.rejected} rejected; {once})"
    )
    parts = ", ".join(f"{name} {seconds:.1f}" for name, seconds in e2e.cpu.items())
    console.print(
        f"    CPU seconds: {parts}: {sum(e2e.cpu.values()):.1f} of "
        f"{(os.cpu_count() or 1) * e2e.seconds:.1f} ({os.cpu_count()} cores x wall)"
    )
    api_us = e2e.cpu["api"] / max(1, sent.accepted + sent.duplicates) * 1e6
    console.print(
        f"    API CPU per event: {api_us:.1f} us (by kind of body, with a profile: "
        "bench/api_cpu.py)"
    )
    console.print(f"    worker peak RSS (VmHWM): {e2e.worker_peak_rss_mb:.0f} MB")
    dedup = e2e.dedup_bytes
    residual = e2e.redis_after - dedup - e2e.redis_before
    console.print(
        f"    Redis used_memory: before {e2e.redis_before / MB:.1f} MB, peak "
        f"{e2e.redis_peak / MB:.1f} MB, after drain {e2e.redis_after / MB:.1f} MB"
    )
    held = e2e.dedup_fingerprints
    aged = ""
    if held < rows:  # the run outlived the window: the cost per fingerprint still held
        aged = f"; {held:,} still held, the rest aged out: {dedup / max(1, held):.1f} bytes each"
    console.print(
        f"    dedup state ({settings.dedup_window_s} s window, kept by design): "
        f"{dedup / MB:.1f} MB in {e2e.dedup_keys} bucket key(s): {dedup / rows:.1f} "
        f"bytes/event over {rows:,} events{aged}"
    )
    console.print(
        f"    after drain - dedup - before: {residual / MB:+.2f} MB, of which the live-tail "
        f"buffer (capped at {settings.tail_buffer_entries} stream entries) "
        f"{e2e.tail_bytes / MB:.2f} MB"
    )


async def run(settings: Settings, rows: int) -> str:
    """Measure (a), (b) and (c) on `rows` rows; print them and return the last line."""
    assert settings.database_url is not None
    run_id = secrets.token_hex(4)
    template, *databases = (
        f"lkbench_{run_id}_{n}" for n in ("tpl", "e2e", "copy", "rows", "rowstore")
    )
    url = {name: _database_url(settings.database_url, name) for name in databases}
    e2e_db, copy_db, rows_db, row_store_db = databases
    admin = await asyncpg.connect(settings.database_url)
    try:
        version = await admin.fetchval("SHOW server_version")
        console.print(f"ingest bench: {rows:,} rows, PostgreSQL {version}, {os.cpu_count()} cores")
        source_ids = await create_template(admin, settings.database_url, template)
        for name in databases:
            await admin.execute(f"CREATE DATABASE {_ident(name)} TEMPLATE {_ident(template)}")
        started = time.perf_counter()
        bodies, records = prepare(rows, source_ids)
        console.print(
            f"prepared {len(bodies):,} requests of {EVENTS_PER_REQUEST:,} events "
            f"({sum(len(b) for b, _ in bodies) / MB:,.0f} MB of NDJSON) and the COPY records in "
            f"{time.perf_counter() - started:.1f} s"
        )

        e2e = await end_to_end(settings, url[e2e_db], bodies)
        _report_end_to_end(e2e, rows, settings)
        e2e_rate = e2e.sent.accepted / e2e.seconds

        # Today's path before the storage tiers, in the same run, on the same events.
        await make_row_store(url[row_store_db])
        row_store = await end_to_end(settings, url[row_store_db], bodies)
        del bodies
        row_store_rate = row_store.sent.accepted / row_store.seconds
        once = row_store.stored == row_store.sent.accepted == rows
        console.print(
            f"(a') row store     {row_store.sent.accepted:>10,} rows in "
            f"{row_store.seconds:7.2f} s  {row_store_rate:>9,.0f} rows/s  (log_entries with "
            f"its full-text and metadata GIN, as before the storage tiers; "
            f"{'exactly once' if once else 'NOT exactly once'}): end to end is "
            f"{e2e_rate / row_store_rate:.2f}x that"
        )
        # CPU per event by part in both runs: what the storage change saves, whatever else
        # the machine is doing meanwhile.
        for label, run_cpu, events in (
            ("tiered", e2e.cpu, e2e.sent.accepted),
            ("row store", row_store.cpu, row_store.sent.accepted),
        ):
            parts = ", ".join(
                f"{name} {seconds / max(1, events) * 1e6:.1f}" for name, seconds in run_cpu.items()
            )
            total = sum(run_cpu.values()) / max(1, events) * 1e6
            console.print(f"    CPU us/event, {label}: {parts}; all {total:.1f}")
        compacted, compaction_cpu = await compaction_cost(settings, url[e2e_db])
        per_event_us = compaction_cpu / max(1, compacted) * 1e6
        console.print(
            f"    compaction of those {compacted:,} events: {per_event_us:.1f} us CPU/event "
            f"(logkeep and PostgreSQL): {per_event_us * e2e_rate / 1e6:.2f} of a core at "
            f"{e2e_rate:,.0f} events/s"
        )

        seconds = await copy_rows(url[copy_db], records)
        copy_rate = rows / seconds
        console.print(
            f"(b) one binary COPY {rows:>10,} rows in {seconds:7.2f} s  {copy_rate:>9,.0f} rows/s"
            "  (the physical limit)"
        )

        per_row = min(rows, PER_ROW_MAX_ROWS)
        seconds = await insert_rows(url[rows_db], records[:per_row])
        per_row_rate = per_row / seconds
        console.print(
            f"(c) INSERT per row  {per_row:>10,} rows in {seconds:7.2f} s  "
            f"{per_row_rate:>9,.0f} rows/s  ({PER_ROW_TASKS} tasks on a pool of "
            f"{PER_ROW_TASKS}; only the first {per_row:,} rows: rows/s is a rate)"
        )
    finally:
        for name in (*databases, template):
            await admin.execute(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")
        await admin.close()
    line = (
        f"ingest: e2e/copy={e2e_rate / copy_rate:.2f} e2e/per-row={e2e_rate / per_row_rate:.2f} "
        f"events_per_s={e2e_rate:.0f} row_store_events_per_s={row_store_rate:.0f} "
        f"speedup={e2e_rate / row_store_rate:.2f}"
    )
    print(line)  # plain print: a script reads this line, rich might wrap it
    return line


# ---------------------------------------------------------------------------------------
# --protocols: the shippers' protocols beside NDJSON, end to end, on the same events


async def run_protocols(settings: Settings, rows: int) -> str:
    """End to end for NDJSON and each protocol in turn, each into its own database:
    events/s, and the API's CPU per event (what a protocol's decoding costs)."""
    assert settings.database_url is not None
    run_id = secrets.token_hex(4)
    ways = (wire.NDJSON, *wire.PROTOCOLS)
    template = f"lkbench_{run_id}_tpl"
    databases = [f"lkbench_{run_id}_w{n}" for n in range(len(ways))]
    admin = await asyncpg.connect(settings.database_url)
    try:
        version = await admin.fetchval("SHOW server_version")
        console.print(
            f"ingest bench, protocols: {rows:,} events each way, PostgreSQL {version}, "
            f"{os.cpu_count()} cores, {SENDERS} senders of {EVENTS_PER_REQUEST:,} events"
        )
        await create_template(admin, settings.database_url, template)
        for name in databases:
            await admin.execute(f"CREATE DATABASE {_ident(name)} TEMPLATE {_ident(template)}")
        events = [e for chunk in sample_events(rows, datetime.now(UTC)) for e in chunk]
        per_event: dict[str, float] = {}
        for way, name in zip(ways, databases, strict=True):
            bodies = bodies_of(events, way)
            size = sum(len(b) for b, _ in bodies) / MB
            url = _database_url(settings.database_url, name)
            e2e = await end_to_end(settings, url, bodies, way)
            cost = per_event[way.name] = e2e.cpu["api"] / max(1, e2e.sent.accepted) * 1e6
            ratio = cost / per_event[wire.NDJSON.name]
            once = e2e.stored == e2e.sent.accepted == rows
            stored = "exactly once" if once else f"[red]{e2e.stored:,} stored[/red]"
            console.print(
                f"{way.name:<20} {e2e.sent.accepted:>9,} events in {e2e.seconds:6.2f} s "
                f"{e2e.sent.accepted / e2e.seconds:>9,.0f} events/s  API CPU {cost:6.1f} "
                f"us/event ({ratio:.2f}x NDJSON)  {size:6.1f} MB sent  {stored}"
            )
    finally:
        for name in (*databases, template):
            await admin.execute(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")
        await admin.close()
    base = per_event[wire.NDJSON.name]
    line = "protocols: " + " ".join(
        f"{way.name.split()[0].lower()}/ndjson={per_event[way.name] / base:.2f}"
        for way in wire.PROTOCOLS
    )
    print(line)  # plain print: a script reads this line
    return line
