"""The ingest stream's front door: backpressure, rate limits, dedup and the append, as
one Redis script per shard, so a request's effects are all-or-nothing (no event marked as
seen without being buffered, no rate budget spent on a refused request).

With several ingest shards (cache/shards.py) a request whose events or limits live on
more than one shard is admitted on all of them first, then appended on each."""

from __future__ import annotations

import hashlib
import itertools
import math
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from logkeep.cache.keys import Keys
from logkeep.cache.replies import as_text
from logkeep.cache.shards import IngestShards

log = structlog.get_logger(__name__)

# The newest entry not yet committed: a durable request is committed once no entry up to
# it is left (workers delete entries after their commit). KEYS[1] is the stream.
_HORIZON = """
local function horizon()
  local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if newest[1] then return newest[1][1] end
  return ''
end
"""

# Rate limits: GCRA on a theoretical arrival time (ms). A full bucket admits any request
# (the debt delays the next ones), so no request is refused forever. All or none: a
# refused request spends no budget. KEYS[rate_base + i] is the i-th rate key; ARGV[a + 1..3]
# its events/s, burst and cost, with a = arg_base + (i - 1) * 3.
_CHARGE = """
local function charge(rate_base, arg_base, n_rate)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local new_tats = {}
  for i = 1, n_rate do
    local a = arg_base + (i - 1) * 3
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
  return nil
end
"""

# A request's whole work on one shard: backlog, rate limits, dedup, append.
# KEYS: stream, backlog counter, idempotency key, dedup buckets (current first), rate keys.
# ARGV: max backlog bytes (-1: admitted already), bucket count, bucket ttl ms,
#       idempotency ttl ms, rate count, (events/s, burst, cost) per rate key, then the
#       events as three strings: their fingerprints (8 bytes each, 8 zero bytes for none),
#       their records joined, and where each record ends in them (4-byte big-endian).
# Three strings rather than two per event: each argument costs the client and Redis, and
# building the entry from pieces in Lua costs more still; without duplicates (the common
# case) the records are appended as they came.
INGEST_SCRIPT = (
    _HORIZON
    + _CHARGE
    + """
local max_backlog = tonumber(ARGV[1])
local n_buckets = tonumber(ARGV[2])
local bucket_ttl = tonumber(ARGV[3])
local idem_ttl = tonumber(ARGV[4])
local n_rate = tonumber(ARGV[5])

if idem_ttl > 0 then
  local previous = redis.call('GET', KEYS[3])
  if previous then return {'replay', previous, horizon()} end
end

if max_backlog >= 0 then
  local backlog = tonumber(redis.call('GET', KEYS[2]) or '0')
  if backlog >= max_backlog then return {'backlog', tostring(backlog)} end
end

local limited = charge(3 + n_buckets, 5, n_rate)
if limited then return limited end

-- Dedup: fingerprints live in time-bucketed sets; an event is a duplicate if any bucket
-- of the window holds its fingerprint, or an earlier event of this request had it.
-- Set commands take members in chunks (Lua's unpack has a stack limit), so a request
-- costs a handful of calls, not several per event.
local ev_base = 5 + n_rate * 3
local fingerprints = ARGV[ev_base + 1]
local records = ARGV[ev_base + 2]
local ends = ARGV[ev_base + 3]
local n_events = #fingerprints / 8
local NONE = string.rep('\\0', 8)
local fps, pos = {}, {}
for i = 1, n_events do
  local fp = string.sub(fingerprints, 8 * i - 7, 8 * i)
  if fp ~= NONE then fps[#fps + 1] = fp; pos[#pos + 1] = i end
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
local dups = {}
for i = 1, n_events do
  if dup[i] then dups[#dups + 1] = i end
end
if n_buckets > 0 then redis.call('PEXPIRE', KEYS[4], bucket_ttl) end

local payload = records
if #dups > 0 then
  -- Only the records that are not duplicates. COPY tuples carry their own lengths, so
  -- they are joined with nothing between them (domain/stream_rows.py).
  local kept, start = {}, 1
  for i = 1, n_events do
    local stop = struct.unpack('>I4', ends, 4 * i - 3)
    if not dup[i] then kept[#kept + 1] = string.sub(records, start, stop) end
    start = stop + 1
  end
  payload = table.concat(kept)
end
local n_kept = n_events - #dups
local id = ''
if n_kept > 0 then
  id = redis.call('XADD', KEYS[1], '*', 'n', n_kept, 'c', payload)
  redis.call('INCRBY', KEYS[2], #payload)
end
if idem_ttl > 0 and n_events > 0 then
  redis.call('SET', KEYS[3], id .. ' ' .. n_kept .. ' ' .. #dups, 'PX', idem_ttl)
end
local reply = {'ok', id, horizon()}
for _, i in ipairs(dups) do reply[#reply + 1] = i end
return reply
"""
)

