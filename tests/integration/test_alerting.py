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
from logkeep.domain.search import rfc3339
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


async def test_ratio_fires_resolves_and_has_no_data_under_its_volume(
    api: httpx.AsyncClient, adb: Database, quiet_settings: Settings
) -> None:
    source = await new_source(adb, "checkout")
    base = minute_base()
    for minute, (infos, errors) in enumerate([(10, 5), (10, 0), (1, 1)]):
        await add_entries(adb, source, base + minute * MINUTE, infos, "ok", "INFO")
        await add_entries(adb, source, base + minute * MINUTE, errors, "card declined")
    async with webhook_receiver() as receiver:
        channel = await create_channel(api, receiver.url)
        rule = await create_rule(
            api, name="error rate", kind="ratio", source=source, threshold=0.2,
            min_volume=5, window_seconds=60, interval_seconds=60, channels=[channel],
        )  # fmt: skip
        await run_ticks(adb, quiet_settings, rule["id"], [base + i * MINUTE for i in (1, 2, 3)])
        await deliver(adb, quiet_settings)
    assert receiver.alerts == [("firing", ""), ("resolved", "")]
    assert receiver.received[0]["alerts"][0]["value"] == pytest.approx(5 / 15)
    assert await transitions(adb, rule["id"]) == [
        ("", "ok", "firing"),
        ("", "firing", "resolved"),
        ("", "resolved", "no_data"),
    ]


async def test_absence_per_host_over_declared_values(
    api: httpx.AsyncClient, adb: Database, quiet_settings: Settings
) -> None:
    source = await new_source(adb, "hosts")
    base = minute_base()
    for minute, hosts in enumerate([("web1", "web2"), ("web1",), ("web1", "web2")]):
        for host in hosts:
            await add_entries(
                adb, source, base + minute * MINUTE, 3, "heartbeat", "INFO", {"host": host}
            )
    async with webhook_receiver() as receiver:
        channel = await create_channel(api, receiver.url)
        rule = await create_rule(
            api, name="host quiet", kind="absence", source=source, min_level="DEBUG",
            threshold=1, group_by="metadata.host", expected_groups=["web1", "web2"],
            window_seconds=60, interval_seconds=60, channels=[channel],
        )  # fmt: skip
        assert rule["expected_groups"] == ["web1", "web2"]
        await run_ticks(adb, quiet_settings, rule["id"], [base + i * MINUTE for i in (1, 2, 3)])
        await deliver(adb, quiet_settings)
    assert receiver.alerts == [("firing", '"web2"'), ("resolved", '"web2"')]
    alert = receiver.received[0]["alerts"][0]
    assert alert["labels"]["host"] == "web2" and alert["value"] == 0
    assert "metadata.host=web2" in alert["link"]


async def test_new_pattern_fires_on_an_unseen_shape_then_resolves(
    api: httpx.AsyncClient, adb: Database, quiet_settings: Settings
) -> None:
    source = await new_source(adb, "svc")
    base = minute_base()
    for minute in range(-12, 6):
        for user in (17, 23):
            await add_entries(
                adb, source, base + minute * MINUTE, 1, f"user {user} logged in from 10.0.0.{user}"
            )
    await add_entries(adb, source, base + 3 * MINUTE, 2, "disk /dev/sda1 failing: 5 sectors")
    async with webhook_receiver() as receiver:
        channel = await create_channel(api, receiver.url)
        rule = await create_rule(
            api, name="new errors", kind="new_pattern", source=source, threshold=0,
            learning_seconds=600, window_seconds=60, interval_seconds=60, channels=[channel],
        )  # fmt: skip
        ticks = [base + i * MINUTE for i in range(1, 7)]
        await run_ticks(adb, quiet_settings, rule["id"], ticks)
        await deliver(adb, quiet_settings)
    assert [status for status, _ in receiver.alerts] == ["firing", "resolved"]
    firing = receiver.received[0]["alerts"][0]
    assert "disk" in firing["template"] and "<NUM>" in firing["template"]
    assert firing["samples"][0]["message"] == "disk /dev/sda1 failing: 5 sectors"
    assert receiver.received[0]["at"].startswith((base + 4 * MINUTE).strftime("%Y-%m-%dT%H:%M"))


