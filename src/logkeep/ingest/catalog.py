"""Sources as ingest sees them: format and parsing rules from PostgreSQL, cached in Redis
and for a moment in each process.

A change reaches every process within LOCAL_TTL_S: the writer deletes the Redis copy
after its commit (`forget`), and no process trusts its own copy for longer than that.
An edit made behind logkeep's back (SQL in psql) shows within REDIS_TTL_S.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import asyncpg
import orjson
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from logkeep.cache.keys import Keys
from logkeep.db.database import PG_TRANSIENT_ERRORS
from logkeep.db.queries import q
from logkeep.domain.ingest import DEDUP_MODES, SourceRules
from logkeep.domain.parsers import InvalidRules, LineParser, compile_parser
from logkeep.domain.sources import parse_source_ref

log = structlog.get_logger(__name__)

LOCAL_TTL_S = 0.5
REDIS_TTL_S = 30
LOCAL_MAX = 10_000
STORE_ERRORS: tuple[type[Exception], ...] = (
    *PG_TRANSIENT_ERRORS,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


@lru_cache(maxsize=1024)
def _compiled(format_type: str, rules_json: bytes) -> LineParser:
    return compile_parser(format_type, orjson.loads(rules_json))


def _positive_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def source_rules(row: Mapping[str, Any]) -> SourceRules:
    """SourceRules from a log_sources row; rules that do not compile make every line of
    the source a plain-text line with the error in its metadata, not a lost line."""
    rules = row["parsing_rules"] or {}
    try:
        parser = _compiled(row["format_type"], orjson.dumps(rules, option=orjson.OPT_SORT_KEYS))
    except InvalidRules as exc:
        log.warning("source_rules_invalid", source=row["name"], error=str(exc))
        parser = _compiled("text", b"{}")
    configuration = row["configuration"] or {}
    return SourceRules(
        id=row["id"],
        name=row["name"],
        is_active=row["is_active"],
        format_type=row["format_type"],
        parser=parser,
        rate_limit_eps=_positive_int(configuration.get("rate_limit_eps")),
        rate_limit_burst=_positive_int(configuration.get("rate_limit_burst")),
        dedup=next((m for m in DEDUP_MODES if m == configuration.get("dedup")), "content"),
    )


class SourceCatalog:
    def __init__(self, pool: asyncpg.Pool, client: aioredis.Redis | None, keys: Keys) -> None:
        self._pool = pool
        self._client = client
        self._keys = keys
        self._local: dict[int | str, tuple[float, SourceRules | None]] = {}

    async def get(self, ref: str | int) -> SourceRules | None:
        """The source with this id or name (active or not), or None if there is none."""
        parsed = parse_source_ref(ref)
        if parsed is None:
            return None
        now = time.monotonic()
        hit = self._local.get(parsed)
        if hit is not None and hit[0] > now:
            return hit[1]
        try:
            row = await self._load(parsed)
        except STORE_ERRORS as exc:
            if hit is None:
                raise
            # PostgreSQL away: ingest goes on with the rules last seen (the stream buffers
            # until the backlog bound); they are re-read once it answers again.
            log.warning("source_rules_stale", source=str(parsed), error=str(exc))
            self._local[parsed] = (now + LOCAL_TTL_S, hit[1])
            return hit[1]
        found = None if row is None else source_rules(row)
        if len(self._local) >= LOCAL_MAX:
            # Forget the oldest half rather than everything (dicts keep insertion order).
            for stale in list(self._local)[: LOCAL_MAX // 2]:
                del self._local[stale]
        self._local[parsed] = (now + LOCAL_TTL_S, found)
        return found

    async def _load(self, ref: int | str) -> dict[str, Any] | None:
        key = self._keys.source_rules(ref) if isinstance(ref, int) else None
        name_key = None if key else self._keys.source_rules_by_name(str(ref))
        if self._client is not None:
            try:
                cached = await self._client.get(key or name_key or "")
                if cached is not None:
                    row: dict[str, Any] = orjson.loads(cached)
                    return row
            except RedisError as exc:
                log.warning("source_cache_unavailable", error=str(exc))
        async with self._pool.acquire() as conn:
            record = await (
                conn.fetchrow(q("source_rules_by_id"), ref)
                if isinstance(ref, int)
                else conn.fetchrow(q("source_rules_by_name"), ref)
            )
        if record is None:
            return None
        row = dict(record)
        if self._client is not None:
            try:
                encoded = orjson.dumps(row)
                async with self._client.pipeline(transaction=False) as pipe:
                    for key in self._keys.source_rules_copies(row["id"], row["name"]):
                        pipe.set(key, encoded, ex=REDIS_TTL_S)
                    await pipe.execute()
            except RedisError as exc:
                log.warning("source_cache_unavailable", error=str(exc))
        return row
