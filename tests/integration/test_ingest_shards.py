"""Ingest spread over several shards on one Redis: the code path a Redis Cluster takes,
with every guarantee of one stream (dedup, rate limits, backlog, Idempotency-Key,
durable answers, exactly once), and the worker draining every shard."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.ingest.worker import Worker
from tests.conftest import running_app

NDJSON = {"Content-Type": "application/x-ndjson"}
SHARDS = 4


def ndjson(events: list[dict[str, Any]]) -> bytes:
    return b"\n".join(orjson.dumps(e) for e in events)


@pytest.fixture
def sharded(settings: Settings) -> Settings:
    return settings.model_copy(update={"ingest_shards": SHARDS})


@pytest.fixture
async def sharded_db(sharded: Settings) -> AsyncIterator[Database]:
    async with Database(sharded) as database:
        yield database


@pytest.fixture
async def api(sharded: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(sharded) as http:
        yield http


async def sources_by_shard(db: Database) -> dict[int, str]:
    """One source name per shard that has one (the seed's three sources: three shards)."""
    async with db.pool.acquire() as conn:
        rows = await conn.fetch("SELECT id, name FROM log_sources ORDER BY id")
    found: dict[int, str] = {}
    for row in rows:
        found.setdefault(db.keys.shards.of_source(row["id"]), row["name"])
    assert len(found) >= 3, "the seed's sources should land on three shards"
    return found


async def stream_lengths(db: Database) -> list[int]:
    return [await db.redis.xlen(db.keys.ingest_stream(s)) for s in db.keys.shards.all]


async def messages(db: Database, tag: str) -> list[str]:
    async with db.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT message FROM log_entries WHERE message LIKE $1 ORDER BY message", f"%{tag}%"
        )
    return [r["message"] for r in rows]


async def test_a_request_over_three_shards_lands_once_and_retries_are_duplicates(
    api: httpx.AsyncClient, sharded_db: Database, sharded: Settings
) -> None:
    db = sharded_db
    by_shard = await sources_by_shard(db)
    tag = uuid.uuid4().hex
    events = [
        {"source": name, "message": f"{tag} {shard}-{i}", "event_id": f"{tag}-{shard}-{i}"}
        for shard, name in by_shard.items()
        for i in range(3)
    ]
    first = await api.post("/api/v1/ingest", content=ndjson(events), headers=NDJSON)
    assert first.status_code == 202, first.text
    assert first.json()["accepted"] == len(events)
    lengths = await stream_lengths(db)
    assert sorted(s for s, n in enumerate(lengths) if n) == sorted(by_shard)
    # Dedup is per source on the source's shard: the same events again are duplicates.
    again = await api.post("/api/v1/ingest", content=ndjson(events), headers=NDJSON)
    assert again.json()["duplicates"] == len(events)
    assert await stream_lengths(db) == lengths

    assert await Worker(db, sharded, name="shards").drain() == len(events)
    assert await messages(db, tag) == sorted(e["message"] for e in events)
    assert await stream_lengths(db) == [0] * SHARDS
    for shard in db.keys.shards.all:
        assert int(await db.redis.get(db.keys.ingest_backlog_bytes(shard)) or 0) == 0
    async with db.pool.acquire() as conn:
        ledger = await conn.fetch(
            "SELECT entry_id FROM ingest_ledger ORDER BY committed_at DESC LIMIT 10"
        )
    # Ledger ids name their shard: entries of two streams never collide.
    tags = {r["entry_id"].split("/")[0] for r in ledger}
    assert {db.keys.shards.tag(s) for s in by_shard} <= tags


