"""Repositories: the questions the product asks of PostgreSQL, behind named SQL."""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import asyncpg
import bcrypt
import redis.asyncio as aioredis
import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from redis.exceptions import RedisError

from logkeep import metrics
from logkeep.cache.keys import Keys
from logkeep.cache.query_cache import QueryCache
from logkeep.cache.tail import TailBuffer
from logkeep.db.queries import q
from logkeep.db.replicas import ReadSource
from logkeep.db.types import Conn
from logkeep.domain.chunks import from_micros
from logkeep.domain.entry import DEFAULT_LIMITS, EntryLimits, InvalidLogEntry, Level, LogEntry
from logkeep.domain.rollup import Countable, MinuteKey, as_columns, minute_counts
from logkeep.domain.sources import parse_source_ref
from logkeep.domain.stream_rows import COPY_COLUMNS as ROW_COLUMNS
from logkeep.domain.stream_rows import RollupKey, copy_data

ENTRY_FIELDS = frozenset({"message", "source_id", "level", "metadata", "timestamp"})
COPY_COLUMNS = ["id", "source_id", "timestamp", "level", "message", "metadata"]
MAX_RECENT_LIMIT = 1000
# How long a process trusts a source lookup: a renamed or deactivated source is seen
# everywhere within this time.
RESOLVE_TTL_S = 1.0
RESOLVE_CACHE_MAX = 10_000
BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")
MAX_CONCURRENT_VERIFICATIONS = 4
USERNAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # the CHECK on users.username

log = structlog.get_logger(__name__)


class UnknownSource(ValueError):
    """An entry names a source that does not exist or is inactive."""


@asynccontextmanager
async def timed(query_name: str) -> AsyncIterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        metrics.QUERY_SECONDS.labels(query_name).observe(time.perf_counter() - started)


def _json_ready(row: Mapping[str, Any] | asyncpg.Record) -> dict[str, Any]:
    """A row as JSON types, so fresh and cached answers are identical."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        out[key] = value.isoformat() if isinstance(value, datetime) else value
    return out


def entry_from_mapping(data: Mapping[str, Any] | LogEntry, limits: EntryLimits) -> LogEntry:
    if isinstance(data, LogEntry):
        return data
    if not isinstance(data, Mapping):
        raise InvalidLogEntry("entry", f"must be an object, got {type(data).__name__}")
    unknown = set(data) - ENTRY_FIELDS
    if unknown:
        raise InvalidLogEntry("entry", f"unknown field(s): {', '.join(sorted(unknown))}")
    if "message" not in data or "source_id" not in data:
        raise InvalidLogEntry("entry", "message and source_id are required")
    return LogEntry(
        data["message"],
        data["source_id"],
        level=data.get("level") or Level.INFO,
        metadata=data.get("metadata"),
        timestamp=data.get("timestamp"),
        limits=limits,
    )


@dataclass(frozen=True, slots=True)
class Stored:
    """Entries as committed: their ids and ingestion time."""

    ids: list[int]
    ingested_at: datetime


class Row(Countable, Protocol):
    """An entry ready to store: a LogEntry, or a row read back from the ingest stream."""

    @property
    def message(self) -> str: ...
    @property
    def metadata(self) -> Mapping[str, Any]: ...
    def copy_record(self) -> tuple[int, datetime, str, str, bytes]: ...


async def copy_entries(conn: Conn, entries: Sequence[Row]) -> Stored:
    """COPY entries and add their rollups; the caller owns the transaction."""
    allocated = await conn.fetchrow(q("allocate_entry_ids"), len(entries))
    assert allocated is not None  # a SELECT without FROM returns one row
    ids: list[int] = allocated["ids"]
    await conn.copy_records_to_table(
        "log_entries",
        records=[(i, *e.copy_record()) for i, e in zip(ids, entries, strict=True)],
        columns=COPY_COLUMNS,
    )
    await conn.execute(q("add_minute_counts"), *as_columns(minute_counts(entries)))
    return Stored(ids, allocated["ingested_at"])


async def copy_encoded_rows(
    conn: Conn, runs: Sequence[memoryview | bytes], counts: Counter[RollupKey]
) -> None:
    """COPY rows the API encoded as COPY tuples (domain/stream_rows.py) as they are, ids
    from the column's default, and add their rollups; the caller owns the transaction."""
    await conn.copy_to_table(
        "log_entries",
        # A buffer (bytes would be taken for a file name); the stub omits buffers.
        source=memoryview(copy_data(runs)),  # type: ignore[arg-type]
        columns=ROW_COLUMNS,
        format="binary",
    )
    minutes: Counter[MinuteKey] = Counter(
        {(source, from_micros(minute), level): n for (source, minute, level), n in counts.items()}
    )
    await conn.execute(q("add_minute_counts"), *as_columns(minutes))


