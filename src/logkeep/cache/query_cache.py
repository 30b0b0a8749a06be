"""Cache-aside for query results that can never serve a result older than a commit.

Each cached result's key embeds the generation counters of the sources the query reads.
Writers bump those counters after their transaction commits; a query that starts after
the bump reads the new counters, builds a new key and misses. A reader that computed its
result before the bump stores it under the old key, which no later reader will build.
Redis failures make the cache step a no-op: the loader runs against PostgreSQL.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from logkeep import metrics
from logkeep.cache.keys import Keys

log = structlog.get_logger(__name__)


def _initial_generation() -> int:
    # A counter that vanished (FLUSHALL, an operator's DEL) restarts from the clock, not
    # from 0, so keys built from earlier generations never become reachable again.
    return time.time_ns()


class QueryCache:
    def __init__(
        self,
        client: aioredis.Redis | None,
        keys: Keys,
        *,
        enabled: bool = True,
        backoff_s: float = 2.0,
    ) -> None:
        self._client = client
        self._keys = keys
        self._enabled = enabled and client is not None
        self._backoff_s = backoff_s
        self._unavailable_until = 0.0
        # Sources whose bump has not reached Redis yet, with the sequence number of the
        # latest commit that needs it. Retried before any cache read, so this process never
        # serves a result it has itself made stale; a bump clears a source only if no newer
        # commit asked for one while it was in flight.
        self._pending_bumps: dict[int, int] = {}
        self._bump_sequence = 0

    def _in_backoff(self) -> bool:
        return time.monotonic() < self._unavailable_until

    def _available(self) -> bool:
        return self._enabled and not self._in_backoff()

    def _mark_unavailable(self, exc: Exception, action: str) -> None:
        self._unavailable_until = time.monotonic() + self._backoff_s
        metrics.CACHE_ERRORS.inc()
        log.warning("cache_unavailable", action=action, error=str(exc))

    def _generation_keys(self, source_ids: Sequence[int] | None) -> list[str]:
        if source_ids is None:
            return [self._keys.all_sources_generation()]
        return [self._keys.source_generation(s) for s in sorted(set(source_ids))]

    async def _generations(self, client: aioredis.Redis, keys: list[str]) -> list[int]:
        values = await client.mget(keys)
        missing = [k for k, v in zip(keys, values, strict=True) if v is None]
        if missing:
            async with client.pipeline(transaction=True) as pipe:
                for key in missing:
                    pipe.set(key, _initial_generation(), nx=True)
                await pipe.execute()
            values = await client.mget(keys)
        return [int(v or 0) for v in values]

    async def get_or_load(
        self,
        kind: str,
        params: dict[str, Any],
        source_ids: Sequence[int] | None,
        ttl_s: int,
        loader: Callable[[], Awaitable[Any]],
    ) -> Any:
        """Return the cached result of `loader`, or run it and cache its result.

        `source_ids` are the sources the query reads; None means all sources.
        """
        client = self._client
        if client is None or not self._available() or not await self._flush_pending_bumps():
            metrics.CACHE_BYPASS.labels(kind).inc()
            return await loader()
        try:
            generations = await self._generations(client, self._generation_keys(source_ids))
            key = self._keys.cached_query(kind, params, generations)
            cached = await client.get(key)
        except RedisError as exc:
            self._mark_unavailable(exc, "read")
            metrics.CACHE_BYPASS.labels(kind).inc()
            return await loader()
        if cached is not None:
            metrics.CACHE_HITS.labels(kind).inc()
            return orjson.loads(cached)
        metrics.CACHE_MISSES.labels(kind).inc()
        started = time.perf_counter()
        result = await loader()
        metrics.CACHE_LOAD_SECONDS.labels(kind).observe(time.perf_counter() - started)
        try:
            await client.set(key, orjson.dumps(result), ex=ttl_s)
        except RedisError as exc:
            self._mark_unavailable(exc, "fill")
        return result

    async def invalidate_sources(self, source_ids: Sequence[int]) -> None:
        """Call after a commit that added entries of these sources."""
        if self._client is None:
            return
        self._bump_sequence += 1
        for source_id in source_ids:
            self._pending_bumps[source_id] = self._bump_sequence
        if not self._in_backoff():  # while Redis is away, writes must not wait for it
            await self._flush_pending_bumps()

    async def _flush_pending_bumps(self) -> bool:
        """Bump pending generations; False if Redis could not be reached."""
        if not self._pending_bumps:
            return True
        client = self._client
        assert client is not None
        pending = dict(self._pending_bumps)
        keys = [*self._generation_keys(list(pending)), self._keys.all_sources_generation()]
        try:
            async with client.pipeline(transaction=True) as pipe:
                for key in keys:
                    pipe.set(key, _initial_generation(), nx=True)
                    pipe.incr(key)
                await pipe.execute()
        except RedisError as exc:
            self._mark_unavailable(exc, "invalidate")
            return False
        for source_id, sequence in pending.items():
            if self._pending_bumps.get(source_id) == sequence:
                del self._pending_bumps[source_id]
        return True
