"""Compaction: each closed time slice of each source moves from the hot tier
(log_entries) into compressed chunks (log_chunks) in ONE transaction.

The transaction runs at REPEATABLE READ: it reads the slice's hot rows, writes their
chunks, and deletes exactly the rows it read (its DELETE sees the same snapshot, so a
late row committed meanwhile stays hot for the next run). Readers see the slice either
all hot or all compressed, never both or neither. A kill at any point rolls it back.

One compactor at a time across processes (an advisory lock, like maintenance): API
processes run it in the background, `logkeep db compact` on demand. A source's newest
chunk of the same day that is less than half full is merged into the next slice's
chunks, so quiet sources still get full chunks.

Per-source retention (log_sources.retention_days, shorter than the global one) runs
here too, under the same lock: chunks wholly older than the cutoff are deleted, a chunk
straddling it is rewritten without its old events, and the source's hot rows and
rollups before the cutoff go with them, so searches and aggregates keep agreeing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import numpy as np
import structlog

from logkeep import metrics
from logkeep.db.tiers import TIERS_LOCK_KEY
from logkeep.db.types import Conn
from logkeep.domain import exactjson
from logkeep.domain.bloom import EVERY_TERM
from logkeep.domain.chunks import (
    CHUNK_EVENTS,
    LEVELS,
    EncodedChunk,
    EventColumns,
    Int64s,
    decode_chunk,
    encode_columns,
    from_micros,
    load_filter_builder,
    micros,
)

log = structlog.get_logger(__name__)

COMPACTION_LOCK_KEY = 0x6C6F676B636D70  # "logkcmp"
READ_BATCH = CHUNK_EVENTS
DAY = timedelta(days=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# The oldest hot row of any source before the horizon, one index probe per source from
# where this run has reached in that source ($2, $3: sources and instants; the rows
# before were just deleted, and a probe from the start would walk their dead index
# entries again for every slice); rows waiting in DEFAULT (no partition for their day
# yet) are left to maintenance.
NEXT_SLICE = """
SELECT s.id AS source_id, m."timestamp"
FROM log_sources s
LEFT JOIN unnest($2::integer[], $3::timestamptz[]) AS reached(source_id, at)
  ON reached.source_id = s.id
CROSS JOIN LATERAL (
    SELECT le."timestamp" FROM log_entries le
    WHERE le.source_id = s.id AND le."timestamp" < $1
      AND le."timestamp" >= coalesce(reached.at, '-infinity')
      AND le.tableoid <> 'log_entries_default'::regclass
    ORDER BY le."timestamp" LIMIT 1
) m
ORDER BY m."timestamp"
LIMIT 1
"""
# The next rows of a slice after a (timestamp, id), in order, as one row of columns:
# ids and instants as PostgreSQL's binary send format (big-endian 64-bit, instants in
# microseconds since 2000), levels as their initials, and messages and metadata texts as
# their UTF-8 joined by NUL (which neither text nor jsonb's text can hold), as bytea.
# asyncpg builds no Record, datetime or string per event (10 us less CPU an event,
# logkeep and PostgreSQL, than fetching the rows; text arrays cost 0.45 us more than
# the joined bytes, on bench storage's events).
# The aggregates take their input as the ordered subquery hands it over, each row to
# all of them at once, so the columns agree; the order is checked in Python all the same.
SLICE_BATCH = """
SELECT count(*) AS events,
       string_agg(int8send(s.id), '') AS ids,
       string_agg(timestamptz_send(s."timestamp"), '') AS stamps,
       string_agg(timestamptz_send(s.ingested_at), '') AS ingested,
       string_agg(left(s.level::text, 1), '') AS levels,
       string_agg(textsend(s.message), '\\x00'::bytea) AS messages,
       string_agg(textsend(s.metadata::text), '\\x00'::bytea) AS metadata
FROM (
    SELECT le.id, le."timestamp", le.level, le.message, le.metadata, le.ingested_at
    FROM log_entries le
    WHERE le.source_id = $1 AND le."timestamp" >= $2 AND le."timestamp" < $3
      AND (le."timestamp", le.id) > ($4, $5)
      AND le.tableoid <> 'log_entries_default'::regclass
    ORDER BY le."timestamp", le.id
    LIMIT $6
) s
"""
DELETE_SLICE = """
DELETE FROM log_entries le
WHERE le.source_id = $1 AND le."timestamp" >= $2 AND le."timestamp" < $3
  AND le.tableoid <> 'log_entries_default'::regclass