def entry_items(
    entries: Sequence[Row], stored: Stored, source_names: Mapping[int, str]
) -> list[dict[str, Any]]:
    """Committed entries in the API's item shape (for live tail)."""
    ingested_at = stored.ingested_at.isoformat()
    return [
        {
            "id": entry_id,
            "source_id": e.source_id,
            "source": source_names.get(e.source_id, str(e.source_id)),
            "timestamp": e.timestamp.isoformat(),
            "level": str(e.level),
            "message": e.message,
            "metadata": dict(e.metadata),
            "ingested_at": ingested_at,
        }
        for entry_id, e in zip(stored.ids, entries, strict=True)
    ]


class LogRepository:
    """Writes entries (with their rollups) and answers the recent-entries questions."""

    def __init__(
        self,
        pg_pool: asyncpg.Pool,
        redis_client: aioredis.Redis | None = None,
        *,
        cache: QueryCache | None = None,
        tail: TailBuffer | None = None,
        limits: EntryLimits = DEFAULT_LIMITS,
        ttl_recent_s: int = 30,
        ttl_summary_s: int = 60,
        reads: ReadSource | None = None,
    ) -> None:
        self._pool = pg_pool
        self._reads: ReadSource = reads or pg_pool  # replicas may answer the reads
        self._cache = cache or QueryCache(redis_client, Keys())
        self._tail = tail
        self._limits = limits
        self._ttl_recent_s = ttl_recent_s
        self._ttl_summary_s = ttl_summary_s

    # -- writes ---------------------------------------------------------------------------

    async def _check_sources(self, conn: Conn, source_ids: set[int]) -> dict[int, str]:
        """Names of the sources, all of which must exist and be active."""
        rows = await conn.fetch(
            "SELECT id, name FROM log_sources WHERE id = ANY($1::integer[]) AND is_active",
            sorted(source_ids),
        )
        names: dict[int, str] = {row["id"]: row["name"] for row in rows}
        missing = source_ids - set(names)
        if missing:
            raise UnknownSource(
                "source_id: no active source with id " + ", ".join(map(str, sorted(missing)))
            )
        return names

    async def _after_commit(
        self, entries: Sequence[LogEntry], stored: Stored, names: Mapping[int, str]
    ) -> None:
        # Invalidate first: a reader must never find the tail ahead of the cache.
        await self._cache.invalidate_sources(sorted(names))
        if self._tail is not None:
            await self._tail.publish(entry_items(entries, stored, names))

    async def save_log_entry(self, entry: Mapping[str, Any] | LogEntry) -> int:
        """Validate and store one entry; it is committed when this returns its id."""
        valid = entry_from_mapping(entry, self._limits)
        async with (
            timed("insert_log_entry"),
            self._pool.acquire() as conn,
            conn.transaction(),
        ):
            names = await self._check_sources(conn, {valid.source_id})
            row = await conn.fetchrow(q("insert_log_entry"), *valid.copy_record())
            assert row is not None  # INSERT ... RETURNING returns the row or raises
            await conn.execute(q("add_minute_counts"), *as_columns(minute_counts([valid])))
            stored = Stored([row["id"]], row["ingested_at"])
        await self._after_commit([valid], stored, names)
        return stored.ids[0]

    async def save_many(self, entries: Iterable[Mapping[str, Any] | LogEntry]) -> int:
        """Validate every entry, then COPY them all in one transaction: all or nothing."""
        valid: list[LogEntry] = []
        for index, item in enumerate(entries):
            try:
                valid.append(entry_from_mapping(item, self._limits))
            except InvalidLogEntry as exc:
                raise InvalidLogEntry(f"entries[{index}].{exc.field}", exc.reason) from None
        if not valid:
            return 0
        source_ids = {e.source_id for e in valid}
        async with (
            timed("copy_log_entries"),
            self._pool.acquire() as conn,
            conn.transaction(),
        ):
            names = await self._check_sources(conn, source_ids)
            stored = await copy_entries(conn, valid)
        await self._after_commit(valid, stored, names)
        return len(valid)

    # -- reads ----------------------------------------------------------------------------

    async def get_recent_logs(
        self,
        limit: int = 100,
        source_id: int | None = None,
        level: Level | str | None = None,
        *,
        source_ids: list[int] | None = None,
    ) -> list[dict[str, Any]]:
        """Newest entries first, optionally of one source (or of some) and one level."""
        if source_id is not None:
            source_ids = [source_id]
        if (
            isinstance(limit, bool)
            or not isinstance(limit, int)
            or not (1 <= limit <= MAX_RECENT_LIMIT)
        ):
            raise ValueError(f"limit must be an integer from 1 to {MAX_RECENT_LIMIT}")
        level_value = None if level is None else Level.parse(level).value
        sources = None if source_ids is None else sorted(set(source_ids))
        params = {"limit": limit, "source_ids": sources, "level": level_value}

        async def load() -> list[dict[str, Any]]:
            from logkeep.db import tiers  # tiers reads through this module's helpers

            flt = tiers.EventFilter(
                tiers.EVERY_INSTANT,
                source_ids=None if sources is None else tuple(sources),
                levels=None if level_value is None else (level_value,),
            )
            async with (
                timed("recent_logs"),
                self._reads.acquire() as conn,
                conn.transaction(readonly=True, isolation="repeatable_read"),
            ):
                events = await tiers.first(conn, flt, limit)
                names = {
                    r["id"]: r["name"] for r in await conn.fetch("SELECT id, name FROM log_sources")
                }
            return [
                _json_ready(
                    {
                        "id": e.id,
                        "source_id": e.source_id,
                        "source": names.get(e.source_id, str(e.source_id)),
                        "timestamp": e.timestamp,
                        "level": e.level,
                        "message": e.message,
                        "metadata": e.metadata,
                        "ingested_at": e.ingested_at,
                    }
                )
                for e in events
            ]

        result: list[dict[str, Any]] = await self._cache.get_or_load(
            "recent", params, sources, self._ttl_recent_s, load
        )
        return result

    async def get_error_summary(self, hours: int = 24) -> dict[str, Any]:
        """Per source over the last `hours`: entries, errors, fatals and error rate."""
        if isinstance(hours, bool) or not isinstance(hours, int) or not (1 <= hours <= 24 * 366):
            raise ValueError("hours must be an integer from 1 to 8784")

        async def load() -> dict[str, Any]:
            since = (datetime.now(UTC) - timedelta(hours=hours)).replace(second=0, microsecond=0)
            async with timed("error_summary"), self._reads.acquire() as conn:
                rows = await conn.fetch(q("error_summary"), since)
            sources = []
            for row in rows:
                item = _json_ready(row)
                failures, total = item["errors"] + item["fatal"], item["total"]
                item["error_rate"] = round(failures / total, 6) if total else 0.0
                sources.append(item)
            return {"hours": hours, "since": since.isoformat(), "sources": sources}

        result: dict[str, Any] = await self._cache.get_or_load(
            "error_summary", {"hours": hours}, None, self._ttl_summary_s, load
        )
        return result


