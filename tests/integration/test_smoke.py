from __future__ import annotations

from logkeep.db.database import Database


async def test_seeded_test_database_has_sources_and_entries(db: Database) -> None:
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM log_sources") == 3
        assert await conn.fetchval("SELECT count(*) FROM log_entries") == 60
