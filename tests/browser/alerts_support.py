"""What the alerting browser tests share: an API client as a user, rules made through
the API, entries at chosen instants, and evaluation driven at a tick through the code
the scheduler runs."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from logkeep.alerting.evaluator import Evaluator
from logkeep.alerting.service import evaluator_config
from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.db.repositories import LogRepository
from logkeep.domain.alert_rules import tick_floor
from tests.browser.conftest import api_token


@asynccontextmanager
async def api_as(base_url: str, username: str) -> AsyncIterator[httpx.AsyncClient]:
    key = await api_token(base_url, username)
    async with httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {key}"}
    ) as client:
        yield client


async def create_rule(client: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    created = await client.post("/api/v1/alert-rules", json=body)
    assert created.status_code == 201, created.text
    rule: dict[str, Any] = created.json()
    return rule


async def entries_at(
    logs: LogRepository, at: datetime, count: int, message: str, **fields: Any
) -> None:
    """`count` entries one tenth of a second apart from `at` (ERROR in app_errors unless
    `fields` say otherwise)."""
    await logs.save_many(
        {"source_id": 2, "level": "ERROR", "metadata": {}, "message": message, **fields}
        | {"timestamp": at + timedelta(milliseconds=100 * i)}
        for i in range(count)
    )


def current_tick() -> datetime:
    """The latest tick of a one-minute interval."""
    return tick_floor(datetime.now(UTC), timedelta(minutes=1))


async def evaluate(
    db: Database, settings: Settings, rule_ids: Iterable[int], tick: datetime
) -> None:
    """Each rule (of a one-minute interval) evaluated at `tick`, as the scheduler would."""
    evaluator = Evaluator(db.pool, evaluator_config(settings, "browser-test"))
    for rule_id in rule_ids:
        assert await evaluator.run_tick(rule_id, tick)
