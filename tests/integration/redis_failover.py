"""Load and checks shared by the Redis Cluster and Sentinel tests: senders that behave like
shippers (the same request, with its Idempotency-Key, until it is acknowledged), workers
as tasks, and the exactly-once count in PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.db.queries import q
from logkeep.ingest.worker import Worker

NDJSON = {"Content-Type": "application/x-ndjson"}
ACK_DEADLINE_S = 90.0  # a request not acknowledged by then fails the test


def ndjson(events: list[dict[str, Any]]) -> bytes:
    return b"\n".join(orjson.dumps(e) for e in events)


async def add_sources(db: Database, count: int, prefix: str = "svc") -> list[str]:
    """Sources enough to give every ingest shard one (the seed has three)."""
    names = [f"{prefix}-{i}" for i in range(count)]
    async with db.pool.acquire() as conn:
        for name in names:
            await conn.execute(q("upsert_source"), name, "", "app", "json", {}, {})
    return names


async def one_source_per_shard(db: Database) -> dict[int, str]:
    async with db.pool.acquire() as conn:
        rows = await conn.fetch("SELECT id, name FROM log_sources ORDER BY id")
    found: dict[int, str] = {}
    for row in rows:
        found.setdefault(db.keys.shards.of_source(row["id"]), row["name"])
    return found


async def wait_until(what: str, check: Callable[[], Awaitable[bool]], deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"{what} within {deadline_s:.0f}s")


@dataclass
class Load:
    """Senders posting NDJSON requests (every other one spread over all the sources,
    the others one source each), each retried with its Idempotency-Key on 429, 503 and
    connection errors until it is acknowledged."""

    http: httpx.AsyncClient
    sources: list[str]
    tag: str
    durable: bool = True
    headers: dict[str, str] = field(default_factory=dict)
    per_request: int = 12
    acknowledged: set[str] = field(default_factory=set)
    answers: Counter[str] = field(default_factory=Counter)
    acked_at: list[float] = field(default_factory=list)
    sent_requests: int = 0

    def events(self, sender: int, number: int) -> list[dict[str, Any]]:
        spread = number % 2 == 0
        events = []
        for i in range(self.per_request):
            source = self.sources[(number + (i if spread else 0)) % len(self.sources)]
            name = f"{self.tag} {sender}-{number}-{i}"
            events.append({"source": source, "message": name, "event_id": name})
        return events

    async def send_until_acknowledged(self, sender: int, number: int) -> None:
        events = self.events(sender, number)
        headers = {**NDJSON, **self.headers, "Idempotency-Key": f"{self.tag}-{sender}-{number}"}
        params = {"mode": "durable" if self.durable else "fast"}
        body = ndjson(events)
        deadline = time.monotonic() + ACK_DEADLINE_S
        self.sent_requests += 1
        while time.monotonic() < deadline:
            try:
                response = await self.http.post(
                    "/api/v1/ingest", params=params, content=body, headers=headers, timeout=60
                )
            except httpx.TransportError as exc:
                self.answers[type(exc).__name__] += 1
                await asyncio.sleep(0.2)
                continue
            self.answers[str(response.status_code)] += 1
            if response.status_code in (200, 202):
                body = response.json()
                assert body["rejected"] == 0, body
                assert not self.durable or body["committed"], body
                self.acknowledged.update(e["message"] for e in events)
                self.acked_at.append(time.monotonic())
                return
            assert response.status_code in (429, 503), response.text
            await asyncio.sleep(0.2)  # shippers wait Retry-After; shorter here
        raise AssertionError(f"request {sender}-{number} not acknowledged: {self.answers}")

    async def run(self, senders: int, stop: asyncio.Event) -> None:
        async def sender(index: int) -> None:
            number = 0
            while not stop.is_set():
                await self.send_until_acknowledged(index, number)
                number += 1

        await asyncio.gather(*(sender(i) for i in range(senders)))


def acknowledged(load: Load, at_least: int) -> Callable[[], Awaitable[bool]]:
    """A check for wait_until: this many requests of the load acknowledged."""

    async def enough() -> bool:
        return len(load.acked_at) >= at_least

    return enough


async def stored(db: Database, tag: str) -> Counter[str]:
    """How many times each event of this run is in PostgreSQL."""
    async with db.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT message, count(*) AS n FROM log_entries WHERE message LIKE $1 GROUP BY message",
            f"{tag} %",
        )
    return Counter({r["message"]: r["n"] for r in rows})


async def assert_stored_exactly_once(db: Database, load: Load) -> None:
    counts = await stored(db, load.tag)
    doubled = {m: n for m, n in counts.items() if n > 1}
    missing = load.acknowledged - set(counts)
    assert not doubled, f"{len(doubled)} events stored more than once, e.g. {list(doubled)[:3]}"
    assert not missing, f"{len(missing)} acknowledged events missing, e.g. {list(missing)[:3]}"
    # Every request was retried until acknowledged: nothing else may be there either.
    assert set(counts) == load.acknowledged


@dataclass
class Workers:
    """`count` worker loops on their own Database, as `logkeep worker` runs them."""

    settings: Settings
    count: int = 2
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    db: Database | None = None

    async def __aenter__(self) -> Workers:
        self.db = Database(self.settings)
        await self.db.initialize()
        workers = [Worker(self.db, self.settings, name=f"w{i}") for i in range(self.count)]
        self.tasks = [asyncio.create_task(w.run(self.stop)) for w in workers]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks)
        if self.db is not None:
            await self.db.close()


async def backlog_empty(db: Database) -> bool:
    total = 0
    for shard in db.keys.shards.all:
        total += await db.redis.xlen(db.keys.ingest_stream(shard))
    return total == 0
