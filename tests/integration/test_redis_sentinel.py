"""logkeep on a Redis primary watched by Sentinel (a primary, a replica and three
sentinels on loopback ports): the primary killed with SIGKILL under durable ingest, the
sentinels promote the replica, and the API and the workers follow it by themselves,
losing and doubling nothing."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.embedded import LoopbackRedisSentinel, temporary_root
from tests.conftest import make_settings, served
from tests.integration.redis_failover import (
    Load,
    Workers,
    acknowledged,
    add_sources,
    assert_stored_exactly_once,
    backlog_empty,
    wait_until,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def sentinel() -> Iterator[LoopbackRedisSentinel]:
    with temporary_root("lk-rs-") as root:
        watched = LoopbackRedisSentinel(root, replicas=1, sentinels=3, down_after_ms=1000)
        try:
            watched.start()
            yield watched
        finally:
            watched.stop()


@pytest.fixture
async def sentinel_settings(database_url_fixture: str, sentinel: LoopbackRedisSentinel) -> Settings:
    settings = make_settings(
        database_url_fixture,
        sentinel.url,
        worker_batch_wait_ms=20,
        worker_claim_idle_ms=1000,
        ingest_durable_timeout_s=20.0,
    )
    async with Database(settings) as db:
        await add_sources(db, 3)
    return settings


async def test_a_failover_under_durable_ingest_loses_and_doubles_nothing(
    sentinel: LoopbackRedisSentinel, sentinel_settings: Settings
) -> None:
    assert sentinel.primary is not None
    old_port = sentinel.primary.port
    async with (
        Database(sentinel_settings) as db,
        Workers(sentinel_settings),
        served(sentinel_settings) as base,
        httpx.AsyncClient(base_url=base) as http,
    ):
        assert db.keys.shards.count == 1  # one primary: one shard, as on a single Redis
        async with db.pool.acquire() as conn:
            sources = [r["name"] for r in await conn.fetch("SELECT name FROM log_sources")]
        load = Load(http, sources, uuid.uuid4().hex)
        stop = asyncio.Event()
        sending = asyncio.create_task(load.run(senders=4, stop=stop))
        await wait_until("acknowledgements before the kill", acknowledged(load, 20), 30)
        sentinel.primary.kill()
        killed_at = time.monotonic()

        async def promoted() -> bool:
            return await asyncio.to_thread(sentinel.current_primary_port) != old_port

        await wait_until("the sentinels promoted the replica", promoted, 30)
        promoted_at = time.monotonic()
        acked = len(load.acked_at)
        await wait_until("acknowledgements after the failover", acknowledged(load, acked + 20), 30)
        stop.set()
        await sending

        # The API follows the new primary by itself: answers at the first try again.
        for number in range(5):
            before = sum(load.answers.values())
            await load.send_until_acknowledged(99, number)
            assert sum(load.answers.values()) == before + 1, load.answers
        assert (await http.get("/readyz")).status_code == 200
        await wait_until("the backlog drained", lambda: backlog_empty(db), 30)
        print(
            f"\nsentinel failover: {promoted_at - killed_at:.1f}s until promoted; "
            f"{load.sent_requests} requests, {len(load.acknowledged)} events acknowledged; "
            f"answers {dict(load.answers)}"
        )
        assert any(t > killed_at for t in load.acked_at)
        await assert_stored_exactly_once(db, load)
