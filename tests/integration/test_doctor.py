"""`logkeep doctor` against stores set up wrong: each problem is reported with a fix, and
the exit code says something is wrong."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest
import redis
from pydantic import SecretStr

from logkeep.api.local import free_port
from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.db.partitions import maintain
from logkeep.doctor import Check, Status, judge_connections, render, run_checks
from logkeep.embedded import EmbeddedRedis
from tests.conftest import Stores, make_settings

TODAY = datetime.now(UTC).date()


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {check.name: check for check in checks}


def no_api(settings: Settings, **update: object) -> Settings:
    """Settings whose API address answers nothing (doctor reads a running API's pool)."""
    return settings.model_copy(update={"api_url": f"http://127.0.0.1:{free_port()}", **update})


async def maintained(settings: Settings, today: date = TODAY) -> None:
    async with Database(settings) as db, db.pool.acquire() as conn:
        await maintain(
            conn,
            retention_days=settings.retention_days,
            days_ahead=settings.partition_days_ahead,
            max_entry_age_days=settings.entry_max_age_days,
            today=today,
        )


@pytest.fixture
def own_redis(short_tmp: Path) -> Iterator[EmbeddedRedis]:
    """A Redis of this test's own, so its configuration may be changed."""
    server = EmbeddedRedis(short_tmp / "redis", ephemeral=True)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_a_healthy_stack_passes(settings: Settings) -> None:
    await maintained(settings)
    text, code = render(await run_checks(no_api(settings), today=TODAY))
    assert code == 0, text
    assert "FAIL" not in text
    assert text.splitlines()[-1] == "everything looks right"


async def test_reports_an_eviction_policy_that_can_evict_the_stream(
    settings: Settings, own_redis: EmbeddedRedis
) -> None:
    await maintained(settings)
    doctor_settings = no_api(settings, redis_url=own_redis.url())
    client = redis.Redis(unix_socket_path=str(own_redis.socket))
    try:
        client.config_set("maxmemory-policy", "allkeys-lru")
        checks = await run_checks(doctor_settings, today=TODAY)
        eviction = by_name(checks)["redis eviction"]
        assert eviction.status is Status.FAIL
        assert "allkeys-lru" in eviction.detail and "stream" in eviction.detail
        text, code = render(checks)
        assert code == 1
        assert "fix: CONFIG SET maxmemory-policy noeviction" in text

        # volatile-* spares the stream but not sessions or idempotency records: a warning.
        client.config_set("maxmemory-policy", "volatile-lru")
        checks = await run_checks(doctor_settings, today=TODAY)
        assert by_name(checks)["redis eviction"].status is Status.WARN
        assert render(checks)[1] == 0

        client.config_set("maxmemory-policy", "noeviction")
        checks = await run_checks(doctor_settings, today=TODAY)
        assert by_name(checks)["redis eviction"].status is Status.OK
    finally:
        client.close()


async def test_reports_a_missing_partition_and_rows_in_default(settings: Settings) -> None:
    await maintained(settings)
    tomorrow = TODAY + timedelta(days=1)
    assert settings.database_url
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute("SELECT drop_log_partition($1::date)", tomorrow)
        checks = by_name(await run_checks(no_api(settings), today=TODAY))
        partitions = checks["partitions"]
        assert partitions.status is Status.FAIL
        assert tomorrow.isoformat() in partitions.detail
        assert (TODAY + timedelta(days=2)).isoformat() not in partitions.detail
        assert "logkeep db maintain" in partitions.fix
        assert checks["default partition"].status is Status.OK

        # An entry of that day now lands in DEFAULT (written behind logkeep's back, as a
        # bulk load would).
        source_id = await conn.fetchval("SELECT min(id) FROM log_sources")
        noon = datetime(tomorrow.year, tomorrow.month, tomorrow.day, 12, tzinfo=UTC)
        await conn.execute(
            "INSERT INTO log_entries (source_id, timestamp, message) VALUES ($1, $2, 'stray')",
            source_id,
            noon,
        )
    finally:
        await conn.close()
    found = await run_checks(no_api(settings), today=TODAY)
    default = by_name(found)["default partition"]
    assert default.status is Status.FAIL
    assert "holds 1 rows" in default.detail and "12:00" in default.detail
    assert render(found)[1] == 1

    # The fix it prints works: maintain creates the day and moves the row into it.
    await maintained(settings)
    checks = by_name(await run_checks(no_api(settings), today=TODAY))
    assert checks["partitions"].status is Status.OK
    assert checks["default partition"].status is Status.OK


async def test_reports_a_schema_behind_the_code(empty_database_url: str, stores: Stores) -> None:
    settings = no_api(make_settings(empty_database_url, stores.redis_url))
    checks = by_name(await run_checks(settings, today=TODAY))
    schema = checks["schema"]
    assert schema.status is Status.FAIL
    assert "0001_initial.sql" in schema.detail
    assert "logkeep db migrate" in schema.fix
    assert "partitions" not in checks  # nothing to look at before the first migration


async def test_reports_why_it_cannot_connect(stores: Stores, short_tmp: Path) -> None:
    settings = no_api(
        make_settings(
            f"postgresql://logkeep:x@127.0.0.1:{free_port()}/logkeep",
            f"unix://{short_tmp}/no-such.sock",
        )
    )
    checks = by_name(await run_checks(settings, today=TODAY))
    postgres, store = checks["postgres"], checks["redis"]
    assert postgres.status is Status.FAIL and store.status is Status.FAIL
    assert "ConnectionRefusedError" in postgres.detail or "OSError" in postgres.detail
    assert "listening" in postgres.fix
    assert "ConnectionError" in store.detail
    assert "schema" not in checks  # nothing else is guessed at
    text, code = render(list(checks.values()))
    assert code == 1
    assert text.splitlines()[-1] == "2 problems, 0 warnings"


async def test_prod_needs_aof_and_real_secrets(settings: Settings) -> None:
    await maintained(settings)
    prod = no_api(
        settings,
        env="prod",
        secret_key=SecretStr("changeme"),
        admin_password=SecretStr("a-long-enough-password"),
    )
    checks = by_name(await run_checks(prod, today=TODAY))
    assert checks["secrets"].status is Status.FAIL
    assert checks["secrets"].detail == "LOGKEEP_SECRET_KEY is empty or a placeholder"
    # The test Redis runs without an append-only file: fine for test, wrong for prod.
    assert checks["redis persistence"].status is Status.FAIL
    assert "appendonly yes" in checks["redis persistence"].fix
    test_env = by_name(await run_checks(no_api(settings), today=TODAY))
    assert test_env["redis persistence"].status is Status.OK


def test_connection_saturation() -> None:
    def judge(used: int, *, usable: int = 100, api: tuple[int, int] | None = None) -> Status:
        return judge_connections(
            usable=usable, used=used, ours=used, pool_max=10, api_pool=api
        ).status

    assert judge(20) is Status.OK
    assert judge(79) is Status.OK
    assert judge(80) is Status.FAIL  # 80% of the server's slots in use
    assert judge(31, usable=40) is Status.WARN  # no room left for one more process's pool
    assert judge(20, api=(9, 10)) is Status.FAIL  # the API waits for its own pool
    assert judge(20, api=(3, 10)) is Status.OK


async def test_unset_stores_without_a_running_up_say_how_to_get_one(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, database_url=None, redis_url=None, data_dir=tmp_path)
    checks = by_name(await run_checks(no_api(settings), today=TODAY))
    assert "instance" not in checks
    for name, variable in (("postgres", "LOGKEEP_DATABASE_URL"), ("redis", "LOGKEEP_REDIS_URL")):
        check = checks[name]
        assert check.status is Status.WARN
        assert f"no `logkeep up` is running for the data directory {tmp_path}" in check.detail
        assert "start `logkeep up`" in check.fix and variable in check.fix
    prod = by_name(await run_checks(no_api(settings, env="prod"), today=TODAY))
    assert prod["postgres"].status is Status.FAIL and prod["redis"].status is Status.FAIL
