from __future__ import annotations

import time
from pathlib import Path

import asyncpg
import pytest

from logkeep import Database
from logkeep.cli.common import connect
from logkeep.config import Settings
from logkeep.db.database import StoreUnavailable
from tests.conftest import Stores, make_settings


async def test_initialize_and_close(settings: Settings) -> None:
    database = Database(settings)
    assert database.pg_pool is None and database.redis_client is None
    await database.initialize()
    try:
        assert database.pg_pool is not None and database.redis_client is not None
        async with database.pg_pool.acquire() as conn:
            assert await conn.fetchval("SELECT 1") == 1
        await database.redis_client.set(f"{settings.redis_key_prefix}k", "v")
        assert await database.redis_client.get(f"{settings.redis_key_prefix}k") == b"v"
    finally:
        await database.close()
    assert database.pg_pool is None and database.redis_client is None


async def test_session_settings_are_applied(stores: Stores, database_url_fixture: str) -> None:
    settings = make_settings(
        database_url_fixture,
        stores.redis_url,
        statement_timeout_ms=1234,
        application_name="logkeep-test",
    )
    async with Database(settings) as db, db.pool.acquire() as conn:
        assert await conn.fetchval("SHOW TimeZone") == "UTC"
        assert await conn.fetchval("SHOW statement_timeout") == "1234ms"
        assert await conn.fetchval("SELECT current_setting('application_name')") == "logkeep-test"
        assert await conn.fetchval("SHOW jit") == "off"
        with pytest.raises(asyncpg.QueryCanceledError):
            await conn.execute("SELECT pg_sleep(3)")


async def test_cli_and_doctor_sessions_are_set_up_like_the_pool(
    stores: Stores, database_url_fixture: str
) -> None:
    """`logkeep db compact` runs on the CLI's session: with JIT on, PostgreSQL compiled
    each slice's lookup of the next slice for 15-20 ms (its estimate crosses
    jit_above_cost)."""
    settings = make_settings(database_url_fixture, stores.redis_url, application_name="lk")
    conn = await connect(settings)
    try:
        assert await conn.fetchval("SHOW jit") == "off"
        assert await conn.fetchval("SHOW TimeZone") == "UTC"
        # named apart from the pools' sessions, which the doctor counts
        assert await conn.fetchval("SELECT current_setting('application_name')") == "lk-cli"
    finally:
        await conn.close()


async def test_unreachable_postgres_is_reported_with_its_address(stores: Stores) -> None:
    settings = make_settings(
        "postgresql://logkeep@127.0.0.1:1/logkeep", stores.redis_url, connect_deadline_s=1.0
    )
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=r"PostgreSQL at 127\.0\.0\.1:1/logkeep") as info:
        await Database(settings).initialize()
    assert time.monotonic() - started < 10
    assert "within 1s" in str(info.value)


async def test_unreachable_redis_is_reported_with_its_address(
    stores: Stores, database_url_fixture: str
) -> None:
    settings = make_settings(database_url_fixture, "redis://127.0.0.1:1/0", connect_deadline_s=1.0)
    database = Database(settings)
    with pytest.raises(StoreUnavailable, match=r"Redis at 127\.0\.0\.1:1/0"):
        await database.initialize()
    assert database.pg_pool is None  # nothing half-open is left behind


async def test_missing_urls_are_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="LOGKEEP_DATABASE_URL") as info:
        Database(Settings(_env_file=None, database_url=None, redis_url=None, data_dir=tmp_path))
    assert f"none is running for the data directory {tmp_path}" in str(info.value)


async def test_without_arguments_it_reads_the_settings_from_the_environment(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The brief's `Database()`: settings as every command reads them."""
    assert settings.database_url and settings.redis_url
    monkeypatch.chdir(tmp_path)  # no .env here
    monkeypatch.setenv("LOGKEEP_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("LOGKEEP_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("LOGKEEP_REDIS_KEY_PREFIX", settings.redis_key_prefix)
    monkeypatch.setenv("LOGKEEP_STATEMENT_TIMEOUT_MS", "4321")
    async with Database() as db, db.pool.acquire() as conn:
        assert db.settings.database_url == settings.database_url
        assert await conn.fetchval("SHOW statement_timeout") == "4321ms"
        assert await conn.fetchval("SELECT count(*) FROM log_sources") > 0  # the test seed
