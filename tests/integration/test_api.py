"""The HTTP API against real PostgreSQL and Redis, through the app's own lifespan."""

from __future__ import annotations

import asyncio
import json
import math
import shutil
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.domain.entry import Level
from logkeep.embedded import EmbeddedRedis
from tests.conftest import Stores, make_settings, running_app

SEED_SOURCES = ("nginx_access", "app_errors", "db_slow_queries")
SEED_ENTRIES = 60
INJECTION = "'; DROP TABLE log_entries; --"
JSON_HEADERS = {"content-type": "application/json"}


async def source_ids(db: Database) -> dict[str, int]:
    async with db.pool.acquire() as conn:
        rows = await conn.fetch("SELECT name, id FROM log_sources")
    return {row["name"]: row["id"] for row in rows}


async def written_rows(db: Database) -> tuple[int, int]:
    """(entries, sum of rollup counts): both change on every accepted write."""
    async with db.pool.acquire() as conn:
        entries: int = await conn.fetchval("SELECT count(*) FROM log_entries")
        rollups: int = await conn.fetchval("SELECT coalesce(sum(count), 0) FROM log_metrics")
    return entries, rollups


async def post_json(client: httpx.AsyncClient, body: object) -> httpx.Response:
    # json.dumps (ASCII escapes) can express NUL and lone surrogates, as shippers send them.
    return await client.post("/api/v1/logs", content=json.dumps(body), headers=JSON_HEADERS)