async def test_an_idempotency_key_replays_every_part(
    api: httpx.AsyncClient, sharded_db: Database, sharded: Settings
) -> None:
    by_shard = await sources_by_shard(sharded_db)
    tag = uuid.uuid4().hex
    # No event id, no timestamp of their own: only the Idempotency-Key tells a retry.
    events = [{"source": name, "message": f"{tag} {s}"} for s, name in by_shard.items()]
    headers = {**NDJSON, "Idempotency-Key": f"batch-{tag}"}
    first = await api.post("/api/v1/ingest", content=ndjson(events), headers=headers)
    retry = await api.post("/api/v1/ingest", content=ndjson(events), headers=headers)
    assert first.json()["accepted"] == len(events)
    assert retry.json() | {"errors": []} == {
        "accepted": 0, "duplicates": len(events), "rejected": 0, "errors": [],
        "committed": False, "replayed": True,
    }  # fmt: skip
    await Worker(sharded_db, sharded, name="idem").drain()
    assert await messages(sharded_db, tag) == sorted(e["message"] for e in events)


async def test_a_refusal_on_one_shard_appends_and_spends_nothing_elsewhere(
    sharded_db: Database, sharded: Settings
) -> None:
    db = sharded_db
    by_shard = await sources_by_shard(db)
    (limited_shard, limited), (free_shard, free) = list(by_shard.items())[:2]
    async with db.pool.acquire() as conn:
        await conn.execute(
            "UPDATE log_sources SET configuration = configuration || "
            '\'{"rate_limit_eps": 1, "rate_limit_burst": 2}\' WHERE name = $1',
            limited,
        )
    tag = uuid.uuid4().hex
    async with running_app(sharded) as api:
        # A full budget admits one request of any size; the next one is refused.
        warm = [{"source": limited, "message": f"warm {tag}"}] * 3
        assert (await api.post("/api/v1/ingest", content=ndjson(warm), headers=NDJSON)).is_success
        free_id = await db.pool.fetchval("SELECT id FROM log_sources WHERE name = $1", free)
        free_key = db.keys.rate_limit("source", str(free_id), free_shard)
        budget_before = await db.redis.get(free_key)
        lengths = await stream_lengths(db)
        mixed = [
            {"source": free, "message": f"free {tag}", "event_id": f"free-{tag}"},
            {"source": limited, "message": f"limited {tag}", "event_id": f"lim-{tag}"},
        ]
        refused = await api.post("/api/v1/ingest", content=ndjson(mixed), headers=NDJSON)
        assert refused.status_code == 429, refused.text
        assert int(refused.headers["Retry-After"]) >= 1
        # Nothing appended on any shard, the other source's budget given back, and its
        # event not marked as seen: sent alone, it is accepted, not a duplicate.
        assert await stream_lengths(db) == lengths
        assert await db.redis.get(free_key) == budget_before
        alone = await api.post("/api/v1/ingest", content=ndjson(mixed[:1]), headers=NDJSON)
        assert alone.json()["accepted"] == 1
    assert limited_shard != free_shard


async def test_a_refusal_on_the_one_shard_of_a_request_gives_the_client_charge_back(
    sharded_db: Database, sharded: Settings
) -> None:
    """All the records on one shard, the client's rate limit on another: the client is
    charged first, and the source's refusal gives that charge back."""
    db = sharded_db
    by_shard = await sources_by_shard(db)
    async with running_app(sharded) as api:
        probe = [{"source": by_shard[min(by_shard)], "message": "who am I"}]
        assert (await api.post("/api/v1/ingest", content=ndjson(probe), headers=NDJSON)).is_success
    (client_key,) = [
        k.decode() async for k in db.redis.scan_iter(match=f"{db.keys.prefix}*:rate:client:*")
    ]
    client = client_key.rsplit(":rate:client:", 1)[1]
    home = db.keys.shards.of_client(client)
    shard, limited = next((s, n) for s, n in by_shard.items() if s != home)
    async with db.pool.acquire() as conn:
        await conn.execute(
            "UPDATE log_sources SET configuration = configuration || "
            '\'{"rate_limit_eps": 1, "rate_limit_burst": 2}\' WHERE name = $1',
            limited,
        )
        limited_id = await conn.fetchval("SELECT id FROM log_sources WHERE name = $1", limited)
    await db.redis.delete(*db.keys.source_rules_copies(limited_id, limited))  # cached rules
    async with running_app(sharded) as api:
        warm = [{"source": limited, "message": "warm"}] * 3
        assert (await api.post("/api/v1/ingest", content=ndjson(warm), headers=NDJSON)).is_success
        charged = float(await db.redis.get(client_key) or 0)
        lengths = await stream_lengths(db)
        refused = await api.post("/api/v1/ingest", content=ndjson(warm[:1]), headers=NDJSON)
        assert refused.status_code == 429, refused.text
        assert float(await db.redis.get(client_key) or 0) <= charged  # nothing kept
        assert await stream_lengths(db) == lengths
    assert shard != home