async def test_a_silence_mutes_then_the_alert_notifies_when_it_ends(
    api: httpx.AsyncClient, adb: Database, quiet_settings: Settings
) -> None:
    source = await new_source(adb, "billing")
    base = minute_base()
    for minute, n in enumerate([5, 5, 5, 5, 0]):
        await add_entries(adb, source, base + minute * MINUTE, n)
    async with webhook_receiver() as receiver:
        channel = await create_channel(api, receiver.url)
        rule = await create_rule(
            api, name="billing errors", source=source, threshold=3, window_seconds=60,
            interval_seconds=60, channels=[channel], labels={"team": "money"},
        )  # fmt: skip
        silence = await api.post(
            "/api/v1/silences",
            json={"rule_id": rule["id"], "matchers": {"team": "mon*"},
                  "starts_at": base.isoformat(), "ends_at": (base + 3 * MINUTE).isoformat(),
                  "comment": "deploying"},
        )  # fmt: skip
        assert silence.status_code == 201, silence.text
        await run_ticks(adb, quiet_settings, rule["id"], [base + i * MINUTE for i in (1, 2)])
        assert await deliver(adb, quiet_settings) == 0
        alerts = (await api.get("/api/v1/alerts", params={"state": "firing"})).json()["alerts"]
        assert [a["rule_id"] for a in alerts] == [rule["id"]]  # silenced, still firing
        await run_ticks(adb, quiet_settings, rule["id"], [base + i * MINUTE for i in (3, 4, 5)])
        await deliver(adb, quiet_settings)
    assert receiver.alerts == [("firing", ""), ("resolved", "")]
    assert receiver.received[0]["at"].startswith((base + 3 * MINUTE).strftime("%Y-%m-%dT%H:%M"))
    history = (await api.get(f"/api/v1/alert-rules/{rule['id']}/history")).json()["events"]
    assert sum(e["to_state"] == "silenced" for e in history) == 2
    assert sum(e["to_state"] == "sent" for e in history) == 2


@pytest.mark.parametrize(
    "rule",
    [
        {"group_by": "source", "threshold": 3},
        {"kind": "ratio", "threshold": 0.3, "min_volume": 4},
    ],
    ids=["threshold-by-source", "ratio"],
)
async def test_preview_decides_what_live_evaluation_then_does(
    api: httpx.AsyncClient, adb: Database, quiet_settings: Settings, rule: dict[str, Any]
) -> None:
    sources = [await new_source(adb, "alpha"), await new_source(adb, "beta")]
    base = minute_base(hours_ago=2)
    pattern = [(4, 1), (0, 0), (5, 5), (5, 0), (1, 1), (2, 6), (0, 0), (7, 7)]
    for minute, counts in enumerate(pattern):
        for source, n in zip(sources, counts, strict=True):
            await add_entries(adb, source, base + minute * MINUTE, n)
            await add_entries(adb, source, base + minute * MINUTE, 3, "fine", "INFO")
    body = {"name": "p", "sources": sources, "window_seconds": 120, "interval_seconds": 60,
            "for_seconds": 60, "keep_firing_for_seconds": 60, **rule}  # fmt: skip
    preview = await api.post("/api/v1/alert-rules/preview", json=body)
    assert preview.status_code == 200, preview.text
    shown = preview.json()
    assert shown["evaluations"] == 1440
    # Live evaluation starts at `base`, in the state the preview has there (nothing
    # before it): from then on both must decide the same, tick by tick.
    ticks = [base + i * MINUTE for i in range(len(pattern) + 4)]
    start, end = rfc3339(base), rfc3339(ticks[-1])
    expected = [
        (t["at"], t["group"], t["from"], t["to"])
        for t in shown["transitions"]
        if start < t["at"] <= end
    ]
    assert any(to == "firing" for *_, to in expected) and len(expected) >= 4
    created = await create_rule(api, **body)
    await run_ticks(adb, quiet_settings, created["id"], ticks)
    async with adb.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT at, group_key, from_state, to_state FROM alert_events "
            "WHERE rule_id = $1 AND kind = 'transition' ORDER BY id",
            created["id"],
        )
    live = [
        (rfc3339(r["at"]), r["group_key"], r["from_state"], r["to_state"])
        for r in rows
        if r["at"] > base
    ]
    assert live == expected


async def test_invalid_rule_queries_are_refused_with_the_reason(api: httpx.AsyncClient) -> None:
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"query": "!!!"}, "query", "has no words"),
        ({"metadata": {"a..b": "1"}}, "metadata", "metadata keys"),
        ({"group_by": "host"}, "group_by", "is `source` or `metadata.<key>`"),
        ({"kind": "ratio", "threshold": 2}, "threshold", "fraction"),
        ({"threshold": 2.5}, "threshold", "whole number"),
        ({"kind": "ratio", "threshold": 0.5, "denominator": {"contains": ""}}, "denominator",
         "must not be empty"),
        ({"level": ["ERROR"], "min_level": "WARN"}, "min_level", "either level or min_level"),
    ]  # fmt: skip
    for extra, field, reason in cases:
        body = {"name": "bad", "threshold": 1, "window_seconds": 60, **extra}
        refused = await api.post("/api/v1/alert-rules", json=body)
        assert refused.status_code == 422, (extra, refused.text)
        problem = refused.json()
        assert field in problem["detail"] and reason in problem["detail"], problem