def metric_samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def sample(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


# ---------------------------------------------------------------------------------------
# Health, readiness, metrics


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_ready(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready"}


@pytest.mark.slow  # starts its own redis-server
async def test_readyz_names_redis_when_redis_stops(settings: Settings) -> None:
    root = Path(tempfile.mkdtemp(prefix="lkr-", dir="/tmp"))
    server = EmbeddedRedis(root=root, ephemeral=True)
    try:
        await asyncio.to_thread(server.start)
        own = make_settings(settings.database_url or "", server.url())
        async with running_app(own) as client:
            response = await client.get("/readyz")
            assert response.status_code == 200, response.text
            assert response.json() == {"status": "ready"}

            await asyncio.to_thread(server.stop)

            started = time.monotonic()
            response = await client.get("/readyz")
            elapsed = time.monotonic() - started
            assert response.status_code == 503, response.text
            assert response.headers["content-type"] == "application/problem+json"
            body = response.json()
            assert body["status"] == 503 and body["title"] == "Service Unavailable"
            assert body["detail"].startswith("not ready: redis: "), body
            assert set(body["problems"]) == {"redis"}, body
            assert body["problems"]["redis"]
            # A readiness probe must answer promptly, not hang on the dead server.
            assert elapsed < 10, f"/readyz took {elapsed:.1f}s with Redis down"

            # Reads fall back to PostgreSQL while Redis is away.
            recent = await client.get("/api/v1/logs/recent", params={"limit": 5})
            assert recent.status_code == 200, recent.text
            assert len(recent.json()["items"]) == 5
    finally:
        await asyncio.to_thread(server.stop)
        shutil.rmtree(root, ignore_errors=True)


async def test_readyz_names_schema_when_a_migration_is_pending(
    client: httpx.AsyncClient, db: Database
) -> None:
    assert (await client.get("/readyz")).status_code == 200
    async with db.pool.acquire() as conn:
        deleted = await conn.execute("DELETE FROM schema_migrations WHERE version = 1")
    assert deleted == "DELETE 1"

    response = await client.get("/readyz")
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 503 and body["title"] == "Service Unavailable"
    assert body["detail"].startswith("not ready: schema: "), body
    assert set(body["problems"]) == {"schema"}, body
    assert "pending" in body["problems"]["schema"]
    assert "logkeep db migrate" in body["problems"]["schema"]


async def test_metrics_exposes_pool_cache_query_and_redis_figures(
    client: httpx.AsyncClient,
) -> None:
    before_response = await client.get("/metrics")
    assert before_response.status_code == 200
    before = metric_samples(before_response.text)

    params: dict[str, str | int] = {"source": "app_errors", "limit": 3}
    for _ in range(2):  # a miss, then a hit
        assert (await client.get("/api/v1/logs/recent", params=params)).status_code == 200

    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    for name in (
        "logkeep_pg_pool_size",
        "logkeep_cache_hits_total",
        "logkeep_cache_misses_total",
        "logkeep_query_seconds",
        "logkeep_redis_rtt_seconds",
    ):
        assert f"# TYPE {name}" in text or f"# TYPE {name.removesuffix('_total')}" in text, name
    after = metric_samples(text)

    assert sample(after, "logkeep_pg_pool_size") >= 1
    rtt = sample(after, "logkeep_redis_rtt_seconds")
    assert math.isfinite(rtt) and 0 < rtt < 5
    assert (
        sample(after, "logkeep_cache_misses_total", kind="recent")
        - sample(before, "logkeep_cache_misses_total", kind="recent")
        >= 1
    )
    assert (
        sample(after, "logkeep_cache_hits_total", kind="recent")
        - sample(before, "logkeep_cache_hits_total", kind="recent")
        >= 1
    )
    assert (
        sample(after, "logkeep_query_seconds_count", query="recent_logs")
        - sample(before, "logkeep_query_seconds_count", query="recent_logs")
        >= 1
    )


# ---------------------------------------------------------------------------------------
# Writing and reading entries


async def test_post_by_source_name_then_recent_returns_it_first(
    client: httpx.AsyncClient, db: Database
) -> None:
    ids = await source_ids(db)
    response = await post_json(
        client,
        {
            "source": "app_errors",
            "message": "payment failed: card declined",
            "level": "error",
            "metadata": {"order": 42, "tags": ["a", "b"]},
        },
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert isinstance(created["id"], int)
    assert created["source_id"] == ids["app_errors"]

    recent = await client.get("/api/v1/logs/recent", params={"source": "app_errors", "limit": 1})
    assert recent.status_code == 200, recent.text
    items = recent.json()["items"]
    assert len(items) == 1
    first = items[0]
    assert first["id"] == created["id"]
    assert first["source"] == "app_errors"
    assert first["source_id"] == ids["app_errors"]
    assert first["level"] == "ERROR"
    assert first["message"] == "payment failed: card declined"
    assert first["metadata"] == {"order": 42, "tags": ["a", "b"]}

    async with db.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT source_id, level::text AS level, message, metadata FROM log_entries"
            " WHERE id = $1",
            created["id"],
        )
    assert row is not None
    assert dict(row) == {
        "source_id": ids["app_errors"],
        "level": "ERROR",
        "message": "payment failed: card declined",
        "metadata": {"order": 42, "tags": ["a", "b"]},
    }


@pytest.mark.parametrize("as_text", [False, True], ids=["int-id", "digit-string-id"])
async def test_post_by_source_id_then_recent_returns_it_first(
    client: httpx.AsyncClient, db: Database, as_text: bool
) -> None:
    source_id = (await source_ids(db))["db_slow_queries"]
    before = await written_rows(db)
    response = await post_json(
        client,
        {"source": str(source_id) if as_text else source_id, "message": "SELECT took 9s"},
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["source_id"] == source_id
    assert await written_rows(db) == (before[0] + 1, before[1] + 1)

    for source in (str(source_id), "db_slow_queries"):
        recent = await client.get("/api/v1/logs/recent", params={"source": source, "limit": 1})
        assert recent.status_code == 200, recent.text
        (first,) = recent.json()["items"]
        assert first["id"] == created["id"]
        assert first["level"] == "INFO"  # the default level
        assert first["message"] == "SELECT took 9s"


async def test_cached_recent_read_does_not_hide_a_new_write(
    client: httpx.AsyncClient, settings: Settings, stores: Stores
) -> None:
    by_source: dict[str, str | int] = {"source": "nginx_access", "limit": 1}
    everything: dict[str, str | int] = {"limit": 5}
    first_by_source = (await client.get("/api/v1/logs/recent", params=by_source)).json()
    first_everything = (await client.get("/api/v1/logs/recent", params=everything)).json()
    # Read again: these are now served from the cache, and the cache really holds them.
    assert (await client.get("/api/v1/logs/recent", params=by_source)).json() == first_by_source
    assert (await client.get("/api/v1/logs/recent", params=everything)).json() == first_everything
    redis = aioredis.from_url(stores.redis_url)
    try:
        cached = [k async for k in redis.scan_iter(match=f"{settings.redis_key_prefix}cache:*")]
    finally:
        await redis.aclose()
    assert len(cached) >= 2, "recent reads were not cached; this test would prove nothing"

    response = await post_json(client, {"source": "nginx_access", "message": "GET /new 200"})
    assert response.status_code == 201, response.text
    new_id = response.json()["id"]

    after_by_source = (await client.get("/api/v1/logs/recent", params=by_source)).json()
    assert after_by_source["items"][0]["id"] == new_id
    assert after_by_source["items"][0]["id"] != first_by_source["items"][0]["id"]
    after_everything = (await client.get("/api/v1/logs/recent", params=everything)).json()
    assert after_everything["items"][0]["id"] == new_id
    assert [i["id"] for i in after_everything["items"][1:]] == [
        i["id"] for i in first_everything["items"][:4]
    ]


async def test_recent_without_filters_returns_all_seeded_entries_newest_first(
    client: httpx.AsyncClient, db: Database
) -> None:
    async with db.pool.acquire() as conn:
        expected = [
            r["id"]
            for r in await conn.fetch(
                'SELECT id FROM log_entries ORDER BY "timestamp" DESC, id DESC'
            )
        ]
    assert len(expected) == SEED_ENTRIES

    response = await client.get("/api/v1/logs/recent", params={"limit": 1000})
    assert response.status_code == 200
    assert [i["id"] for i in response.json()["items"]] == expected

    default = await client.get("/api/v1/logs/recent")
    assert [i["id"] for i in default.json()["items"]] == expected  # default limit is 100

    for limit in (1, 7, 59):
        limited = await client.get("/api/v1/logs/recent", params={"limit": limit})
        assert [i["id"] for i in limited.json()["items"]] == expected[:limit]


@pytest.mark.parametrize("source", SEED_SOURCES)
async def test_recent_filters_by_source_and_level(
    client: httpx.AsyncClient, db: Database, source: str
) -> None:
    async with db.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT e.id, e.level::text AS level FROM log_entries e JOIN log_sources s"
            ' ON s.id = e.source_id WHERE s.name = $1 ORDER BY e."timestamp" DESC, e.id DESC',
            source,
        )
    assert len(rows) == 20

    response = await client.get("/api/v1/logs/recent", params={"source": source, "limit": 1000})
    items = response.json()["items"]
    assert [i["id"] for i in items] == [r["id"] for r in rows]
    assert {i["source"] for i in items} == {source}

    for level in Level:
        expected = [r["id"] for r in rows if r["level"] == level.value]
        assert expected, f"seed has no {level} entries of {source}"
        for spelling in (level.value, level.value.lower()):
            response = await client.get(
                "/api/v1/logs/recent", params={"source": source, "level": spelling, "limit": 1000}
            )
            assert response.status_code == 200, response.text
            items = response.json()["items"]
            assert [i["id"] for i in items] == expected
            assert {(i["source"], i["level"]) for i in items} == {(source, level.value)}
        limited = await client.get(
            "/api/v1/logs/recent", params={"source": source, "level": level.value, "limit": 2}
        )
        assert [i["id"] for i in limited.json()["items"]] == expected[:2]


async def test_recent_filters_by_level_across_sources(
    client: httpx.AsyncClient, db: Database
) -> None:
    async with db.pool.acquire() as conn:
        expected = [
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM log_entries WHERE level = 'WARN'"
                ' ORDER BY "timestamp" DESC, id DESC'
            )
        ]
    assert len(expected) == 12
    for spelling in ("WARN", "warning"):  # the alias shippers send
        response = await client.get(
            "/api/v1/logs/recent", params={"level": spelling, "limit": 1000}
        )
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        assert [i["id"] for i in items] == expected
        assert {i["level"] for i in items} == {"WARN"}
        assert {i["source"] for i in items} == set(SEED_SOURCES)


async def test_injection_string_as_message_is_stored_verbatim(
    client: httpx.AsyncClient, db: Database
) -> None:
    message = INJECTION + " \\x00 ' \" $1 ; -- ünïcødé 😀"
    metadata = {INJECTION: INJECTION, "nested": {"q": "' OR 1=1 --"}}
    before = await written_rows(db)
    response = await post_json(
        client, {"source": "app_errors", "message": message, "metadata": metadata}
    )
    assert response.status_code == 201, response.text
    entry_id = response.json()["id"]

    async with db.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT message, metadata FROM log_entries WHERE id = $1", entry_id
        )
        assert await conn.fetchval("SELECT to_regclass('log_entries') IS NOT NULL")
    assert row is not None
    assert row["message"] == message
    assert row["metadata"] == metadata
    assert await written_rows(db) == (before[0] + 1, before[1] + 1)

    recent = await client.get("/api/v1/logs/recent", params={"source": "app_errors", "limit": 1})
    (first,) = recent.json()["items"]
    assert first["id"] == entry_id
    assert first["message"] == message
    assert first["metadata"] == metadata


