"""Live tail buffer: committed entries in a capped Redis Stream.

Writers append after commit, in chunks of at most CHUNK items per stream entry; every
tail client reads the stream on its own with XREAD, so a slow client costs ingest
nothing. The stream is capped (MAXLEN ~), which bounds Redis memory and how far back a
reconnecting client can resume with Last-Event-ID.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from logkeep.cache.keys import Keys
from logkeep.cache.replies import as_text
from logkeep.domain import exactjson

log = structlog.get_logger(__name__)

CHUNK = 100  # items per stream entry: keeps entries small and resumption precise


LISTENER_TTL_S = 30  # a tail client renews its mark at least this often
LISTENER_CHECK_S = 1.0  # how long a writer trusts its last look at the mark
IDLE_TTL_S = 300  # an unused tail stream expires: Redis memory returns to its baseline


class TailBuffer:
    def __init__(self, client: aioredis.Redis | None, keys: Keys, max_entries: int) -> None:
        self._client = client
        self._key = keys.tail_stream()
        self._listeners_key = keys.tail_listeners()
        self._max_entries = max_entries
        self._listeners_seen: tuple[float, bool] = (0.0, True)

    async def mark_listening(self, client: aioredis.Redis) -> None:
        """Called by tail clients now and then: while marked, the ingest worker publishes."""
        await client.set(self._listeners_key, b"1", ex=LISTENER_TTL_S)

    async def has_listeners(self) -> bool:
        """Whether any tail client is connected (checked at most once a second). The
        ingest worker builds and publishes tail items only then: they cost it a few
        microseconds per event, and Redis about 600 bytes per event in the buffer."""
        checked_at, answer = self._listeners_seen
        now = time.monotonic()
        if self._client is None or now - checked_at < LISTENER_CHECK_S:
            return answer
        try:
            answer = bool(await self._client.exists(self._listeners_key))
        except RedisError:
            answer = True  # publishing is best effort anyway
        self._listeners_seen = (now, answer)
        return answer

    async def publish(self, items: Sequence[dict[str, Any]]) -> None:
        """Best effort: tail is a view, PostgreSQL already holds the entries."""
        if self._client is None or not items:
            return
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for offset in range(0, len(items), CHUNK):
                    pipe.xadd(
                        self._key,
                        {"items": exactjson.dumps(list(items[offset : offset + CHUNK]))},
                        maxlen=self._max_entries,
                        approximate=True,
                    )
                pipe.expire(self._key, IDLE_TTL_S)
                await pipe.execute()
        except RedisError as exc:
            log.warning("tail_publish_failed", error=str(exc), items=len(items))

    async def last_id(self, client: aioredis.Redis) -> str:
        """The id of the newest stream entry ("0-0" when empty): where a new client starts."""
        newest: Any = await client.xrevrange(self._key, count=1)
        return as_text(newest[0][0]) if newest else "0-0"

    async def read(
        self, client: aioredis.Redis, after: str, block_ms: int
    ) -> list[tuple[str, list[dict[str, Any]]]]:
        """Stream entries after `after`, waiting up to `block_ms` for the first one."""
        reply: Any = await client.xread({self._key: after}, block=block_ms, count=50)
        return decode_xread(reply)


def decode_xread(reply: Any) -> list[tuple[str, list[dict[str, Any]]]]:
    """[(stream entry id, items)] from an XREAD reply on one stream (None on timeout)."""
    batches: list[tuple[str, list[dict[str, Any]]]] = []
    for _key, entries in reply or []:
        for entry_id, fields in entries:
            batches.append((as_text(entry_id), exactjson.loads(fields[b"items"])))
    return batches
