from __future__ import annotations

from importlib import resources

import asyncpg
import pytest

from logkeep.db.migrate import MigrationError, load_migrations, migrate, status
from logkeep.db.schema_dump import describe_schema


async def test_migrations_from_empty_match_the_checked_in_schema(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        applied = await migrate(conn)
        assert [m.version for m in applied] == [m.version for m in load_migrations()]
        actual = await describe_schema(conn)
    finally:
        await conn.close()
    expected = resources.files("logkeep.db").joinpath("schema.sql").read_text("utf-8")
    assert actual == expected, "db/schema.sql is stale: regenerate it with `logkeep db schema`"


async def test_second_run_applies_nothing(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        first = await migrate(conn)
        second = await migrate(conn)
        state = await status(conn)
        rows = await conn.fetchval("SELECT count(*) FROM schema_migrations")
    finally:
        await conn.close()
    assert first
    assert second == []
    assert state.pending == []
    assert rows == len(load_migrations())


async def test_edited_migration_is_refused(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate(conn)
        # What an edit looks like from the database's side: the recorded checksum no
        # longer matches the file that ships.
        await conn.execute("UPDATE schema_migrations SET checksum = 'deadbeef' WHERE version = 1")
        with pytest.raises(MigrationError, match=r"0001_initial\.sql was edited"):
            await migrate(conn)
        with pytest.raises(MigrationError, match="edited"):
            await status(conn)
    finally:
        await conn.close()


async def test_database_ahead_of_code_is_refused(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate(conn)
        await conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, 'future', 'x')"
        )
        with pytest.raises(MigrationError, match="9999"):
            await migrate(conn)
    finally:
        await conn.close()


async def test_failed_migration_leaves_no_trace(empty_database_url: str) -> None:
    conn = await asyncpg.connect(empty_database_url)
    try:
        # A conflicting object makes 0001 fail part-way; its transaction must roll back
        # everything it did, including the objects created before the failure.
        await conn.execute("CREATE TABLE log_metrics (x int)")
        with pytest.raises(MigrationError, match=r"0001_initial\.sql failed"):
            await migrate(conn)
        assert await conn.fetchval("SELECT to_regtype('log_level')") is None
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 0
    finally:
        await conn.close()
