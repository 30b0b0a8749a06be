"""The embedded servers, from the wheels a machine without PostgreSQL or Redis uses."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
import redis

from logkeep.embedded import EmbeddedError, EmbeddedStack, RunAs


@pytest.mark.slow
async def test_stack_from_wheels_starts_restarts_and_keeps_data(
    short_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOGKEEP_EMBEDDED_BINARIES", "wheels")
    stack = EmbeddedStack(short_tmp / "data")
    assert "site-packages" in str(stack.postgres.bin_dir)
    assert "site-packages" in str(stack.redis.server)
    run_as = RunAs.for_postgres()
    if run_as is not None:
        try:
            run_as.check_reachable(stack.postgres.bin_dir)
        except EmbeddedError as exc:
            pytest.skip(f"this checkout is not reachable by the postgres account: {exc}")
    stack.start()
    try:
        conn = await asyncpg.connect(stack.postgres.dsn())
        try:
            await conn.execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('yes')")
        finally:
            await conn.close()
        client = redis.Redis.from_url(stack.redis.url())
        client.set("kept", "yes")
        client.close()
    finally:
        stack.stop()
    assert stack.postgres.process is None and stack.redis.process is None

    again = EmbeddedStack(short_tmp / "data")
    again.start()
    try:
        assert not again.postgres.reused  # it had stopped: this is a real restart
        conn = await asyncpg.connect(again.postgres.dsn())
        try:
            assert await conn.fetchval("SELECT v FROM kept") == "yes"
        finally:
            await conn.close()
        client = redis.Redis.from_url(again.redis.url())
        assert client.get("kept") == b"yes"  # AOF brought it back
        client.close()
    finally:
        again.stop()


def test_socket_path_too_long_is_refused(short_tmp: Path) -> None:
    deep = short_tmp / ("d" * 120)
    with pytest.raises(EmbeddedError, match="longer than"):
        EmbeddedStack(deep).start()


def test_relative_data_dir_works(short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(short_tmp)
    stack = EmbeddedStack(Path("rel"))
    stack.start()
    try:
        assert stack.postgres.socket_dir.is_absolute()
        assert "rel_db" not in stack.postgres.psql("SELECT datname FROM pg_database")
        stack.postgres.create_database("rel_db")
        assert "rel_db" in stack.postgres.psql("SELECT datname FROM pg_database")
        assert redis.Redis.from_url(stack.redis.url()).ping()
    finally:
        stack.stop()
