"""`logkeep query`, `tail` and `stats` as a user runs them, against a real server."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import orjson
import pytest

from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.db.repositories import LogRepository
from tests.conftest import served

LOGKEEP = str(Path(sys.executable).parent / "logkeep")


async def run_cli(api_url: str, *args: str, timeout_s: float = 30) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGKEEP_")}
    env |= {"LOGKEEP_API_URL": api_url, "COLUMNS": "200", "NO_COLOR": "1"}
    process = await asyncio.create_subprocess_exec(
        LOGKEEP, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout_s)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.slow
async def test_stats_prints_every_source_and_matches_the_api(settings: Settings) -> None:
    async with served(settings) as base:
        code, table, _ = await run_cli(base, "stats", "--hours", "2")
        code_json, raw, _ = await run_cli(base, "stats", "--hours", "2", "--json")
    assert code == code_json == 0
    summary = orjson.loads(raw)
    for row in summary["sources"]:
        assert row["source"] in table
        assert f"{row['events']:,}" in table
    assert {row["source"] for row in summary["sources"]} == {
        "nginx_access",
        "app_errors",
        "db_slow_queries",
    }


@pytest.mark.slow
async def test_tail_prints_new_matching_entries(settings: Settings, db: Database) -> None:
    repo = LogRepository(db.pool, db.redis_client, cache=db.cache, tail=db.tail)
    async with served(settings) as base:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGKEEP_")}
        env |= {"LOGKEEP_API_URL": base, "COLUMNS": "200"}
        process = await asyncio.create_subprocess_exec(
            LOGKEEP,
            "tail",
            "--json",
            "--min-level",
            "error",
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        try:
            await asyncio.sleep(1.5)  # the command connects and subscribes
            await repo.save_log_entry({"message": "ignored", "source_id": 1, "level": "INFO"})
            entry_id = await repo.save_log_entry(
                {"message": "shown", "source_id": 1, "level": "ERROR"}
            )
            assert process.stdout is not None
            line = await asyncio.wait_for(process.stdout.readline(), 10)
        finally:
            process.terminate()
            await process.wait()
    item = orjson.loads(line)
    assert (item["id"], item["message"]) == (entry_id, "shown")


async def test_read_commands_report_an_unreachable_api(settings: Settings) -> None:
    code, out, err = await run_cli("http://127.0.0.1:1", "stats")
    assert code == 1
    assert "cannot reach logkeep at http://127.0.0.1:1" in err
    assert "Traceback" not in out + err


@pytest.mark.slow
async def test_api_errors_are_one_line(settings: Settings) -> None:
    async with served(settings) as base:
        code, out, err = await run_cli(base, "tail", "--source", "no-such-source")
    assert code == 1
    assert "422" in err and "no-such-source" in err
    assert "Traceback" not in out + err


@pytest.mark.slow
async def test_query_prints_a_table_and_json_lines(settings: Settings, db: Database) -> None:
    async with db.pool.acquire() as conn:
        expected = await conn.fetch(
            "SELECT e.id, e.message FROM log_entries e JOIN log_sources s ON s.id = e.source_id "
            "WHERE s.name = 'app_errors' AND e.level IN ('ERROR', 'FATAL') "
            'ORDER BY e."timestamp" DESC, e.id DESC'
        )
    args = ["--source", "app_errors", "--min-level", "error", "--since", "2h"]
    async with served(settings) as base:
        code, table, _ = await run_cli(base, "query", *args)
        code_json, lines, _ = await run_cli(base, "query", *args, "--json")
        code_limited, limited, _ = await run_cli(base, "query", *args, "--json", "--limit", "3")
    assert code == code_json == code_limited == 0
    assert f"{len(expected)} entries" in table
    assert all(row["message"] in table for row in expected)
    items = [orjson.loads(line) for line in lines.splitlines()]
    assert [item["id"] for item in items] == [row["id"] for row in expected]
    assert len(limited.splitlines()) == 3
