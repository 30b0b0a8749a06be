"""Least privilege: logkeep runs as a role that can do its job and nothing more."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.db.partitions import ensure_partitions
from logkeep.db.roles import grant_roles, quoted
from logkeep.ingest.worker import Worker
from tests.conftest import running_app


def as_role(url: str, role: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{role}@{host}"))


@pytest.fixture
async def roles(settings: Settings) -> AsyncIterator[tuple[str, str]]:
    assert settings.database_url
    suffix = uuid.uuid4().hex[:8]
    app, readonly = f"lk_app_{suffix}", f"lk_ro_{suffix}"
    conn = await asyncpg.connect(settings.database_url)
    try:
        await grant_roles(conn, app, readonly)
        await grant_roles(conn, app, readonly)  # a second run changes nothing, fails nothing
        yield app, readonly
    finally:
        await conn.execute(f"DROP OWNED BY {quoted(app)}, {quoted(readonly)}")
        await conn.execute(f"DROP ROLE {quoted(app)}")
        await conn.execute(f"DROP ROLE {quoted(readonly)}")
        await conn.close()


async def test_logkeep_works_as_the_application_role(
    settings: Settings, roles: tuple[str, str]
) -> None:
    assert settings.database_url
    app_settings = settings.model_copy(
        update={"database_url": as_role(settings.database_url, roles[0])}
    )
    tag = uuid.uuid4().hex
    async with running_app(app_settings) as api:
        response = await api.post(
            "/api/v1/ingest",
            content=f'{{"source": "app_errors", "message": "as app {tag}"}}'.encode(),
            headers={"Content-Type": "application/x-ndjson"},
        )
        assert response.status_code == 202
        async with Database(app_settings) as db:
            assert await Worker(db, app_settings, name="roles").drain() == 1
            async with db.pool.acquire() as conn:
                # Partition maintenance runs through the owner's functions.
                future = (datetime.now(UTC) + timedelta(days=20)).date()
                await ensure_partitions(conn, [future])
        found = await api.get("/api/v1/logs", params={"contains": tag})
        assert [i["message"] for i in found.json()["items"]] == [f"as app {tag}"]


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE log_entries SET message = 'x'",
        "UPDATE log_chunks SET payload = ''",
        "UPDATE audit_log SET action = 'x'",
        "DELETE FROM audit_log",
        "DROP TABLE log_sources",
        "CREATE TABLE intruder (x int)",
        "TRUNCATE log_metrics",
        "ALTER TABLE users ADD COLUMN x int",
    ],
)
async def test_the_application_role_cannot_rewrite_history_or_the_schema(
    settings: Settings, roles: tuple[str, str], statement: str
) -> None:
    assert settings.database_url
    conn = await asyncpg.connect(as_role(settings.database_url, roles[0]))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_the_readonly_role_reads_logs_but_no_credentials(
    settings: Settings, roles: tuple[str, str]
) -> None:
    assert settings.database_url
    conn = await asyncpg.connect(as_role(settings.database_url, roles[1]))
    try:
        assert await conn.fetchval("SELECT count(*) FROM log_entries") > 0
        assert await conn.fetchval("SELECT count(*) FROM log_sources") == 3
        for statement in (
            "SELECT * FROM users",
            "SELECT * FROM api_keys",
            "SELECT * FROM audit_log",
            "INSERT INTO log_sources (name, source_type, format_type) VALUES ('x', 'y', 'z')",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute(statement)
    finally:
        await conn.close()


def test_role_names_are_checked() -> None:
    with pytest.raises(ValueError, match="role name"):
        quoted('app"; DROP TABLE users; --')


async def test_partitions_and_partition_functions_are_not_open_to_everyone(
    settings: Settings, roles: tuple[str, str]
) -> None:
    assert settings.database_url
    owner = await asyncpg.connect(settings.database_url)
    stranger = f"lk_nobody_{uuid.uuid4().hex[:8]}"
    try:
        await owner.execute(f"CREATE ROLE {quoted(stranger)} LOGIN")
        database = await quoted_database_name(owner)
        await owner.execute(f"GRANT CONNECT ON DATABASE {database} TO {stranger}")
        conn = await asyncpg.connect(as_role(settings.database_url, stranger))
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.execute("SELECT drop_log_partition(current_date)")
        finally:
            await conn.close()
        partition = await owner.fetchval(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'log_entries'::regclass AND c.relname <> 'log_entries_default' "
            "LIMIT 1"
        )
        app = await asyncpg.connect(as_role(settings.database_url, roles[0]))
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await app.execute(f'DELETE FROM "{partition}"')
            # Maintenance works through the owner's functions, as the app role.
            from logkeep.db.partitions import maintain

            report = await maintain(app, retention_days=30, days_ahead=3, max_entry_age_days=30)
            assert report.default_rows == 0
        finally:
            await app.close()
    finally:
        await owner.execute(f"DROP OWNED BY {quoted(stranger)}")
        await owner.execute(f"DROP ROLE {quoted(stranger)}")
        await owner.close()


async def quoted_database_name(conn: asyncpg.Connection) -> str:
    name: str = await conn.fetchval("SELECT quote_ident(current_database())")
    return name
