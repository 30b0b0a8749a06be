"""`logkeep query`, `tail` and `stats` as a user runs them, against a real server."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from logkeep.api.local import free_port
from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.db.repositories import LogRepository
from tests.conftest import Stores, served
from tests.integration.test_cli import isolated_data_home

LOGKEEP = str(Path(sys.executable).parent / "logkeep")


def cli_env(api_url: str, config_home: Path | None = None, **extra: str) -> dict[str, str]:
    """This process's environment without LOGKEEP_* settings, pointed at `api_url`, with a
    config directory of its own (never the user's stored logins)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGKEEP_")}
    # Read commands only read it: a directory that does not exist holds no login.
    home = config_home or Path(tempfile.gettempdir()) / "logkeep-tests-no-config"
    return (
        env
        | {
            "LOGKEEP_API_URL": api_url,
            "XDG_CONFIG_HOME": str(home),
            "XDG_DATA_HOME": str(isolated_data_home()),  # no running `up` of the machine's
            "COLUMNS": "200",
            "NO_COLOR": "1",
        }
        | extra
    )


async def run_cli(
    api_url: str,
    *args: str,
    timeout_s: float = 30,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        LOGKEEP,
        *args,
        env=env or cli_env(api_url),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
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
        env = cli_env(base)
        process = await asyncio.create_subprocess_exec(
            LOGKEEP,
            "tail",
            "--json",
            "--min-level",
            "error",
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        shown: list[int] = []
        line = b""
        try:
            # Until the command has connected, entries pass unseen: write until one shows.
            deadline = time.monotonic() + 20
            while not line:
                assert time.monotonic() < deadline, "the tail printed nothing"
                await repo.save_log_entry({"message": "ignored", "source_id": 1, "level": "INFO"})
                shown.append(
                    await repo.save_log_entry(
                        {"message": "shown", "source_id": 1, "level": "ERROR"}
                    )
                )
                with contextlib.suppress(TimeoutError):
                    line = await asyncio.wait_for(process.stdout.readline(), 1)
        finally:
            process.terminate()
            await process.wait()
    item = orjson.loads(line)
    assert item["message"] == "shown" and item["id"] in shown  # the INFO one filtered out


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


async def _plant(db: Database, *entries: tuple[str, timedelta, dict[str, Any]]) -> None:
    """Entries of app_errors (message, age, metadata), committed before this returns."""
    repo = LogRepository(db.pool, db.redis_client, cache=db.cache)
    source_id = await db.pool.fetchval("SELECT id FROM log_sources WHERE name = 'app_errors'")
    now = datetime.now(UTC)
    for message, age, metadata in entries:
        await repo.save_log_entry(
            {
                "source_id": source_id,
                "message": message,
                "level": "ERROR",
                "timestamp": (now - age).isoformat(),
                "metadata": metadata,
            }
        )


def _messages(json_lines: str) -> list[str]:
    return [orjson.loads(line)["message"] for line in json_lines.splitlines()]


@pytest.mark.slow
async def test_query_without_since_searches_the_apis_default_window(
    settings: Settings, db: Database
) -> None:
    await _plant(db, ("planted zebraquartz failure", timedelta(hours=3), {}))
    async with served(settings) as base:
        code, found, _ = await run_cli(base, "query", "zebraquartz")
        code_1h, missed, _ = await run_cli(base, "query", "zebraquartz", "--since", "1h")
        code_none, nothing, _ = await run_cli(base, "query", "nosuchwordanywhere")
        code_json, json_out, json_err = await run_cli(base, "query", "nosuchwordanywhere", "--json")
    assert code == code_1h == code_none == code_json == 0
    assert "planted zebraquartz failure" in found and "1 entry" in found
    # Nothing found: where it looked, and how to look further.
    assert "no entries in the last 1h; search further back with --since 7d" in missed
    assert "no entries in the last 24 h (the server's default window" in nothing
    assert json_out == "" and "no entries in the last 24 h" in json_err


@pytest.mark.slow
async def test_query_windows_and_metadata_filters(settings: Settings, db: Database) -> None:
    await _plant(
        db,
        ("walrusfig five hours", timedelta(hours=5), {"status": 500, "http": {"route": "/pay"}}),
        ("walrusfig two hours ok", timedelta(hours=2), {"status": 200, "http": {"route": "/pay"}}),
        ("walrusfig two hours home", timedelta(hours=2), {"status": 500, "http": {"route": "/"}}),
    )
    three_hours_ago = (datetime.now(UTC) - timedelta(hours=3)).isoformat()
    async with served(settings) as base:
        query = ("query", "walrusfig")
        runs = {
            "relative": await run_cli(base, *query, "--from", "6h", "--to", "4h", "--json"),
            "absolute": await run_cli(base, *query, "--from", three_hours_ago, "--json"),
            "meta": await run_cli(
                base, *query, "--meta", "status=500", "--meta", "http.route=/pay", "--json"
            ),
            "text": await run_cli(base, "query", "walrusfig", "--meta", 'status="500"'),
            "table": await run_cli(base, "query", "walrusfig", "-m", "--meta", "status=200"),
            "bad": await run_cli(base, "query", "walrusfig", "--meta", "status"),
        }
    assert _messages(runs["relative"][1]) == ["walrusfig five hours"]
    assert _messages(runs["absolute"][1]) == ["walrusfig two hours home", "walrusfig two hours ok"]
    assert _messages(runs["meta"][1]) == ["walrusfig five hours"]
    assert "no entries" in runs["text"][1]  # "500" in quotes is text; the stored 500 a number
    table = runs["table"][1]
    assert "walrusfig two hours ok" in table and "http.route=/pay status=200" in table
    assert runs["bad"][0] == 2 and "expected key=value" in runs["bad"][2]


async def test_query_prints_numbers_as_they_were_stored(settings: Settings, db: Database) -> None:
    """Beyond 64 bits and beyond a double's digits, in the table and in JSON lines."""
    big, fine = 10**30, "0.12345678901234567890"
    await _plant(
        db, ("numbersquid exact", timedelta(minutes=5), {"big": big, "fine": Decimal(fine)})
    )
    async with served(settings) as base:
        code_table, table, _ = await run_cli(base, "query", "numbersquid", "-m")
        code_json, lines, _ = await run_cli(base, "query", "numbersquid", "--json")
        code_page, page, _ = await run_cli(base, "query", "numbersquid", "--json", "--limit", "1")
    assert code_table == code_json == code_page == 0
    assert f"big={big}" in table and f"fine={fine}" in table
    for output in (lines, page):
        assert f'"big":{big}' in output and f'"fine":{fine}' in output


@pytest.mark.slow
async def test_query_says_when_more_entries_match_than_it_shows(
    settings: Settings, db: Database
) -> None:
    await _plant(db, *((f"quokkamint {n}", timedelta(minutes=n + 1), {}) for n in range(3)))
    async with served(settings) as base:
        code, table, _ = await run_cli(base, "query", "quokkamint", "--limit", "2")
        code_all, whole, _ = await run_cli(base, "query", "quokkamint", "--limit", "3")
        code_json, lines, json_err = await run_cli(
            base, "query", "quokkamint", "--limit", "2", "--json"
        )
    assert code == code_all == code_json == 0
    assert "showing the newest 2 entries; more match" in table
    assert "quokkamint 0" in table and "quokkamint 2" not in table
    assert "3 entries" in whole and "more match" not in whole
    assert _messages(lines) == ["quokkamint 0", "quokkamint 1"]
    assert "showing the newest 2 entries; more match" in json_err


@pytest.mark.slow
async def test_query_prints_the_apis_reason_for_an_error(settings: Settings) -> None:
    async with served(settings) as base:
        code, out, err = await run_cli(base, "query", "--since", "1x")
        code_both, _, err_both = await run_cli(base, "query", "--since", "1h", "--from", "2h")
    assert code == code_both == 1
    assert "422" in err and "since" in err and "is not a duration" in err
    assert "give either since or from" in err_both
    assert "Traceback" not in out + err + err_both


async def _wait_until_serving(base: str, process: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 30
    async with httpx.AsyncClient(base_url=base) as http:
        while time.monotonic() < deadline:
            assert process.returncode is None, "logkeep serve exited"
            try:
                if (await http.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"logkeep serve did not answer on {base} within 30 s")


@contextlib.asynccontextmanager
async def _serve_process(env: dict[str, str], port: int) -> AsyncIterator[str]:
    """`logkeep serve` as its own process on `port`, stopped with SIGTERM at the end."""
    process = await asyncio.create_subprocess_exec(
        LOGKEEP, "serve", "--port", str(port), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        await _wait_until_serving(base, process)
        yield base
    finally:
        if process.returncode is None:
            process.terminate()
            await asyncio.wait_for(process.wait(), 30)


async def _post(base: str, message: str) -> None:
    async with httpx.AsyncClient(base_url=base) as http:
        response = await http.post(
            "/api/v1/logs", json={"source": "app_errors", "message": message, "level": "ERROR"}
        )
    assert response.status_code == 201, response.text


@pytest.mark.slow
async def test_tail_rides_out_a_server_restart(settings: Settings, stores: Stores) -> None:
    assert settings.database_url
    port = free_port()
    server_env = cli_env(
        f"http://127.0.0.1:{port}",
        LOGKEEP_ENV="test",
        LOGKEEP_AUTH_REQUIRED="false",
        LOGKEEP_DATABASE_URL=settings.database_url,
        LOGKEEP_REDIS_URL=stores.redis_url,
        LOGKEEP_REDIS_KEY_PREFIX=settings.redis_key_prefix,
        LOGKEEP_MAINTENANCE_INTERVAL_S="0",
    )
    async with _serve_process(server_env, port) as base:
        tail = await asyncio.create_subprocess_exec(
            LOGKEEP, "tail", "--json", "--contains", "restart-probe", env=cli_env(base),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert tail.stdout is not None and tail.stderr is not None
        try:
            # Until the tail is listening, a probe may pass unseen: send until one shows.
            line = b""
            deadline = time.monotonic() + 20
            while not line:
                assert time.monotonic() < deadline, "the tail printed nothing"
                await _post(base, "restart-probe before")
                with contextlib.suppress(TimeoutError):
                    line = await asyncio.wait_for(tail.stdout.readline(), 1)
            assert orjson.loads(line)["message"] == "restart-probe before"
            # Drain any further probes sent while the first was on its way.
            with contextlib.suppress(TimeoutError):
                while True:
                    await asyncio.wait_for(tail.stdout.readline(), 0.5)
        except BaseException:
            tail.kill()
            await tail.wait()
            raise
    try:
        lost = await asyncio.wait_for(tail.stderr.readline(), 15)
        assert b"connection lost" in lost
        assert tail.returncode is None  # still running through the outage
        async with _serve_process(server_env, port) as base:
            # Sent at once: the tail resumes after the last event it saw, so an entry
            # committed before it is back is still printed.
            await _post(base, "restart-probe after")
            line = await asyncio.wait_for(tail.stdout.readline(), 30)
            back = await asyncio.wait_for(tail.stderr.readline(), 5)
    finally:
        tail.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(tail.wait(), 10)
    assert orjson.loads(line)["message"] == "restart-probe after"
    assert b"reconnected" in back
    assert code == 0  # Ctrl-C stops it at once, without a traceback
