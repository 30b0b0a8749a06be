"""Test harness: real PostgreSQL and Redis, started once per run unless provided.

Set LOGKEEP_TEST_DATABASE_URL (a role allowed to CREATE DATABASE) and
LOGKEEP_TEST_REDIS_URL to use existing servers; otherwise throwaway servers are started
with the same mechanism as `logkeep up`, in a temporary directory, and removed after.
Each test gets its own database, cloned from a migrated and test-seeded template, and its
own Redis key prefix.
"""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from logkeep.api.app import create_app
from logkeep.api.local import serve_locally
from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.db.migrate import migrate
from logkeep.db.repositories import LogRepository, SourceRepository, UserRepository
from logkeep.db.seed import seed
from logkeep.embedded import EmbeddedStack, temporary_root

# A shell without job control (a script's `cmd &`, some CI runners) starts the suite with
# SIGINT ignored, and every process the tests start would inherit that: the tests that
# stop `logkeep tail` or `logkeep up` with SIGINT (as Ctrl-C does) would wait in vain.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def database_url(base_url: str, name: str) -> str:
    """`base_url` pointing at database `name` instead."""
    parts = urlsplit(base_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@dataclass(frozen=True)
class Stores:
    admin_database_url: str  # a database we may connect to for CREATE/DROP DATABASE
    redis_url: str
    stack: EmbeddedStack | None
    run_id: str

    async def create_database(self, name: str, template: str = "template0") -> str:
        conn = await asyncpg.connect(self.admin_database_url)
        try:
            # Identifiers cannot be parameters; names are made here from hex ids only.
            assert name.replace("_", "").isalnum() and template.replace("_", "").isalnum()
            await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        finally:
            await conn.close()
        return database_url(self.admin_database_url, name)

    async def drop_database(self, name: str) -> None:
        conn = await asyncpg.connect(self.admin_database_url)
        try:
            assert name.replace("_", "").isalnum()
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@pytest.fixture(scope="session")
def stores() -> Iterator[Stores]:
    pg_url = os.environ.get("LOGKEEP_TEST_DATABASE_URL")
    redis_url = os.environ.get("LOGKEEP_TEST_REDIS_URL")
    with temporary_root() as root:
        stack = None
        if not (pg_url and redis_url):
            stack = EmbeddedStack(root, ephemeral=True)
            stack.start(postgres=not pg_url, redis=not redis_url)
        try:
            yield Stores(
                admin_database_url=pg_url or stack.postgres.dsn("postgres"),  # type: ignore[union-attr]
                redis_url=redis_url or stack.redis.url(),  # type: ignore[union-attr]
                stack=stack,
                run_id=uuid.uuid4().hex[:8],
            )
        finally:
            if stack is not None:
                stack.stop()


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A temporary directory where embedded servers can run (see temporary_root)."""
    with temporary_root("lk-t-") as root:
        yield root


def make_settings(database_url: str, redis_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "env": "test",
        "database_url": database_url,
        "redis_url": redis_url,
        "redis_key_prefix": f"test:{uuid.uuid4().hex[:12]}:",
        "connect_deadline_s": 5.0,
        "pg_pool_min_size": 1,
        "pg_pool_max_size": 4,
        "seed_rows": 0,
        "maintenance_interval_s": 0,
        # Compaction moves rows between tiers in the background; the storage tests run it
        # themselves, the rest read what they wrote where they wrote it.
        "compaction_interval_s": 0,
        # The alert evaluator polls PostgreSQL twice a second; the alerting tests drive it
        # themselves (or start it on purpose), the rest need no background queries.
        "alerts_enabled": False,
        # Tests of other features call the API as dev does; tests/integration/test_auth.py
        # turns authentication on (and LOGKEEP_ENV=prod) to test it.
        "auth_required": False,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
async def template_database(stores: Stores) -> AsyncIterator[str]:
    """A database migrated to the latest schema and holding the test seed."""
    name = f"lk_tpl_{stores.run_id}"
    url = await stores.create_database(name)
    conn = await asyncpg.connect(url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    settings = make_settings(url, stores.redis_url)
    async with Database(settings) as db:
        await seed(db.pool, settings, "test")
    try:
        yield name
    finally:
        await stores.drop_database(name)


@pytest.fixture
async def empty_database_url(stores: Stores) -> AsyncIterator[str]:
    """A new database with nothing in it, not even the schema."""
    name = f"lk_empty_{uuid.uuid4().hex[:10]}"
    url = await stores.create_database(name)
    try:
        yield url
    finally:
        await stores.drop_database(name)


@pytest.fixture
async def migrated_database_url(empty_database_url: str) -> str:
    """A new database at the latest schema, with no rows."""
    conn = await asyncpg.connect(empty_database_url)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    return empty_database_url


async def delete_keys(redis_url: str, prefix: str) -> None:
    """Remove one test's keys: prefixes isolate tests, this keeps Redis small."""
    client = aioredis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
async def database_url_fixture(stores: Stores, template_database: str) -> AsyncIterator[str]:
    name = f"lk_t_{uuid.uuid4().hex[:10]}"
    url = await stores.create_database(name, template=template_database)
    try:
        yield url
    finally:
        await stores.drop_database(name)


@pytest.fixture
async def settings(database_url_fixture: str, stores: Stores) -> AsyncIterator[Settings]:
    settings = make_settings(database_url_fixture, stores.redis_url)
    yield settings
    await delete_keys(stores.redis_url, settings.redis_key_prefix)


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    async with Database(settings) as database:
        yield database


@pytest.fixture
def log_repo(db: Database, settings: Settings) -> LogRepository:
    return LogRepository(db.pool, db.redis_client, cache=db.cache)


@pytest.fixture
def source_repo(db: Database) -> SourceRepository:
    return SourceRepository(db.pool)


@pytest.fixture
def user_repo(db: Database) -> UserRepository:
    return UserRepository(db.pool)


@asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[str]:
    """The app on a real uvicorn server (SSE needs a streaming transport)."""
    async with serve_locally(create_app(settings)) as base_url:
        yield base_url


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running (it owns its Database), and a client for it."""
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://logkeep.test"
        ) as client,
    ):
        yield client


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings) as http:
        yield http
