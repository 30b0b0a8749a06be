"""Read replicas with real servers: a primary and two streaming replicas made by
`pg_basebackup -R`, on loopback ports, started by this module.

Reads (searches, exports, aggregates) go to the replicas and writes to the primary; a
read that starts after a write sees it although the replicas lag (it waits for its
replica to replay the write, or reads the primary); a replica that is paused, stopped or
too far behind leaves the rotation, shows in /readyz and /metrics, and comes back.
"""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from prometheus_client import REGISTRY

from logkeep.api.local import free_port
from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.db.migrate import migrate
from logkeep.db.seed import seed
from logkeep.embedded import LoopbackPostgres, temporary_root
from logkeep.ingest.worker import Worker
from tests.conftest import Stores, delete_keys, make_settings, running_app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# Long reads on a replica are not cancelled by the primary's vacuum.
REPLICA_SETTINGS = ("hot_standby_feedback=on",)
DEADLINE_S = 20.0


@dataclass
class Replicated:
    primary: LoopbackPostgres
    replicas: list[LoopbackPostgres]
    redis_url: str

    def settings(self, **overrides: Any) -> Settings:
        return make_settings(
            self.primary.dsn(),
            self.redis_url,
            database_read_urls=" ".join(r.dsn() for r in self.replicas),
            **overrides,
        )


@pytest.fixture(scope="module")
async def replicated(stores: Stores) -> AsyncIterator[Replicated]:
    with temporary_root("lk-rep-") as root:
        primary = LoopbackPostgres(root / "primary", free_port(), secrets.token_urlsafe(18))
        replicas: list[LoopbackPostgres] = []
        try:
            await asyncio.to_thread(primary.init)
            await asyncio.to_thread(primary.start)
            await asyncio.to_thread(primary.psql, "CREATE DATABASE logkeep")
            conn = await asyncpg.connect(primary.dsn())
            try:
                await migrate(conn)
            finally:
                await conn.close()
            settings = make_settings(primary.dsn(), stores.redis_url)
            async with Database(settings) as db:
                await seed(db.pool, settings, "test")
            await delete_keys(stores.redis_url, settings.redis_key_prefix)
            for n in (1, 2):
                replica = await asyncio.to_thread(
                    primary.replica, root / f"replica{n}", free_port(), REPLICA_SETTINGS
                )
                replicas.append(replica)
                await asyncio.to_thread(replica.start)
            yield Replicated(primary, replicas, stores.redis_url)
        finally:
            for server in (*replicas, primary):
                await asyncio.to_thread(server.stop)


@pytest.fixture
async def cleanup_keys(replicated: Replicated) -> AsyncIterator[list[Settings]]:
    """Settings made by a test go here; their Redis keys are removed after it."""
    made: list[Settings] = []
    yield made
    for settings in made:
        await delete_keys(replicated.redis_url, settings.redis_key_prefix)


# -- helpers ------------------------------------------------------------------------------


def reads(target: str) -> float:
    """logkeep_pg_reads_total for `target` (replica, or primary for any reason)."""
    total = 0.0
    for metric in REGISTRY.collect():
        if metric.name != "logkeep_pg_reads":
            continue
        for sample in metric.samples:
            if sample.name.endswith("_total") and sample.labels["target"] == target:
                total += sample.value
    return total


def primary_reads(reason: str) -> float:
    value = REGISTRY.get_sample_value(
        "logkeep_pg_reads_total", {"target": "primary", "reason": reason}
    )
    return value or 0.0


def waits_counted() -> float:
    return REGISTRY.get_sample_value("logkeep_pg_replica_wait_seconds_count") or 0.0


def waited_s() -> float:
    return REGISTRY.get_sample_value("logkeep_pg_replica_wait_seconds_sum") or 0.0


async def fetchval(server: LoopbackPostgres, sql: str, *args: object) -> Any:
    # A connection per question: statistics views are read once per transaction.
    conn = await asyncpg.connect(server.dsn())
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def transactions(server: LoopbackPostgres) -> int:
    """Transactions committed in the logkeep database of `server` (reads count too)."""
    value: int = await fetchval(
        server, "SELECT xact_commit FROM pg_stat_database WHERE datname = 'logkeep'"
    )
    return value


async def holds(server: LoopbackPostgres, tag: str) -> bool:
    found: bool = await fetchval(
        server, "SELECT EXISTS (SELECT 1 FROM log_entries WHERE message LIKE $1)", f"%{tag}%"
    )
    return found


async def wait_until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not await check():
        assert time.monotonic() < deadline, f"not within {DEADLINE_S:.0f}s: {what}"
        await asyncio.sleep(0.1)


