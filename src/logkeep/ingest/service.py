"""The producer side of ingest: lines and events become entries (parsed by their source's
rules), then pass rate limits and dedup into the ingest stream in one Redis call."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from logkeep import metrics
from logkeep.cache.ingest_buffer import (
    BacklogFull,
    DedupWindow,
    IngestBuffer,
    RateLimit,
    RateLimited,
    stream_position,
)
from logkeep.cache.keys import Keys
from logkeep.cache.replies import as_text
from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.db.queries import q
from logkeep.domain.entry import EntryLimits, InvalidLogEntry
from logkeep.domain.ingest import (
    Prepared,
    Rejection,
    SourceRules,
    encode_dead_letter,
    entry_from_event,
    entry_from_line,
    event_source_ref,
)
from logkeep.ingest.catalog import SourceCatalog

log = structlog.get_logger(__name__)

MAX_REPORTED_REJECTIONS = 100
# Each distinct source costs a lookup: a request naming thousands is refused past this.
MAX_SOURCES_PER_REQUEST = 100
IDEMPOTENCY_TTL_S = 24 * 3600
# A source by name or id, or InvalidLogEntry saying why there is none to write.
SourceResolver = Callable[[str | int], Awaitable[SourceRules]]


@dataclass
class Batch:
    """A request's events, prepared: stream records and what became of each line."""

    records: list[bytes] = field(default_factory=list)
    fingerprints: list[bytes | None] = field(default_factory=list)
    record_sources: list[str] = field(default_factory=list)
    record_source_ids: list[int | None] = field(default_factory=list)  # its ingest shard
    record_outcomes: list[str] = field(default_factory=list)  # if not a duplicate
    rejected: list[Rejection] = field(default_factory=list)
    rejected_by_source: Counter[str] = field(default_factory=Counter)
    events_by_source: dict[int, tuple[SourceRules, int]] = field(default_factory=dict)

    def add(self, prepared: Prepared, source: SourceRules) -> None:
        self.records.append(prepared.record)
        self.fingerprints.append(prepared.fingerprint)
        self.record_sources.append(source.name)
        self.record_source_ids.append(source.id)
        self.record_outcomes.append("accepted")
        _, count = self.events_by_source.get(source.id, (source, 0))
        self.events_by_source[source.id] = (source, count + 1)

    @property
    def dead_letters(self) -> int:
        return self.record_outcomes.count("dead_letter")

    def reject(self, line: int, reason: str, source: str = "unknown") -> None:
        self.rejected.append(Rejection(line, reason))
        self.rejected_by_source[source] += 1

    def add_dead_letter(self, source: SourceRules | None, raw: str, reason: str) -> None:
        """Keep a line that cannot be an entry (where no client can be told: syslog)."""
        self.records.append(encode_dead_letter(source.id if source else None, raw, reason))
        self.fingerprints.append(None)
        self.record_sources.append(source.name if source else "unknown")
        self.record_source_ids.append(source.id if source else None)
        self.record_outcomes.append("dead_letter")


@dataclass(frozen=True)
class IngestResult:
    accepted: int
    duplicates: int
    rejected: list[Rejection]
    entry_id: str
    committed: bool
    replayed: bool = False
    # 0-based positions among the batch's records (Elasticsearch answers per document).
    duplicate_positions: frozenset[int] = frozenset()

    def as_json(self) -> dict[str, Any]:
        shown = self.rejected[:MAX_REPORTED_REJECTIONS]
        body: dict[str, Any] = {
            "accepted": self.accepted,
            "duplicates": self.duplicates,
            "rejected": len(self.rejected),
            "errors": [{"line": r.line, "reason": r.reason} for r in shown],
            "committed": self.committed,
        }
        if len(self.rejected) > len(shown):
            body["errors_truncated"] = len(self.rejected) - len(shown)
        if self.replayed:
            body["replayed"] = True
        return body


class CommitTimeout(Exception):
    """A durable request's events are buffered but were not committed in time."""


