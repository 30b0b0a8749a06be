"""Live tail over a real HTTP server: delivery after commit, filters, resume, heartbeat."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import orjson
import pytest

from logkeep.api.app import create_app
from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.db.repositories import LogRepository
from tests.conftest import served


async def read_events(
    response: httpx.Response, count: int, within_s: float = 5.0, *, kinds_all: bool = False
) -> list[dict[str, Any]]:
    """The first `count` SSE events (id, event, data) of a streaming response; position
    events only when `kinds_all`."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}

    async def collect() -> None:
        async for line in response.aiter_lines():
            if line == "":
                if (current and current.get("event") != "position") or (kinds_all and current):
                    events.append(dict(current))
                    current.clear()
                    if len(events) >= count:
                        return
                continue
            field, _, value = line.partition(":")
            current[field or "comment"] = value.lstrip()

    await asyncio.wait_for(collect(), within_s)
    return events


async def wait_subscribed() -> None:
    # The tail reads from "now" once its first XREAD starts; give it a moment.
    await asyncio.sleep(0.3)


@pytest.mark.slow
async def test_new_entry_arrives_within_a_second(settings: Settings, db: Database) -> None:
    repo = LogRepository(db.pool, db.redis_client, cache=db.cache, tail=db.tail)
    async with (
        served(settings) as base,
        httpx.AsyncClient(base_url=base) as client,
        client.stream("GET", "/api/v1/tail", params={"source": "app_errors"}) as r,
    ):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        await wait_subscribed()
        await repo.save_log_entry({"message": "other source", "source_id": 1})
        written = time.monotonic()
        entry_id = await repo.save_log_entry(
            {"message": "watch me", "source_id": 2, "level": "error"}
        )
        (event,) = await read_events(r, 1)
        assert time.monotonic() - written < 1.0
    item = orjson.loads(event["data"])
    assert event["event"] == "log"
    assert item["id"] == entry_id
    assert (item["source"], item["message"], item["level"]) == ("app_errors", "watch me", "ERROR")


@pytest.mark.slow
async def test_filters_and_resume_from_last_event_id(settings: Settings, db: Database) -> None:
    repo = LogRepository(db.pool, db.redis_client, cache=db.cache, tail=db.tail)
    params = {"min_level": "warn", "q": "disk", "metadata.host": "db-1"}
    async with served(settings) as base, httpx.AsyncClient(base_url=base) as client:
        async with client.stream("GET", "/api/v1/tail", params=params) as r:
            await wait_subscribed()
            await repo.save_many(
                [
                    {
                        "message": "disk full on db-1",
                        "source_id": 1,
                        "level": "ERROR",
                        "metadata": {"host": "db-1"},
                    },
                    {
                        "message": "disk check ok",
                        "source_id": 1,
                        "level": "INFO",
                        "metadata": {"host": "db-1"},
                    },
                    {
                        "message": "cpu hot",
                        "source_id": 2,
                        "level": "ERROR",
                        "metadata": {"host": "db-1"},
                    },
                    {
                        "message": "disk full on db-2",
                        "source_id": 2,
                        "level": "ERROR",
                        "metadata": {"host": "db-2"},
                    },
                    {
                        "message": "Disk nearly full",
                        "source_id": 3,
                        "level": "WARN",
                        "metadata": {"host": "db-1", "disk": "sda"},
                    },
                ]
            )
            first, second = await read_events(r, 2)
        assert [orjson.loads(e["data"])["message"] for e in (first, second)] == [
            "disk full on db-1",
            "Disk nearly full",
        ]
        # Reconnect after the first event: only what came after it is replayed.
        await repo.save_log_entry(
            {"message": "disk gone", "source_id": 2, "level": "FATAL", "metadata": {"host": "db-1"}}
        )
        headers = {"Last-Event-ID": first["id"]}
        async with client.stream("GET", "/api/v1/tail", params=params, headers=headers) as r:
            replayed = await read_events(r, 2)
    assert [orjson.loads(e["data"])["message"] for e in replayed] == [
        "Disk nearly full",
        "disk gone",
    ]


@pytest.mark.slow
async def test_heartbeat_keeps_an_idle_stream_alive(settings: Settings) -> None:
    quick = settings.model_copy(update={"tail_heartbeat_s": 0.2})
    async with (
        served(quick) as base,
        httpx.AsyncClient(base_url=base) as client,
        client.stream("GET", "/api/v1/tail") as r,
    ):
        (ping,) = await read_events(r, 1, within_s=3)
    assert "comment" in ping or ("event" in ping and ping["event"] == "ping")


@pytest.mark.parametrize(
    ("params", "headers", "named"),
    [
        ({"source": "nope"}, {}, "source"),
        ({"level": "LOUD"}, {}, "level"),
        ({"level": "ERROR", "min_level": "WARN"}, {}, "min_level"),
        ({}, {"Last-Event-ID": "'; DROP TABLE log_entries; --"}, "Last-Event-ID"),
    ],
)
async def test_bad_tail_requests_are_422(
    settings: Settings, params: dict[str, str], headers: dict[str, str], named: str
) -> None:
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://t") as client,
    ):
        response = await client.get("/api/v1/tail", params=params, headers=headers)
    assert response.status_code == 422, response.text
    assert named in response.text


@pytest.mark.slow
async def test_position_events_let_a_quiet_client_resume_without_a_gap(
    settings: Settings, db: Database
) -> None:
    repo = LogRepository(db.pool, db.redis_client, cache=db.cache, tail=db.tail)
    params = {"q": "needle"}
    async with served(settings) as base, httpx.AsyncClient(base_url=base) as client:
        async with client.stream("GET", "/api/v1/tail", params=params) as r:
            await wait_subscribed()
            await repo.save_log_entry({"message": "hay", "source_id": 1})
            (position,) = await read_events(r, 1, kinds_all=True)
        assert position["event"] == "position"
        # While the client is away: one match is published; it must not be lost.
        await repo.save_log_entry({"message": "needle while away", "source_id": 2})
        headers = {"Last-Event-ID": position["id"]}
        async with client.stream("GET", "/api/v1/tail", params=params, headers=headers) as r:
            (event,) = await read_events(r, 1)
    assert orjson.loads(event["data"])["message"] == "needle while away"
