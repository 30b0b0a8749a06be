"""The match histogram's counts per chunk, remembered (db/chunk_counts.py): an answer
read with remembered counts is the answer counted afresh, for other windows, levels and
filters, and after compaction has replaced the chunks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from logkeep.db import tiers
from logkeep.db.chunk_counts import ChunkCounts, minute_counts
from logkeep.db.database import Database
from logkeep.db.repositories import LogRepository
from logkeep.domain.matching import TextCondition
from logkeep.domain.timerange import TimeRange

from .test_storage_tiers import compact_all, day_partitions, seed_varied

__all__ = ["day_partitions"]  # the fixture, used by name


async def counted(
    db: Database, flt: tiers.EventFilter, known: ChunkCounts | None
) -> dict[tuple[int, str], int]:
    async with (
        db.pool.acquire() as conn,
        conn.transaction(readonly=True, isolation="repeatable_read"),
    ):
        return await tiers.counts_per_minute(conn, flt, known)


def filters(now: datetime) -> list[tiers.EventFilter]:
    minute = now.replace(second=0, microsecond=0)
    day = TimeRange(minute - timedelta(hours=24), minute + timedelta(minutes=1))
    narrow = TimeRange(minute - timedelta(minutes=97), minute - timedelta(minutes=23))
    declined = TextCondition(("declined",), None)
    return [
        tiers.EventFilter(day, text=declined),
        tiers.EventFilter(narrow, text=declined),
        tiers.EventFilter(day, text=declined, levels=("WARN", "ERROR")),
        tiers.EventFilter(narrow, text=declined, source_ids=(2,), levels=("INFO",)),
        tiers.EventFilter(day, text=TextCondition((), "zeit")),
        tiers.EventFilter(day, metadata={"status": 503}),
        tiers.EventFilter(narrow, metadata={"host": "web-1"}, excluded=({"status": 404},)),
        tiers.EventFilter(day, text=declined, excluded=({"host": "web-2"},)),
        # One event: most chunks are ruled out by their Bloom filters, and remembered so.
        tiers.EventFilter(day, text=TextCondition(("ORD-000033",), None)),
    ]


async def test_remembered_counts_answer_as_counted_afresh(
    db: Database, log_repo: LogRepository, day_partitions: datetime
) -> None:
    now = day_partitions
    await seed_varied(log_repo, now, count=3000)
    known = ChunkCounts()
    for moved in range(2):
        if moved:
            await seed_varied(log_repo, now - timedelta(minutes=1), count=700)
        assert await compact_all(db) > 0
        for flt in filters(now):
            fresh = await counted(db, flt, None)
            assert fresh, flt  # each filter matches something
            assert await counted(db, flt, known) == fresh, flt  # counted and remembered
            assert await counted(db, flt, known) == fresh, flt  # read from memory
    assert len(known) > 0
    # A window that is not whole minutes is counted afresh (memory holds whole minutes).
    odd = tiers.EventFilter(
        TimeRange(now - timedelta(minutes=90, seconds=7), now - timedelta(seconds=30)),
        text=TextCondition(("declined",), None),
    )
    assert await counted(db, odd, known) == await counted(db, odd, None)


async def test_remembered_counts_are_bounded() -> None:
    known = ChunkCounts(max_entries=3)
    at = datetime(2026, 3, 1, tzinfo=UTC)
    for n in range(5):
        known.put((n, 1, at, at), "q", minute_counts([0], ["INFO"], [0]))
    assert len(known) == 3
    assert known.get((0, 1, at, at), "q") is None
    assert known.get((4, 1, at, at), "q") is not None