# ---------------------------------------------------------------------------------------
# Rejected input


def _entry(**fields: Any) -> dict[str, Any]:
    return {"source": "app_errors", "message": "a valid message", **fields}


BAD_BODIES: list[tuple[str, Any, str]] = [
    # (case id, JSON body or raw bytes, word the error must contain)
    ("unknown-source-name", _entry(source="no_such_source"), "source"),
    ("unknown-source-id", _entry(source=999999), "source"),
    ("source-id-zero", _entry(source=0), "source"),
    ("empty-source", _entry(source=""), "source"),
    ("injection-source", _entry(source=INJECTION), "source"),
    ("boolean-source", _entry(source=True), "source"),
    ("missing-source", {"message": "no source"}, "source"),
    ("empty-message", _entry(message=""), "message"),
    ("blank-message", _entry(message=" \t\n "), "message"),
    ("missing-message", {"source": "app_errors"}, "message"),
    ("message-not-string", _entry(message=42), "message"),
    ("nul-in-message", _entry(message="before\u0000after"), "message"),
    # An unpaired surrogate escape is not Unicode: the JSON parser refuses it, naming the
    # line and column.
    ("lone-surrogate-in-message", _entry(message="bad \ud800 text"), "column"),
    ("unknown-level", _entry(level="LOUD"), "level"),
    ("level-not-string", _entry(level=5), "level"),
    ("timestamp-decades-ago", _entry(timestamp="1990-01-01T00:00:00Z"), "timestamp"),
    ("timestamp-epoch-zero", _entry(timestamp=0), "timestamp"),
    ("timestamp-far-future", _entry(timestamp="2200-01-01T00:00:00Z"), "timestamp"),
    ("timestamp-not-a-time", _entry(timestamp="yesterday-ish"), "timestamp"),
    ("metadata-list", _entry(metadata=[1, 2]), "metadata"),
    ("metadata-string", _entry(metadata="k=v"), "metadata"),
    ("nul-in-metadata-value", _entry(metadata={"k": "a\u0000b"}), "metadata"),
    ("nul-in-metadata-key", _entry(metadata={"k\u0000": "v"}), "metadata"),
    ("unknown-field", _entry(colour="red"), "colour"),
    ("malformed-json", b'{"source": "app_errors", "message": ', "json"),
    ("json-array", b'[{"source": "app_errors", "message": "x"}]', "body"),
    ("empty-body", b"", "body"),
    ("not-utf8", b'{"source": "app_errors", "message": "caf\xe9 \xff\xfe"}', "body"),
]


