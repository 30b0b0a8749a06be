"""`logkeep users ...` as an operator runs it: users, grants, keys, all audited."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from logkeep.config import Settings
from tests.conftest import Stores
from tests.integration.test_cli import run_cli, store_env


async def test_users_commands_manage_users_grants_and_keys(
    settings: Settings, stores: Stores, redis_prefix: str, workdir: Path
) -> None:
    assert settings.database_url
    env = store_env(settings.database_url, stores, redis_prefix)

    async def cli(*args: str) -> str:
        result = await run_cli("users", *args, env=env, cwd=workdir)
        assert result.returncode == 0, str(result)
        return result.output

    assert "created bob (viewer)" in await cli(
        "create", "bob", "--email", "bob@example.org", "--password", "a-long-password"
    )
    await cli("grant", "bob", "app_errors", "db_slow_queries")
    listed = await cli("list")
    assert "bob" in listed and "viewer" in listed
    await cli("revoke", "bob", "db_slow_queries")
    key_output = await cli("create-key", "shipper", "--scope", "ingest", "--all-sources")
    key = next(word for word in key_output.split() if word.startswith("lkk_"))
    assert "ended" in await cli("set-password", "bob", "--password", "another-long-one")
    assert "disabled" in await cli("disable", "bob")

    conn = await asyncpg.connect(settings.database_url)
    try:
        user = await conn.fetchrow("SELECT id, is_active FROM users WHERE username = 'bob'")
        assert user is not None and not user["is_active"]
        grants = await conn.fetch(
            "SELECT s.name FROM user_source_grants g JOIN log_sources s ON s.id = g.source_id "
            "WHERE g.user_id = $1",
            user["id"],
        )
        assert [g["name"] for g in grants] == ["app_errors"]
        stored = await conn.fetchval("SELECT count(*) FROM api_keys WHERE name = 'shipper'")
        assert stored == 1
        assert await conn.fetchval("SELECT count(*) FROM api_keys WHERE prefix = $1", key) == 0
        actions = {r["action"] for r in await conn.fetch("SELECT action FROM audit_log")}
        assert {"user_created", "grant", "revoke", "key_created", "user_disabled"} <= actions
    finally:
        await conn.close()

    unknown = await run_cli("users", "grant", "nobody-here", "app_errors", env=env, cwd=workdir)
    assert unknown.returncode != 0
    assert "no user named 'nobody-here'" in unknown.output
