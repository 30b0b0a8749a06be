"""What a durable write costs when Redis is a cluster rather than one server.

Starts PostgreSQL, one Redis and a Redis Cluster (three primaries, three replicas) on
loopback ports, and logkeep stacks side by side (the API in process, one worker process's
loops as tasks), identical but for their Redis and ingest shards:

  single, 1 shard      one Redis, as logkeep always ran (the baseline)
  single, 6 shards     the cluster's code path on one Redis: what sharding itself costs
  cluster, 6 shards    the default on a cluster
  cluster, 3 shards    one shard per primary: fewer calls per request
  cluster, 12 shards   more shards: more calls per request

Then, alternating between them in rounds so that drift hits all alike, times POST
/api/v1/ingest:

  durable, 10 events of one source   (one shard: the one script call, or, when the
                                      client's rate limit lives on another shard, two
                                      phases)
  durable, 12 events of 12 sources   (every shard: two phases)
  fast, the same two bodies          (the Redis part alone, no worker in the way)

and prints medians and 90th percentiles, each stack's against the baseline's.

Run:  .venv/bin/python bench/redis_cluster.py [--requests 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import secrets
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import httpx
import orjson

from logkeep.api.app import create_app
from logkeep.api.local import free_port
from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.db.migrate import migrate
from logkeep.db.queries import q
from logkeep.db.seed import seed
from logkeep.embedded import (
    LoopbackPostgres,
    LoopbackRedis,
    LoopbackRedisCluster,
    free_port_pair,
    temporary_root,
)
from logkeep.ingest.worker import Worker

NDJSON = {"Content-Type": "application/x-ndjson"}
EXTRA_SOURCES = 12


@dataclass
class Stack:
    label: str
    settings: Settings
    http: httpx.AsyncClient
    sources: list[str]
    times: dict[str, list[float]] = field(default_factory=dict)

    def body(self, shape: str) -> bytes:
        tag = uuid.uuid4().hex[:8]
        if shape.endswith("one source"):
            events = [{"source": self.sources[0], "message": f"{tag} {i}"} for i in range(10)]
        else:
            events = [{"source": s, "message": f"{tag} {s}"} for s in self.sources]
        return b"\n".join(orjson.dumps(e) for e in events)

    async def post(self, shape: str) -> float:
        mode = "durable" if shape.startswith("durable") else "fast"
        body = self.body(shape)
        started = time.perf_counter()
        response = await self.http.post(
            "/api/v1/ingest", params={"mode": mode}, content=body, headers=NDJSON
        )
        elapsed = time.perf_counter() - started
        if response.status_code not in (200, 202):
            raise RuntimeError(f"{self.label}: {response.status_code} {response.text}")
        return elapsed


def settings_for(database_url: str, redis_url: str, shards: int) -> Settings:
    return Settings(
        _env_file=None,
        env="test",
        database_url=database_url,
        redis_url=redis_url,
        redis_key_prefix=f"bench:{secrets.token_hex(4)}:",
        ingest_shards=shards,
        auth_required=False,
        alerts_enabled=False,
        maintenance_interval_s=0,
        seed_rows=0,
        log_level="warning",
        # Far above what this measures: a limit must never answer 429 here.
        rate_limit_client_eps=10_000_000,
        rate_limit_source_eps=10_000_000,
    )


async def prepare_database(pg: LoopbackPostgres, name: str) -> str:
    await asyncio.to_thread(pg.psql, f'CREATE DATABASE "{name}"')
    url = pg.dsn(name)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return url


@contextlib.asynccontextmanager
async def stack(label: str, settings: Settings) -> AsyncIterator[Stack]:
    """The API (lifespan running) and one worker process's loops, on these stores."""
    async with Database(settings) as db:
        await seed(db.pool, settings, "test")
        async with db.pool.acquire() as conn:
            for i in range(EXTRA_SOURCES):
                await conn.execute(q("upsert_source"), f"bench-{i}", "", "app", "json", {}, {})
            rows = await conn.fetch("SELECT name FROM log_sources ORDER BY id")
        sources = [r["name"] for r in rows][:EXTRA_SOURCES]
        stop = asyncio.Event()
        workers = [
            asyncio.create_task(Worker(db, settings, name=f"{label}-{i}").run(stop))
            for i in range(settings.worker_concurrency)
        ]
        app = create_app(settings)
        try:
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://bench", timeout=60
                ) as http,
            ):
                yield Stack(label, settings, http, sources)
        finally:
            stop.set()
            await asyncio.gather(*workers)


def summary(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.9)] * 1000


async def run(requests: int, rounds: int) -> None:
    shapes = [
        "durable, one source",
        "durable, 12 sources",
        "fast, one source",
        "fast, 12 sources",
    ]
    with temporary_root("lk-bench-rc-") as root:
        pg = LoopbackPostgres(root / "pg", free_port(), secrets.token_hex(12))
        single = LoopbackRedis(root / "single", free_port_pair())
        cluster = LoopbackRedisCluster(root / "cluster", primaries=3, replicas=1)
        try:
            await asyncio.to_thread(pg.init)
            await asyncio.to_thread(pg.start)
            await asyncio.to_thread(single.start)
            await asyncio.to_thread(cluster.start)
            single_url = f"redis://127.0.0.1:{single.port}/0"
            layouts = [
                ("single, 1 shard", single_url, 1),
                ("single, 6 shards", single_url, 6),
                ("cluster, 6 shards", cluster.url, 6),
                ("cluster, 3 shards", cluster.url, 3),
                ("cluster, 12 shards", cluster.url, 12),
            ]
            async with contextlib.AsyncExitStack() as exits:
                stacks = []
                for i, (label, url, shards) in enumerate(layouts):
                    database = await prepare_database(pg, f"bench{i}")
                    settings = settings_for(database, url, shards)
                    stacks.append(await exits.enter_async_context(stack(label, settings)))
                print(
                    f"one Redis on {single.port}; a cluster of {cluster.primaries} primaries "
                    f"and {cluster.primaries * cluster.replicas} replicas; PostgreSQL on "
                    f"{pg.port}; {requests} requests per shape and stack in {rounds} rounds"
                )
                for current in stacks:  # warm: connections, scripts, caches
                    for shape in shapes:
                        for _ in range(10):
                            await current.post(shape)
                per_round = max(1, requests // rounds)
                for _ in range(rounds):
                    for shape in shapes:
                        for current in stacks:
                            for _ in range(per_round):
                                elapsed = await current.post(shape)
                                current.times.setdefault(shape, []).append(elapsed)
            report(shapes, stacks)
        finally:
            cluster.stop()
            single.stop()
            pg.stop()


def report(shapes: list[str], stacks: list[Stack]) -> None:
    baseline = stacks[0]
    for shape in shapes:
        base_med, _ = summary(baseline.times[shape])
        print(f"\n{shape} ({len(baseline.times[shape])} requests each)")
        print(f"  {'stack':<20} {'median':>9} {'p90':>9} {'added':>9} {'ratio':>6}")
        for current in stacks:
            med, p90 = summary(current.times[shape])
            print(
                f"  {current.label:<20} {med:>7.2f}ms {p90:>7.2f}ms {med - base_med:>+7.2f}ms "
                f"{med / base_med:>5.2f}x"
            )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--requests", type=int, default=200, help="per shape and stack")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    asyncio.run(run(args.requests, args.rounds))


if __name__ == "__main__":
    main()