class SourceRepository:
    """Log sources and their parsing rules. Changes drop the Redis copy ingest reads
    rules from, so they reach every process within a second."""

    def __init__(
        self,
        pg_pool: asyncpg.Pool,
        redis_client: aioredis.Redis | None = None,
        keys: Keys | None = None,
    ) -> None:
        self._pool = pg_pool
        self._redis = redis_client
        self._keys = keys or Keys()
        self._resolved: dict[int | str, tuple[float, dict[str, Any]]] = {}

    async def _changed(self, row: asyncpg.Record | None) -> dict[str, Any] | None:
        if row is None:
            return None
        source = dict(row)
        if self._redis is not None:
            try:
                await self._redis.delete(
                    *self._keys.source_rules_copies(source["id"], source["name"])
                )
            except RedisError as exc:
                # The cached copy expires by itself (ingest.catalog.REDIS_TTL_S).
                log.warning("source_cache_forget_failed", error=str(exc))
        return source

    async def create(
        self,
        name: str,
        *,
        source_type: str,
        format_type: str,
        description: str = "",
        parsing_rules: Mapping[str, Any] | None = None,
        configuration: Mapping[str, Any] | None = None,
        is_active: bool = True,
    ) -> dict[str, Any]:
        async with timed("insert_source"), self._pool.acquire() as conn:
            row = await conn.fetchrow(
                q("insert_source"),
                name,
                description,
                source_type,
                format_type,
                dict(parsing_rules or {}),
                dict(configuration or {}),
                is_active,
            )
        assert row is not None  # INSERT ... RETURNING returns the row or raises
        return dict(row)

    async def get(self, source_id: int) -> dict[str, Any] | None:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(q("source_by_id"), source_id)
        return None if row is None else dict(row)

    async def get_by_name(self, name: str) -> dict[str, Any] | None:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(q("source_by_name"), name)
        return None if row is None else dict(row)

    async def resolve(self, name_or_id: str | int) -> dict[str, Any] | None:
        """A source by id (an int or a string of digits) or by name; None if none.

        Found sources are remembered for RESOLVE_TTL_S: every query names its sources,
        and a round trip per name per request is most of a cached query's time."""
        ref = parse_source_ref(name_or_id)
        if ref is None:
            return None
        now = time.monotonic()
        remembered = self._resolved.get(ref)
        if remembered is not None and remembered[0] > now:
            return remembered[1]
        found = await (self.get(ref) if isinstance(ref, int) else self.get_by_name(ref))
        if found is not None:
            if len(self._resolved) > RESOLVE_CACHE_MAX:
                self._resolved.clear()
            self._resolved[ref] = (now + RESOLVE_TTL_S, found)
        return found

    async def list(self, *, active_only: bool = True) -> list[dict[str, Any]]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(q("list_sources"), active_only)
        return [dict(row) for row in rows]

    async def update_rules(
        self, source_id: int, parsing_rules: Mapping[str, Any], format_type: str | None = None
    ) -> dict[str, Any] | None:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                q("update_source_rules"), source_id, dict(parsing_rules), format_type
            )
        return await self._changed(row)

    async def set_active(self, source_id: int, active: bool) -> dict[str, Any] | None:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(q("set_source_active"), source_id, active)
        return await self._changed(row)

    async def update(
        self,
        source_id: int,
        *,
        format_type: str | None = None,
        parsing_rules: Mapping[str, Any] | None = None,
        description: str | None = None,
    ) -> dict[str, Any] | None:
        """Change what is given (None keeps it), in one statement; None if no such source."""
        rules = None if parsing_rules is None else dict(parsing_rules)
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(
                q("update_source"), source_id, format_type, rules, description
            )
        return await self._changed(row)