# The first phase of a request that spans shards (cache/shards.py): on each shard, before
# anything is appended anywhere, an earlier answer to its Idempotency-Key, the backlog
# and the rate limits that live there. A refusal on any shard gives the budget charged on
# the others back (REFUND_SCRIPT), so nothing is appended and nothing is spent.
# KEYS: stream, backlog counter, idempotency key, rate keys.
# ARGV: max backlog bytes (-1: not checked), check the idempotency key (1/0), rate count,
#       (events/s, burst, cost) per rate key.
ADMIT_SCRIPT = (
    _HORIZON
    + _CHARGE
    + """
if ARGV[2] == '1' then
  local previous = redis.call('GET', KEYS[3])
  if previous then return {'replay', previous, horizon()} end
end
local max_backlog = tonumber(ARGV[1])
if max_backlog >= 0 then
  local backlog = tonumber(redis.call('GET', KEYS[2]) or '0')
  if backlog >= max_backlog then return {'backlog', tostring(backlog)} end
end
local limited = charge(3, 3, tonumber(ARGV[3]))
if limited then return limited end
return {'ok'}
"""
)

# Give back what ADMIT_SCRIPT charged (a request refused on another shard).
# KEYS: rate keys. ARGV: (events/s, cost) per rate key.
REFUND_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for i, key in ipairs(KEYS) do
  local ms_per_event = 1000 / tonumber(ARGV[2 * i - 1])
  local tat = tonumber(redis.call('GET', key) or '0') - tonumber(ARGV[2 * i]) * ms_per_event
  if tat <= now then
    redis.call('DEL', key)
  else
    redis.call('SET', key, string.format('%.3f', tat), 'PX', math.ceil(tat - now) + 1000)
  end
end
return #KEYS
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

    scope: str  # "source" (subject: the source id) or "client"
    subject: str
    eps: int
    burst: int
    cost: int


@dataclass(frozen=True, slots=True)
class Appended:
    # Ledger ids (cache/shards.py) of the stream entries appended, comma-separated; ""
    # when every event was a duplicate. With one shard, the stream entry id.
    entry_id: str
    kept: int
    duplicate_positions: frozenset[int]  # 0-based positions in the events passed in
    # Per shard the request touched, the ledger id of the newest stream entry at the
    # time: once no entry up to it is left in its stream, everything this request
    # offered there (duplicates included) is committed.
    horizons: tuple[str, ...] = ()
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


@dataclass(frozen=True, slots=True)
class Part:
    """What a request does on one shard: its records there (positions in the request,
    in order) and the rate limits charged there (positions in the request's limits)."""

    shard: int
    positions: tuple[int, ...]
    limits: tuple[int, ...]


def plan_parts(
    shards: IngestShards, source_ids: Sequence[int | None], limits: Sequence[RateLimit]
) -> tuple[list[Part], list[Part]]:
    """(parts with records, parts with only rate limits) of a request, by shard.

    A source's records and its rate limit go to its shard; a client's limit to the
    client's, as a part of its own. A record without a source (a dead letter) goes with
    the request's first record that has one. A request without records still has one
    part (shard 0), so an Idempotency-Key alone is looked up as it always was."""
    first = next((shards.of_source(s) for s in source_ids if s is not None), 0)
    positions: dict[int, list[int]] = {}
    for i, source_id in enumerate(source_ids):
        shard = first if source_id is None else shards.of_source(source_id)
        positions.setdefault(shard, []).append(i)
    if not positions:
        positions[0] = []
    by_source: dict[int, list[int]] = {}
    others: dict[int, list[int]] = {}
    for i, limit in enumerate(limits):
        if limit.scope == "source":
            shard = shards.of_source(int(limit.subject))
            (by_source if shard in positions else others).setdefault(shard, []).append(i)
        elif limit.scope == "client":
            others.setdefault(shards.of_client(limit.subject), []).append(i)
        else:
            raise ValueError(f"rate limit scope {limit.scope!r} is neither source nor client")
    with_records = [
        Part(shard, tuple(at), tuple(by_source.get(shard, ()))) for shard, at in positions.items()
    ]
    only_limits = [Part(shard, (), tuple(at)) for shard, at in others.items()]
    return with_records, only_limits


