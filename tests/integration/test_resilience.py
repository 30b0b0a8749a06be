"""Stores failing, restarting and misbehaving: what callers see, and what is kept."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import pytest
import redis

from logkeep.api.app import create_app
from logkeep.api.local import free_port
from logkeep.cache.keys import Keys
from logkeep.cache.query_cache import QueryCache
from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.db.migrate import migrate
from logkeep.db.repositories import LogRepository
from logkeep.db.seed import seed
from logkeep.embedded import EmbeddedPostgres, EmbeddedRedis, EmbeddedStack, RunAs
from tests.conftest import Stores, make_settings

LOGKEEP = str(Path(sys.executable).parent / "logkeep")


def client_for(app: object) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")  # type: ignore[arg-type]


@pytest.mark.slow
async def test_postgres_down_mid_request_is_503_with_retry_after(
    short_tmp: Path, stores: Stores
) -> None:
    postgres = EmbeddedPostgres(short_tmp / "pg", ephemeral=True)
    postgres.start()
    try:
        conn = await asyncpg.connect(postgres.dsn())
        await migrate(conn)
        await conn.close()
        settings = make_settings(postgres.dsn(), stores.redis_url, connect_deadline_s=2.0)
        app = create_app(settings)
        async with app.router.lifespan_context(app), client_for(app) as client:
            async with Database(settings) as db:
                await seed(db.pool, settings, "test")
            ok = await client.post("/api/v1/logs", json={"source": "app_errors", "message": "a"})
            assert ok.status_code == 201
            postgres.stop()
            write = await client.post("/api/v1/logs", json={"source": "app_errors", "message": "b"})
            read = await client.get("/api/v1/logs/recent", params={"source": "app_errors"})
            ready = await client.get("/readyz")
            for response in (write, read):
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"].isdigit()
            assert ready.status_code == 503
            assert "postgres" in ready.json()["problems"]
            # Back up: the same process serves again, and the first entry was kept.
            postgres.start()
            deadline = time.monotonic() + 20
            while (await client.get("/readyz")).status_code != 200:
                assert time.monotonic() < deadline, "API did not recover after PostgreSQL"
                await asyncio.sleep(0.2)
            recent = await client.get("/api/v1/logs/recent", params={"source": "app_errors"})
            assert recent.status_code == 200
            assert "a" in [item["message"] for item in recent.json()["items"]]
    finally:
        postgres.stop()


@pytest.mark.slow
async def test_bump_lost_while_redis_was_away_is_replayed(
    short_tmp: Path, database_url_fixture: str
) -> None:
    """A result cached before a write must not be served after Redis comes back, even
    though the write's invalidation failed while Redis was unreachable."""
    redis_server = EmbeddedRedis(short_tmp / "redis")  # AOF on: the stale entry survives
    redis_server.start()
    settings: Settings = make_settings(
        database_url_fixture, redis_server.url(), redis_backoff_s=0.2
    )
    try:
        async with Database(settings) as db:
            cache = QueryCache(db.redis_client, Keys(settings.redis_key_prefix), backoff_s=0.2)
            repo = LogRepository(db.pool, db.redis_client, cache=cache)
            before = await repo.get_recent_logs(limit=1, source_id=1)
            redis_server.stop()
            entry_id = await repo.save_log_entry({"message": "while away", "source_id": 1})
            redis_server.start()
            await asyncio.sleep(0.3)  # past the back-off
            after = await repo.get_recent_logs(limit=1, source_id=1)
            assert before[0]["id"] != entry_id
            assert after[0]["id"] == entry_id
    finally:
        redis_server.stop()


@pytest.mark.slow
def test_sigterm_while_seeding_stops_every_server(short_tmp: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGKEEP_")}
    env["LOGKEEP_DATA_DIR"] = str(short_tmp / "data")
    port = free_port()
    process = subprocess.Popen(
        [LOGKEEP, "up", "--seed-rows", "2000000", "--port", str(port)],
        cwd=short_tmp,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        sock = short_tmp / "data" / "postgres" / "run" / ".s.PGSQL.5432"
        deadline = time.monotonic() + 60
        while not sock.exists():
            assert time.monotonic() < deadline, "PostgreSQL never started"
            time.sleep(0.05)
        time.sleep(1.0)  # now migrating or generating seed data
        assert process.poll() is None
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    left = subprocess.run(
        ["pgrep", "-f", str(short_tmp / "data")], capture_output=True, text=True, check=False
    )
    assert left.stdout.strip() == "", f"left running: {left.stdout}"


def test_socket_paths_with_url_special_characters(short_tmp: Path) -> None:
    odd = short_tmp / "a#b%c&d"
    stack = EmbeddedStack(odd, ephemeral=True)
    stack.start()
    try:

        async def check() -> int:
            conn = await asyncpg.connect(stack.postgres.dsn())
            try:
                value: int = await conn.fetchval("SELECT 7")
            finally:
                await conn.close()
            return value

        assert asyncio.run(check()) == 7
        assert redis.Redis.from_url(stack.redis.url()).ping()
    finally:
        stack.stop()


def test_stale_lock_file_of_a_reused_pid_does_not_block_start(short_tmp: Path) -> None:
    postgres = EmbeddedPostgres(short_tmp / "pg", ephemeral=True)
    postgres.start()
    postgres.stop()
    # As after a reboot: the recorded PID now belongs to another live process of the
    # account PostgreSQL runs as (postgres would take it for a running server).
    run_as = RunAs.for_postgres()
    sleeper = subprocess.Popen(
        ["sleep", "60"],
        user=run_as.uid if run_as else None,
        group=run_as.gid if run_as else None,
    )
    try:
        lock = postgres.pgdata / "postmaster.pid"
        lock.write_text(f"{sleeper.pid}\n{postgres.pgdata}\n")
        if os.geteuid() == 0:
            owner = postgres.pgdata.stat()
            os.chown(lock, owner.st_uid, owner.st_gid)
        postgres.start()
        assert postgres.process is not None and postgres.process.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()
        postgres.stop()
