"""Sessions in Redis: opaque tokens, stored only as their SHA-256, with an idle timeout
that slides on use and an absolute lifetime. Each user's sessions are indexed, so a
password change or a disabled account ends all of them at once."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis

from logkeep.cache.keys import Keys
from logkeep.domain.auth import SESSION_PREFIX, new_token, token_digest

MAX_PREFERENCES_BYTES = 16 * 1024


@dataclass(frozen=True, slots=True)
class Session:
    digest: str
    user_id: int
    created_at: float
    preferences: dict[str, Any]


class SessionStore:
    def __init__(self, client: aioredis.Redis, keys: Keys, *, idle_s: int, lifetime_s: int) -> None:
        self._client = client
        self._keys = keys
        self._idle_s = idle_s
        self._lifetime_s = lifetime_s

    async def create(self, user_id: int) -> str:
        """A new session's token: shown to the client once, never stored."""
        token = new_token(SESSION_PREFIX)
        digest = token_digest(token).hex()
        record = {"user_id": user_id, "created_at": time.time(), "preferences": {}}
        # The index first (the session and its index are in different hash slots on
        # Redis Cluster): a session that exists is always in its user's index.
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.sadd(self._keys.user_sessions(user_id), digest)
            pipe.expire(self._keys.user_sessions(user_id), self._lifetime_s)
            await pipe.execute()
        await self._client.set(self._keys.session(digest), orjson.dumps(record), ex=self._idle_s)
        return token

    async def get(self, token: str) -> Session | None:
        """The live session of a token, its idle timeout renewed; None otherwise."""
        if not token.startswith(SESSION_PREFIX):
            return None
        digest = token_digest(token).hex()
        key = self._keys.session(digest)
        # Read and renew in one round trip; the lifetime is checked on every read, so a
        # renewal past it never lets the session be used.
        raw = await self._client.getex(key, ex=self._idle_s)
        if raw is None:
            return None
        record = orjson.loads(raw)
        if time.time() - record["created_at"] > self._lifetime_s:
            await self._client.delete(key)
            return None
        return Session(digest, record["user_id"], record["created_at"], record["preferences"])

    async def set_preferences(self, session: Session, preferences: dict[str, Any]) -> None:
        encoded = orjson.dumps(preferences)
        if len(encoded) > MAX_PREFERENCES_BYTES:
            raise ValueError(f"preferences: over {MAX_PREFERENCES_BYTES} bytes")
        record = {
            "user_id": session.user_id,
            "created_at": session.created_at,
            "preferences": preferences,
        }
        await self._client.set(
            self._keys.session(session.digest), orjson.dumps(record), xx=True, keepttl=True
        )

    async def revoke(self, token: str) -> None:
        digest = token_digest(token).hex()
        raw = await self._client.getdel(self._keys.session(digest))
        if raw is not None:
            await self._client.srem(self._keys.user_sessions(orjson.loads(raw)["user_id"]), digest)

    async def revoke_user(self, user_id: int) -> int:
        """End every session of a user; how many there were."""
        index = self._keys.user_sessions(user_id)
        members = await self._client.smembers(index)
        digests = [m.decode() if isinstance(m, bytes) else m for m in members]
        # One key per command: sessions are spread over Redis Cluster's slots.
        async with self._client.pipeline(transaction=False) as pipe:
            for digest in digests:
                pipe.delete(self._keys.session(digest))
            pipe.delete(index)
            results = await pipe.execute()
        return sum(int(r) for r in results[:-1])


class LoginLimiter:
    """Login attempts per username and per client address, in fixed windows. An attempt
    is counted before the password is checked, in one script, so parallel guesses cannot
    all pass the check first; a success clears the user's count and gives the address
    its attempt back."""

    SCRIPT = """
local waits = {}
for i, key in ipairs(KEYS) do
  local count = redis.call('INCR', key)
  if count == 1 then redis.call('PEXPIRE', key, ARGV[1]) end
  if count > tonumber(ARGV[i + 1]) then waits[#waits + 1] = redis.call('PTTL', key) end
end
local longest = 0
for _, w in ipairs(waits) do if w > longest then longest = w end end
return longest
"""

    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        *,
        per_user: int,
        per_address: int,
        window_s: int,
    ) -> None:
        self._client = client
        self._keys = keys
        self._per_user = per_user
        self._per_address = per_address
        self._window_s = window_s
        self._count = client.register_script(self.SCRIPT)

    def _subjects(self, username: str, address: str) -> list[str]:
        return [
            self._keys.login_failures("user", username.lower()),
            self._keys.login_failures("addr", address),
        ]

    async def attempt(self, username: str, address: str) -> float | None:
        """Count an attempt; seconds to wait if it is one too many, else None."""
        wait_ms: int = await self._count(
            keys=self._subjects(username, address),
            args=[self._window_s * 1000, self._per_user, self._per_address],
        )
        return wait_ms / 1000 if wait_ms > 0 else None

    async def succeeded(self, username: str, address: str) -> None:
        user_key, addr_key = self._subjects(username, address)
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.delete(user_key)
            pipe.decr(addr_key)
            await pipe.execute()

    async def clear(self, username: str) -> None:
        """An operator's reset (a new password): the user may log in at once."""
        await self._client.delete(self._subjects(username, "")[0])