class CommitWaiter:
    """Durable mode: a request is committed once each of its horizons (per ingest shard,
    the newest stream entry when it was appended: its own entry, or the newest one before
    it when all its events there were duplicates) is in the ledger, and no entry up to
    the horizon is left in that shard's stream.

    The ledger is PostgreSQL's word, so an entry Redis lost (AOF everysec, kill -9, a
    failover) is never reported committed; the empty prefix covers earlier entries that
    hold the originals of this request's duplicates (workers delete entries after
    commit). One poller per process checks all waiting requests with one query and one
    read per shard."""

    POLL_S = 0.02

    def __init__(self, client: aioredis.Redis, keys: Keys, pool: asyncpg.Pool) -> None:
        self._client = client
        self._keys = keys
        self._pool = pool
        self._waiting: list[tuple[str, asyncio.Future[None]]] = []
        self._poller: asyncio.Task[None] | None = None

    async def wait(self, horizons: Iterable[str], timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        waiters = [(h, loop.create_future()) for h in horizons]
        self._waiting += waiters
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll())
        try:
            await asyncio.wait_for(asyncio.gather(*(f for _, f in waiters)), timeout_s)
        except TimeoutError:
            raise CommitTimeout(",".join(h for h, _ in waiters)) from None
        finally:
            for waiter in waiters:
                self._waiting.remove(waiter)

    async def _poll(self) -> None:
        shards = self._keys.shards
        while self._waiting:
            await asyncio.sleep(self.POLL_S)
            horizons = sorted({h for h, f in self._waiting if not f.done()})
            streams = sorted({shards.parse_ledger_id(h)[0] for h in horizons})
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    for shard in streams:
                        pipe.xrange(self._keys.ingest_stream(shard), count=1)
                    oldest: list[Any] = await pipe.execute()
                async with self._pool.acquire() as conn:
                    rows = await conn.fetch(q("committed_stream_entries"), horizons)
            except (RedisError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("commit_poll_failed", error=str(exc))
                await asyncio.sleep(0.5)
                continue
            first = {
                shard: stream_position(as_text(entries[0][0])) if entries else None
                for shard, entries in zip(streams, oldest, strict=True)
            }
            in_ledger = {row["entry_id"] for row in rows}
            for horizon, future in self._waiting:
                shard, stream_id = shards.parse_ledger_id(horizon)
                left = first.get(shard)
                done = horizon in in_ledger and (left is None or left > stream_position(stream_id))
                if done and not future.done():
                    future.set_result(None)

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller


class IngestService:
    def __init__(
        self,
        settings: Settings,
        catalog: SourceCatalog,
        buffer: IngestBuffer,
        waiter: CommitWaiter,
        limits: EntryLimits,
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._buffer = buffer
        self._waiter = waiter
        self._limits = limits

    @property
    def catalog(self) -> SourceCatalog:
        return self._catalog

    async def close(self) -> None:
        await self._waiter.close()

    async def active_source(
        self, ref: str | int, allowed: frozenset[int] | None = None
    ) -> SourceRules:
        """The source, which must exist, be active and be among `allowed` (None: any);
        InvalidLogEntry otherwise."""
        source = await self._catalog.get(ref)
        if source is None:
            raise InvalidLogEntry("source", f"no source named or numbered {str(ref)[:64]!r}")
        if not source.is_active:
            raise InvalidLogEntry("source", f"source {source.name!r} is inactive")
        if allowed is not None and source.id not in allowed:
            raise InvalidLogEntry("source", f"source {source.name!r} is not granted to this key")
        return source

    async def prepare_events(
        self,
        events: Iterable[tuple[int, Any]],
        default_source: str | None,
        *,
        allowed: frozenset[int] | None,
        parse_message: bool = False,
        resolve: SourceResolver | None = None,
    ) -> Batch:
        """JSON events, numbered by line (NDJSON) or position (array); an event given as
        an InvalidLogEntry (a line that is not JSON) is rejected with its reason.
        `resolve` finds a source by name instead of `active_source` (shippers' protocols
        create sources on first use through it: ingest/first_use.py)."""
        batch = Batch()
        now = datetime.now(UTC)
        # A request names few sources: look each up once, not once per event.
        found: dict[str | int, SourceRules | InvalidLogEntry] = {}
        for number, event in events:
            source_name = "unknown"
            try:
                if isinstance(event, InvalidLogEntry):
                    raise event
                ref = event_source_ref(event, default_source)
                if ref not in found:
                    if len(found) >= MAX_SOURCES_PER_REQUEST:
                        batch.reject(number, "source: too many distinct sources in one request")
                        continue
                    try:
                        found[ref] = await (
                            self.active_source(ref, allowed) if resolve is None else resolve(ref)
                        )
                    except InvalidLogEntry as exc:
                        found[ref] = exc
                source = found[ref]
                if isinstance(source, InvalidLogEntry):
                    batch.reject(number, str(source))
                    continue
                source_name = source.name
                prepared = entry_from_event(
                    event, source, parse_message=parse_message, limits=self._limits, now=now
                )
            except InvalidLogEntry as exc:
                batch.reject(number, str(exc), source_name)
                continue
            batch.add(prepared, source)
        return batch

    def prepare_lines(
        self,
        lines: Iterable[tuple[int, str | InvalidLogEntry]],
        source: SourceRules,
        *,
        dead_letter: bool = False,
    ) -> Batch:
        """Raw lines of one source, parsed by its rules. A line given as an error (it
        could not even be decoded) is rejected, or kept as a dead letter."""
        batch = Batch()
        now = datetime.now(UTC)
        for number, line in lines:
            try:
                if isinstance(line, InvalidLogEntry):
                    raise line
                prepared = entry_from_line(line, source, limits=self._limits, now=now)
            except InvalidLogEntry as exc:
                if dead_letter:
                    raw = line if isinstance(line, str) else ""
                    batch.add_dead_letter(source, raw, str(exc))
                else:
                    batch.reject(number, str(exc), source.name)
                continue
            batch.add(prepared, source)
        return batch

    def _rate_limits(self, batch: Batch, client: str | None) -> list[RateLimit]:
        s = self._settings
        limits: list[RateLimit] = []
        for source, count in batch.events_by_source.values():
            eps = source.rate_limit_eps or s.rate_limit_source_eps
            if eps:
                burst = source.rate_limit_burst or s.rate_limit_source_burst
                limits.append(RateLimit("source", str(source.id), eps, burst, count))
        if client is not None and s.rate_limit_client_eps and batch.records:
            limits.append(
                RateLimit(
                    "client",
                    client,
                    s.rate_limit_client_eps,
                    s.rate_limit_client_burst,
                    len(batch.records),
                )
            )
        return limits

    async def submit(
        self,
        batch: Batch,
        *,
        client: str | None = None,
        idempotency_key: str | None = None,
        durable: bool = False,
    ) -> IngestResult:
        """Buffer the batch; with `durable`, return only once PostgreSQL committed it.
        Raises RateLimited, BacklogFull, CommitTimeout, or a Redis error."""
        for name, count in batch.rejected_by_source.items():
            metrics.INGEST_EVENTS.labels(name, "rejected").inc(count)
        if not batch.records and idempotency_key is None:
            return IngestResult(0, 0, batch.rejected, "", committed=True)
        try:
            appended = await self._buffer.append(
                batch.records,
                batch.fingerprints,
                self._rate_limits(batch, client),
                source_ids=batch.record_source_ids,
                idempotency_key=idempotency_key,
                idempotency_ttl_s=IDEMPOTENCY_TTL_S,
                client=client or "",
            )
        except RateLimited:
            self._count(batch, "rate_limited")
            raise
        except BacklogFull:
            self._count(batch, "backlog_full")
            raise
        # Counted per (source, outcome) pair in C, then the few duplicates moved over.
        outcomes = Counter(zip(batch.record_sources, batch.record_outcomes, strict=True))
        for i in appended.duplicate_positions:
            outcomes[batch.record_sources[i], batch.record_outcomes[i]] -= 1
            outcomes[batch.record_sources[i], "duplicate"] += 1
        for (name, outcome), count in outcomes.items():  # one update per pair, not per event
            if count:
                metrics.INGEST_EVENTS.labels(name, outcome).inc(count)
        committed = not appended.horizons
        if durable and appended.horizons:
            started = time.monotonic()
            await self._waiter.wait(appended.horizons, self._settings.ingest_durable_timeout_s)
            log.debug("durable_commit_waited", seconds=round(time.monotonic() - started, 3))
            committed = True
        return IngestResult(
            accepted=max(0, appended.kept - batch.dead_letters),
            duplicates=len(appended.duplicate_positions),
            rejected=batch.rejected,
            entry_id=appended.entry_id,
            committed=committed,
            replayed=appended.replayed,
            duplicate_positions=appended.duplicate_positions,
        )

    @staticmethod
    def _count(batch: Batch, outcome: str) -> None:
        for name, count in Counter(batch.record_sources).items():
            metrics.INGEST_EVENTS.labels(name, outcome).inc(count)


def entry_limits(settings: Settings) -> EntryLimits:
    return EntryLimits(
        max_age=timedelta(days=settings.entry_max_age_days),
        max_future=timedelta(seconds=settings.max_entry_future_s),
    )


def ingest_service(db: Database, settings: Settings) -> IngestService:
    """The ingest service of a process, on its initialised Database."""
    return IngestService(
        settings,
        SourceCatalog(db.pool, db.redis, db.keys),
        IngestBuffer(
            db.ingest_client,
            db.keys,
            dedup=DedupWindow(settings.dedup_window_s),
            max_backlog_bytes=settings.ingest_max_backlog_bytes,
        ),
        CommitWaiter(db.redis, db.keys, db.pool),
        entry_limits(settings),
    )