def single_call(parts: Sequence[Part], only_limits: Sequence[Part]) -> Part | None:
    """The one part that does the whole request, when everything is on one shard."""
    if len(parts) != 1 or any(p.shard != parts[0].shard for p in only_limits):
        return None
    limits = sorted([*parts[0].limits, *(i for p in only_limits for i in p.limits)])
    return Part(parts[0].shard, parts[0].positions, tuple(limits))


Call = tuple[list[str], list[bytes | str | int]]  # a script's keys and arguments


@dataclass(frozen=True, slots=True)
class _PartResult:
    """One shard's answer, positions already mapped to the request's."""

    ledger_id: str  # "" if nothing was appended
    kept: int
    duplicates: frozenset[int]
    horizon: str  # ledger id, or "" when the shard's stream was empty
    replayed: bool


# A shard's answer to ADMIT_SCRIPT: admitted (None), a replay, or why not.
Admission = _PartResult | BaseException | None


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
        self._shards = keys.shards
        self._dedup = dedup
        # The bound holds for the sum: each shard takes its share.
        self._max_backlog_per_shard = max(1, max_backlog_bytes // self._shards.count)
        self._script = client.register_script(INGEST_SCRIPT)
        self._admit = client.register_script(ADMIT_SCRIPT)
        self._refund = client.register_script(REFUND_SCRIPT)

    async def append(
        self,
        records: Sequence[bytes],
        fingerprints: Sequence[bytes | None],
        limits: Sequence[RateLimit] = (),
        *,
        source_ids: Sequence[int | None] | None = None,
        idempotency_key: str | None = None,
        idempotency_ttl_s: int = 0,
        client: str = "",
    ) -> Appended:
        """Buffer the records that are not duplicates, as one stream entry per shard
        (`source_ids`, one per record; None: no source, or all on the first shard). An
        Idempotency-Key is the client's own: two clients may use the same one.

        A request whose records and limits all live on one shard is one script call, as
        it always was. One that spans shards is admitted on every shard first (its
        backlog and rate limits; a refusal anywhere gives back what the others charged),
        then appended on each; see docs/scale.md for what that promises."""
        if len(fingerprints) != len(records):
            raise ValueError("one fingerprint per record")
        ids = [None] * len(records) if source_ids is None else list(source_ids)
        if len(ids) != len(records):
            raise ValueError("one source id per record")
        parts, only_limits = plan_parts(self._shards, ids, limits)
        buckets = self._dedup.bucket_indexes(int(time.time() * 1000))
        idem_digest = hashlib.blake2b(
            f"{client}\x00{idempotency_key or ''}".encode("utf-8", "surrogatepass"),
            digest_size=16,
        ).hexdigest()
        idem_ttl_ms = idempotency_ttl_s * 1000 if idempotency_key else 0
        whole = single_call(parts, only_limits)
        if whole is not None:
            result = await self._append_part(
                whole, records, fingerprints, limits, buckets, idem_digest, idem_ttl_ms
            )
            return _combine([result])
        return await self._append_in_two_phases(
            parts, only_limits, records, fingerprints, limits, buckets, idem_digest, idem_ttl_ms
        )

    async def _append_part(
        self,
        part: Part,
        records: Sequence[bytes],
        fingerprints: Sequence[bytes | None],
        limits: Sequence[RateLimit],
        buckets: list[int],
        idem_digest: str,
        idem_ttl_ms: int,
    ) -> _PartResult:
        """The whole request on one shard: one script, as with a single stream."""
        keys, args = self._ingest_call(
            part, records, fingerprints, limits, buckets, idem_digest, idem_ttl_ms,
            admitted=False,
        )  # fmt: skip
        reply: list[Any] = await self._script(keys=keys, args=args)
        return self._ingest_result(reply, part, limits)

    def _ingest_call(
        self,
        part: Part,
        records: Sequence[bytes],
        fingerprints: Sequence[bytes | None],
        limits: Sequence[RateLimit],
        buckets: list[int],
        idem_digest: str,
        idem_ttl_ms: int,
        *,
        admitted: bool,
    ) -> Call:
        """Keys and arguments of the ingest script on one shard; `admitted`: backlog and
        limits were checked and charged by ADMIT_SCRIPT already."""
        shard = part.shard
        charged = () if admitted else part.limits
        keys = [
            self._keys.ingest_stream(shard),
            self._keys.ingest_backlog_bytes(shard),
            self._keys.request_result(idem_digest, shard),
            *(self._keys.dedup_bucket(b, shard) for b in buckets),
            *(self._rate_key(limits[i], shard) for i in charged),
        ]
        args: list[bytes | str | int] = [
            -1 if admitted else self._max_backlog_per_shard,
            len(buckets),
            self._dedup.ttl_ms,
            idem_ttl_ms,
            len(charged),
        ]
        for i in charged:
            args += [limits[i].eps, limits[i].burst, limits[i].cost]
        args += _events_args(part.positions, records, fingerprints if buckets else None)
        return keys, args

    def _ingest_result(
        self, reply: list[Any], part: Part, limits: Sequence[RateLimit]
    ) -> _PartResult:
        status = as_text(reply[0])
        if status == "ok":
            dups = frozenset(part.positions[int(i) - 1] for i in reply[3:])
            return _PartResult(
                self._ledger(part.shard, as_text(reply[1])),
                len(part.positions) - len(dups),
                dups,
                self._ledger(part.shard, as_text(reply[2])),
                replayed=False,
            )
        if status == "replay":
            return self._replay(part, reply)
        raise self._refusal(reply, part, limits)

    def _admit_call(
        self, part: Part, limits: Sequence[RateLimit], idem_digest: str, idem_ttl_ms: int
    ) -> Call:
        shard = part.shard
        has_records = bool(part.positions)
        keys = [
            self._keys.ingest_stream(shard),
            self._keys.ingest_backlog_bytes(shard),
            self._keys.request_result(idem_digest, shard),
            *(self._rate_key(limits[i], shard) for i in part.limits),
        ]
        args: list[bytes | str | int] = [
            self._max_backlog_per_shard if has_records else -1,
            1 if has_records and idem_ttl_ms > 0 else 0,
            len(part.limits),
        ]
        for i in part.limits:
            args += [limits[i].eps, limits[i].burst, limits[i].cost]
        return keys, args

    def _admit_result(self, reply: Any, part: Part, limits: Sequence[RateLimit]) -> Admission:
        """None when admitted (and charged), a replay, or the refusal (not raised)."""
        if isinstance(reply, BaseException):
            return reply
        status = as_text(reply[0])
        if status == "ok":
            return None
        if status == "replay":
            return self._replay(part, reply)
        return self._refusal(reply, part, limits)

    async def _run(self, script: Any, text: str, calls: Sequence[Call]) -> list[Any]:
        """Each call's reply, or its error: one call as a registered script (EVALSHA),
        several in one pipeline (one round trip per node) as EVAL, which a Redis Cluster
        pipeline accepts and a new primary needs no loading for."""
        if len(calls) == 1:
            keys, args = calls[0]
            try:
                return [await script(keys=keys, args=args)]
            except RedisError as exc:
                return [exc]
        async with self._client.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                pipe.eval(text, len(keys), *keys, *args)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies

    async def _append_in_two_phases(
        self,
        parts: list[Part],
        only_limits: list[Part],
        records: Sequence[bytes],
        fingerprints: Sequence[bytes | None],
        limits: Sequence[RateLimit],
        buckets: list[int],
        idem_digest: str,
        idem_ttl_ms: int,
    ) -> Appended:
        if len(parts) == 1:
            return await self._append_one_part(
                parts[0], only_limits, records, fingerprints, limits, buckets, idem_digest,
                idem_ttl_ms,
            )  # fmt: skip
        answers, charged, failure = await self._admit_parts(
            [*parts, *only_limits], limits, idem_digest, idem_ttl_ms
        )
        if failure is not None:
            await self._give_back(charged, limits)
            raise failure
        replays = {
            p.shard: a for p, a in zip(parts, answers, strict=False) if isinstance(a, _PartResult)
        }
        # A replayed part was not charged on its own shard; the client was (on a part of
        # its own), for all of the request's records: give back the replayed ones.
        replayed_records = sum(len(p.positions) for p in parts if p.shard in replays)
        if replayed_records:
            await self._give_back(
                [p for p in only_limits if p in charged],
                limits,
                cost=lambda limit: (
                    min(limit.cost, replayed_records) if limit.scope == "client" else 0
                ),
            )
        to_append = [p for p in parts if p.shard not in replays]
        request = (records, fingerprints, limits, buckets, idem_digest, idem_ttl_ms)
        calls = [self._ingest_call(p, *request, admitted=True) for p in to_append]
        replies = await self._run(self._script, INGEST_SCRIPT, calls)
        failure = next((r for r in replies if isinstance(r, BaseException)), None)
        if failure is not None:
            # Parts that were appended stay appended (and are answered as replays or
            # duplicates on a retry); the caller answers 503 and the client retries.
            raise failure
        results = [
            self._ingest_result(r, p, limits) for p, r in zip(to_append, replies, strict=True)
        ]
        # Lost a race with a request carrying the same Idempotency-Key: not ours to pay.
        raced = [p for p, r in zip(to_append, results, strict=True) if r.replayed]
        await self._give_back(raced, limits)
        return _combine([*replays.values(), *results])

    async def _append_one_part(
        self,
        part: Part,
        only_limits: list[Part],
        records: Sequence[bytes],
        fingerprints: Sequence[bytes | None],
        limits: Sequence[RateLimit],
        buckets: list[int],
        idem_digest: str,
        idem_ttl_ms: int,
    ) -> Appended:
        """All the records on one shard, a rate limit (the client's) elsewhere: charge
        that limit first, then the one script on the records' shard; its refusal gives
        the charge back. Two calls instead of three."""
        _, charged, failure = await self._admit_parts(only_limits, limits, idem_digest, idem_ttl_ms)
        if failure is None:
            try:
                result = await self._append_part(
                    part, records, fingerprints, limits, buckets, idem_digest, idem_ttl_ms
                )
            except (BacklogFull, RateLimited, RedisError) as exc:
                failure = exc
        if failure is not None:
            await self._give_back(charged, limits)
            raise failure
        if result.replayed:  # answered before: the client's charge is given back
            await self._give_back(charged, limits)
        return _combine([result])

    async def _admit_parts(
        self, parts: list[Part], limits: Sequence[RateLimit], idem_digest: str, idem_ttl_ms: int
    ) -> tuple[list[Admission], list[Part], BaseException | None]:
        """Run the admission script on each part: every answer, the parts it charged, and
        the first refusal or error (None when all were admitted or replayed)."""
        replies = await self._run(
            self._admit,
            ADMIT_SCRIPT,
            [self._admit_call(p, limits, idem_digest, idem_ttl_ms) for p in parts],
        )
        answers = [self._admit_result(r, p, limits) for p, r in zip(parts, replies, strict=True)]
        charged = [p for p, a in zip(parts, answers, strict=True) if a is None]
        failure = next((a for a in answers if isinstance(a, BaseException)), None)
        return answers, charged, failure

    async def _give_back(
        self,
        parts: Sequence[Part],
        limits: Sequence[RateLimit],
        cost: Callable[[RateLimit], int] = lambda limit: limit.cost,
    ) -> None:
        """Refund what these parts charged (best effort: a refund that fails only
        delays the subject's next requests)."""
        calls: list[Call] = []
        for part in parts:
            refunds = [(limits[i], cost(limits[i])) for i in part.limits]
            refunds = [(limit, c) for limit, c in refunds if c > 0]
            if not refunds:
                continue
            args: list[bytes | str | int] = []
            for limit, c in refunds:
                args += [limit.eps, c]
            calls.append(([self._rate_key(limit, part.shard) for limit, _ in refunds], args))
        if not calls:
            return
        try:
            replies = await self._run(self._refund, REFUND_SCRIPT, calls)
        except RedisError as exc:
            replies = [exc]
        for failed in (r for r in replies if isinstance(r, RedisError)):
            log.warning("ingest_refund_failed", error=str(failed))

    def _rate_key(self, limit: RateLimit, shard: int) -> str:
        return self._keys.rate_limit(limit.scope, limit.subject, shard)

    def _ledger(self, shard: int, stream_id: str) -> str:
        return self._shards.ledger_id(shard, stream_id) if stream_id else ""

    def _replay(self, part: Part, reply: list[Any]) -> _PartResult:
        # Every event of this part was accepted by the first request; a durable retry
        # waits for that request's stream entry.
        entry_id = as_text(reply[1]).split(" ")[0]
        return _PartResult(
            self._ledger(part.shard, entry_id),
            0,
            frozenset(part.positions),
            self._ledger(part.shard, as_text(reply[2])),
            replayed=True,
        )

    @staticmethod
    def _refusal(reply: list[Any], part: Part, limits: Sequence[RateLimit]) -> Exception:
        status = as_text(reply[0])
        if status == "backlog":
            return BacklogFull(int(as_text(reply[1])))
        if status == "limited":
            limit = limits[part.limits[int(as_text(reply[2])) - 1]]
            return RateLimited(limit, max(0.001, int(as_text(reply[1])) / 1000))
        return RuntimeError(f"unexpected reply from an ingest script: {reply!r}")


NO_FINGERPRINT = bytes(8)  # a digest of 8 zero bytes (1 in 2^64) is taken for none


def _events_args(
    positions: Sequence[int],
    records: Sequence[bytes],
    fingerprints: Sequence[bytes | None] | None,
) -> list[bytes]:
    """The ingest script's three event strings for these records (None: no dedup)."""
    if fingerprints is None:
        fps = NO_FINGERPRINT * len(positions)
    else:
        fps = b"".join([fingerprints[i] or NO_FINGERPRINT for i in positions])
    chosen = records if len(positions) == len(records) else [records[i] for i in positions]
    ends = struct.pack(f">{len(chosen)}I", *itertools.accumulate(map(len, chosen)))
    return [fps, b"".join(chosen), ends]


def _combine(results: Sequence[_PartResult]) -> Appended:
    return Appended(
        entry_id=",".join(r.ledger_id for r in results if r.ledger_id),
        kept=sum(r.kept for r in results),
        duplicate_positions=frozenset().union(*(r.duplicates for r in results)),
        horizons=tuple(r.horizon for r in results if r.horizon),
        replayed=bool(results) and all(r.replayed for r in results),
    )


class StreamAcknowledger:
    """The workers' side of the stream: acknowledge and delete committed entries."""

    def __init__(self, client: aioredis.Redis, keys: Keys) -> None:
        self._client = client
        self._keys = keys
        self._ack = client.register_script(ACK_SCRIPT)

    async def acknowledge(
        self, group: str, entries: Sequence[tuple[str, int]], shard: int = 0
    ) -> int:
        """XACK and XDEL committed entries of one shard's stream (stream id, payload
        bytes); returns bytes freed."""
        if not entries:
            return 0
        args: list[str | int] = [group]
        for entry_id, size in entries:
            args += [entry_id, size]
        freed: int = await self._ack(
            keys=[self._keys.ingest_stream(shard), self._keys.ingest_backlog_bytes(shard)],
            args=args,
        )
        return freed

    async def backlog_bytes(self, shard: int = 0) -> int:
        value = await self._client.get(self._keys.ingest_backlog_bytes(shard))
        return int(value or 0)


def retry_after_header(seconds: float) -> str:
    """Retry-After takes whole seconds; never 0, or clients retry at once."""
    return str(max(1, math.ceil(seconds)))


def stream_position(entry_id: str) -> tuple[int, int]:
    """A stream id as a comparable (milliseconds, sequence)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