@pytest.mark.parametrize(
    ("body", "field"), [(b, f) for _, b, f in BAD_BODIES], ids=[c for c, _, _ in BAD_BODIES]
)
async def test_bad_entry_is_rejected_with_422_naming_the_field_and_writes_nothing(
    client: httpx.AsyncClient, db: Database, body: Any, field: str
) -> None:
    before = await written_rows(db)
    if isinstance(body, bytes):
        response = await client.post("/api/v1/logs", content=body, headers=JSON_HEADERS)
    else:
        response = await post_json(client, body)
    assert response.status_code == 422, f"{response.status_code}: {response.text}"
    assert field.lower() in response.text.lower(), response.text
    assert await written_rows(db) == before
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT to_regclass('log_entries') IS NOT NULL")
        assert await conn.fetchval("SELECT count(*) FROM log_sources") == len(SEED_SOURCES)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": -1}, "limit"),
        ({"limit": 5000}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"level": "bogus"}, "level"),
        ({"level": ""}, "level"),
        ({"source": "no_such_source"}, "source"),
        ({"source": INJECTION}, "source"),
    ],
    ids=[
        "limit-0",
        "limit-negative",
        "limit-5000",
        "limit-not-int",
        "level-bogus",
        "level-empty",
        "source-unknown",
        "source-injection",
    ],
)
async def test_recent_rejects_bad_parameters(
    client: httpx.AsyncClient, db: Database, params: dict[str, Any], field: str
) -> None:
    response = await client.get("/api/v1/logs/recent", params=params)
    assert response.status_code == 422, f"{response.status_code}: {response.text}"
    assert field in response.text, response.text
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM log_entries") == SEED_ENTRIES


