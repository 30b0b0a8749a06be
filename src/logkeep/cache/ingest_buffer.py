"""The ingest stream's front door: backpressure, rate limits, dedup and the append, as
one Redis script, so a request's effects are all-or-nothing (no event marked as seen
without being buffered, no rate budget spent on a refused request)."""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from logkeep.cache.keys import Keys
from logkeep.cache.replies import as_text

# KEYS: stream, backlog counter, idempotency key, dedup buckets (current first), rate keys.
# ARGV: max backlog bytes, bucket count, bucket ttl ms, idempotency ttl ms, rate count,
#       (events/s, burst, cost) per rate key, then (fingerprint, record) per event.
INGEST_SCRIPT = """
local max_backlog = tonumber(ARGV[1])
local n_buckets = tonumber(ARGV[2])
local bucket_ttl = tonumber(ARGV[3])
local idem_ttl = tonumber(ARGV[4])
local n_rate = tonumber(ARGV[5])

-- The newest entry not yet committed: a durable request is committed once no entry up
-- to it is left (workers delete entries after their commit).
local function horizon()
  local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if newest[1] then return newest[1][1] end
  return ''
end

if idem_ttl > 0 then
  local previous = redis.call('GET', KEYS[3])
  if previous then return {'replay', previous, horizon()} end
end

local backlog = tonumber(redis.call('GET', KEYS[2]) or '0')
if backlog >= max_backlog then return {'backlog', tostring(backlog)} end

-- Rate limits: GCRA on a theoretical arrival time (ms). A full bucket admits any
-- request (the debt delays the next ones), so no request is refused forever.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate_base = 3 + n_buckets
local new_tats = {}
for i = 1, n_rate do
  local a = 5 + (i - 1) * 3
  local ms_per_event = 1000 / tonumber(ARGV[a + 1])
  local burst_ms = tonumber(ARGV[a + 2]) * ms_per_event
  local tat = tonumber(redis.call('GET', KEYS[rate_base + i]) or '0')
  if tat < now then tat = now end
  local new_tat = tat + tonumber(ARGV[a + 3]) * ms_per_event
  if tat > now and new_tat - burst_ms > now then
    local wait = math.min(new_tat - burst_ms, tat) - now
    return {'limited', tostring(math.ceil(wait)), tostring(i)}
  end
  new_tats[i] = new_tat
end
for i = 1, n_rate do
  local ttl = math.ceil(new_tats[i] - now) + 1000
  redis.call('SET', KEYS[rate_base + i], string.format('%.3f', new_tats[i]), 'PX', ttl)
end

-- Dedup: fingerprints live in time-bucketed sets; an event is a duplicate if any bucket
-- of the window holds its fingerprint, or an earlier event of this request had it.
-- Set commands take members in chunks (Lua's unpack has a stack limit), so a request
-- costs a handful of calls, not several per event.
local ev_base = 5 + n_rate * 3
local n_events = (#ARGV - ev_base) / 2
local fps, pos = {}, {}
for i = 1, n_events do
  local fp = ARGV[ev_base + 2 * i - 1]
  if fp ~= '' then fps[#fps + 1] = fp; pos[#pos + 1] = i end
end
local CHUNK = 1000
local dup = {}
if #fps > 0 then
  for b = 1, n_buckets do
    for c = 1, #fps, CHUNK do
      local last = math.min(c + CHUNK - 1, #fps)
      local found = redis.call('SMISMEMBER', KEYS[3 + b], unpack(fps, c, last))
      for j, hit in ipairs(found) do
        if hit == 1 then dup[pos[c + j - 1]] = true end
      end
    end
  end
end
local seen, fresh = {}, {}
for j, fp in ipairs(fps) do
  if not dup[pos[j]] then
    if seen[fp] then dup[pos[j]] = true else seen[fp] = true; fresh[#fresh + 1] = fp end
  end
end
for c = 1, #fresh, CHUNK do
  redis.call('SADD', KEYS[4], unpack(fresh, c, math.min(c + CHUNK - 1, #fresh)))
end
local kept, dups = {}, {}
for i = 1, n_events do
  if dup[i] then dups[#dups + 1] = i else kept[#kept + 1] = ARGV[ev_base + 2 * i] end
end
if n_buckets > 0 then redis.call('PEXPIRE', KEYS[4], bucket_ttl) end

local id = ''
if #kept > 0 then
  local payload = table.concat(kept, '\\n')
  id = redis.call('XADD', KEYS[1], '*', 'n', #kept, 'e', payload)
  redis.call('INCRBY', KEYS[2], #payload)
end
if idem_ttl > 0 and #kept + #dups > 0 then
  redis.call('SET', KEYS[3], id .. ' ' .. #kept .. ' ' .. #dups, 'PX', idem_ttl)
end
local reply = {'ok', id, horizon()}
for _, i in ipairs(dups) do reply[#reply + 1] = i end
return reply
"""

# Acknowledge committed entries and delete them (the stream holds only what is not yet
# committed, so Redis memory returns to its baseline once workers catch up). The byte
# counter drops only for entries this call deleted: two workers acknowledging the same
# reclaimed entry must not subtract it twice.
# KEYS: stream, backlog counter. ARGV: group, then (entry id, payload bytes) pairs.
ACK_SCRIPT = """
local freed = 0
for i = 2, #ARGV, 2 do
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[i])
  if redis.call('XDEL', KEYS[1], ARGV[i]) == 1 then freed = freed + tonumber(ARGV[i + 1]) end
end
local left = redis.call('DECRBY', KEYS[2], freed)
if left < 0 or redis.call('XLEN', KEYS[1]) == 0 then redis.call('SET', KEYS[2], 0) end
return freed
"""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One subject's budget for this request: `cost` events at `eps` with `burst`."""

    scope: str  # "source" or "client"
    subject: str
    eps: int
    burst: int
    cost: int


