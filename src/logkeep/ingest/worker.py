"""The ingest worker: reads the stream through a consumer group in batches, COPYs each
batch into log_entries with its rollups and ledger rows in one transaction, and only then
acknowledges and deletes the stream entries.

Exactly once: the ledger row of a stream entry is inserted first in the transaction; an
entry another worker committed (or is committing) conflicts and is skipped, so a batch
redelivered after a crash, or claimed from a worker that was only slow, adds nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import structlog
from redis.exceptions import RedisError, ResponseError

from logkeep import metrics
from logkeep.cache.ingest_buffer import StreamAcknowledger
from logkeep.cache.replies import as_text
from logkeep.cache.shards import IngestShards
from logkeep.config import Settings
from logkeep.db.database import PG_TRANSIENT_ERRORS, Database
from logkeep.db.queries import q
from logkeep.db.repositories import Stored, copy_encoded_rows, copy_entries, entry_items
from logkeep.db.types import Conn
from logkeep.domain.ingest import decode_records, printable
from logkeep.domain.stream_rows import (
    CorruptRecord,
    DeadLetter,
    RollupKey,
    Scanned,
    StreamRow,
    decode_row,
    scan,
)
from logkeep.ingest.catalog import SourceCatalog

log = structlog.get_logger(__name__)

GROUP = "writers"
READ_COUNT = 10  # stream entries per read; each holds up to a request's events
LEDGER_RETENTION_DAYS = 7
IDLE_CONSUMER_S = 3600  # consumers idle this long with nothing pending are removed
MAX_BACKOFF_S = 5.0
STOP_GRACE_S = 10.0  # after a stop request, how long a failing batch keeps retrying

# Retried as they are: the batch goes through once PostgreSQL is back. (Every other
# PostgreSQL error but one about the data is retried too: see `commit`.)
TRANSIENT_PG_ERRORS: tuple[type[Exception], ...] = (*PG_TRANSIENT_ERRORS, asyncpg.InterfaceError)


def is_about_the_data(exc: asyncpg.PostgresError) -> bool:
    """Data exceptions (22) and integrity violations (23): retrying cannot help."""
    return str(getattr(exc, "sqlstate", "") or "")[:2] in ("22", "23")


@dataclass
class StreamEntry:
    entry_id: str  # its ledger id (cache/shards.py): the stream id when there is one shard
    payload: bytes
    # Its rows: COPY tuples as the API encoded them (field "c"), walked once...
    scanned: Scanned | None = None
    # ...or, in entries of the earlier JSON record format (field "e"), read into rows.
    legacy_rows: list[StreamRow] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    shard: int = 0
    stream_id: str = ""  # the id in its shard's stream

    @classmethod
    def from_reply(
        cls,
        entry_id: bytes | str,
        fields: dict[bytes, bytes] | None,
        shards: IngestShards | None = None,
        shard: int = 0,
    ) -> StreamEntry:
        stream_id = as_text(entry_id)
        ledger_id = shards.ledger_id(shard, stream_id) if shards is not None else stream_id
        fields = fields or {}
        tuples = fields.get(b"c")
        entry = cls(
            ledger_id,
            fields.get(b"e", b"") if tuples is None else tuples,
            shard=shard,
            stream_id=stream_id,
        )
        try:
            if tuples is None:
                entry.legacy_rows, entry.dead = decode_records(entry.payload)
            else:
                entry.scanned = scan(tuples)
                entry.dead = entry.scanned.dead
        except CorruptRecord as exc:
            # Kept whole as one dead letter: never dropped without a trace.
            entry.dead = [DeadLetter(None, printable(_text_lossy(entry.payload)), str(exc))]
        return entry

    @property
    def rows(self) -> int:
        return len(self.legacy_rows) + (self.scanned.rows if self.scanned else 0)

    @property
    def events(self) -> int:
        return self.rows + len(self.dead)

    def decoded_rows(self) -> list[StreamRow]:
        """Its rows as Python values (live tail, dead letters): what the COPY path skips."""
        if self.scanned is None:
            return self.legacy_rows
        return [decode_row(self.payload, at) for at in self.scanned.starts]

    def refuse(self, reason: str) -> None:
        """PostgreSQL refused the entry: keep all of it as dead letters instead."""
        rows = self.decoded_rows()
        if not rows:
            # Even the dead letters were refused: keep the payload as one.
            self.dead = [DeadLetter(None, _text_lossy(self.payload), reason)]
        self.dead = [*self.dead, *(DeadLetter(r.source_id, r.record_json(), reason) for r in rows)]
        self.scanned, self.legacy_rows = None, []

    @property
    def accepted_at(self) -> float:
        """When the API appended it (the stream id's milliseconds), epoch seconds."""
        return int((self.stream_id or self.entry_id).split("-")[0]) / 1000


@dataclass
class Committed:
    """What a batch's transaction stored: the sources it wrote to, its rows with their
    ids when a live tail listens (None otherwise: the rows went to COPY undecoded)."""

    rows: int
    source_ids: list[int]
    tail: tuple[list[StreamRow], Stored] | None = None


def _text_lossy(data: bytes) -> str:
    return data.decode("utf-8", "backslashreplace")


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Worker:
    """Batch loops over the ingest shards' streams (cache/shards.py): one loop per shard,
    each blocking on its own stream (Redis Cluster cannot block on streams of several
    slots at once); `shards` picks some (default: all)."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        name: str | None = None,
        shards: Sequence[int] | None = None,
    ) -> None:
        self._db = db
        self._settings = settings
        self.name = name or consumer_name()
        self._keys = db.keys
        self._shards = db.keys.shards
        self.shards = tuple(self._shards.all if shards is None else shards)
        self._acks = StreamAcknowledger(db.redis, db.keys)
        self._catalog = SourceCatalog(db.pool, db.redis, db.keys)
        self._next_claim = dict.fromkeys(self.shards, 0.0)
        self._next_housekeeping = 0.0
        self.committed_events = 0

    async def ensure_group(self) -> None:
        for shard in self.shards:
            try:
                # From the start of the stream: entries appended before any worker
                # existed are written too.
                await self._db.redis.xgroup_create(
                    self._keys.ingest_stream(shard), GROUP, id="0", mkstream=True
                )
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def run(self, stop: asyncio.Event) -> None:
        """Until `stop` is set; the batch in hand when it is set is finished first."""
        await self._retry_redis(self.ensure_group, stop)
        log.info("worker_started", consumer=self.name, shards=len(self.shards))
        await asyncio.gather(*(self._run_shard(shard, stop) for shard in self.shards))
        log.info("worker_stopped", consumer=self.name, committed_events=self.committed_events)

    async def _run_shard(self, shard: int, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                # Generation bumps a Redis failure left pending (query_cache.py).
                await self._db.cache.retry_pending_bumps()
                entries = await self._collect(stop, shard=shard)
                if entries:
                    await self.commit(entries, stop)
            except (RedisError, OSError) as exc:
                log.warning("worker_redis_failed", error=str(exc), shard=shard)
                self._db.cache.redis_failed()
                await _sleep_or_stop(stop, 1.0)
            except Exception:  # the worker must outlive any one failure
                # Whatever it was, what is not acknowledged is redelivered: log and go on.
                log.exception("worker_iteration_failed")
                await _sleep_or_stop(stop, 1.0)

    async def _retry_redis(self, action: Any, stop: asyncio.Event) -> None:
        delay = 0.1
        while True:
            try:
                await action()
                return
            except (RedisError, OSError) as exc:
                if stop.is_set():
                    raise
                log.warning("worker_redis_unavailable", error=str(exc))
                await _sleep_or_stop(stop, delay)
                delay = min(MAX_BACKOFF_S, delay * 2)

    # -- reading --------------------------------------------------------------------------

    async def drain(self) -> int:
        """Commit everything waiting in the stream, then return the events committed
        (for tests and benchmarks; `run` is the service loop)."""
        await self.ensure_group()
        before = self.committed_events
        stop = asyncio.Event()
        for shard in self.shards:
            while entries := await self._collect(stop, idle_block_ms=50, shard=shard):
                await self.commit(entries, stop)
        return self.committed_events - before

    async def _collect(
        self, stop: asyncio.Event, idle_block_ms: int = 1000, shard: int = 0
    ) -> list[StreamEntry]:
        """A batch of one shard's stream: up to worker_batch_events events, or what
        arrived within worker_batch_wait_ms of the first one; empty after `idle_block_ms`
        of quiet."""
        s = self._settings
        stream = self._keys.ingest_stream(shard)
        entries: list[StreamEntry] = []
        events = 0
        now = time.monotonic()
        if now >= self._next_claim[shard]:
            self._next_claim[shard] = now + s.worker_claim_idle_ms / 2000
            entries += await self._claim(shard)
            events = sum(e.events for e in entries)
            if now >= self._next_housekeeping:
                self._next_housekeeping = now + 60
                try:
                    await self._housekeeping()
                except Exception as exc:  # noqa: BLE001 - metrics and pruning can wait
                    log.warning("worker_housekeeping_failed", error=f"{type(exc).__name__}: {exc}")
        deadline = None if not entries else now + s.worker_batch_wait_ms / 1000
        while events < s.worker_batch_events and not stop.is_set():
            if deadline is None:
                block_ms = idle_block_ms  # idle: return now and then to notice a stop
            else:
                block_ms = int((deadline - time.monotonic()) * 1000)
                if block_ms <= 0:
                    break
            try:
                reply: Any = await self._db.redis.xreadgroup(
                    GROUP,
                    self.name,
                    {stream: ">"},
                    # Entries hold up to a request's events: near a full batch, take one.
                    count=READ_COUNT if events < s.worker_batch_events // 2 else 1,
                    block=block_ms,
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # The stream was lost (a Redis without persistence restarted): start over.
                log.warning("worker_group_recreated", stream=stream)
                await self.ensure_group()
                continue
            for _stream, items in reply or []:
                for entry_id, fields in items:
                    entry = StreamEntry.from_reply(entry_id, fields, self._shards, shard)
                    entries.append(entry)
                    events += entry.events
            if not entries:
                break
            if deadline is None:
                deadline = time.monotonic() + s.worker_batch_wait_ms / 1000
        return entries

    async def _claim(self, shard: int) -> list[StreamEntry]:
        """Entries other consumers (a crashed worker) held too long without acknowledging."""
        claimed: list[StreamEntry] = []
        start = "0-0"
        while sum(e.events for e in claimed) < self._settings.worker_batch_events:
            try:
                reply: Any = await self._db.redis.xautoclaim(
                    self._keys.ingest_stream(shard),
                    GROUP,
                    self.name,
                    min_idle_time=self._settings.worker_claim_idle_ms,
                    start_id=start,
                    count=READ_COUNT,
                )
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                # The stream was lost (a Redis without persistence restarted, a replica
                # promoted before it had it): start over, nothing is pending any more.
                log.warning("worker_group_recreated", stream=self._keys.ingest_stream(shard))
                await self.ensure_group()
                break
            start = as_text(reply[0])
            claimed += [
                StreamEntry.from_reply(i, f, self._shards, shard)
                for i, f in reply[1]
                if f is not None
            ]
            if start == "0-0":
                break
        if claimed:
            log.info("worker_claimed", entries=len(claimed), consumer=self.name)
        return claimed

    async def _housekeeping(self) -> None:
        redis = self._db.redis
        length = pending_entries = backlog = 0
        for shard in self.shards:
            stream = self._keys.ingest_stream(shard)
            length += await redis.xlen(stream)
            pending: Any = await redis.xpending(stream, GROUP)
            pending_entries += pending["pending"]
            backlog += await self._acks.backlog_bytes(shard)
            for consumer in await redis.xinfo_consumers(stream, GROUP):
                name = as_text(consumer["name"])
                idle_s = consumer["idle"] / 1000
                if name != self.name and consumer["pending"] == 0 and idle_s > IDLE_CONSUMER_S:
                    await redis.xgroup_delconsumer(stream, GROUP, name)
        metrics.INGEST_STREAM_LENGTH.set(length)
        metrics.INGEST_STREAM_PENDING.set(pending_entries)
        metrics.INGEST_BACKLOG_BYTES.set(backlog)
        try:
            async with self._db.pool.acquire() as conn:
                await conn.execute(q("prune_ingest_ledger"), LEDGER_RETENTION_DAYS)
        except TRANSIENT_PG_ERRORS as exc:
            log.warning("ledger_prune_failed", error=str(exc))

    # -- writing --------------------------------------------------------------------------

    async def commit(self, entries: Sequence[StreamEntry], stop: asyncio.Event) -> None:
        """Commit the batch (retrying while PostgreSQL is away), then acknowledge it."""
        delay = 0.1
        give_up_at: float | None = None
        # Rows are decoded (and given ids up front) only for a live tail's items.
        with_items = await self._db.tail.has_listeners()
        while True:
            try:
                committed = await self._commit_once(entries, with_items=with_items)
                break
            except TRANSIENT_PG_ERRORS as exc:
                metrics.WORKER_RETRIES.inc()
                if stop.is_set():
                    give_up_at = give_up_at or time.monotonic() + STOP_GRACE_S
                    if time.monotonic() > give_up_at:
                        # Left pending: another worker (or our restart) claims it.
                        log.error("worker_batch_abandoned", entries=len(entries))
                        return
                log.warning("worker_commit_retry", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(delay)
                delay = min(MAX_BACKOFF_S, delay * 2)
            except asyncpg.PostgresError as exc:
                if not is_about_the_data(exc):
                    # Read-only after a failover, disk full, out of memory, shutting down:
                    # the same batch will go through later.
                    metrics.WORKER_RETRIES.inc()
                    log.warning("worker_commit_retry", error=f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(delay)
                    delay = min(MAX_BACKOFF_S, delay * 2)
                    continue
                if len(entries) > 1:
                    # One bad entry must not hold back the others: commit one by one.
                    for entry in entries:
                        await self.commit([entry], stop)
                    return
                log.error("worker_entry_refused", entry=entries[0].entry_id, error=str(exc))
                # Kept as dead letters instead, whole, in the next attempt's transaction.
                entry = entries[0]
                reason = f"PostgreSQL refused the entry: {type(exc).__name__}: {exc}"[:1000]
                entry.refuse(reason)
                await asyncio.sleep(delay)
                delay = min(MAX_BACKOFF_S, delay * 2)
        try:
            await self._after_commit(entries, committed)
        except Exception as exc:  # noqa: BLE001 - committed already; the rest is best effort
            log.warning("worker_after_commit_failed", error=f"{type(exc).__name__}: {exc}")

    async def _commit_once(
        self, entries: Sequence[StreamEntry], *, with_items: bool = False
    ) -> Committed:
        started = time.perf_counter()
        async with self._db.pool.acquire() as conn, conn.transaction():
            claimed = {
                row["entry_id"]
                for row in await conn.fetch(
                    q("claim_stream_entries"),
                    [e.entry_id for e in entries],
                    [e.events for e in entries],
                )
            }
            mine = [e for e in entries if e.entry_id in claimed]
            committed = await self._copy(conn, mine, with_items=with_items)
            await self._store_dead_letters(conn, mine)
        metrics.WORKER_COPY_SECONDS.observe(time.perf_counter() - started)
        metrics.WORKER_BATCH_EVENTS.observe(committed.rows)
        skipped = len(entries) - len(mine)
        if skipped:
            log.info("worker_skipped_committed", entries=skipped)
        return committed

    @staticmethod
    async def _copy(conn: Conn, entries: Sequence[StreamEntry], *, with_items: bool) -> Committed:
        """COPY the entries' rows: as the API encoded them, or decoded with ids allocated
        when a live tail needs them as items."""
        if with_items:
            rows = [row for e in entries for row in e.decoded_rows()]
            if not rows:
                return Committed(0, [])
            stored = await copy_entries(conn, rows)
            return Committed(len(rows), sorted({r.source_id for r in rows}), (rows, stored))
        legacy = [row for e in entries for row in e.legacy_rows]
        if legacy:
            await copy_entries(conn, legacy)
        runs = [run for e in entries if e.scanned is not None for run in e.scanned.runs]
        counts: Counter[RollupKey] = Counter()
        for e in entries:
            if e.scanned is not None:
                counts.update(e.scanned.counts)
        if runs:
            await copy_encoded_rows(conn, runs, counts)
        sources = {r.source_id for r in legacy} | {source_id for source_id, _, _ in counts}
        return Committed(sum(e.rows for e in entries), sorted(sources))

    async def _store_dead_letters(self, conn: Conn, entries: Sequence[StreamEntry]) -> None:
        dead = [(e.entry_id, d) for e in entries for d in e.dead]
        if not dead:
            return
        await conn.execute(
            q("add_dead_letters"),
            [d.source_id for _, d in dead],
            [entry_id for entry_id, _ in dead],
            [d.reason for _, d in dead],
            [printable(d.raw) for _, d in dead],
        )
        for _, d in dead:
            metrics.INGEST_DEAD_LETTERS.labels(str(d.source_id)).inc()

    async def _after_commit(self, entries: Sequence[StreamEntry], committed: Committed) -> None:
        now = time.time()
        for entry in entries:
            metrics.INGEST_LAG_SECONDS.observe(max(0.0, now - entry.accepted_at))
        source_ids = committed.source_ids
        # Cache generations first: a durable request is answered once its entry left the
        # stream, and a read after that answer must not find a result cached before.
        if source_ids:
            await self._db.cache.invalidate_sources(source_ids)
        for shard in sorted({e.shard for e in entries}):
            acked = [
                (e.stream_id or e.entry_id, len(e.payload)) for e in entries if e.shard == shard
            ]
            try:
                await self._acks.acknowledge(GROUP, acked, shard)
            except RedisError as exc:
                # Committed but not acknowledged: redelivered later, skipped by the ledger.
                log.warning("worker_ack_failed", error=str(exc), shard=shard)
                self._db.cache.redis_failed()
        self.committed_events += committed.rows
        if committed.tail is None:
            return
        rows, stored = committed.tail
        names: dict[int, str] = {}
        for source_id in source_ids:
            source = await self._catalog.get(source_id)
            if source is not None:
                names[source_id] = source.name
        await self._db.tail.publish(entry_items(rows, stored, names))


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
