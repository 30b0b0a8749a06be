"""Cache-aside for query results that can never serve a result older than a commit.

Each cached result's key embeds the generation counters of the sources the query reads.
Writers bump those counters after their transaction commits; a query that starts after
the bump reads the new counters, builds a new key and misses. A reader that computed its
result before the bump stores it under the old key, which no later reader will build.
Redis failures make the cache step a no-op: the loader runs against PostgreSQL.

Every Redis operation here is on one key at a time (pipelined), so on Redis Cluster the
counters and results spread over the slots (cache/keys.py says why that is safe).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from logkeep import metrics
from logkeep.cache.keys import Keys
from logkeep.domain import exactjson

log = structlog.get_logger(__name__)


# Stampede protection: the first process to miss a key loads it; others poll for its
# result for at most LOCK_WAIT_S, then load it themselves (the loader may have died).
LOCK_TTL_MS = 10_000
LOCK_WAIT_S = 2.0
LOCK_POLL_S = 0.02
MAX_CACHED_BYTES = 1024 * 1024
# Redis replicates asynchronously: a failover can lose the last bumps the old primary
# took. After any Redis error this process sends its bumps of this many seconds again.
REBUMP_WINDOW_S = 10.0

# A counter that vanished restarts from the clock (see _initial_generation), atomically.
BUMP_SCRIPT = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
return redis.call('INCR', KEYS[1])
"""


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
        self._inflight: dict[str, asyncio.Future[Any]] = {}
        self._load_seconds: dict[str, float] = {}
        self._bump_sequence = 0
        self._bumped_at: dict[int, float] = {}  # source: when its last bump reached Redis

    def _in_backoff(self) -> bool:
        return time.monotonic() < self._unavailable_until

    def _available(self) -> bool:
        return self._enabled and not self._in_backoff()

    def _mark_unavailable(self, exc: Exception, action: str) -> None:
        self._unavailable_until = time.monotonic() + self._backoff_s
        metrics.CACHE_ERRORS.inc()
        log.warning("cache_unavailable", action=action, error=str(exc))
        self.redis_failed()

    def redis_failed(self) -> None:
        """Redis failed somewhere in this process (a failover may have lost its latest
        bumps): bump the sources of the last REBUMP_WINDOW_S again before any read."""
        recent = time.monotonic() - REBUMP_WINDOW_S
        again = [s for s, at in self._bumped_at.items() if at >= recent]
        if again:
            self._bump_sequence += 1
            for source_id in again:
                self._pending_bumps[source_id] = self._bump_sequence

    def _generation_keys(self, source_ids: Sequence[int] | None) -> list[str]:
        if source_ids is None:
            return [self._keys.all_sources_generation()]
        return [self._keys.source_generation(s) for s in sorted(set(source_ids))]

    async def _generations(self, client: aioredis.Redis, keys: list[str]) -> list[int]:
        values = await _get_each(client, keys)
        missing = [k for k, v in zip(keys, values, strict=True) if v is None]
        if missing:
            async with client.pipeline(transaction=False) as pipe:
                for key in missing:
                    pipe.set(key, _initial_generation(), nx=True)
                await pipe.execute()
            values = await _get_each(client, keys)
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
            self._count_hit(kind)
            return exactjson.loads(cached)
        # One load per key: callers in this process share one in flight, and a Redis
        # lock makes other processes wait briefly for its result instead of stampeding.
        inflight = self._inflight.get(key)
        if inflight is not None:
            self._count_hit(kind)
            return await asyncio.shield(inflight)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            result = await self._load_once(client, kind, key, ttl_s, loader)
            future.set_result(result)
            return result
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody else must
            raise
        finally:
            del self._inflight[key]

    def _count_hit(self, kind: str) -> None:
        metrics.CACHE_HITS.labels(kind).inc()
        metrics.CACHE_SAVED_SECONDS.labels(kind).inc(self._load_seconds.get(kind, 0.0))

    async def _load_once(
        self,
        client: aioredis.Redis,
        kind: str,
        key: str,
        ttl_s: int,
        loader: Callable[[], Awaitable[Any]],
    ) -> Any:
        lock_key = self._keys.cache_fill_lock(key)
        locked = False
        try:
            locked = bool(await client.set(lock_key, b"1", nx=True, px=LOCK_TTL_MS))
            if not locked:
                deadline = time.monotonic() + LOCK_WAIT_S
                while time.monotonic() < deadline:
                    await asyncio.sleep(LOCK_POLL_S)
                    cached = await client.get(key)
                    if cached is not None:
                        self._count_hit(kind)
                        return exactjson.loads(cached)
        except RedisError as exc:
            self._mark_unavailable(exc, "lock")
        metrics.CACHE_MISSES.labels(kind).inc()
        started = time.perf_counter()
        result = await loader()
        elapsed = time.perf_counter() - started
        metrics.CACHE_LOAD_SECONDS.labels(kind).observe(elapsed)
        # A moving average of load time: what a hit of this kind saves.
        previous = self._load_seconds.get(kind, elapsed)
        self._load_seconds[kind] = previous + (elapsed - previous) / 8
        encoded = exactjson.dumps(result)  # metadata numbers as stored: 10**30, not 1e+30
        if len(encoded) > MAX_CACHED_BYTES:
            # A page of huge messages would crowd everything else out of Redis.
            metrics.CACHE_BYPASS.labels(kind).inc()
            if locked:
                with contextlib.suppress(RedisError):
                    await client.delete(lock_key)
            return result
        try:
            async with client.pipeline(transaction=False) as pipe:
                pipe.set(key, encoded, ex=ttl_s)
                if locked:
                    pipe.delete(lock_key)
                await pipe.execute()
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

    async def retry_pending_bumps(self) -> None:
        """Send bumps a Redis failure left pending (a worker calls it between batches,
        so they do not wait for its next commit)."""
        if self._pending_bumps and self._client is not None and not self._in_backoff():
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
            async with client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.eval(BUMP_SCRIPT, 1, key, _initial_generation())
                await pipe.execute()
        except RedisError as exc:
            self._mark_unavailable(exc, "invalidate")
            return False
        now = time.monotonic()
        for source_id, sequence in pending.items():
            self._bumped_at[source_id] = now
            if self._pending_bumps.get(source_id) == sequence:
                del self._pending_bumps[source_id]
        for source_id in [s for s, at in self._bumped_at.items() if at < now - REBUMP_WINDOW_S]:
            del self._bumped_at[source_id]
        return True


async def _get_each(client: aioredis.Redis, keys: list[str]) -> list[Any]:
    """GET of each key in one pipeline: one round trip on a single Redis, one per node
    on Redis Cluster (an MGET must stay in one slot there)."""
    async with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.get(key)
        values: list[Any] = await pipe.execute()
    return values