@dataclass(frozen=True, slots=True)
class Appended:
    entry_id: str  # "" when every event was a duplicate
    kept: int
    duplicate_positions: frozenset[int]  # 0-based positions in the events passed in
    # The newest stream entry at the time ("" if none): once no entry up to it is left in
    # the stream, everything this request offered (duplicates included) is committed.
    horizon: str = ""
    replayed: bool = False  # an earlier request with this Idempotency-Key was answered


class BacklogFull(Exception):
    def __init__(self, backlog_bytes: int) -> None:
        super().__init__(f"ingest backlog is {backlog_bytes} bytes, at its limit")
        self.backlog_bytes = backlog_bytes


class RateLimited(Exception):
    def __init__(self, limit: RateLimit, retry_after_s: float) -> None:
        super().__init__(
            f"rate limit of {limit.eps} events/s for {limit.scope} {limit.subject!r} "
            f"exceeded; retry in {retry_after_s:.1f}s"
        )
        self.limit = limit
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class DedupWindow:
    """The window split into buckets: an event is compared against the buckets that
    cover the last `window_s` seconds (between window_s and 1.25 x window_s in fact)."""

    window_s: int
    buckets: int = 4

    @property
    def bucket_ms(self) -> int:
        return max(1, self.window_s * 1000 // self.buckets)

    def bucket_indexes(self, now_ms: int) -> list[int]:
        """Current bucket first, then the earlier ones still inside the window."""
        if self.window_s <= 0:
            return []
        current = now_ms // self.bucket_ms
        return [current - i for i in range(self.buckets + 1)]

    @property
    def ttl_ms(self) -> int:
        """Refreshed on every write to the current bucket: it must outlive its last
        write by the window, plus one bucket of margin."""
        return self.bucket_ms * (self.buckets + 1)


class IngestBuffer:
    def __init__(
        self,
        client: aioredis.Redis,
        keys: Keys,
        *,
        dedup: DedupWindow,
        max_backlog_bytes: int,
    ) -> None:
        self._client = client
        self._keys = keys
        self._dedup = dedup
        self._max_backlog = max_backlog_bytes
        self._script = client.register_script(INGEST_SCRIPT)

    @property
    def stream(self) -> str:
        return self._keys.ingest_stream()

    async def append(
        self,
        records: Sequence[bytes],
        fingerprints: Sequence[bytes | None],
        limits: Sequence[RateLimit] = (),
        *,
        idempotency_key: str | None = None,
        idempotency_ttl_s: int = 0,
        client: str = "",
    ) -> Appended:
        """Buffer the records that are not duplicates, as one stream entry. An
        Idempotency-Key is the client's own: two clients may use the same one."""
        buckets = self._dedup.bucket_indexes(int(time.time() * 1000))
        idem_digest = hashlib.blake2b(
            f"{client}\x00{idempotency_key or ''}".encode("utf-8", "surrogatepass"),
            digest_size=16,
        ).hexdigest()
        keys = [
            self.stream,
            self._keys.ingest_backlog_bytes(),
            self._keys.request_result(idem_digest),
            *(self._keys.dedup_bucket(b) for b in buckets),
            *(self._keys.rate_limit(r.scope, r.subject) for r in limits),
        ]
        args: list[bytes | str | int] = [
            self._max_backlog,
            len(buckets),
            self._dedup.ttl_ms,
            idempotency_ttl_s * 1000 if idempotency_key else 0,
            len(limits),
        ]
        for r in limits:
            args += [r.eps, r.burst, r.cost]
        for record, fp in zip(records, fingerprints, strict=True):
            args += [fp if fp is not None and buckets else b"", record]
        reply: list[Any] = await self._script(keys=keys, args=args)
        status = as_text(reply[0])
        if status == "ok":
            dups = frozenset(int(i) - 1 for i in reply[3:])
            return Appended(as_text(reply[1]), len(records) - len(dups), dups, as_text(reply[2]))
        if status == "replay":
            # Every event was accepted by the first request; a durable retry waits for
            # that request's stream entry.
            entry_id = as_text(reply[1]).split(" ")[0]
            everything = frozenset(range(len(records)))
            return Appended(entry_id, 0, everything, as_text(reply[2]), replayed=True)
        if status == "backlog":
            raise BacklogFull(int(as_text(reply[1])))
        if status == "limited":
            limit = limits[int(as_text(reply[2])) - 1]
            raise RateLimited(limit, max(0.001, int(as_text(reply[1])) / 1000))
        raise RuntimeError(f"unexpected reply from the ingest script: {reply!r}")


class StreamAcknowledger:
    """The workers' side of the stream: acknowledge and delete committed entries."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self._client = client
        self._keys = keys
        self._ack = client.register_script(ACK_SCRIPT)

    async def acknowledge(self, group: str, entries: Sequence[tuple[str, int]]) -> int:
        """XACK and XDEL committed entries (id, payload bytes); returns bytes freed."""
        if not entries:
            return 0
        args: list[str | int] = [group]
        for entry_id, size in entries:
            args += [entry_id, size]
        freed: int = await self._ack(
            keys=[self._keys.ingest_stream(), self._keys.ingest_backlog_bytes()], args=args
        )
        return freed

    async def backlog_bytes(self) -> int:
        value = await self._client.get(self._keys.ingest_backlog_bytes())
        return int(value or 0)


def retry_after_header(seconds: float) -> str:
    """Retry-After takes whole seconds; never 0, or clients retry at once."""
    return str(max(1, math.ceil(seconds)))


def stream_position(entry_id: str) -> tuple[int, int]:
    """A stream id as a comparable (milliseconds, sequence)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
