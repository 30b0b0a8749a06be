"""Three real `logkeep alerts` processes on the same PostgreSQL and Redis: one evaluates
the rule (it holds the lease); kill -9 it and another takes the rule within one interval,
and the receiver gets each notification once — none twice, none skipped."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from logkeep.config import Settings
from logkeep.db.database import Database
from tests.conftest import Stores, running_app
from tests.integration.alerting_helpers import (
    add_entries,
    create_channel,
    create_rule,
    new_source,
    webhook_receiver,
)
from tests.integration.test_cli import LOGKEEP, clean_env

pytestmark = pytest.mark.slow
INTERVAL_S = 5
DEADLINE_S = 40.0


async def wait_for(
    check: Callable[[], Awaitable[bool]], what: str, deadline_s: float = DEADLINE_S
) -> None:
    """Poll an async predicate until it holds, or fail naming what did not happen."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@asynccontextmanager
async def alert_processes(
    settings: Settings, stores: Stores, tmp_path: Path
) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """Three `logkeep alerts` processes; those still alive get SIGTERM at the end."""
    env = clean_env(
        LOGKEEP_ENV="test",
        LOGKEEP_DATABASE_URL=settings.database_url or "",
        LOGKEEP_REDIS_URL=stores.redis_url,
        LOGKEEP_REDIS_KEY_PREFIX=settings.redis_key_prefix,
        LOGKEEP_ALERT_SETTLE_S="0.5",
        LOGKEEP_PUBLIC_URL="https://logs.example.test",
    )
    procs = []
    for n in range(3):
        log = (tmp_path / f"alerts-{n}.log").open("wb")
        procs.append(
            await asyncio.create_subprocess_exec(
                str(LOGKEEP), "alerts", env=env, cwd=tmp_path, stdout=log, stderr=log
            )
        )
        log.close()
    try:
        yield procs
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def test_kill_the_evaluator_and_another_takes_over_without_loss_or_duplicates(
    settings: Settings, db: Database, stores: Stores, tmp_path: Path
) -> None:
    quiet = settings.model_copy(update={"alerts_enabled": False})
    redis = aioredis.from_url(stores.redis_url)
    try:
        async with webhook_receiver() as receiver, running_app(quiet) as api:
            source = await new_source(db, "failover")
            channel = await create_channel(api, receiver.url)
            rule = await create_rule(
                api, name="boom", source=source, query="boom", threshold=1,
                window_seconds=10, interval_seconds=INTERVAL_S, channels=[channel],
            )  # fmt: skip
            lease = f"{settings.redis_key_prefix}alerts:lease:{rule['id']}"

            async def holder() -> int | None:
                value = await redis.get(lease)
                if value is None:
                    return None
                text = value.decode() if isinstance(value, bytes) else str(value)
                return int(text.split(":")[1])  # host:pid:token

            async with alert_processes(settings, stores, tmp_path) as procs:
                pids = {p.pid for p in procs}

                async def held() -> bool:
                    return await holder() in pids

                await wait_for(held, "a process to take the rule's lease")
                await add_entries(db, source, datetime.now(UTC), 3, "boom happened")

                async def fired() -> bool:
                    return len(receiver.received) >= 1

                await wait_for(fired, "the firing notification")
                first = await holder()
                victim = next(p for p in procs if p.pid == first)
                victim.send_signal(signal.SIGKILL)
                killed_at = time.monotonic()
                await victim.wait()

                async def moved() -> bool:
                    return await holder() in pids - {first}

                await wait_for(moved, "another process to take the rule")
                takeover_s = time.monotonic() - killed_at

                async def evaluated_by_successor() -> bool:
                    async with db.pool.acquire() as conn:
                        by = await conn.fetchval(
                            "SELECT evaluated_by FROM alert_rule_status WHERE rule_id = $1",
                            rule["id"],
                        )
                    return by is not None and by.split(":")[1] != str(first)

                await wait_for(evaluated_by_successor, "an evaluation by the successor")
                evaluated_s = time.monotonic() - killed_at

                async def resolved() -> bool:  # the window passes without new errors
                    return len(receiver.received) >= 2

                await wait_for(resolved, "the resolve notification")
                await asyncio.sleep(2 * INTERVAL_S)  # anything sent twice would arrive now
    finally:
        await redis.aclose()
    assert takeover_s <= INTERVAL_S, takeover_s
    assert evaluated_s <= INTERVAL_S + 1.0, evaluated_s
    assert receiver.bad_signatures == 0
    assert receiver.alerts == [("firing", ""), ("resolved", "")]
    assert len(receiver.keys) == len(set(receiver.keys)) == 2
    print(f"takeover {takeover_s:.2f} s, first evaluation by the successor {evaluated_s:.2f} s")
