"""logkeep on a real Redis Cluster of three primaries and three replicas on loopback
ports (`redis-server --cluster-enabled yes`, `redis-cli --cluster create`): everything
works; a primary killed with SIGKILL under durable ingest, and a slot range resharded
under load, lose and double nothing, and the API recovers without a restart."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import orjson
import pytest
from pydantic import SecretStr

from logkeep.cache.shards import slot_of
from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.db.seed import TEST_PASSWORDS
from logkeep.doctor import Status, redis_checks
from logkeep.embedded import LoopbackRedisCluster, temporary_root
from tests.conftest import make_settings, served
from tests.integration.redis_failover import (
    NDJSON,
    Load,
    Workers,
    acknowledged,
    add_sources,
    assert_stored_exactly_once,
    backlog_empty,
    ndjson,
    one_source_per_shard,
    wait_until,
)
from tests.integration.test_tail import read_events

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("redis-cli") is None, reason="needs redis-cli"),
]


@pytest.fixture
def cluster() -> Iterator[LoopbackRedisCluster]:
    with temporary_root("lk-rc-") as root:
        redis_cluster = LoopbackRedisCluster(root, primaries=3, replicas=1)
        try:
            redis_cluster.start()
            yield redis_cluster
        finally:
            redis_cluster.stop()


@pytest.fixture
def cluster_settings(database_url_fixture: str, cluster: LoopbackRedisCluster) -> Settings:
    return make_settings(
        database_url_fixture,
        cluster.url,
        worker_batch_wait_ms=20,
        worker_claim_idle_ms=1000,
        ingest_durable_timeout_s=20.0,
    )


@pytest.fixture
async def cluster_db(cluster_settings: Settings) -> AsyncIterator[Database]:
    async with Database(cluster_settings) as db:
        await add_sources(db, 12)
        yield db


def shard_owners(cluster: LoopbackRedisCluster, db: Database) -> dict[int, str]:
    owners = cluster.slot_owners()
    return {s: owners[slot_of(db.keys.ingest_stream(s))] for s in db.keys.shards.all}


def metric_total(text: str, name: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


async def login(http: httpx.AsyncClient, username: str) -> dict[str, str]:
    response = await http.post(
        "/api/v1/auth/login", json={"username": username, "password": TEST_PASSWORDS[username]}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def ingest_key(http: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, str]:
    response = await http.post(
        "/api/v1/api-keys",
        json={"name": "shipper", "scopes": ["ingest"], "all_sources": True},
        headers=admin,
    )
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['key']}"}


async def test_ingest_search_tail_sessions_and_the_cache_work_on_a_cluster(
    cluster: LoopbackRedisCluster, cluster_settings: Settings, cluster_db: Database
) -> None:
    db = cluster_db
    assert db.keys.shards.count == 6  # the default on a cluster
    by_shard = await one_source_per_shard(db)
    assert sorted(by_shard) == list(range(6))
    # The shards are spread over the three primaries, two each.
    placement = shard_owners(cluster, db)
    assert sorted(list(placement.values()).count(a) for a in set(placement.values())) == [2, 2, 2]

    settings = cluster_settings.model_copy(
        update={"auth_required": True, "secret_key": SecretStr("x" * 40)}
    )
    tag = uuid.uuid4().hex
    async with (
        Workers(settings),
        served(settings) as base,
        httpx.AsyncClient(base_url=base, timeout=30) as http,
    ):
        admin = await login(http, "admin")
        shipper = await ingest_key(http, admin)
        async with http.stream("GET", "/api/v1/tail", headers=admin) as tail:
            assert tail.status_code == 200
            await asyncio.sleep(0.3)  # the tail reads from "now" once it is reading
            events = [
                {"source": name, "message": f"{tag} {shard}", "event_id": f"{tag}-{shard}"}
                for shard, name in by_shard.items()
            ]
            as_shipper = {**NDJSON, **shipper}
            durable_mode = {"mode": "durable"}
            durable = await http.post(
                "/api/v1/ingest", params=durable_mode, content=ndjson(events), headers=as_shipper
            )
            assert durable.status_code == 200, durable.text
            assert durable.json()["accepted"] == 6 and durable.json()["committed"]
            # Live tail: committed entries of all six shards arrive.
            tailed = await read_events(tail, 6, within_s=10)
        assert {orjson.loads(e["data"])["message"] for e in tailed} == {
            e["message"] for e in events
        }

        # The ledger says where each part went: streams on all three primaries.
        async with db.pool.acquire() as conn:
            ledger = [r["entry_id"] for r in await conn.fetch("SELECT entry_id FROM ingest_ledger")]
        tags = {entry.split("/")[0] for entry in ledger}
        owners = cluster.slot_owners()
        assert len({owners[slot_of("{" + t + "}")] for t in tags}) == 3

        # Dedup across the cluster: the same events again are all duplicates.
        again = await http.post("/api/v1/ingest", content=ndjson(events), headers=as_shipper)
        assert again.json()["duplicates"] == 6

        # Search and the cache: a repeated read is a hit, a durable write is seen at once.
        source = by_shard[4]
        params: dict[str, str | int] = {"source": source, "limit": 50}
        first = await http.get("/api/v1/logs/recent", params=params, headers=admin)
        hits_before = metric_total((await http.get("/metrics")).text, "logkeep_cache_hits_total")
        second = await http.get("/api/v1/logs/recent", params=params, headers=admin)
        hits_after = metric_total((await http.get("/metrics")).text, "logkeep_cache_hits_total")
        assert first.json() == second.json()
        assert hits_after == hits_before + 1
        assert f"{tag} 4" in [i["message"] for i in first.json()["items"]]
        newer = [{"source": source, "message": f"{tag} newer"}]
        written = await http.post(
            "/api/v1/ingest", params=durable_mode, content=ndjson(newer), headers=as_shipper
        )
        assert written.status_code == 200
        fresh = await http.get("/api/v1/logs/recent", params=params, headers=admin)
        assert fresh.json()["items"][0]["message"] == f"{tag} newer"
        found = await http.get("/api/v1/logs", params={"contains": tag}, headers=admin)
        assert len(found.json()["items"]) == 7

        # A rate limit on a source of one shard: the next request over it is refused.
        async with db.pool.acquire() as conn:
            await conn.execute(
                "UPDATE log_sources SET configuration = configuration || "
                '\'{"rate_limit_eps": 1, "rate_limit_burst": 1}\' WHERE name = $1',
                by_shard[5],
            )
        limited_id = await db.pool.fetchval(
            "SELECT id FROM log_sources WHERE name = $1", by_shard[5]
        )
        await db.redis.delete(*db.keys.source_rules_copies(limited_id, by_shard[5]))
        await asyncio.sleep(0.6)  # each process remembers rules for 0.5 s
        burst = [{"source": by_shard[5], "message": f"{tag} burst {i}"} for i in range(3)]
        statuses = [
            (
                await http.post("/api/v1/ingest", content=ndjson(burst), headers=as_shipper)
            ).status_code
            for _ in range(2)
        ]
        assert statuses == [202, 429]

        # Sessions: valid, and ended by logout.
        assert (await http.get("/api/v1/auth/me", headers=admin)).status_code == 200
        assert (await http.post("/api/v1/auth/logout", headers=admin)).status_code == 204
        assert (await http.get("/api/v1/auth/me", headers=admin)).status_code == 401

        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text

    # logkeep doctor reads every primary and says where the shards are.
    checks = {c.name: c for c in await redis_checks(settings)}
    assert "(3 primaries, Redis 7." in checks["redis"].detail
    assert checks["redis ingest shards"].status == Status.OK
    assert checks["redis ingest shards"].detail.startswith("6 ingest shards over 3 primaries")


async def test_a_primary_killed_under_durable_ingest_loses_and_doubles_nothing(
    cluster: LoopbackRedisCluster, cluster_settings: Settings, cluster_db: Database
) -> None:
    db = cluster_db
    by_shard = await one_source_per_shard(db)
    victim_address = shard_owners(cluster, db)[0]
    victim = cluster.node_at(victim_address)
    async with (
        Workers(cluster_settings),
        served(cluster_settings) as base,
        httpx.AsyncClient(base_url=base) as http,
    ):
        load = Load(http, list(by_shard.values()), uuid.uuid4().hex)
        stop = asyncio.Event()
        sending = asyncio.create_task(load.run(senders=6, stop=stop))
        await wait_until("acknowledgements before the kill", acknowledged(load, 30), 30)
        victim.kill()
        killed_at = time.monotonic()
        await asyncio.to_thread(cluster.wait_healthy, 60)  # a replica took over
        recovered_at = time.monotonic()
        acked_at_recovery = len(load.acked_at)
        await wait_until(
            "acknowledgements after the failover",
            acknowledged(load, acked_at_recovery + 30),
            30,
        )
        stop.set()
        await sending

        # The API recovered by itself: requests answer at the first try again.
        for number in range(5):
            before = sum(load.answers.values())
            await load.send_until_acknowledged(99, number)
            assert sum(load.answers.values()) == before + 1, load.answers
        assert (await http.get("/readyz")).status_code == 200
        await wait_until("the backlog drained", lambda: backlog_empty(db), 30)

    assert shard_owners(cluster, db)[0] != victim_address
    assert any(t > killed_at for t in load.acked_at)
    print(
        f"\nfailover: {recovered_at - killed_at:.1f}s until the cluster was healthy; "
        f"{load.sent_requests} requests, {len(load.acknowledged)} events acknowledged; "
        f"answers {dict(load.answers)}"
    )
    await assert_stored_exactly_once(db, load)


async def test_resharding_a_slot_range_under_load_loses_nothing(
    cluster: LoopbackRedisCluster, cluster_settings: Settings, cluster_db: Database
) -> None:
    db = cluster_db
    by_shard = await one_source_per_shard(db)
    before = shard_owners(cluster, db)
    source_address = before[0]
    primaries = cluster.primary_addresses()
    source_id = next(i for i, a in primaries.items() if a == source_address)
    target_id = next(i for i, a in primaries.items() if a != source_address)
    async with (
        Workers(cluster_settings),
        served(cluster_settings) as base,
        httpx.AsyncClient(base_url=base) as http,
    ):
        durable = Load(http, list(by_shard.values()), uuid.uuid4().hex)
        fast = Load(http, list(by_shard.values()), uuid.uuid4().hex, durable=False)
        stop = asyncio.Event()
        sending = asyncio.gather(durable.run(3, stop), fast.run(3, stop))
        await wait_until("acknowledgements before resharding", acknowledged(durable, 20), 30)
        # 2000 slots from the lowest of the source's range: shard 0 moves.
        await asyncio.to_thread(cluster.reshard, source_id, target_id, 2000)
        moved_at = len(durable.acked_at)
        after_moving = acknowledged(durable, moved_at + 20)
        await wait_until("acknowledgements after resharding", after_moving, 30)
        stop.set()
        await sending
        await wait_until("the backlog drained", lambda: backlog_empty(db), 60)

    after = shard_owners(cluster, db)
    moved = [s for s in before if before[s] != after[s]]
    assert moved and all(after[s] == primaries[target_id] for s in moved)
    print(
        f"\nresharding: shards {moved} moved; durable answers {dict(durable.answers)}, "
        f"fast answers {dict(fast.answers)}"
    )
    await assert_stored_exactly_once(db, durable)
    await assert_stored_exactly_once(db, fast)
    # The target primary now holds three shards, the source one: doctor says so.
    shards_check = {c.name: c for c in await redis_checks(cluster_settings)}["redis ingest shards"]
    assert shards_check.status == Status.WARN
    assert "unevenly placed" in shards_check.detail
