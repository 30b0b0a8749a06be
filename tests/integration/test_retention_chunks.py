"""Per-source retention on a chunk whose events fall on both sides of the cutoff: the
chunk is written again with its newer events, which keep their ids and content."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from logkeep.db.compaction import expire_sources, slice_start
from logkeep.db.database import Database
from logkeep.db.partitions import ensure_partitions
from logkeep.db.repositories import LogRepository
from tests.integration.test_storage_tiers import SLICE, compact_all

SOURCE = 3
RETENTION = timedelta(days=2)
CHUNKS_IN_SLICE = (
    "SELECT events, min_ts FROM log_chunks WHERE source_id = $1 "
    "AND min_ts >= $2 AND max_ts < $2 + interval '15 minutes'"
)


async def test_retention_keeps_the_newer_part_of_a_chunk_across_the_cutoff(
    client: httpx.AsyncClient, db: Database, log_repo: LogRepository
) -> None:
    # One slice of one source three days ago: one chunk, its middle at the cutoff.
    start = slice_start(datetime.now(UTC) - timedelta(days=3), SLICE)
    cutoff = start + timedelta(minutes=7)  # a whole minute, as retention's cutoffs are
    now = cutoff + RETENTION
    async with db.pool.acquire() as conn:
        await ensure_partitions(conn, {(start + timedelta(days=d)).date() for d in range(-1, 5)})
    offsets = [-300, -60, -1, 0, 1, 60, 299]  # seconds from the cutoff, within the slice
    await log_repo.save_many(
        {"source_id": SOURCE, "message": f"around {s}", "timestamp": cutoff + timedelta(seconds=s)}
        for s in offsets
    )
    await compact_all(db)
    async with db.pool.acquire() as conn:
        assert (
            await conn.fetchval(
                CHUNKS_IN_SLICE.replace("events, min_ts", "count(*)"), SOURCE, start
            )
            == 1
        )
    window = {
        "source": str(SOURCE),
        "from": (start - timedelta(minutes=1)).isoformat(),
        "to": (start + SLICE).isoformat(),
        "limit": "100",
    }
    before = (await client.get("/api/v1/logs", params=window)).json()["items"]
    assert len(before) == len(offsets)

    async with db.pool.acquire() as conn:
        await conn.execute(
            "UPDATE log_sources SET retention_days = $1 WHERE id = $2", RETENTION.days, SOURCE
        )
        removed = await expire_sources(conn, now)
        chunks = await conn.fetch(CHUNKS_IN_SLICE, SOURCE, start)
        hot = await conn.fetchval(
            "SELECT count(*) FROM log_entries WHERE source_id = $1 AND timestamp >= $2 "
            "AND timestamp < $3",
            SOURCE,
            start,
            start + SLICE,
        )
    assert removed == {SOURCE: 3}  # -300, -60 and -1 s (the seed's entries are recent)
    assert [(c["events"], c["min_ts"]) for c in chunks] == [(4, cutoff)]
    assert hot == 0
    await db.cache.invalidate_sources([SOURCE])
    after = (await client.get("/api/v1/logs", params=window)).json()["items"]
    assert after == [
        item for item in before if item["message"] in {f"around {s}" for s in offsets if s >= 0}
    ]
