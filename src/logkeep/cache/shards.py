"""Ingest shards: which stream, dedup sets and rate limits an event goes through.

Ingest keys share a hash tag per shard, so that everything one request does on a shard
(the ingest script) and everything a worker does after a commit (XACK, XDEL and the
backlog counter) stays in one Redis Cluster slot. With one shard (the default on a single
Redis or Sentinel) that tag is `{ingest}`, as it always was; with N shards, shard k's tag
is chosen so that its slot lies in the middle of the k-th of N equal slot ranges, so the
even split `redis-cli --cluster create` makes puts N/P shards on each of P primaries
when N is a multiple of P.

Pure: no I/O, unit-tested (tests/unit/test_redis_shards.py).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

SINGLE_SHARD_TAG = "ingest"
MAX_SHARDS = 256  # so every shard's slot range is wide enough to find a tag in quickly


def slot_of(key: str) -> int:
    """The Redis Cluster slot of a key (its hash tag's, when it has one)."""
    return key_slot(key.encode("utf-8", "surrogatepass"))


@functools.lru_cache(maxsize=4 * MAX_SHARDS)
def shard_tag(shard: int, count: int) -> str:
    """The hash tag of one shard's ingest keys (without braces)."""
    if not 0 <= shard < count <= MAX_SHARDS:
        raise ValueError(f"shard {shard} of {count}: shards are 0..count-1, count 1..{MAX_SHARDS}")
    if count == 1:
        return SINGLE_SHARD_TAG
    low = shard * REDIS_CLUSTER_HASH_SLOTS // count
    high = (shard + 1) * REDIS_CLUSTER_HASH_SLOTS // count
    margin = (high - low) // 4
    salt = 0
    while True:  # about (high - low) / 2 tries: 64 for 128 shards
        tag = f"ingest:{shard}of{count}:{salt}"
        if low + margin <= slot_of(tag) < high - margin:
            return tag
        salt += 1


@dataclass(frozen=True, slots=True)
class IngestShards:
    """N shards of the ingest keys; a source's events always go to the same one (its
    dedup sets and rate limit live there), a client's rate limit to its own."""

    count: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS:
            raise ValueError(f"ingest shards must be 1..{MAX_SHARDS}, not {self.count}")

    @property
    def all(self) -> range:
        return range(self.count)

    def tag(self, shard: int) -> str:
        return shard_tag(shard, self.count)

    def of_source(self, source_id: int) -> int:
        """Source ids are sequential, so the remainder spreads them evenly."""
        return source_id % self.count

    def of_client(self, client: str) -> int:
        """Where a client's rate limit lives (clients are names and addresses: hashed)."""
        if self.count == 1:
            return 0
        digest = hashlib.blake2b(client.encode("utf-8", "surrogatepass"), digest_size=8)
        return int.from_bytes(digest.digest(), "big") % self.count

    def ledger_id(self, shard: int, stream_id: str) -> str:
        """A stream entry's name in PostgreSQL's ingest ledger: unique across every
        shard's stream. With one shard it is the stream id itself, as it always was."""
        if self.count == 1:
            return stream_id
        return f"{self.tag(shard)}/{stream_id}"

    def parse_ledger_id(self, ledger_id: str) -> tuple[int, str]:
        """(shard, stream id) of a ledger id made by `ledger_id` with this many shards."""
        if self.count == 1:
            return 0, ledger_id
        tag, sep, stream_id = ledger_id.partition("/")
        shard = self._shards_by_tag().get(tag)
        if not sep or shard is None:
            raise ValueError(f"{ledger_id!r} is not a ledger id of {self.count} ingest shards")
        return shard, stream_id

    def _shards_by_tag(self) -> dict[str, int]:
        return _tags(self.count)


@functools.lru_cache(maxsize=8)
def _tags(count: int) -> dict[str, int]:
    return {shard_tag(k, count): k for k in range(count)}
