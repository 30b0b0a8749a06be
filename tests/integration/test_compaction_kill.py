"""Compaction killed with SIGKILL at random points, over and over, while events are
written and searched: every acknowledged event is stored once, and no search ever sees
an event twice or misses one committed before it began."""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import pytest

from logkeep.config import Settings
from logkeep.db import tiers
from logkeep.db.database import Database
from logkeep.db.partitions import ensure_partitions
from logkeep.db.repositories import LogRepository
from logkeep.domain.timerange import TimeRange

pytestmark = pytest.mark.slow

KILLS = 25
# One slice of one minute at a time, from the oldest, forever: many short transactions.
COMPACTOR = textwrap.dedent(
    """
    import asyncio, sys
    from datetime import timedelta
    import asyncpg
    from logkeep.db.compaction import compact

    async def main() -> None:
        conn = await asyncpg.connect(sys.argv[1])
        while True:
            await compact(conn, slice_length=timedelta(minutes=1), grace=timedelta(minutes=-1))
            await asyncio.sleep(0.01)

    asyncio.run(main())
    """
)


async def test_kill_9_compaction_under_ingest_and_searches(
    settings: Settings, db: Database, log_repo: LogRepository
) -> None:
    assert settings.database_url
    now = datetime.now(UTC)
    async with db.pool.acquire() as conn:
        await ensure_partitions(conn, {(now + timedelta(days=d)).date() for d in (-1, 0, 1)})
        seeded = {r["id"] for r in await conn.fetch("SELECT id FROM log_entries")}
    window = TimeRange(now - timedelta(hours=4), now + timedelta(hours=1))
    acknowledged: set[int] = set(seeded)
    rng = random.Random(13)  # noqa: S311 - kill timings, not secrets
    stop = asyncio.Event()
    problems: list[str] = []
    searches = 0

    async def ingest() -> None:
        batch = 0
        while not stop.is_set():
            rows = [
                {
                    "source_id": 1 + n % 3,
                    "message": f"event {batch}-{n} ORD-{rng.randrange(10**6):06d}",
                    # Old and new slices alike: late rows land in compacted slices.
                    "timestamp": datetime.now(UTC) - timedelta(seconds=rng.randrange(3 * 3600)),
                    "metadata": {"batch": batch},
                }
                for n in range(rng.randrange(1, 120))
            ]
            before = datetime.now(UTC)
            await log_repo.save_many(rows)
            # Rows may already be compacted: their ids are read from both tiers.
            async with db.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
                flt = tiers.EventFilter(
                    TimeRange(before - timedelta(hours=4), before + timedelta(minutes=1)),
                    metadata={"batch": batch},
                )
                found = [e.id async for e in tiers.scan(conn, flt)]
            if len(found) != len(rows):
                problems.append(f"batch {batch}: {len(found)} of {len(rows)} found right after")
            acknowledged.update(found)
            batch += 1
            await asyncio.sleep(0.005)

    async def search() -> None:
        nonlocal searches
        while not stop.is_set():
            committed = set(acknowledged)  # acknowledged before this search began
            async with (
                db.pool.acquire() as conn,
                conn.transaction(readonly=True, isolation="repeatable_read"),
            ):
                events = [e async for e in tiers.scan(conn, tiers.EventFilter(window))]
            seen = [e.id for e in events]
            keys = [(e.timestamp, e.id) for e in events]
            if keys != sorted(keys, reverse=True):
                problems.append(f"search {searches} out of order")
            if len(seen) != len(set(seen)):
                problems.append(f"search {searches} saw {len(seen) - len(set(seen))} twice")
            missing = committed - set(seen)
            if missing:
                problems.append(f"search {searches} missed {len(missing)} committed events")
            searches += 1

    workers = [asyncio.create_task(ingest()), asyncio.create_task(search())]
    kills = 0
    try:
        while kills < KILLS:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                COMPACTOR,
                settings.database_url,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            if proc.returncode is not None:
                assert proc.stderr is not None
                raise AssertionError(f"the compactor exited: {await proc.stderr.read()!r}")
            proc.send_signal(signal.SIGKILL)
            await proc.communicate()
            kills += 1
            assert not problems, problems[:5]
    finally:
        stop.set()
        await asyncio.gather(*workers)
    async with db.pool.acquire() as conn:
        chunks = await conn.fetchval("SELECT count(*) FROM log_chunks")
        hot = await conn.fetchval("SELECT count(*) FROM log_entries")
        in_chunks = await conn.fetchval("SELECT coalesce(sum(events), 0) FROM log_chunks")
    print(  # shown with -s: what the run went through
        f"kills={kills} searches={searches} events={len(acknowledged)} hot={hot} "
        f"compacted={in_chunks} chunks={chunks}"
    )
    assert chunks > 0, "compaction ran between the kills"
    assert hot + in_chunks == len(acknowledged)
    async with db.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        final = [e.id async for e in tiers.scan(conn, tiers.EventFilter(window))]
    assert len(final) == len(set(final)) == len(acknowledged)
    assert set(final) == acknowledged
    assert searches >= KILLS
    assert not problems, problems[:5]
