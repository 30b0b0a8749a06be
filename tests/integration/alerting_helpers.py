"""What the alerting tests share: a real HTTP receiver that checks each webhook's HMAC
signature and records it, rules made through the API, entries at chosen instants, and
evaluation driven tick by tick through the same code the scheduler runs."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from logkeep.alerting.delivery import Delivery
from logkeep.alerting.evaluator import Evaluator
from logkeep.alerting.service import evaluator_config
from logkeep.api.local import serve_locally
from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.db.repositories import LogRepository, SourceRepository
from logkeep.domain.alert_messages import SIGNATURE_HEADER, verify_signature
from logkeep.domain.alert_rules import tick_floor

SECRET = "receiver-shared-secret-0123456789"


@dataclass
class Receiver:
    """Webhooks received: each body, its idempotency key, whether its signature held."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    bad_signatures: int = 0
    fail_next: int = 0  # answer 500 to this many requests first

    @property
    def alerts(self) -> list[tuple[str, str]]:
        """(status, group) of every alert of every message, in order."""
        return [(a["status"], a["group"]) for body in self.received for a in body["alerts"]]


@asynccontextmanager
async def webhook_receiver(secret: str = SECRET) -> AsyncIterator[Receiver]:
    receiver = Receiver()

    async def hook(request: Request) -> Response:
        body = await request.body()
        header = request.headers.get(SIGNATURE_HEADER, "")
        if not verify_signature(secret, header, body, int(time.time()), tolerance=300):
            receiver.bad_signatures += 1
            return Response(status_code=401)
        if receiver.fail_next > 0:
            receiver.fail_next -= 1
            return Response(status_code=500)
        receiver.keys.append(request.headers["idempotency-key"])
        receiver.received.append(orjson.loads(body))
        return Response(status_code=204)

    app = Starlette(routes=[Route("/hook", hook, methods=["POST"])])
    async with serve_locally(app) as base:
        receiver.url = f"{base}/hook"
        yield receiver


def minute_base(hours_ago: int = 3) -> datetime:
    return tick_floor(datetime.now(UTC) - timedelta(hours=hours_ago), timedelta(minutes=1))


async def new_source(db: Database, name: str) -> int:
    created = await SourceRepository(db.pool).create(
        name, source_type="application", format_type="json"
    )
    source_id: int = created["id"]
    return source_id


async def add_entries(
    db: Database,
    source_id: int,
    at: datetime,
    count: int,
    message: str = "payment failed",
    level: str = "ERROR",
    metadata: dict[str, Any] | None = None,
) -> None:
    """`count` entries spread over the 30 s from `at`."""
    if count <= 0:
        return
    repo = LogRepository(db.pool, db.redis_client, cache=db.cache)
    await repo.save_many(
        {
            "source_id": source_id,
            "timestamp": at + timedelta(seconds=30 * i / count),
            "level": level,
            "message": message,
            "metadata": metadata or {},
        }
        for i in range(count)
    )


async def create_channel(api: httpx.AsyncClient, url: str, name: str = "hook") -> int:
    created = await api.post(
        "/api/v1/alert-channels",
        json={"name": name, "kind": "webhook", "url": url, "secret": SECRET},
    )
    assert created.status_code == 201, created.text
    channel_id: int = created.json()["id"]
    return channel_id


async def create_rule(api: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    created = await api.post("/api/v1/alert-rules", json=body)
    assert created.status_code == 201, created.text
    rule: dict[str, Any] = created.json()
    return rule


def evaluator(db: Database, settings: Settings) -> Evaluator:
    return Evaluator(db.pool, evaluator_config(settings, "test"))


async def run_ticks(
    db: Database, settings: Settings, rule_id: int, ticks: Sequence[datetime]
) -> None:
    """Evaluate the rule at each tick, as the scheduler would once each was due."""
    evaluation = evaluator(db, settings)
    for tick in ticks:
        assert await evaluation.run_tick(rule_id, tick)


async def deliver(db: Database, settings: Settings) -> int:
    """Send every notification due now (one pass), wait for the sends; how many."""
    delivery = Delivery(db.pool, settings)
    try:
        claimed = await delivery.one_pass()
        await delivery.drain()
    finally:
        await delivery.aclose()
    return claimed


async def transitions(db: Database, rule_id: int) -> list[tuple[str, str, str]]:
    async with db.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT group_key, from_state, to_state FROM alert_events "
            "WHERE rule_id = $1 AND kind = 'transition' ORDER BY id",
            rule_id,
        )
    return [(r["group_key"], r["from_state"], r["to_state"]) for r in rows]
