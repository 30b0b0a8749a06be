"""Redis key construction."""

from __future__ import annotations

from datetime import UTC, datetime

from logkeep.cache.keys import CACHE_FORMAT_VERSION, Keys
from logkeep.config import Settings

PARAMS: dict[str, object] = {"source_id": 3, "level": "ERROR", "limit": 100}


def test_default_prefix_matches_settings_default() -> None:
    assert Keys().prefix == "logkeep:"
    assert Keys().prefix == Settings.model_fields["redis_key_prefix"].default


def test_generation_keys() -> None:
    keys = Keys("t1:")
    assert keys.source_generation(7) == "t1:gen:source:7"
    assert keys.source_generation(7) != keys.source_generation(8)
    assert keys.all_sources_generation() == "t1:gen:all"
    assert keys.source_rules(7) == "t1:source:rules:7"
    assert keys.source_rules_by_name("nginx_access") == "t1:source:rules:name:nginx_access"


def test_ingest_keys_share_one_hash_tag() -> None:
    """The ingest script touches them together: on Redis Cluster they need one slot."""
    keys = Keys("t1:")
    ingest_keys = [
        keys.ingest_stream(),
        keys.ingest_backlog_bytes(),
        keys.dedup_bucket(12),
        keys.rate_limit("source", "3"),
        keys.request_result("abc"),
    ]
    assert all("{ingest}" in k and k.startswith("t1:") for k in ingest_keys)
    assert len(set(ingest_keys)) == len(ingest_keys)


def test_cached_query_carries_prefix_kind_version_and_generations() -> None:
    key = Keys("t1:").cached_query("recent", PARAMS, [4, 9])
    assert key.startswith(f"t1:cache:v{CACHE_FORMAT_VERSION}:recent:4.9:")
    digest = key.rsplit(":", 1)[1]
    assert len(digest) == 24
    int(digest, 16)  # hex


def test_cached_query_differs_by_prefix() -> None:
    assert Keys("a:").cached_query("recent", PARAMS, [1]) != Keys("b:").cached_query(
        "recent", PARAMS, [1]
    )


def test_cached_query_is_stable_under_dict_ordering() -> None:
    keys = Keys()
    a = {"source_id": 3, "level": "ERROR", "limit": 100, "filter": {"x": 1, "y": [1, 2]}}
    b = {"filter": {"y": [1, 2], "x": 1}, "limit": 100, "level": "ERROR", "source_id": 3}
    assert list(a) != list(b)
    assert keys.cached_query("recent", dict(a), [1, 2]) == keys.cached_query(
        "recent", dict(b), [1, 2]
    )


def test_cached_query_is_deterministic_across_instances() -> None:
    assert Keys("p:").cached_query("summary", PARAMS, [5]) == Keys("p:").cached_query(
        "summary", dict(PARAMS), [5]
    )


def test_cached_query_changes_with_params() -> None:
    keys = Keys()
    base = keys.cached_query("recent", PARAMS, [1])
    variants: list[dict[str, object]] = [
        {**PARAMS, "limit": 101},
        {**PARAMS, "level": None},
        {**PARAMS, "source_id": "3"},
        {**PARAMS, "extra": True},
        {k: v for k, v in PARAMS.items() if k != "limit"},
        {**PARAMS, "since": datetime(2024, 5, 1, tzinfo=UTC)},
    ]
    produced = {keys.cached_query("recent", p, [1]) for p in variants}
    assert base not in produced
    assert len(produced) == len(variants)


def test_cached_query_changes_with_generations() -> None:
    keys = Keys()
    generations = [[1], [2], [1, 2], [2, 1], [12, 3], [1, 23], []]
    produced = {keys.cached_query("recent", PARAMS, g) for g in generations}
    assert len(produced) == len(generations)


def test_cached_query_changes_with_kind() -> None:
    keys = Keys()
    assert keys.cached_query("recent", PARAMS, [1]) != keys.cached_query("summary", PARAMS, [1])