async def test_the_backlog_bound_is_shared_out_between_the_shards(sharded: Settings) -> None:
    small = sharded.model_copy(update={"ingest_max_backlog_bytes": 4 * 2048})
    async with Database(small) as sharded_db, running_app(small) as api:
        by_shard = await sources_by_shard(sharded_db)
        (full_shard, full), (_, other) = list(by_shard.items())[:2]
        big = [{"source": full, "message": "x" * 1500}]
        statuses = [
            (await api.post("/api/v1/ingest", content=ndjson(big), headers=NDJSON)).status_code
            for _ in range(3)
        ]
        # Each shard holds its quarter of the bound (2048 bytes): the second 1.5 kB
        # request passes it, the third is refused...
        assert statuses == [202, 202, 503]
        held = await sharded_db.redis.get(sharded_db.keys.ingest_backlog_bytes(full_shard))
        assert int(held or 0) > 2048
        # ...while another shard still takes events.
        small_event = [{"source": other, "message": "still fine"}]
        ok = await api.post("/api/v1/ingest", content=ndjson(small_event), headers=NDJSON)
        assert ok.status_code == 202
        await Worker(sharded_db, small, name="backlog").drain()
        again = await api.post("/api/v1/ingest", content=ndjson(big), headers=NDJSON)
        assert again.status_code == 202


async def test_a_durable_request_waits_for_every_shard_it_touched(
    api: httpx.AsyncClient, sharded_db: Database, sharded: Settings
) -> None:
    db = sharded_db
    by_shard = await sources_by_shard(db)
    (first_shard, first), (second_shard, second) = list(by_shard.items())[:2]
    tag = uuid.uuid4().hex
    events = [
        {"source": first, "message": f"{tag} a"},
        {"source": second, "message": f"{tag} b"},
    ]
    stop = asyncio.Event()
    only_first = asyncio.create_task(
        Worker(db, sharded, name="first", shards=[first_shard]).run(stop)
    )
    later: asyncio.Task[None] | None = None
    try:
        body = ndjson(events)
        durable = {"mode": "durable"}
        request = asyncio.create_task(
            api.post("/api/v1/ingest", params=durable, content=body, headers=NDJSON)
        )
        await asyncio.sleep(1.0)
        assert not request.done(), "answered before the second shard was committed"
        assert await messages(db, tag) == [f"{tag} a"]
        later = asyncio.create_task(
            Worker(db, sharded, name="second", shards=[second_shard]).run(stop)
        )
        response = await asyncio.wait_for(request, 10)
        assert response.status_code == 200, response.text
        assert response.json()["committed"] is True
        assert await messages(db, tag) == [f"{tag} a", f"{tag} b"]
    finally:
        stop.set()
        await only_first
        if later is not None:
            await later


async def test_metrics_sum_every_shard(
    api: httpx.AsyncClient, sharded_db: Database, sharded: Settings
) -> None:
    by_shard = await sources_by_shard(sharded_db)
    events = [{"source": name, "message": "metric"} for name in by_shard.values()]
    await api.post("/api/v1/ingest", content=ndjson(events), headers=NDJSON)
    text = (await api.get("/metrics")).text
    assert f"logkeep_ingest_stream_length {float(len(by_shard))}" in text
    await Worker(sharded_db, sharded, name="metrics").drain()
    text = (await api.get("/metrics")).text
    assert "logkeep_ingest_stream_length 0.0" in text
    assert "logkeep_ingest_backlog_bytes 0.0" in text
