"""The query cache against real Redis: stampede protection and its metrics."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY

from logkeep.cache.keys import Keys
from logkeep.cache.query_cache import QueryCache
from logkeep.config import Settings
from logkeep.db.database import Database


def counting_loader(calls: list[int], delay_s: float = 0.1) -> Any:
    async def load() -> dict[str, int]:
        calls.append(1)
        await asyncio.sleep(delay_s)
        return {"answer": 42}

    return load


async def test_concurrent_misses_in_one_process_load_once(db: Database, settings: Settings) -> None:
    cache = QueryCache(db.redis_client, Keys(settings.redis_key_prefix))
    calls: list[int] = []
    results = await asyncio.gather(
        *(cache.get_or_load("t", {"p": 1}, [1], 30, counting_loader(calls)) for _ in range(20))
    )
    assert results == [{"answer": 42}] * 20
    assert len(calls) == 1


async def test_concurrent_misses_across_processes_load_once(
    db: Database, settings: Settings
) -> None:
    keys = Keys(settings.redis_key_prefix)
    # Two caches with separate in-process state: only the Redis lock coordinates them.
    first, second = QueryCache(db.redis_client, keys), QueryCache(db.redis_client, keys)
    calls: list[int] = []
    results = await asyncio.gather(
        first.get_or_load("t", {"p": 2}, [1], 30, counting_loader(calls, 0.3)),
        second.get_or_load("t", {"p": 2}, [1], 30, counting_loader(calls, 0.3)),
    )
    assert list(results) == [{"answer": 42}] * 2
    assert len(calls) == 1


async def test_a_failing_load_reaches_every_waiter_and_is_not_cached(
    db: Database, settings: Settings
) -> None:
    cache = QueryCache(db.redis_client, Keys(settings.redis_key_prefix))
    attempts: list[int] = []

    async def broken() -> Any:
        attempts.append(1)
        await asyncio.sleep(0.05)
        raise RuntimeError("query failed")

    outcomes = await asyncio.gather(
        *(cache.get_or_load("t", {"p": 3}, None, 30, broken) for _ in range(5)),
        return_exceptions=True,
    )
    assert all(isinstance(o, RuntimeError) for o in outcomes)
    assert len(attempts) == 1
    calls: list[int] = []
    assert await cache.get_or_load("t", {"p": 3}, None, 30, counting_loader(calls)) == {
        "answer": 42
    }
    assert calls == [1]


async def test_hits_report_time_saved(db: Database, settings: Settings) -> None:
    cache = QueryCache(db.redis_client, Keys(settings.redis_key_prefix))
    kind = f"saved-{settings.redis_key_prefix}"

    def saved() -> float:
        value = REGISTRY.get_sample_value("logkeep_cache_saved_seconds_total", {"kind": kind})
        return value or 0.0

    calls: list[int] = []
    await cache.get_or_load(kind, {}, None, 30, counting_loader(calls, 0.2))
    assert saved() == 0.0
    await cache.get_or_load(kind, {}, None, 30, counting_loader(calls, 0.2))
    assert calls == [1]
    assert saved() == pytest.approx(0.2, abs=0.1)
    assert REGISTRY.get_sample_value("logkeep_cache_hits_total", {"kind": kind}) == 1


async def test_oversized_results_are_not_cached(db: Database, settings: Settings) -> None:
    cache = QueryCache(db.redis_client, Keys(settings.redis_key_prefix))
    calls: list[int] = []

    async def huge() -> str:
        calls.append(1)
        return "x" * (2 * 1024 * 1024)

    assert len(await cache.get_or_load("big", {}, None, 30, huge)) == 2 * 1024 * 1024
    assert len(await cache.get_or_load("big", {}, None, 30, huge)) == 2 * 1024 * 1024
    assert calls == [1, 1]
    assert await db.redis.keys(f"{settings.redis_key_prefix}cache:*big*") == []
