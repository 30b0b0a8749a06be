"""Alert rules evaluated on real PostgreSQL, notifications delivered to a real HTTP
receiver that checks each signature: fire and resolve for every kind, `for` and
`keep_firing_for` holding back a flapping signal, silences, and the preview deciding
what live evaluation decides on the same data."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest

from logkeep.config import Settings
from logkeep.db.database import Database
from tests.conftest import make_settings, running_app
from tests.integration.alerting_helpers import (
    add_entries,
    create_channel,
    create_rule,
    deliver,
    minute_base,
    new_source,
    run_ticks,
    transitions,
    webhook_receiver,
)

MINUTE = timedelta(minutes=1)


@pytest.fixture
async def quiet_settings(database_url_fixture: str, stores: Any) -> Settings:
    """No evaluator in the background: the tests drive every tick themselves."""
    return make_settings(
        database_url_fixture,
        stores.redis_url,
        alerts_enabled=False,
        public_url="https://logs.example.test",
    )


@pytest.fixture
async def api(quiet_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(quiet_settings) as client:
        yield client


@pytest.fixture
async def adb(quiet_settings: Settings) -> AsyncIterator[Database]:
    async with Database(quiet_settings) as database:
        yield database


async def test_threshold_for_and_keep_firing_for_hold_back_flapping(
    api: httpx.AsyncClient, adb: Database, quiet_settings: Settings
) -> None:
    """Per minute: 5 5 0 5 5 5 5 0 5 0 0 0 errors. With `for` and `keep_firing_for` of
    two minutes this fires once and resolves once; without them it would flap."""
    source = await new_source(adb, "payments")
    base = minute_base()
    pattern = [5, 5, 0, 5, 5, 5, 5, 0, 5, 0, 0, 0]
    for i, n in enumerate(pattern):
        await add_entries(adb, source, base + i * MINUTE, n)
    async with webhook_receiver() as receiver:
        channel = await create_channel(api, receiver.url)
        rule = await create_rule(
            api, name="payment errors", source=source, query="payment", threshold=3,
            window_seconds=60, interval_seconds=60, for_seconds=120,
            keep_firing_for_seconds=120, channels=[channel],
        )  # fmt: skip
        ticks = [base + (i + 1) * MINUTE for i in range(len(pattern))]
        await run_ticks(adb, quiet_settings, rule["id"], ticks)
        await deliver(adb, quiet_settings)
    assert receiver.bad_signatures == 0
    assert receiver.alerts == [("firing", ""), ("resolved", "")]
    assert len(set(receiver.keys)) == 2
    assert await transitions(adb, rule["id"]) == [
        ("", "ok", "pending"),
        ("", "pending", "ok"),
        ("", "ok", "pending"),
        ("", "pending", "firing"),
        ("", "firing", "resolved"),
    ]
    firing = receiver.received[0]
    alert = firing["alerts"][0]
    assert alert["value"] == 5 and alert["threshold"] == 3 and alert["op"] == ">="
    assert len(alert["samples"]) == 5
    assert all(s["message"] == "payment failed" for s in alert["samples"])
    assert alert["link"].startswith("https://logs.example.test/?q=payment&min_level=ERROR")
    assert "source=payments" in alert["link"] and "from=" in alert["link"]
