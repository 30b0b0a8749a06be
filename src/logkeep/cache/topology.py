"""What `logkeep doctor` looks at on a Redis Cluster: every primary's INFO, and which
primary holds each ingest shard (a resharding can pile them onto one)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from logkeep.cache.client import is_cluster
from logkeep.cache.keys import Keys


async def servers_info(client: aioredis.Redis) -> dict[str, dict[str, Any]]:
    """INFO of each server logkeep writes to: the one server ("" names it), or every
    primary of a cluster, by address."""
    if is_cluster(client):
        replies: dict[str, dict[str, Any]] = await client.info(target_nodes=RedisCluster.PRIMARIES)
        return replies
    return {"": await client.info()}


def shard_placement(client: aioredis.Redis, keys: Keys) -> dict[str, list[int]]:
    """Cluster primary address -> the ingest shards whose keys it holds (the client
    must have answered a command: it knows the cluster's layout then)."""
    assert isinstance(client, RedisCluster)
    placement: dict[str, list[int]] = {n.name: [] for n in client.get_primaries()}
    for shard in keys.shards.all:
        node = client.get_node_from_key(keys.ingest_stream(shard))
        placement.setdefault(node.name, []).append(shard)
    return placement


def judge_shard_spread(placement: dict[str, list[int]]) -> tuple[bool, str]:
    """(even, what to say): ingest spreads over the primaries only as far as its shards
    do. Even: every primary holds some, none more than its share (rounded up)."""
    counts = {address: len(shards) for address, shards in placement.items()}
    total = sum(counts.values())
    fair = -(-total // len(counts))  # ceil
    spread = ", ".join(f"{a}: {n}" for a, n in sorted(counts.items()))
    idle = [a for a, n in counts.items() if n == 0]
    if total < len(counts):
        return False, f"{total} ingest shards for {len(counts)} primaries ({spread})"
    if max(counts.values()) > fair or idle:
        return False, f"ingest shards unevenly placed ({spread})"
    return True, f"{total} ingest shards over {len(counts)} primaries ({spread})"