async def replica_states(api: httpx.AsyncClient) -> dict[int, dict[str, Any]]:
    response = await api.get("/readyz")
    assert response.status_code == 200, response.text  # replicas never make it unready
    return {r["replica"]: r for r in response.json()["replicas"]}


async def rotation(api: httpx.AsyncClient) -> dict[int, bool]:
    return {n: r["in_rotation"] for n, r in (await replica_states(api)).items()}


async def search(api: httpx.AsyncClient, **params: str) -> list[str]:
    response = await api.get("/api/v1/logs", params=params)
    assert response.status_code == 200, response.text
    return [item["message"] for item in response.json()["items"]]


async def write(api: httpx.AsyncClient, message: str) -> None:
    response = await api.post("/api/v1/logs", json={"source": "app_errors", "message": message})
    assert response.status_code == 201, response.text


def on_all(replicated: Replicated, sql: str) -> None:
    for replica in replicated.replicas:
        replica.psql(sql)


# -- tests --------------------------------------------------------------------------------


async def test_reads_go_to_the_replicas_and_writes_to_the_primary(
    replicated: Replicated, cleanup_keys: list[Settings]
) -> None:
    settings = replicated.settings()
    cleanup_keys.append(settings)
    async with running_app(settings) as api:
        states = await replica_states(api)
        assert sorted(states) == [1, 2]
        for number, replica in zip((1, 2), replicated.replicas, strict=True):
            assert states[number]["in_rotation"] is True, states
            assert states[number]["state"] == "streaming"
            assert states[number]["target"] == f"127.0.0.1:{replica.port}/logkeep"
        served_before = [await transactions(r) for r in replicated.replicas]
        replica_reads, primary_reads_before = reads("replica"), reads("primary")

        for n in range(6):  # distinct searches: every one a cache miss
            await search(api, contains=f"no such text {n}")
        export = await api.get("/api/v1/logs", headers={"Accept": "application/x-ndjson"})
        assert export.status_code == 200 and export.text.count("\n") > 0
        for path in ("/api/v1/stats/histogram", "/api/v1/stats/summary", "/api/v1/logs/recent"):
            assert (await api.get(path)).status_code == 200, path

        assert reads("replica") - replica_reads == 10
        assert reads("primary") == primary_reads_before

        async def both_served() -> bool:
            now = [await transactions(r) for r in replicated.replicas]
            return all(a > b for a, b in zip(now, served_before, strict=True))

        await wait_until(both_served, "each replica's pg_stat_database counts logkeep's reads")

        tag = uuid.uuid4().hex
        await write(api, f"written {tag}")  # a replica would refuse it: read-only
        assert await holds(replicated.primary, tag)


async def test_a_read_after_a_write_waits_for_its_replica_to_replay_it(
    replicated: Replicated, cleanup_keys: list[Settings]
) -> None:
    """Both replicas apply commits 1.5 s late; reads still see every write made before
    they started, from the replica, through the cache, for writes by the API and by a
    durable ingest."""
    settings = replicated.settings(read_replica_max_lag_ms=6000)
    cleanup_keys.append(settings)
    on_all(replicated, "ALTER SYSTEM SET recovery_min_apply_delay = '1500ms'")
    on_all(replicated, "SELECT pg_reload_conf()")
    stop = asyncio.Event()
    async with Database(settings) as db:
        worker = asyncio.create_task(Worker(db, settings, name="replicas").run(stop))
        try:
            async with running_app(settings) as api:
                tag = uuid.uuid4().hex
                assert await search(api, q=tag) == []  # cached: nothing matches yet
                assert await search(api, q=tag) == []

                await write(api, f"first {tag}")
                assert not await holds(replicated.replicas[0], tag), "the replica lags"
                replica_reads, primary_reads_before = reads("replica"), reads("primary")
                waited = waited_s()
                assert await search(api, q=tag) == [f"first {tag}"]
                assert reads("replica") == replica_reads + 1
                assert reads("primary") == primary_reads_before
                assert waited_s() - waited > 0.05, "the read waited for its replica"

                response = await api.post(
                    "/api/v1/ingest",
                    params={"mode": "durable"},
                    content=orjson.dumps({"source": "app_errors", "message": f"second {tag}"}),
                    headers={"Content-Type": "application/x-ndjson"},
                )
                assert response.status_code == 200, response.text
                assert response.json()["committed"] is True
                assert not await holds(replicated.replicas[1], f"second {tag}")
                replica_reads = reads("replica")
                assert await search(api, q=tag) == [f"second {tag}", f"first {tag}"]
                assert reads("replica") == replica_reads + 1
                assert reads("primary") == primary_reads_before
                assert all((await rotation(api)).values())
        finally:
            stop.set()
            await worker
            on_all(replicated, "ALTER SYSTEM RESET recovery_min_apply_delay")
            on_all(replicated, "SELECT pg_reload_conf()")


