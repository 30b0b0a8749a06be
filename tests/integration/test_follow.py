"""`logkeep ingest --follow` and streams: the real command against a real server, with
files rotated under it, the follower killed and restarted, and `tail -F` piping into it.
Every test asserts the exact set of lines PostgreSQL holds: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import shutil
import signal
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.ingest.checkpoint import CheckpointStore
from logkeep.ingest.worker import Worker
from tests.conftest import served
from tests.integration.test_cli import LOGKEEP, Result, clean_env

# Every test here runs the CLI as a subprocess against a served API.
pytestmark = pytest.mark.slow

SEND = ("--source", "app_errors", "--format", "text", "--flush-interval", "0.2")


def cli_env(base_url: str, state: Path) -> dict[str, str]:
    return clean_env(LOGKEEP_API_URL=base_url, COLUMNS="200", XDG_STATE_HOME=str(state))


class Follower:
    """`logkeep ingest FILE --follow ...` running in the background."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, base_url: str, state: Path, *args: str) -> Follower:
        proc = await asyncio.create_subprocess_exec(
            str(LOGKEEP), "ingest", *args,
            env=cli_env(base_url, state), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        return cls(proc)

    async def ready(self, deadline_s: float = 30) -> None:
        """Wait until it reads the file (its start-up imports can take seconds)."""
        assert self.proc.stderr is not None
        while True:
            line = await asyncio.wait_for(self.proc.stderr.readline(), deadline_s)
            assert line, "the follower ended before it started following"
            if line.startswith(b"following "):
                return

    def send_signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    async def stop(self, signum: int = signal.SIGTERM, deadline_s: float = 30) -> Result:
        self.send_signal(signum)
        out, err = await asyncio.wait_for(self.proc.communicate(), deadline_s)
        assert self.proc.returncode is not None
        return Result(self.proc.returncode, out.decode(), err.decode())

    async def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
        await self.proc.communicate()


@contextlib.asynccontextmanager
async def following(base_url: str, state: Path, *args: str) -> AsyncIterator[Follower]:
    follower = await Follower.start(base_url, state, *args)
    try:
        await follower.ready()
        yield follower
    finally:
        if follower.proc.returncode is None:
            await follower.kill()


def lines(tag: str, start: int, stop: int) -> bytes:
    return b"".join(f"{tag} line {i}\n".encode() for i in range(start, stop))


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as out:
        out.write(data)


async def stored(db: Database, settings: Settings, tag: str) -> list[str]:
    await Worker(db, settings, name="follow-test").drain()
    async with db.pool.acquire() as conn:
        rows = await conn.fetch("SELECT message FROM log_entries WHERE message LIKE $1", f"{tag} %")
    return [row["message"] for row in rows]


async def wait_for(
    db: Database, settings: Settings, tag: str, count: int, deadline_s: float = 45
) -> list[str]:
    """The stored lines of `tag` once there are at least `count` (or at the deadline)."""
    deadline = time.monotonic() + deadline_s
    while True:
        messages = await stored(db, settings, tag)
        if len(messages) >= count or time.monotonic() > deadline:
            return messages
        await asyncio.sleep(0.2)


def expected(tag: str, stop: int) -> list[str]:
    return sorted(f"{tag} line {i}" for i in range(stop))


async def test_follow_survives_rename_and_copytruncate_rotation(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex
    log = tmp_path / "app.log"
    log.write_bytes(lines(tag, 0, 500))
    async with (
        served(settings) as base_url,
        following(base_url, tmp_path, str(log), "--follow", "--batch-lines", "100", *SEND) as f,
    ):
        assert len(await wait_for(db, settings, tag, 500)) == 500

        # Rename rotation, with the writer still appending to the old file after the
        # rename (it has not reopened yet). The follower is paused so that all of it
        # happens between two of its reads.
        f.send_signal(signal.SIGSTOP)
        append(log, lines(tag, 500, 600))
        log.rename(tmp_path / "app.log.1")
        append(tmp_path / "app.log.1", lines(tag, 600, 650))
        log.write_bytes(lines(tag, 650, 700))
        f.send_signal(signal.SIGCONT)
        assert len(await wait_for(db, settings, tag, 700)) == 700

        # copytruncate: the lines appended just before the copy were never read from the
        # file itself; they are only in the copy (logrotate shifts .1 to .2 first).
        f.send_signal(signal.SIGSTOP)
        append(log, lines(tag, 700, 800))
        (tmp_path / "app.log.1").rename(tmp_path / "app.log.2")
        shutil.copy(log, tmp_path / "app.log.1")
        with log.open("r+b") as out:
            out.truncate(0)
        append(log, lines(tag, 800, 850))
        f.send_signal(signal.SIGCONT)
        assert len(await wait_for(db, settings, tag, 850)) == 850

        append(log, lines(tag, 850, 900))
        assert len(await wait_for(db, settings, tag, 900)) == 900
        result = await f.stop(signal.SIGTERM)
    assert result.returncode == 0, result
    assert "900 lines" in result.output and "900 accepted, 0 duplicates" in result.output
    assert sorted(await stored(db, settings, tag)) == expected(tag, 900)


async def checkpointed_to(home: Path, offset: int, deadline_s: float = 20) -> None:
    """Until the follower's checkpoint under `home` says `offset` bytes are acknowledged."""
    deadline = time.monotonic() + deadline_s
    while True:
        for path in (home / "logkeep" / "checkpoints").glob("app.log-*.json"):
            # Saved atomically (CheckpointStore.save): a read finds the old one or the new.
            checkpoint = CheckpointStore(path).load()
            if checkpoint is not None and checkpoint.offset == offset:
                return
        assert time.monotonic() < deadline, f"the checkpoint never reached {offset}"
        await asyncio.sleep(0.1)


async def test_a_killed_follower_resumes_without_duplicates_or_gaps(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    """SIGKILL at arbitrary moments (mid-batch, between the answer and the checkpoint),
    and a rotation while no follower runs: every line arrives exactly once."""
    tag = uuid.uuid4().hex
    log = tmp_path / "app.log"
    log.touch()
    args = (str(log), "--follow", "--batch-lines", "40", *SEND)
    written = 0
    rng = random.Random(15)  # noqa: S311 - when to kill, not a secret
    async with served(settings) as base_url:
        for round_ in range(5):
            before = len(await stored(db, settings, tag))
            follower = await Follower.start(base_url, tmp_path, *args)
            for _ in range(10):  # the file grows while the follower sends
                append(log, lines(tag, written, written + 60))
                written += 60
                await asyncio.sleep(0.05)
            # Killed once it is under way (a follower that never started has no
            # checkpoint, and would not know the file it never saw was rotated).
            assert len(await wait_for(db, settings, tag, before + 1)) > before
            await asyncio.sleep(rng.uniform(0, 0.5))
            await follower.kill()
            if round_ == 2:  # rotated while nothing follows it, written to after the rename
                log.rename(tmp_path / "app.log.1")
                append(tmp_path / "app.log.1", lines(tag, written, written + 30))
                log.write_bytes(lines(tag, written + 30, written + 100))
                written += 100
        async with following(base_url, tmp_path, *args) as follower:
            messages = await wait_for(db, settings, tag, written)
            assert len(messages) == written
            # Every line can be stored before this follower has caught up: a killed one
            # may have delivered its last batch without living to checkpoint it, and this
            # one resends it (a replay) before it moves on. Stopped once it has caught up.
            await checkpointed_to(tmp_path, log.stat().st_size)
            result = await follower.stop(signal.SIGINT)
    assert result.returncode == 0, result
    assert sorted(await stored(db, settings, tag)) == expected(tag, written)
    (checkpoint,) = (tmp_path / "logkeep" / "checkpoints").glob("app.log-*.json")
    saved = orjson.loads(checkpoint.read_bytes())
    assert saved["offset"] == log.stat().st_size and saved["in_flight"] is None
    assert saved["file"]["ino"] == log.stat().st_ino


async def test_a_one_shot_rerun_sends_only_what_is_new(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex
    log = tmp_path / "app.log"
    log.write_bytes(lines(tag, 0, 300))
    env = cli_env("", tmp_path)
    async with served(settings) as base_url:
        env["LOGKEEP_API_URL"] = base_url

        async def once(*extra: str) -> Result:
            proc = await asyncio.create_subprocess_exec(
                str(LOGKEEP), "ingest", str(log), *SEND, *extra, env=env,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out, err = await asyncio.wait_for(proc.communicate(), 60)
            assert proc.returncode is not None
            return Result(proc.returncode, out.decode(), err.decode())

        first = await once()
        assert "300 accepted" in first.output, first
        again = await once()
        assert again.returncode == 0 and "0 lines" in again.output, again
        append(log, lines(tag, 300, 350))
        more = await once()
        assert "50 accepted" in more.output and "resuming" in more.output, more
        assert sorted(await stored(db, settings, tag)) == expected(tag, 350)
        resent = await once("--from-start")
        assert "350 accepted" in resent.output, resent  # deliberately, a second copy
    assert sorted(await stored(db, settings, tag)) == sorted(expected(tag, 350) * 2)


async def test_tail_f_into_ingest_is_sent_as_it_comes(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    """`tail -F FILE | logkeep ingest -`: lines reach logkeep while the pipe stays open."""
    tag = uuid.uuid4().hex
    log = tmp_path / "app.log"
    log.write_bytes(lines(tag, 0, 5))
    async with served(settings) as base_url:
        read_end, write_end = os.pipe()
        tail = await asyncio.create_subprocess_exec(
            "tail", "-n", "+1", "-F", str(log), stdout=write_end,
            stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        ingest = await asyncio.create_subprocess_exec(
            str(LOGKEEP), "ingest", "-", *SEND, stdin=read_end,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=cli_env(base_url, tmp_path),
        )  # fmt: skip
        os.close(read_end)
        os.close(write_end)  # only tail writes the pipe now: its end is the input's end
        try:
            assert len(await wait_for(db, settings, tag, 5, deadline_s=20)) == 5
            append(log, lines(tag, 5, 8))
            assert len(await wait_for(db, settings, tag, 8, deadline_s=20)) == 8
        finally:
            tail.terminate()  # the pipe ends: ingest sends what it holds and exits
            await tail.wait()
            out, err = await asyncio.wait_for(ingest.communicate(), 30)
    assert ingest.returncode == 0, err.decode()
    assert "8 lines" in " ".join(out.decode().split())
    assert sorted(await stored(db, settings, tag)) == expected(tag, 8)


async def test_follow_joins_stack_traces_into_one_entry(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex
    log = tmp_path / "app.log"
    trace = (
        f"{tag} ERROR payment failed\n"
        "Traceback (most recent call last):\n"
        '  File "app.py", line 3, in pay\n'
        '    raise ValueError("declined")\n'
        "ValueError: declined\n"
    )
    java = (
        f"{tag} ERROR [main] failed\n"
        "java.lang.IllegalStateException: boom\n"
        "\tat com.example.App.main(App.java:4)\n"
        "Caused by: java.io.IOException: disk\n"
        "\t... 1 more\n"
    )
    log.write_text(f"{tag} INFO started\n{trace}")
    async with (
        served(settings) as base_url,
        following(base_url, tmp_path, str(log), "--follow", "--multiline", "auto", *SEND) as f,
    ):
        # The traceback ends the file: it is sent once no line followed it for a moment.
        messages = await wait_for(db, settings, tag, 2, deadline_s=20)
        assert sorted(messages) == sorted([f"{tag} INFO started", trace.rstrip("\n")])
        append(log, f"{java}{tag} INFO recovered\n".encode())
        messages = await wait_for(db, settings, tag, 4, deadline_s=20)
        result = await f.stop(signal.SIGINT)
    assert result.returncode == 0, result
    assert sorted(messages) == sorted(
        [f"{tag} INFO started", trace.rstrip("\n"), java.rstrip("\n"), f"{tag} INFO recovered"]
    )


async def test_joined_entries_are_parsed_by_their_first_line(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    """Without `--format text`, the source's rules parse each entry's first line (here
    app_errors' JSON) and the joined lines are kept with it, in metadata.continuation."""
    tag = uuid.uuid4().hex
    log = tmp_path / "app.jsonl"
    frames = 'Traceback (most recent call last):\n  File "x.py", line 1\nKeyError: 7'
    first = orjson.dumps({"msg": f"{tag} charge failed", "level": "error"}).decode()
    plain = orjson.dumps({"msg": f"{tag} charged", "level": "info"}).decode()
    log.write_text(f"{first}\n{frames}\n{plain}\n")
    async with served(settings) as base_url:
        proc = await asyncio.create_subprocess_exec(
            str(LOGKEEP), "ingest", str(log), "--source", "app_errors", "--multiline", "auto",
            env=cli_env(base_url, tmp_path), stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert "2 accepted" in " ".join(out.decode().split())
    await Worker(db, settings, name="follow-test").drain()
    async with db.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT message, level, metadata->>'continuation' AS rest FROM log_entries"
            " WHERE message LIKE $1 ORDER BY message",
            f"{tag} %",
        )
    assert [(r["message"], r["level"], r["rest"]) for r in rows] == [
        (f"{tag} charge failed", "ERROR", frames),
        (f"{tag} charged", "INFO", None),
    ]