"""
# The source's newest chunk of the slice's day, when less than half full: merged.
SMALL_TAIL_CHUNK = """
SELECT c.id, c.min_ts, c.payload FROM log_chunks c
WHERE c.source_id = $1 AND c.min_ts >= $2 AND c.min_ts < $3 AND c.events < $4
ORDER BY c.max_ts DESC LIMIT 1
"""
DELETE_CHUNK = "DELETE FROM log_chunks WHERE source_id = $1 AND min_ts = $2 AND id = $3"
INSERT_CHUNK = """
INSERT INTO log_chunks (source_id, min_ts, max_ts, events, level_mask, level_counts,
                        raw_bytes, bloom, term_filter, payload)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
"""


def slice_start(at: datetime, slice_length: timedelta) -> datetime:
    """The start of the slice holding `at` (slices divide a UTC day)."""
    return EPOCH + (at - EPOCH) // slice_length * slice_length


def check_slice_length(slice_length: timedelta) -> None:
    if slice_length <= timedelta(0) or DAY % slice_length:
        raise ValueError(f"a compaction slice must divide a day, not {slice_length}")


@dataclass
class CompactionReport:
    slices: int = 0
    events: int = 0
    chunks: int = 0
    merged_chunks: int = 0
    seconds: float = 0.0
    busy: bool = False  # another process held the lock
    expired_events: int = 0
    expired_sources: list[int] = field(default_factory=list)  # their cached answers are stale


@asynccontextmanager
async def compaction_lock(conn: Conn) -> AsyncIterator[bool]:
    """Whether this session got the lock (not waiting: one compactor is enough)."""
    got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", COMPACTION_LOCK_KEY)
    try:
        yield bool(got)
    finally:
        if got:
            await conn.execute("SELECT pg_advisory_unlock($1)", COMPACTION_LOCK_KEY)


_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 in microseconds since 1970
_LEVEL_OF_INITIAL = bytes(
    next((code for code, name in enumerate(LEVELS) if name[0] == chr(c)), 0xFF) for c in range(256)
)
assert len({name[0] for name in LEVELS}) == len(LEVELS)  # levels are sent as initials


def _int64s(sent: bytes, offset: int = 0) -> Int64s:
    # int8send and timestamptz_send: big-endian
    values: Int64s = np.frombuffer(sent, ">i8").astype(np.int64)
    return values + offset


def _batch_columns(source_id: int, row: asyncpg.Record) -> EventColumns:
    levels = row["levels"].encode("ascii").translate(_LEVEL_OF_INITIAL)
    if 0xFF in levels:
        raise ValueError(f"a level not in {LEVELS}")
    columns = EventColumns(
        source_id,
        _int64s(row["ids"]),
        _int64s(row["stamps"], _PG_EPOCH_US),
        _int64s(row["ingested"], _PG_EPOCH_US),
        levels,
        row["messages"].split(b"\x00"),
        # Parsed as the pool's jsonb codec parses them (exactjson), in one orjson call.
        exactjson.loads_joined(row["metadata"]),
    )
    if len({len(levels), len(columns.ids), len(columns.metadata), len(columns.messages)}) != 1:
        raise RuntimeError("a slice's columns disagree in length")
    return columns.in_order()


async def _insert(conn: Conn, chunk: EncodedChunk) -> None:
    mask = sum(1 << i for i, n in enumerate(chunk.level_counts) if n)
    await conn.execute(
        INSERT_CHUNK,
        chunk.source_id,
        chunk.min_ts,
        chunk.max_ts,
        chunk.events,
        mask,
        chunk.level_counts,
        chunk.plain_bytes,
        EVERY_TERM,  # what processes of the earlier filter version probe (migration 0007)
        chunk.term_filter,
        chunk.payload,
    )


async def write_columns(conn: Conn, columns: EventColumns) -> int:
    """Chunks of CHUNK_EVENTS events (the last one shorter) of events given as columns
    in (timestamp, id) order; how many were written."""
    written = 0
    for offset in range(0, len(columns), CHUNK_EVENTS):
        await _insert(conn, encode_columns(columns.part(offset, offset + CHUNK_EVENTS)))
        written += 1
    return written


async def compact_slice(
    conn: Conn, source_id: int, start: datetime, end: datetime
) -> tuple[int, int, int]:
    """Move one slice of one source into chunks; (events, chunks written, chunks merged).
    The caller must not be inside a transaction."""
    day_start = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    async with conn.transaction(isolation="repeatable_read"):
        await conn.execute("SELECT pg_advisory_xact_lock($1)", TIERS_LOCK_KEY)
        # Each batch must walk the primary key from where the last one ended: misled by
        # the row comparison's estimate (one row) or by statistics older than the hot
        # rows, the planner would rather sort the whole rest of the slice for each batch.
        await conn.execute("SET LOCAL enable_sort = off")
        pending: EventColumns | None = None
        merged = 0
        tail = await conn.fetchrow(
            SMALL_TAIL_CHUNK, source_id, day_start, day_start + DAY, CHUNK_EVENTS // 2
        )
        if tail is not None:
            pending = decode_chunk(source_id, tail["payload"]).columns()
            await conn.execute(DELETE_CHUNK, source_id, tail["min_ts"], tail["id"])
            merged = 1
        read = 0
        chunks = 0
        after: tuple[datetime, int] = (start, -(2**63))  # before every row of the slice
        while True:
            row = await conn.fetchrow(SLICE_BATCH, source_id, start, end, *after, READ_BATCH)
            assert row is not None  # an aggregate returns one row
            count = row["events"]
            read += count
            if count:
                batch = _batch_columns(source_id, row)
                after = (from_micros(int(batch.timestamps[-1])), int(batch.ids[-1]))
                pending = batch if pending is None else pending + batch
                if merged:  # the merged chunk's events may come before or among the new rows
                    pending = pending.in_order()
            if pending is not None:
                # Keep the newest partial chunk in hand; write the full ones.
                full = len(pending) // CHUNK_EVENTS * CHUNK_EVENTS
                if count < READ_BATCH:
                    full = len(pending)
                if full:
                    chunks += await write_columns(conn, pending.part(0, full))
                    pending = pending.part(full)
            if count < READ_BATCH:
                break
        status = await conn.execute(DELETE_SLICE, source_id, start, end)
        deleted = int(status.split()[-1])
        if deleted != read:
            # Cannot happen under REPEATABLE READ unless another writer deleted rows of
            # the slice meanwhile: roll back rather than lose or double anything.
            raise RuntimeError(f"compaction read {read} rows but would delete {deleted}")
    return read, chunks, merged


async def compact(
    conn: Conn,
    *,
    slice_length: timedelta,
    grace: timedelta,
    now: datetime | None = None,
    deadline_s: float | None = None,
) -> CompactionReport:
    """Compact every closed slice (ending at least `grace` ago), oldest first, until none
    is left or `deadline_s` has passed. Returns at once when another process compacts."""
    check_slice_length(slice_length)
    report = CompactionReport()
    started = time.perf_counter()
    async with compaction_lock(conn) as mine:
        if not mine:
            report.busy = True
            return report
        # Where this run has reached in each source: late rows before it wait for the next
        # run (a minute later in the background loop).
        reached: dict[int, datetime] = {}
        while deadline_s is None or time.perf_counter() - started < deadline_s:
            moment = now or datetime.now(UTC)
            horizon = slice_start(moment - grace, slice_length)
            row = await conn.fetchrow(NEXT_SLICE, horizon, list(reached), list(reached.values()))
            if row is None:
                break
            if not report.slices:
                # numba loads and compiles the filter's loops once a process (a second or
                # more of CPU): in a thread, so that the API serves requests meanwhile.
                await asyncio.to_thread(load_filter_builder)
            start = slice_start(row["timestamp"], slice_length)
            reached[row["source_id"]] = start + slice_length
            events, chunks, merged = await compact_slice(
                conn, row["source_id"], start, start + slice_length
            )
            report.slices += 1
            report.events += events
            report.chunks += chunks
            report.merged_chunks += merged
            metrics.COMPACTED_EVENTS.inc(events)
            await asyncio.sleep(0)  # let the event loop serve requests between slices
    report.seconds = time.perf_counter() - started
    return report


# ---------------------------------------------------------------------------------------
# Per-source retention

SOURCES_WITH_RETENTION = (
    "SELECT id, retention_days FROM log_sources WHERE retention_days IS NOT NULL ORDER BY id"
)
OLD_CHUNKS = """
SELECT c.id, c.min_ts, c.max_ts, c.events, c.payload FROM log_chunks c
WHERE c.source_id = $1 AND c.min_ts < $2
"""
DELETE_OLD_HOT = 'DELETE FROM log_entries WHERE source_id = $1 AND "timestamp" < $2'
DELETE_OLD_ROLLUPS = "DELETE FROM log_metrics WHERE source_id = $1 AND bucket < $2"


async def expire_source(conn: Conn, source_id: int, cutoff: datetime) -> int:
    """Remove a source's events (both tiers) and rollups before `cutoff`; events removed.
    `cutoff` is a whole minute, so the rollups go exactly with their events."""
    removed = 0
    async with conn.transaction(isolation="repeatable_read"):
        await conn.execute("SELECT pg_advisory_xact_lock($1)", TIERS_LOCK_KEY)
        for row in await conn.fetch(OLD_CHUNKS, source_id, cutoff):
            await conn.execute(DELETE_CHUNK, source_id, row["min_ts"], row["id"])
            if row["max_ts"] < cutoff:
                removed += row["events"]
                continue
            columns = decode_chunk(source_id, row["payload"]).columns()
            # A chunk's events are in (timestamp, id) order: the kept ones are its end.
            kept = columns.part(int(np.searchsorted(columns.timestamps, micros(cutoff))))
            removed += row["events"] - len(kept)
            await write_columns(conn, kept)
        status = await conn.execute(DELETE_OLD_HOT, source_id, cutoff)
        removed += int(status.split()[-1])
        await conn.execute(DELETE_OLD_ROLLUPS, source_id, cutoff)
    return removed


async def expire_sources(conn: Conn, now: datetime | None = None) -> dict[int, int]:
    """Apply every source's own retention (under the compaction lock): events removed per
    source that lost any."""
    moment = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    removed: dict[int, int] = {}
    async with compaction_lock(conn) as mine:
        if not mine:
            return removed
        for row in await conn.fetch(SOURCES_WITH_RETENTION):
            gone = await expire_source(
                conn, row["id"], moment - timedelta(days=row["retention_days"])
            )
            if gone:
                removed[row["id"]] = gone
    return removed


# ---------------------------------------------------------------------------------------
# Status: lag and sizes, for /metrics, `logkeep doctor` and `logkeep stats storage`

CHUNK_TOTALS = (
    "SELECT count(*) AS chunks, coalesce(sum(events), 0)::bigint AS events FROM log_chunks"
)


@dataclass(frozen=True)
class CompactionStatus:
    lag_s: float  # how long the oldest waiting closed slice has been closed (0: none)
    oldest_waiting: datetime | None  # the oldest hot event in a closed slice
    chunks: int
    chunk_events: int


async def compaction_status(
    conn: Conn, *, slice_length: timedelta, grace: timedelta, now: datetime | None = None
) -> CompactionStatus:
    moment = now or datetime.now(UTC)
    horizon = slice_start(moment - grace, slice_length)
    row = await conn.fetchrow(NEXT_SLICE, horizon, [], [])
    totals = await conn.fetchrow(CHUNK_TOTALS)
    assert totals is not None  # an aggregate returns one row
    oldest = None if row is None else row["timestamp"]
    lag = 0.0
    if oldest is not None:
        closed_at = slice_start(oldest, slice_length) + slice_length + grace
        lag = max(0.0, (moment - closed_at).total_seconds())
    return CompactionStatus(lag, oldest, int(totals["chunks"]), int(totals["events"]))


async def compact_in_background(
    conn: Conn, *, slice_length: timedelta, grace: timedelta, budget_s: float
) -> CompactionReport:
    """One round of the background loop: compaction (for at most `budget_s`), per-source
    retention, and the metrics."""
    report = await compact(conn, slice_length=slice_length, grace=grace, deadline_s=budget_s)
    if not report.busy:
        expired = await expire_sources(conn)
        report.expired_events = sum(expired.values())
        report.expired_sources = sorted(expired)
    status = await compaction_status(conn, slice_length=slice_length, grace=grace)
    metrics.COMPACTION_LAG_SECONDS.set(status.lag_s)
    metrics.CHUNKS.set(status.chunks)
    metrics.CHUNK_EVENTS_STORED.set(status.chunk_events)
    return report