async def test_replicas_that_stop_replaying_leave_the_rotation_and_come_back(
    replicated: Replicated, cleanup_keys: list[Settings]
) -> None:
    settings = replicated.settings(read_replica_max_lag_ms=500)
    cleanup_keys.append(settings)
    async with running_app(settings) as api:
        assert await rotation(api) == {1: True, 2: True}
        on_all(replicated, "SELECT pg_wal_replay_pause()")
        try:
            tag = uuid.uuid4().hex
            await write(api, f"paused {tag}")
            # From the primary: after waiting for a replica, or at once if the rotation
            # check already took both out (a busy machine can delay the search that long).
            behind = primary_reads("replica_behind") + primary_reads("no_replica")
            assert await search(api, q=tag) == [f"paused {tag}"]
            assert primary_reads("replica_behind") + primary_reads("no_replica") == behind + 1

            async def both_out() -> bool:
                return await rotation(api) == {1: False, 2: False}

            await wait_until(both_out, "both paused replicas out of rotation")
            states = await replica_states(api)
            assert {s["state"] for s in states.values()} == {"behind"}, states
            assert all(s["lag_s"] > 0.5 for s in states.values()), states
            text = (await api.get("/metrics")).text
            assert 'logkeep_pg_replica_in_rotation{replica="1"} 0.0' in text
            assert 'logkeep_pg_replica_in_rotation{replica="2"} 0.0' in text

            # Out of rotation, nobody waits for them any more.
            await write(api, f"again {tag}")
            alone, waits = primary_reads("no_replica"), waits_counted()
            assert await search(api, q=tag) == [f"again {tag}", f"paused {tag}"]
            assert primary_reads("no_replica") == alone + 1
            assert waits_counted() == waits
        finally:
            on_all(replicated, "SELECT pg_wal_replay_resume()")

        async def both_back() -> bool:
            return await rotation(api) == {1: True, 2: True}

        await wait_until(both_back, "both replicas back in rotation after resuming")
        text = (await api.get("/metrics")).text
        assert 'logkeep_pg_replica_in_rotation{replica="1"} 1.0' in text
        replica_reads = reads("replica")
        assert await search(api, contains=tag) == [f"again {tag}", f"paused {tag}"]
        assert reads("replica") == replica_reads + 1


async def test_a_stopped_replica_leaves_the_rotation_and_comes_back(
    replicated: Replicated, cleanup_keys: list[Settings]
) -> None:
    settings = replicated.settings()
    cleanup_keys.append(settings)
    first, second = replicated.replicas
    async with running_app(settings) as api:
        assert await rotation(api) == {1: True, 2: True}
        try:
            await asyncio.to_thread(first.stop)
            replica_reads, primary_reads_before = reads("replica"), reads("primary")
            for n in range(4):  # every one answered, by the replica still up
                await search(api, contains=f"stopped {n}")
            assert reads("replica") == replica_reads + 4
            assert reads("primary") == primary_reads_before
            states = await replica_states(api)
            assert states[1]["in_rotation"] is False and states[1]["state"] == "down", states
            assert states[1]["error"], states
            assert states[2]["in_rotation"] is True, states
            assert (
                'logkeep_pg_replica_in_rotation{replica="1"} 0.0'
                in (await api.get("/metrics")).text
            )

            await asyncio.to_thread(second.stop)
            tag = uuid.uuid4().hex
            await write(api, f"alone {tag}")
            assert await search(api, q=tag) == [f"alone {tag}"]  # the primary alone
            assert await rotation(api) == {1: False, 2: False}
        finally:
            for replica in (first, second):
                if replica.process is None:
                    await asyncio.to_thread(replica.start)

        async def both_back() -> bool:
            return await rotation(api) == {1: True, 2: True}

        await wait_until(both_back, "both replicas back in rotation after a restart")
        assert 'logkeep_pg_replica_in_rotation{replica="1"} 1.0' in (await api.get("/metrics")).text
        replica_reads = reads("replica")
        why = {r: primary_reads(r) for r in ("no_replica", "replica_error", "replica_behind")}
        # (Searched differently from before: a miss of the cache, read from PostgreSQL.)
        assert await search(api, contains=tag) == [f"alone {tag}"]  # replayed what they missed
        assert reads("replica") == replica_reads + 1, (
            {r: primary_reads(r) - n for r, n in why.items()},
            await replica_states(api),
        )
