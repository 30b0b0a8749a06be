"""Several `logkeep serve` and `logkeep worker` processes against the same PostgreSQL and
Redis, as they run past one machine: ingest spread over them, every event stored once,
no cache stale across processes, a session valid on every process, and partition
maintenance and alert evaluation done once however many processes run.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from logkeep.api.local import free_port
from logkeep.cache.keys import Keys
from logkeep.cache.replies import as_text
from logkeep.config import Settings
from logkeep.db.seed import TEST_PASSWORDS
from logkeep.ingest.worker import GROUP

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

LOGKEEP = Path(sys.executable).parent / "logkeep"
APIS = 3
WORKERS = 2
REQUESTS = 24
EVENTS_PER_REQUEST = 250
SENDERS = 6
DEADLINE_S = 60.0
NDJSON = {"Content-Type": "application/x-ndjson"}
LAST_TICK = "SELECT last_tick FROM alert_rule_status WHERE rule_id = $1"


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def alive(self) -> None:
        code = self.popen.poll()
        assert code is None, f"{self.name} exited with {code}:\n{self.log.read_text()[-3000:]}"

    def events(self, event: str) -> list[dict[str, Any]]:
        """The JSON log lines of this process whose event is `event`."""
        found = []
        for line in self.log.read_text(errors="replace").splitlines():
            if line.startswith("{") and f'"{event}"' in line:
                record = json.loads(line)
                if record.get("event") == event:
                    found.append(record)
        return found


@contextmanager
def started(name: str, args: list[str], env: dict[str, str], logs: Path) -> Iterator[Process]:
    log = logs / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [str(LOGKEEP), *args], env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    try:
        yield Process(name, popen, log)
    finally:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(30)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()


@dataclass
class Cluster:
    apis: list[str]  # base URLs
    api_processes: list[Process]
    worker_processes: list[Process]
    worker_metrics: list[str]
    partitions_before: set[str]
    keys: Keys


async def partitions(database_url: str) -> set[str]:
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'log_entries'::regclass AND c.relname <> 'log_entries_default'"
        )
    finally:
        await conn.close()
    return {r["relname"] for r in rows}


@pytest.fixture
async def cluster(settings: Settings, tmp_path: Path) -> AsyncIterator[Cluster]:
    assert settings.database_url and settings.redis_url
    # Maintenance has days to create when the processes start (the template has a few).
    existing = await partitions(settings.database_url)
    env = {
        **os.environ,
        "LOGKEEP_ENV": "test",
        "LOGKEEP_AUTH_REQUIRED": "true",
        "LOGKEEP_DATABASE_URL": settings.database_url,
        "LOGKEEP_REDIS_URL": settings.redis_url,
        "LOGKEEP_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "LOGKEEP_DATA_DIR": str(tmp_path / "data"),
        "LOGKEEP_MAINTENANCE_INTERVAL_S": "3600",  # once at start, then hourly
        "LOGKEEP_PARTITION_DAYS_AHEAD": "3",
        "LOGKEEP_WORKER_BATCH_WAIT_MS": "50",
        "LOGKEEP_LOG_LEVEL": "info",
    }
    ports = [free_port() for _ in range(APIS)]
    metrics_ports = [free_port() for _ in range(WORKERS)]
    with ExitStack() as stack:
        apis = [
            stack.enter_context(started(f"serve{n}", ["serve", "--port", str(port)], env, tmp_path))
            for n, port in enumerate(ports)
        ]
        workers = [
            stack.enter_context(
                started(
                    f"worker{n}", ["worker"], {**env, "LOGKEEP_METRICS_PORT": str(port)}, tmp_path
                )
            )
            for n, port in enumerate(metrics_ports)
        ]
        keys = Keys(settings.redis_key_prefix)
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        await wait_ready(urls, [*apis, *workers], settings.redis_url, keys)
        yield Cluster(
            urls,
            apis,
            workers,
            [f"http://127.0.0.1:{port}/metrics" for port in metrics_ports],
            existing,
            keys,
        )


async def wait_ready(urls: list[str], processes: list[Process], redis_url: str, keys: Keys) -> None:
    """Until every API answers /readyz and every worker reads the consumer group."""
    deadline = time.monotonic() + DEADLINE_S
    redis = aioredis.from_url(redis_url)
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            pending = set(urls)
            while True:
                for process in processes:
                    process.alive()
                for url in list(pending):
                    try:
                        if (await http.get(f"{url}/readyz")).status_code == 200:
                            pending.discard(url)
                    except httpx.TransportError:
                        pass
                grouped = False
                with contextlib.suppress(ResponseError):  # no stream yet
                    groups = await redis.xinfo_groups(keys.ingest_stream())
                    grouped = any(as_text(g["name"]) == GROUP for g in groups)
                # (A blocked XREADGROUP does not list its consumer on every Redis.)
                workers = sum(bool(p.events("worker_started")) for p in processes)
                if not pending and grouped and workers == WORKERS:
                    return
                assert time.monotonic() < deadline, f"not ready: {pending}, {workers} workers"
                await asyncio.sleep(0.1)
    finally:
        await redis.aclose()


async def login(http: httpx.AsyncClient, url: str) -> str:
    response = await http.post(
        f"{url}/api/v1/auth/login",
        json={"username": "admin", "password": TEST_PASSWORDS["admin"]},
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


def metric(text: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus metric's samples with these labels."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        if head.split("{")[0] != name:
            continue
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


async def evaluations(http: httpx.AsyncClient, cluster: Cluster) -> tuple[float, float]:
    """(rule evaluations committed, rules held) summed over every API process."""
    texts = [(await http.get(f"{url}/metrics")).text for url in cluster.apis]
    return (
        sum(metric(t, "logkeep_alert_evaluations_total") for t in texts),
        sum(metric(t, "logkeep_alert_rules_held") for t in texts),
    )


async def alert_evaluation_done_once(
    http: httpx.AsyncClient, cluster: Cluster, auth: dict[str, str], database_url: str
) -> None:
    """A rule every 5 s in three processes: one holds it, and each tick is evaluated once
    (the evaluations all processes count add up to the ticks the rule advanced by)."""
    interval = 5
    created = await http.post(
        f"{cluster.apis[0]}/api/v1/alert-rules",
        json={"name": f"mp-{uuid.uuid4().hex[:8]}", "threshold": 1, "window_seconds": 60,
              "interval_seconds": interval},
        headers=auth,
    )  # fmt: skip
    assert created.status_code == 201, created.text
    rule_id = created.json()["id"]
    conn = await asyncpg.connect(database_url)

    async def consistent() -> tuple[datetime | None, float, float]:
        """The rule's last tick and the counters, read with no evaluation in between."""
        while True:
            tick = await conn.fetchval(LAST_TICK, rule_id)
            counted, held = await evaluations(http, cluster)
            if await conn.fetchval(LAST_TICK, rule_id) == tick:
                return tick, counted, held

    try:
        deadline = time.monotonic() + DEADLINE_S
        first, counted_first, _ = await consistent()
        while first is None:
            assert time.monotonic() < deadline, "the rule was never evaluated"
            await asyncio.sleep(0.2)
            first, counted_first, _ = await consistent()
        last, counted_last, held = first, counted_first, 0.0
        while last == first or last < first + timedelta(seconds=3 * interval):
            assert time.monotonic() < deadline, f"the rule stopped at {last}"
            await asyncio.sleep(0.5)
            tick, counted_last, held = await consistent()
            assert tick is not None
            last = tick
    finally:
        await conn.close()
    assert held == 1, f"{held} processes hold the rule's lease"
    advanced = (last - first) / timedelta(seconds=interval)
    assert counted_last - counted_first == advanced, (counted_first, counted_last, first, last)


