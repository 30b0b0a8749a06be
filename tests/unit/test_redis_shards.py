"""Ingest shards and the hash slots of every key: what keeps Redis Cluster's multi-key
operations in one slot, and ingest spread over the cluster."""

from __future__ import annotations

from collections import Counter

import pytest
from redis.crc import REDIS_CLUSTER_HASH_SLOTS

from logkeep.cache.ingest_buffer import Part, RateLimit, plan_parts, single_call
from logkeep.cache.keys import Keys
from logkeep.cache.shards import MAX_SHARDS, IngestShards, shard_tag, slot_of
from logkeep.config import Settings


def test_one_shard_keeps_the_keys_it_always_had() -> None:
    keys = Keys("logkeep:")
    assert keys.ingest_stream() == "logkeep:{ingest}:stream"
    assert keys.ingest_stream(0) == keys.ingest_stream()
    assert keys.shards.ledger_id(0, "1700000000000-3") == "1700000000000-3"
    assert keys.shards.parse_ledger_id("1700000000000-3") == (0, "1700000000000-3")


@pytest.mark.parametrize("count", [2, 3, 4, 6, 12, 64, MAX_SHARDS])
def test_shard_k_lies_in_the_middle_of_the_kth_slot_range(count: int) -> None:
    width = REDIS_CLUSTER_HASH_SLOTS / count
    for shard in range(count):
        slot = slot_of("{" + shard_tag(shard, count) + "}")
        assert shard * width + width / 4 - 1 <= slot < (shard + 1) * width - width / 4 + 1


@pytest.mark.parametrize("primaries", [1, 2, 3, 4, 6])
def test_twelve_shards_spread_evenly_over_an_even_split_of_primaries(primaries: int) -> None:
    """`redis-cli --cluster create` gives each primary a contiguous, equal range."""
    per_primary = REDIS_CLUSTER_HASH_SLOTS / primaries
    keys = Keys("p:", 12)
    owners = Counter(int(slot_of(keys.ingest_stream(s)) // per_primary) for s in range(12))
    assert sorted(owners.values()) == [12 // primaries] * primaries


def test_every_key_of_a_shard_is_in_one_slot_and_shards_differ() -> None:
    keys = Keys("lk:", 6)
    slots = []
    for shard in range(6):
        family = {
            slot_of(k)
            for k in (
                keys.ingest_stream(shard),
                keys.ingest_backlog_bytes(shard),
                keys.dedup_bucket(123, shard),
                keys.rate_limit("source", "7", shard),
                keys.rate_limit("client", "10.0.0.1", shard),
                keys.request_result("abc", shard),
            )
        }
        assert len(family) == 1
        slots.append(family.pop())
    assert len(set(slots)) == 6


def test_login_counters_counted_by_one_script_share_a_slot() -> None:
    keys = Keys("lk:")
    assert slot_of(keys.login_failures("user", "alice")) == slot_of(
        keys.login_failures("addr", "10.1.2.3")
    )


def test_generation_counters_spread_over_slots() -> None:
    keys = Keys("lk:")
    slots = {slot_of(keys.source_generation(s)) for s in range(1, 200)}
    assert len(slots) > 150  # no tag: they do not pile onto one slot


def test_a_brace_in_the_prefix_is_refused() -> None:
    with pytest.raises(ValueError, match="brace"):
        Keys("app{1}:")
    with pytest.raises(ValueError, match="LOGKEEP_REDIS_KEY_PREFIX"):
        Settings(_env_file=None, redis_key_prefix="x}:")


def test_shard_counts_out_of_range_are_refused() -> None:
    for count in (0, MAX_SHARDS + 1):
        with pytest.raises(ValueError, match=r"1\.\.256"):
            IngestShards(count)
    with pytest.raises(ValueError, match="shard 3 of 3"):
        shard_tag(3, 3)


def test_ledger_ids_name_their_shard_and_round_trip() -> None:
    shards = IngestShards(5)
    ids = {shards.ledger_id(s, "1700000000000-0") for s in range(5)}
    assert len(ids) == 5  # the same stream id on five streams: five ledger rows
    for s in range(5):
        assert shards.parse_ledger_id(shards.ledger_id(s, "17-4")) == (s, "17-4")
    with pytest.raises(ValueError, match="not a ledger id"):
        shards.parse_ledger_id("17-4")
    with pytest.raises(ValueError, match="not a ledger id"):
        IngestShards(6).parse_ledger_id(shards.ledger_id(1, "17-4"))


def test_sources_go_round_their_shards_and_clients_hash_stably() -> None:
    shards = IngestShards(4)
    assert [shards.of_source(s) for s in range(1, 9)] == [1, 2, 3, 0, 1, 2, 3, 0]
    assert shards.of_client("key:42") == IngestShards(4).of_client("key:42")
    spread = Counter(shards.of_client(f"10.0.0.{i}") for i in range(400))
    assert min(spread.values()) > 60
    assert IngestShards(1).of_client("anyone") == 0


def source_limit(source_id: int, cost: int = 1) -> RateLimit:
    return RateLimit("source", str(source_id), 100, 100, cost)


def test_a_request_is_split_by_the_shards_of_its_sources() -> None:
    shards = IngestShards(4)
    limits = [source_limit(1, 2), source_limit(2, 1), RateLimit("client", "c", 10, 10, 4)]
    home = shards.of_client("c")
    parts, only_limits = plan_parts(shards, [1, 2, None, 1], limits)
    # The dead letter (no source) goes with the request's first sourced record.
    assert parts == [Part(1, (0, 2, 3), (0,)), Part(2, (1,), (1,))]
    assert only_limits == [Part(home, (), (2,))]
    assert single_call(parts, only_limits) is None


def test_a_request_on_one_shard_is_one_call() -> None:
    shards = IngestShards(4)
    client = next(f"c{i}" for i in range(100) if shards.of_client(f"c{i}") == 1)
    limits = [source_limit(5), RateLimit("client", client, 10, 10, 2)]
    parts, only_limits = plan_parts(shards, [5, 1], limits)
    assert single_call(parts, only_limits) == Part(1, (0, 1), (0, 1))
    # One shard: always one call, as it always was.
    one = IngestShards(1)
    assert single_call(*plan_parts(one, [1, 2, 3], limits)) == Part(0, (0, 1, 2), (0, 1))
    # No records at all (an Idempotency-Key alone): one call on shard 0.
    assert single_call(*plan_parts(shards, [], [])) == Part(0, (), ())


def test_an_unknown_limit_scope_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="neither source nor client"):
        plan_parts(IngestShards(2), [1], [RateLimit("tenant", "x", 1, 1, 1)])


def test_shard_spread_is_judged_by_the_busiest_primary() -> None:
    from logkeep.cache.topology import judge_shard_spread

    even, detail = judge_shard_spread({"a:1": [0, 3], "b:2": [1, 4], "c:3": [2, 5]})
    assert even and detail.startswith("6 ingest shards over 3 primaries")
    assert judge_shard_spread({"a:1": [0, 3], "b:2": [1, 4], "c:3": [2]})[0]  # 5 over 3
    # After a resharding: a primary with more than its share, or with none.
    assert not judge_shard_spread({"a:1": [0, 3, 4], "b:2": [1], "c:3": [2, 5]})[0]
    assert not judge_shard_spread({"a:1": [0, 1, 2], "b:2": [3, 4, 5], "c:3": []})[0]
    lone = judge_shard_spread({"a:1": [0], "b:2": [], "c:3": []})
    assert lone == (False, "1 ingest shards for 3 primaries (a:1: 1, b:2: 0, c:3: 0)")