@pytest.mark.parametrize(
    "source", [1099511627776, 2**31, "²", "١٢", "app\u0000errors", "A" * 300, "", "-1"]
)
async def test_sources_that_cannot_exist_are_422_not_500(
    client: httpx.AsyncClient, db: Database, source: object
) -> None:
    before = await written_rows(db)
    write = await post_json(client, {"source": source, "message": "x"})
    assert write.status_code == 422, write.text
    assert "source" in write.text
    if isinstance(source, str) and source:
        read = await client.get("/api/v1/logs/recent", params={"source": source})
        assert read.status_code == 422, read.text
    assert await written_rows(db) == before


async def test_all_digit_source_names_are_refused(db: Database) -> None:
    # "12" must always mean the source with id 12, never a source named "12".
    async with db.pool.acquire() as conn:
        with pytest.raises(asyncpg.CheckViolationError):
            await conn.execute(
                "INSERT INTO log_sources (name, source_type, format_type) "
                "VALUES ('12', 'app', 'json')"
            )


async def test_oversized_body_is_413_naming_the_limit(stores: Stores, settings: Settings) -> None:
    small = settings.model_copy(update={"max_body_bytes": 2048})
    async with running_app(small) as client:
        big = json.dumps({"source": "app_errors", "message": "x" * 5000})
        declared = await client.post("/api/v1/logs", content=big, headers=JSON_HEADERS)

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(5):
                yield b" " * 1000  # no Content-Length: streamed

        streamed = await client.post("/api/v1/logs", content=chunks(), headers=JSON_HEADERS)
    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        assert "2048-byte limit" in response.text


async def test_running_api_keeps_partitions_ahead(settings: Settings, db: Database) -> None:
    ahead = (datetime.now(UTC) + timedelta(days=2)).date()
    name = f"log_entries_p{ahead:%Y%m%d}"
    async with db.pool.acquire() as conn:
        await conn.execute("SELECT drop_log_partition($1::date)", ahead)
        assert await conn.fetchval("SELECT to_regclass($1)", name) is None
    async with running_app(settings.model_copy(update={"maintenance_interval_s": 3600})):
        deadline = time.monotonic() + 10
        while True:
            async with db.pool.acquire() as conn:
                if await conn.fetchval("SELECT to_regclass($1)", name) is not None:
                    break
            assert time.monotonic() < deadline, "maintenance did not create the partition"
            await asyncio.sleep(0.1)


async def test_responses_carry_server_timing(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    name, _, duration = response.headers["server-timing"].partition(";dur=")
    assert name == "app"
    assert 0 <= float(duration) < 10_000
