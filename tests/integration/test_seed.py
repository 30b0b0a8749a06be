from __future__ import annotations

import asyncio

import asyncpg
import pytest
from argon2 import PasswordHasher

from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.db.seed import seed
from tests.conftest import Stores, make_settings


async def _counts(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        return {
            table: await conn.fetchval(f"SELECT count(*) FROM {table}")  # fixed table names
            for table in ("log_sources", "users", "log_entries", "log_metrics")
        }
    finally:
        await conn.close()


async def test_dev_seed_is_idempotent(migrated_database_url: str, stores: Stores) -> None:
    settings = make_settings(migrated_database_url, stores.redis_url)
    async with Database(settings) as db:
        first = await seed(db.pool, settings, "dev", rows=3000)
        after_first = await _counts(migrated_database_url)
        second = await seed(db.pool, settings, "dev", rows=3000)
    after_second = await _counts(migrated_database_url)
    assert first.entries_loaded == 3000
    assert sorted(first.users_created) == ["admin", "analyst", "viewer"]
    assert set(first.generated_passwords) == {"admin", "analyst", "viewer"}
    assert second.entries_loaded == 0 and second.entries_already_loaded
    assert second.users_created == [] and second.generated_passwords == {}
    assert after_first == after_second
    assert after_first["log_sources"] == 3 and after_first["users"] == 3


async def test_dev_seed_spreads_entries_over_seven_days_with_rollups(
    migrated_database_url: str, stores: Stores
) -> None:
    settings = make_settings(migrated_database_url, stores.redis_url)
    async with Database(settings) as db:
        await seed(db.pool, settings, "dev", rows=2000)
        async with db.pool.acquire() as conn:
            span = await conn.fetchval(
                'SELECT extract(epoch FROM max("timestamp") - min("timestamp")) FROM log_entries'
            )
            in_default = await conn.fetchval("SELECT count(*) FROM log_entries_default")
            raw = await conn.fetch(
                "SELECT source_id, date_trunc('minute', \"timestamp\") AS bucket, level, "
                "count(*) AS n FROM log_entries GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
            )
            rollup = await conn.fetch(
                "SELECT source_id, bucket, level, count AS n FROM log_metrics ORDER BY 1, 2, 3"
            )
            levels = await conn.fetchval("SELECT count(DISTINCT level) FROM log_entries")
    assert span > 6 * 86400
    assert in_default == 0
    assert [tuple(r) for r in raw] == [tuple(r) for r in rollup]
    assert levels >= 4


async def test_generated_passwords_verify_against_stored_hashes(
    migrated_database_url: str, stores: Stores
) -> None:
    settings = make_settings(
        migrated_database_url, stores.redis_url, analyst_password="given-pw-123"
    )
    async with Database(settings) as db:
        report = await seed(db.pool, settings, "dev", rows=0)
        async with db.pool.acquire() as conn:
            hashes: dict[str, str] = {
                r["username"]: r["password_hash"]
                for r in await conn.fetch("SELECT username, password_hash FROM users")
            }
    hasher = PasswordHasher()
    assert "analyst" not in report.generated_passwords
    assert hasher.verify(hashes["analyst"], "given-pw-123")
    for user, password in report.generated_passwords.items():
        assert hasher.verify(hashes[user], password)
        assert password not in hashes[user]


async def test_prod_seed_creates_only_the_admin(migrated_database_url: str, stores: Stores) -> None:
    settings = make_settings(
        migrated_database_url, stores.redis_url, env="prod", admin_password="a-long-admin-secret"
    )
    async with Database(settings) as db:
        report = await seed(db.pool, settings, "prod")
    counts = await _counts(migrated_database_url)
    assert report.users_created == ["admin"]
    assert counts == {"log_sources": 0, "users": 1, "log_entries": 0, "log_metrics": 0}


async def test_prod_seed_without_admin_password_fails(
    migrated_database_url: str, stores: Stores
) -> None:
    settings = make_settings(migrated_database_url, stores.redis_url, env="prod")
    async with Database(settings) as db:
        with pytest.raises(ValueError, match="LOGKEEP_ADMIN_PASSWORD"):
            await seed(db.pool, settings, "prod")


async def test_concurrent_seeds_load_entries_once(
    migrated_database_url: str, stores: Stores
) -> None:
    settings: Settings = make_settings(migrated_database_url, stores.redis_url, pg_pool_max_size=6)
    async with Database(settings) as db:
        reports = await asyncio.gather(
            seed(db.pool, settings, "dev", rows=1500), seed(db.pool, settings, "dev", rows=1500)
        )
    counts = await _counts(migrated_database_url)
    assert sorted(r.entries_loaded for r in reports) == [0, 1500]
    assert counts["log_entries"] == 1500
    assert counts["users"] == 3


async def test_test_seed_is_the_documented_fixed_set(db: Database) -> None:
    async with db.pool.acquire() as conn:
        per_source = {
            r["name"]: r["count"]
            for r in await conn.fetch(
                "SELECT s.name, count(*) FROM log_entries e JOIN log_sources s "
                "ON s.id = e.source_id GROUP BY s.name"
            )
        }
        per_level = {
            r["level"]: r["count"]
            for r in await conn.fetch("SELECT level, count(*) FROM log_entries GROUP BY 1")
        }
    assert per_source == {"nginx_access": 20, "app_errors": 20, "db_slow_queries": 20}
    assert per_level == {"DEBUG": 12, "INFO": 12, "WARN": 12, "ERROR": 12, "FATAL": 12}
