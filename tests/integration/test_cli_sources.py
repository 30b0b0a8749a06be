"""`logkeep sources ...` as an operator runs it: on the database, rules checked before
saving, every change audited, cached rules dropped on change."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis

from logkeep.cache.keys import Keys
from logkeep.config import Settings
from logkeep.domain.sources import DEFAULT_FORMAT_TYPE, DEFAULT_SOURCE_TYPE
from tests.conftest import Stores
from tests.integration.test_cli import Result, run_cli, store_env

# Every test here starts `logkeep` processes.
pytestmark = pytest.mark.slow


async def test_sources_commands_create_update_disable_and_list(
    settings: Settings, stores: Stores, redis_prefix: str, workdir: Path
) -> None:
    assert settings.database_url
    env = store_env(settings.database_url, stores, redis_prefix)

    async def cli(*args: str) -> Result:
        return await run_cli("sources", *args, env=env, cwd=workdir)

    async def ok(*args: str) -> str:
        result = await cli(*args)
        assert result.returncode == 0, str(result)
        return result.output

    conn = await asyncpg.connect(settings.database_url)
    redis = aioredis.from_url(stores.redis_url)
    try:

        async def source(name: str) -> asyncpg.Record | None:
            return await conn.fetchrow(
                "SELECT id, source_type, format_type, parsing_rules::text AS rules, "
                "description, is_active FROM log_sources WHERE name = $1",
                name,
            )

        async def active(name: str) -> bool:
            state: bool = await conn.fetchval(
                "SELECT is_active FROM log_sources WHERE name = $1", name
            )
            return state

        # Defaults: no type, no format needed.
        assert "created source payments" in await ok("create", "payments")
        created = await source("payments")
        assert created is not None
        assert (created["source_type"], created["format_type"]) == (
            DEFAULT_SOURCE_TYPE,
            DEFAULT_FORMAT_TYPE,
        )

        # A bad rule is refused before anything is saved, naming the rule.
        refused = await cli("create", "bad-regex", "--format", "regex", "--rule", "pattern=(a+)+")
        assert refused.returncode == 2
        assert "parsing_rules.pattern" in refused.output and "nothing was saved" in refused.output
        assert await source("bad-regex") is None
        unknown_rule = await cli("create", "bad-json", "--format", "json", "--rule", "msg_field=m")
        assert unknown_rule.returncode == 2
        assert "parsing_rules.msg_field: not a rule of format 'json'" in unknown_rule.output
        assert await source("bad-json") is None

        # Rules as key=value, lists as JSON.
        await ok(
            "create", "api-json", "--format", "json", "--type", "web",
            "--rule", "message_field=msg", "--rule", 'metadata_fields=["route","status"]',
            "--description", "the API's JSON lines",
        )  # fmt: skip
        api_json = await source("api-json")
        assert api_json is not None and api_json["source_type"] == "web"
        assert orjson.loads(api_json["rules"]) == {
            "message_field": "msg",
            "metadata_fields": ["route", "status"],
        }

        # update: ingest's cached copies of the rules are dropped.
        copies = Keys(redis_prefix).source_rules_copies(created["id"], "payments")
        for key in copies:
            await redis.set(key, b"stale rules")
        await ok(
            "update", "payments", "--format", "logfmt", "--rule", "message_field=msg",
            "--description", "payment service",
        )  # fmt: skip
        updated = await source("payments")
        assert updated is not None
        assert updated["format_type"] == "logfmt" and updated["description"] == "payment service"
        assert orjson.loads(updated["rules"]) == {"message_field": "msg"}
        assert await redis.exists(*copies) == 0

        # A change that would leave rules the format does not know is refused, unchanged.
        wrong = await cli("update", "payments", "--format", "nginx_combined")
        assert wrong.returncode == 2
        assert "parsing_rules.message_field: not a rule of format 'nginx_combined'" in (
            wrong.output
        )
        assert await source("payments") == updated
        # --rules-json replaces every rule; then the format change is fine.
        await ok("update", str(created["id"]), "--format", "nginx", "--rules-json", "{}")
        replaced = await source("payments")
        assert replaced is not None and replaced["format_type"] == "nginx"
        assert orjson.loads(replaced["rules"]) == {}

        # disable and enable, by name or id.
        assert "disabled" in await ok("disable", "payments")
        assert await active("payments") is False
        listed = await cli("list")
        assert listed.returncode == 0, str(listed)
        line = next(row for row in listed.stdout.splitlines() if " payments " in row)
        assert " no " in line and " application " in line and " nginx " in line
        assert "enabled" in await ok("enable", str(created["id"]))
        assert await active("payments") is True

        # list: every source, with its entries of the last 24 h from the rollups.
        rows = [orjson.loads(row) for row in (await cli("list", "--json")).stdout.splitlines()]
        by_name = {row["name"]: row for row in rows}
        assert {"payments", "api-json", "app_errors", "nginx_access"} <= set(by_name)
        assert by_name["payments"]["entries_24h"] == 0
        expected = await conn.fetchval(
            "SELECT sum(count) FROM log_metrics m JOIN log_sources s ON s.id = m.source_id "
            "WHERE s.name = 'app_errors' AND m.bucket >= now() - interval '24 hours'"
        )
        assert expected > 0 and by_name["app_errors"]["entries_24h"] == expected

        # Names, duplicates and unknown sources.
        bad_name = await cli("create", "Bad Name")
        assert bad_name.returncode == 2 and "lower-case letters" in bad_name.output
        duplicate = await cli("create", "payments")
        assert duplicate.returncode == 2 and "source 'payments' already exists" in (
            duplicate.output
        )
        missing = await cli("disable", "no-such-source")
        assert missing.returncode == 2 and "no source named or numbered" in missing.output
        nothing = await cli("update", "payments")
        assert nothing.returncode == 2 and "nothing to change" in nothing.output

        # Audited as done by the operator.
        audited = await conn.fetch(
            "SELECT action, details::text AS details FROM audit_log WHERE target_type = 'source' "
            "AND target_id = $1 ORDER BY id",
            str(created["id"]),
        )
        assert [row["action"] for row in audited] == [
            "source_created",
            "source_updated",
            "source_updated",
            "source_updated",
            "source_updated",
        ]
        details = [orjson.loads(row["details"]) for row in audited]
        assert all(d["by"] == "operator:cli" for d in details)
        assert details[0]["format_type"] == "text" and details[0]["parsing_rules"] == {}
        assert details[1]["parsing_rules"] == {"message_field": "msg"}
        assert details[3] == {"by": "operator:cli", "is_active": False}
    finally:
        await conn.close()
        await redis.aclose()