async def test_processes_share_the_stores(cluster: Cluster, settings: Settings) -> None:
    assert settings.database_url
    async with httpx.AsyncClient(timeout=30) as http:
        token = await login(http, cluster.apis[0])
        auth = {"Authorization": f"Bearer {token}"}

        # Sessions: made by one process, valid on every one.
        for url in cluster.apis:
            me = await http.get(f"{url}/api/v1/auth/me", headers=auth)
            assert me.status_code == 200 and me.json()["name"] == "admin", me.text

        # Ingest spread over every API process, read by every worker.
        tag = uuid.uuid4().hex
        now = datetime.now(UTC)
        bodies = []
        for r in range(REQUESTS):
            events = [
                {
                    "source": "app_errors",
                    "message": f"mp {tag} {r * EVENTS_PER_REQUEST + i}",
                    "timestamp": (now - timedelta(seconds=i)).isoformat(),
                    "metadata": {"n": r * EVENTS_PER_REQUEST + i},
                }
                for i in range(EVENTS_PER_REQUEST)
            ]
            bodies.append(b"\n".join(orjson.dumps(e) for e in events))
        targets = itertools.cycle(cluster.apis)
        queue = [(body, next(targets), f"{tag}-{n}") for n, body in enumerate(bodies)]
        accepted = 0

        async def sender() -> None:
            nonlocal accepted
            while queue:
                body, url, key = queue.pop()
                headers = {**auth, **NDJSON, "Idempotency-Key": key}
                response = await http.post(f"{url}/api/v1/ingest", content=body, headers=headers)
                assert response.status_code == 202, response.text
                accepted += response.json()["accepted"]

        await asyncio.gather(*(sender() for _ in range(SENDERS)))
        assert accepted == REQUESTS * EVENTS_PER_REQUEST
        # A shipper's retries of the same requests, each to another process: not stored again.
        for n in range(4):
            url = cluster.apis[(n + 1) % APIS]
            headers = {**auth, **NDJSON, "Idempotency-Key": f"{tag}-{n}"}
            again = await http.post(f"{url}/api/v1/ingest", content=bodies[n], headers=headers)
            assert again.status_code == 202, again.text
            assert again.json()["accepted"] == 0, again.json()

        conn = await asyncpg.connect(settings.database_url)
        try:
            deadline = time.monotonic() + DEADLINE_S
            stored = 0
            while stored < accepted:
                assert time.monotonic() < deadline, f"{stored} of {accepted} stored"
                for process in [*cluster.api_processes, *cluster.worker_processes]:
                    process.alive()
                stored = await conn.fetchval(
                    "SELECT count(*) FROM log_entries WHERE message LIKE $1", f"mp {tag} %"
                )
                await asyncio.sleep(0.1)
            redis = aioredis.from_url(settings.redis_url or "")
            try:
                while await redis.xlen(cluster.keys.ingest_stream()) > 0:  # all acknowledged
                    assert time.monotonic() < deadline, "the ingest stream did not drain"
                    await asyncio.sleep(0.1)
            finally:
                await redis.aclose()
            counted = await conn.fetchrow(
                "SELECT count(*), count(DISTINCT metadata->>'n') FROM log_entries "
                "WHERE message LIKE $1",
                f"mp {tag} %",
            )
            assert counted is not None
            assert tuple(counted) == (accepted, accepted), "every event stored exactly once"
        finally:
            await conn.close()
        for url in cluster.apis:
            text = (await http.get(f"{url}/metrics")).text
            assert metric(text, "logkeep_ingest_events_total", outcome="accepted") > 0, url
        for url in cluster.worker_metrics:
            text = (await http.get(url)).text
            assert metric(text, "logkeep_worker_batch_events_sum") > 0, f"{url} committed nothing"

        # Caches: an answer cached by one process is never served after another's write.
        first, second, third = cluster.apis
        fresh = uuid.uuid4().hex
        for _ in range(2):  # the second answer comes from the cache
            page = await http.get(f"{first}/api/v1/logs", params={"q": fresh}, headers=auth)
            assert page.json()["items"] == []
        histogram = {"source": "app_errors", "since": "1h"}
        before = await http.get(f"{first}/api/v1/stats/histogram", params=histogram, headers=auth)
        durable = await http.post(
            f"{second}/api/v1/ingest",
            params={"mode": "durable"},
            content=orjson.dumps({"source": "app_errors", "message": f"cache {fresh}"}),
            headers={**auth, **NDJSON},
        )
        assert durable.status_code == 200 and durable.json()["committed"] is True, durable.text
        for url in (first, third):
            page = await http.get(f"{url}/api/v1/logs", params={"q": fresh}, headers=auth)
            assert [i["message"] for i in page.json()["items"]] == [f"cache {fresh}"], url
            after = await http.get(f"{url}/api/v1/stats/histogram", params=histogram, headers=auth)
            assert after.json()["total"] == before.json()["total"] + 1, url

        await alert_evaluation_done_once(http, cluster, auth, settings.database_url)

        # Signing out on one process ends the session on all of them.
        assert (await http.post(f"{third}/api/v1/auth/logout", headers=auth)).status_code == 204
        for url in cluster.apis:
            assert (await http.get(f"{url}/api/v1/auth/me", headers=auth)).status_code == 401

    # Maintenance ran in every process at start, serialised: each partition made once.
    created: list[str] = []
    for process in cluster.api_processes:
        assert not process.events("partition_maintenance_failed"), process.log.read_text()
        runs = process.events("partition_maintenance")
        assert len(runs) == 1, f"{process.name}: {runs}"
        created += runs[0]["created"]
    made = await partitions(settings.database_url) - cluster.partitions_before
    assert made, "maintenance had partitions to create"
    assert sorted(created) == sorted(made)