class UserRepository:
    """Users, with argon2id password hashes."""

    def __init__(self, pg_pool: asyncpg.Pool, hasher: PasswordHasher | None = None) -> None:
        self._pool = pg_pool
        self._hasher = hasher or PasswordHasher()
        # Verified against when the user is unknown, so both failures cost the same time.
        # Made on the first login, not at start-up: an argon2 hash takes tens of ms.
        self._dummy_hash: str | None = None
        self._verifying = asyncio.Semaphore(MAX_CONCURRENT_VERIFICATIONS)

    def _verify(self, stored: str, password: str) -> bool:
        """argon2id hashes, and the bcrypt hashes of older seeds (rehashed on login)."""
        if stored.startswith(BCRYPT_PREFIXES):
            encoded = password.encode("utf-8", "surrogatepass")
            # bcrypt reads at most 72 bytes; longer passwords never matched such hashes.
            return len(encoded) <= 72 and bcrypt.checkpw(encoded, stored.encode())
        try:
            return bool(self._hasher.verify(stored, password))
        except (VerificationError, InvalidHashError):
            return False

    async def set_password(self, user_id: int, password: str) -> bool:
        password_hash = await asyncio.to_thread(self.hash_password, password)
        async with self._pool.acquire() as conn:
            status = await conn.execute(q("update_password_hash"), user_id, password_hash)
        return status.endswith(" 1")

    def hash_password(self, password: str) -> str:
        if not password:
            raise ValueError("password must not be empty")
        return self._hasher.hash(password)

    async def create(
        self, username: str, email: str, password: str, role: str = "viewer"
    ) -> dict[str, Any]:
        password_hash = self.hash_password(password)
        async with timed("insert_user"), self._pool.acquire() as conn:
            row = await conn.fetchrow(q("insert_user"), username, email, password_hash, role)
        assert row is not None  # INSERT ... RETURNING returns the row or raises
        return dict(row)

    async def create_if_missing(
        self, username: str, email: str, password: str, role: str
    ) -> int | None:
        """Create the user unless the username or email exists; the new id, or None."""
        password_hash = self.hash_password(password)
        async with self._pool.acquire() as conn:
            user_id: int | None = await conn.fetchval(
                q("insert_user_if_missing"), username, email, password_hash, role
            )
        return user_id

    async def get(self, user_id: int) -> dict[str, Any] | None:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(q("user_by_id"), user_id)
        return None if row is None else dict(row)

    async def get_by_username(self, username: str) -> dict[str, Any] | None:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(q("user_by_username"), username)
        if row is None:
            return None
        user = dict(row)
        user.pop("password_hash")
        return user

    async def list(self) -> list[dict[str, Any]]:
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(q("list_users"))
        return [dict(row) for row in rows]

    async def authenticate(self, username: str, password: str) -> dict[str, Any] | None:
        """The user if the password matches and the account is active, else None."""
        row = None
        if USERNAME.fullmatch(username):  # anything else (NUL bytes...) names nobody
            async with self._pool.acquire() as conn:
                row = await conn.fetchrow(q("user_by_username"), username)
        if row is None and self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(self._hasher.hash, "timing-equaliser")
        stored = row["password_hash"] if row is not None else self._dummy_hash
        assert stored is not None
        # argon2 and bcrypt take tens of milliseconds of CPU and argon2 64 MiB: off the
        # event loop, and a few at a time, so a flood of logins cannot exhaust memory.
        async with self._verifying:
            if not await asyncio.to_thread(self._verify, stored, password):
                return None
        if row is None or not row["is_active"]:
            return None
        async with self._pool.acquire() as conn:
            last_login = await conn.fetchval(q("record_login"), row["id"])
            if stored.startswith(BCRYPT_PREFIXES) or self._hasher.check_needs_rehash(stored):
                new_hash = await asyncio.to_thread(self._hasher.hash, password)
                await conn.execute(q("update_password_hash"), row["id"], new_hash)
        user = dict(row)
        user.pop("password_hash")
        user["last_login"] = last_login
        return user
