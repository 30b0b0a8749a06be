"""`logkeep ingest FILE`: a real file sent to a real server by the real command."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson

from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.ingest.worker import Worker
from tests.conftest import served
from tests.integration.test_cli import LOGKEEP, clean_env


async def run_ingest(
    base_url: str, state: Path, *args: str, stdin: bytes | None = None
) -> tuple[int, str, str]:
    """`logkeep ingest ARGS` with its checkpoints under `state` (XDG_STATE_HOME)."""
    proc = await asyncio.create_subprocess_exec(
        str(LOGKEEP), "ingest", *args,
        env=clean_env(LOGKEEP_API_URL=base_url, COLUMNS="200", XDG_STATE_HOME=str(state)),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(stdin), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_ingest_an_nginx_access_log(settings: Settings, db: Database, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:10]
    stamp = datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
    lines = [
        f'10.1.1.{i} - - [{stamp}] "GET /page/{tag}/{i} HTTP/1.1" {200 if i % 10 else 500} '
        f'{100 + i} "-" "Mozilla/5.0"'
        for i in range(1, 301)
    ]
    lines.insert(150, "bad \x00 line")
    log_file = tmp_path / "access.log"
    log_file.write_bytes("\n".join(lines).encode() + b"\n" + b"y" * 300_000 + b"\n")
    async with served(settings) as base_url:
        code, out, err = await run_ingest(
            base_url, tmp_path, str(log_file), "--source", "nginx_access", "--batch-lines", "64"
        )
    assert code == 0, out + err
    summary = " ".join(out.split())
    assert "302 lines" in summary
    assert "300 accepted, 0 duplicates, 2 rejected" in summary
    assert "line 151: message: contains a NUL byte" in summary
    assert "line 302: line: is 300000 bytes" in summary
    await Worker(db, settings, name="cli").drain()
    async with db.pool.acquire() as conn:
        errors = await conn.fetchval(
            "SELECT count(*) FROM log_entries WHERE level = 'ERROR' AND metadata->>'path' LIKE $1",
            f"/page/{tag}/%",
        )
    assert errors == 30  # every tenth line is a 500


async def test_ingest_json_lines_from_stdin(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex
    body = b"\n".join(
        orjson.dumps({"msg": f"json {i} {tag}", "level": "warn", "service": "api"})
        for i in range(20)
    )
    async with served(settings) as base_url:
        code, out, err = await run_ingest(
            base_url, tmp_path, "-", "--source", "app_errors", "--format", "json", stdin=body
        )
    assert code == 0, out + err
    assert "20 accepted" in " ".join(out.split())
    await Worker(db, settings, name="cli").drain()
    async with db.pool.acquire() as conn:
        count = await conn.fetchval(
            "SELECT count(*) FROM log_entries WHERE message LIKE $1 AND level = 'WARN'",
            f"json % {tag}",
        )
    assert count == 20


async def test_ingest_says_when_no_server_answers(tmp_path: Path) -> None:
    log_file = tmp_path / "one.log"
    log_file.write_text("hello\n")
    code, _out, err = await run_ingest(
        "http://127.0.0.1:9", tmp_path, str(log_file), "--source", "x"
    )
    assert code == 1
    assert "cannot reach logkeep" in err


async def test_ingest_says_what_is_wrong_before_sending(tmp_path: Path) -> None:
    log_file = tmp_path / "app.log"
    log_file.write_text("hello\n")
    nowhere = "http://127.0.0.1:9"
    cases = [
        ((str(tmp_path), "--source", "x"), "is a directory"),
        ((str(log_file), "--source", "x", "--multiline", "(["), "is not a regular expression"),
        ((str(log_file), "--source", "x", "--multiline", "auto", "--format", "nginx"),
         "--format can only be `text`"),
        (("-", "--source", "x", "--from-start"), "are for files, not streams"),
        ((str(tmp_path / "missing.log"), "--source", "x"), "cannot read"),
    ]  # fmt: skip
    for args, message in cases:
        code, out, err = await run_ingest(nowhere, tmp_path, *args, stdin=b"")
        assert code == 2, (args, out, err)
        assert message in " ".join(err.split()), (args, err)
    checkpoint = tmp_path / "cp.json"
    checkpoint.write_text("{broken")
    code, _out, err = await run_ingest(
        nowhere, tmp_path, str(log_file), "--source", "x", "--checkpoint", str(checkpoint)
    )
    assert code == 2 and "is not usable" in err and "--from-start" in err
