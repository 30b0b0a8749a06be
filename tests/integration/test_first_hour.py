"""Issue 15's "done when", walked as a new user would in their first hour, against ONE real
`logkeep up` (a subprocess with its own home and data directory under a 0700 parent, as
`mktemp -d` makes it), stopped with Ctrl-C and started again on the same data and port
whenever the walk calls for a restart. Every other command is the CLI as a subprocess, run
from another directory with nothing configured; the application is a Python program of the
user's; the file is followed by `logkeep ingest --follow`.

    1. `up` says where the data lives, the URLs that reach its stores, whether auth is on
    2. `db status`, `users list`, `doctor` from another directory find the same instance
    3. `sources create myapp --format logfmt` (a bad rule refused first), `sources list`
    4. a program logs through LogkeepHandler while logkeep restarts: nothing lost or doubled
    5. `ingest --follow` across a rename rotation and a killed follower: every line once
    6. logfmt numbers are found by `--meta`; a line that is not logfmt is kept whole
    7. `query` without `--since` finds entries from 3 hours ago; the footer says more match
    8. auth on: the 401 says how to log in; `login` keeps a 0600 session; `query` works
    9. `tail` and `ingest --follow` ride out a restart (with that session): what was
       written meanwhile arrives once and is shown; then `logout` ends the session
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shlex
import shutil
import signal
import stat
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import redis.asyncio as aioredis

from logkeep.api.local import free_port
from tests.integration.test_cli import (
    LOGKEEP,
    Result,
    Up,
    clean_env,
    migration_files,
    remove_data_dir,
)
from tests.integration.test_first_start import run_and_stop

pytestmark = pytest.mark.slow

SEED_ROWS = 200
UP_ARGS = ["--seed-rows", str(SEED_ROWS), "--no-syslog", "--no-gelf"]

# A user's program, as the README shows it: LogkeepHandler on the root logger, records
# logged from a thread that goes on while logkeep restarts. Commands on stdin, one JSON
# answer per command on stdout: `stats`, `exception` (the next record is an error with a
# traceback), `stop` (stop logging, wait for delivery).
USER_PROGRAM = r"""
import json, logging, sys, threading, time
from logkeep.handler import LogkeepHandler

handler = LogkeepHandler(source="myapp")
logging.getLogger().addHandler(handler)
logging.getLogger().setLevel(logging.INFO)
log = logging.getLogger("shop.payments")
run = sys.argv[1]
lock = threading.Lock()
stop = threading.Event()
seq = 0
failures = 0

def charge():
    cards = {}
    return cards["card"]

def keep_logging():
    global seq, failures
    while not stop.is_set():
        with lock:
            seq += 1
            if failures:
                failures -= 1
                try:
                    charge()
                except KeyError:
                    log.exception("payment %d failed", seq, extra={"run": run, "seq": seq})
            else:
                log.info("order %d paid", seq, extra={"run": run, "seq": seq})
        time.sleep(0.005)  # the application's own pace

def answer(**fields):
    stats = handler.stats()
    with lock:
        fields.update(seq=seq, failures_pending=failures)
    fields.update(queued=stats.queued, accepted=stats.accepted, duplicates=stats.duplicates,
                  dropped=stats.dropped, rejected=stats.rejected)
    print(json.dumps(fields), flush=True)

worker = threading.Thread(target=keep_logging)
worker.start()
for line in sys.stdin:
    command = line.strip()
    if command == "exception":
        with lock:
            failures += 1
    elif command == "stop":
        stop.set()
        worker.join()
        answer(delivered=handler.wait_delivered(90))
        break
    answer()
"""


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def collapsed(text: str) -> str:
    """Whitespace collapsed (rich wraps long lines)."""
    return " ".join(text.split())


def logfmt_lines(run: str, start: int, stop: int) -> bytes:
    return b"".join(
        f'level=info msg="follow {n}" run={run} n={n}\n'.encode() for n in range(start, stop)
    )


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as out:
        out.write(data)


@dataclass
class Step:
    """Wall-clock seconds per step, printed at the end."""

    started: float = field(default_factory=time.monotonic)
    times: dict[str, float] = field(default_factory=dict)

    def done(self, name: str) -> None:
        now = time.monotonic()
        self.times[name] = now - self.started
        self.started = now


@pytest.fixture
def private_parent() -> Iterator[Path]:
    """A directory as `mktemp -d` makes it (0700), removed with everything under it,
    including PostgreSQL's files wherever `up` had to put them."""
    parent = Path(tempfile.mkdtemp(prefix="lk-hour-"))
    assert mode(parent) == 0o700
    yield parent
    remove_data_dir(parent / "home" / ".local" / "share" / "logkeep")
    shutil.rmtree(parent, ignore_errors=True)


class User:
    """A user with a home of their own and nothing of logkeep configured: `up` runs in
    one directory, every other command in another."""

    def __init__(self, parent: Path) -> None:
        self.parent = parent
        self.home = parent / "home"
        self.home.mkdir(mode=0o700)
        self.data_dir = self.home / ".local" / "share" / "logkeep"
        self.credentials = self.home / ".config" / "logkeep" / "credentials.json"
        self.project = parent / "project"  # where `up` is started
        self.elsewhere = parent / "elsewhere"  # where everything else is run
        self.project.mkdir()
        self.elsewhere.mkdir()
        # No LOGKEEP_* and no XDG_* setting: every directory is the default under HOME.
        self.env = {
            k: v
            for k, v in clean_env(HOME=str(self.home), NO_COLOR="1", COLUMNS="200").items()
            if not k.startswith("XDG_")
        }
        self.port = free_port()  # every `up` of the journey serves here
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.ups = 0

    def up(self, **extra_env: str) -> Up:
        self.ups += 1
        up = Up(self.parent, f"up{self.ups}", self.env | extra_env, UP_ARGS, cwd=self.project)
        up.port, up.base_url = self.port, self.base_url
        return up

    async def cli(self, *args: str, stdin: bytes | None = None, deadline_s: float = 90) -> Result:
        proc = await asyncio.create_subprocess_exec(
            str(LOGKEEP), *args, env=self.env, cwd=self.elsewhere,
            stdin=asyncio.subprocess.DEVNULL if stdin is None else asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin), deadline_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        assert proc.returncode is not None
        return Result(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))

    async def ok(self, *args: str, stdin: bytes | None = None) -> Result:
        result = await self.cli(*args, stdin=stdin)
        assert result.returncode == 0, f"logkeep {' '.join(args)}: {result}"
        return result

    async def query_json(self, *args: str) -> list[dict[str, Any]]:
        result = await self.ok("query", *args, "--json", "--limit", "1000000")
        return [orjson.loads(line) for line in result.stdout.splitlines() if line.strip()]

    async def start(self, *args: str, stdout: bool = False) -> asyncio.subprocess.Process:
        """A long-running `logkeep` command (follower, tail) in the other directory."""
        return await asyncio.create_subprocess_exec(
            str(LOGKEEP), *args, env=self.env, cwd=self.elsewhere,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if stdout else asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip

    def token(self) -> str:
        """The session `logkeep login` saved (for this test's own polling client)."""
        sessions: dict[str, dict[str, str]] = orjson.loads(self.credentials.read_bytes())[
            "sessions"
        ]
        (session,) = sessions.values()
        return session["token"]

    async def stored(self, params: dict[str, str]) -> int:
        """How many entries match, through the API's NDJSON export (every match), with
        the saved session once there is one."""
        headers = {"Accept": "application/x-ndjson"}
        if self.credentials.exists():
            headers["Authorization"] = f"Bearer {self.token()}"
        async with httpx.AsyncClient(base_url=self.base_url, timeout=30) as http:
            response = await http.get("/api/v1/logs", params=params, headers=headers)
        assert response.status_code == 200, response.text
        return sum(1 for line in response.content.splitlines() if line.strip())

    async def wait_stored(self, params: dict[str, str], count: int, deadline_s: float = 60) -> int:
        """The number of matches once it reaches `count` (or whatever it is at the deadline)."""
        deadline = time.monotonic() + deadline_s
        while True:
            found = await self.stored(params)
            if found >= count or time.monotonic() > deadline:
                return found
            await asyncio.sleep(0.2)


class Program:
    """USER_PROGRAM as its own process."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc

    @classmethod
    async def start(cls, user: User, run: str) -> Program:
        """Configured the documented way: LOGKEEP_API_URL names the API."""
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", USER_PROGRAM, run,
            env=user.env | {"LOGKEEP_API_URL": user.base_url}, cwd=user.elsewhere,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        return cls(proc)

    async def send(self, command: str, deadline_s: float = 120) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command.encode() + b"\n")
        await self.proc.stdin.drain()
        line = await asyncio.wait_for(self.proc.stdout.readline(), deadline_s)
        assert line, "the program ended"
        answer: dict[str, Any] = orjson.loads(line)
        return answer

    async def until(
        self, what: str, check: Callable[[dict[str, Any]], bool], deadline_s: float = 60
    ) -> dict[str, Any]:
        """`stats` until `check` holds for the answer."""
        deadline = time.monotonic() + deadline_s
        while True:
            stats = await self.send("stats")
            if check(stats):
                return stats
            assert time.monotonic() < deadline, f"not {what} within {deadline_s}s: {stats}"
            await asyncio.sleep(0.1)


async def read_line(stream: asyncio.StreamReader | None, deadline_s: float) -> bytes:
    assert stream is not None
    return await asyncio.wait_for(stream.readline(), deadline_s)


async def wait_for_stderr(proc: asyncio.subprocess.Process, text: str, deadline_s: float) -> str:
    """Lines of the process's stderr up to the first holding `text`."""
    seen: list[str] = []
    deadline = time.monotonic() + deadline_s
    while True:
        line = await read_line(proc.stderr, max(0.1, deadline - time.monotonic()))
        assert line, f"ended before {text!r}: {seen}"
        seen.append(line.decode(errors="replace"))
        if text in seen[-1]:
            return "".join(seen)


async def stop_process(proc: asyncio.subprocess.Process, sig: int = signal.SIGINT) -> int:
    proc.send_signal(sig)
    return await asyncio.wait_for(proc.wait(), 60)


@pytest.mark.timeout(600)
async def test_a_new_users_first_hour(private_parent: Path) -> None:
    user = User(private_parent)
    step = Step()
    running: list[asyncio.subprocess.Process] = []  # killed at the end if still running
    up = user.up()
    try:
        # -- 1. `up`: where the data lives, how to reach its stores, whether auth is on ----
        await up.start_and_wait_ready()  # /readyz answered 200
        assert up.proc is not None
        stdout = up.stdout_path.read_text()
        output = collapsed(stdout)
        assert f"data {user.data_dir}" in output, up.output()
        assert "auth off (LOGKEEP_ENV=dev)" in output, up.output()
        assert f"loaded {SEED_ROWS} log entries" in output, up.output()
        urls = dict(re.findall(r"^(LOGKEEP_(?:DATABASE|REDIS)_URL)=(.+)$", stdout, re.M))
        database_url = shlex.split(urls["LOGKEEP_DATABASE_URL"])[0]
        redis_url = shlex.split(urls["LOGKEEP_REDIS_URL"])[0]
        # The printed URLs reach the very stores `up` runs (real clients, from here).
        conn = await asyncpg.connect(database_url)
        try:
            seeded = await conn.fetch("SELECT name, rows FROM seed_runs")
            assert [tuple(row) for row in seeded] == [("dev-entries", SEED_ROWS)]
        finally:
            await conn.close()
        redis = aioredis.from_url(redis_url)
        try:
            assert await redis.ping()
        finally:
            await redis.aclose()
        # The seed's generated passwords, shown once: the user copies the admin's.
        passwords = dict(re.findall(r"│\s*(admin|analyst|viewer)\s*│\s*(\S+)\s*│", stdout))
        assert set(passwords) == {"admin", "analyst", "viewer"}, up.output()
        step.done("1 up")

        # -- 2. from another directory, nothing configured: the same instance ------------
        status = await user.ok("db", "status")
        for name in migration_files():
            assert f"applied {name}" in status.output, status
        assert "up to date" in status.output and "pending" not in status.output, status
        users = await user.ok("users", "list")
        for name in ("admin", "analyst", "viewer"):
            assert f" {name} " in users.output, users
        doctor = await user.ok("doctor")
        assert f"logkeep up (pid {up.proc.pid}) of {user.data_dir}" in doctor.output, doctor
        assert f"API {user.base_url}, authentication off" in doctor.output, doctor
        assert "everything looks right" in doctor.output, doctor
        step.done("2 other directory")

        # -- 3. a source for the user's application ---------------------------------------
        bad = await user.cli("sources", "create", "myapp", "--format", "logfmt",
                             "--rule", "message_fields=msg")  # fmt: skip
        assert bad.returncode == 2, bad
        assert "parsing_rules.message_fields: not a rule of format 'logfmt'" in bad.output, bad
        assert "nothing was saved" in bad.output, bad
        # Nothing was saved: the same name is free.
        created = await user.ok("sources", "create", "myapp", "--format", "logfmt")
        assert "created source myapp" in created.output, created
        assert "type application, format logfmt" in created.output, created
        listed = await user.ok("sources", "list")
        rows = [row.split("│") for row in listed.stdout.splitlines() if " myapp " in row]
        assert len(rows) == 1, listed
        assert [cell.strip() for cell in rows[0][2:6]] == ["myapp", "application", "logfmt", "yes"]
        step.done("3 sources")

        # -- 4. a program logs through the handler while logkeep restarts ----------------
        run = uuid.uuid4().hex[:12]
        program = await Program.start(user, run)
        running.append(program.proc)
        await program.send("exception")
        await program.until(
            "delivering", lambda s: s["accepted"] >= 100 and s["failures_pending"] == 0
        )
        await run_and_stop(up, user.data_dir)  # Ctrl-C: every process of it is gone
        down = await program.send("stats")
        await program.send("exception")  # logged while logkeep is away
        away = await program.until(
            "300 more logged", lambda s: s["seq"] >= down["seq"] + 300 and not s["failures_pending"]
        )
        assert away["accepted"] == down["accepted"], (down, away)  # nothing got through
        assert away["queued"] > 0 and away["dropped"] == 0, away

        up = user.up()  # the same data directory and port
        await up.start_and_wait_ready()
        again = collapsed(up.stdout_path.read_text())
        assert "log entries were already loaded" in again, up.output()
        assert "generated passwords" not in again, up.output()
        await program.until("delivering again", lambda s: s["accepted"] > away["accepted"])
        final = await program.send("stop")
        assert final["delivered"] and final["queued"] == 0, final
        assert final["dropped"] == final["rejected"] == 0, final
        assert await asyncio.wait_for(program.proc.wait(), 60) == 0
        assert program.proc.stderr is not None
        complaints = (await program.proc.stderr.read()).decode(errors="replace")
        assert "cannot reach logkeep" in complaints  # the outage was reported, on stderr
        logged = final["seq"]
        assert await user.wait_stored({"metadata.run": run}, logged) == logged
        entries = await user.query_json("--meta", f"run={run}")
        assert sorted(e["metadata"]["seq"] for e in entries) == list(range(1, logged + 1))
        errors = [e for e in entries if e["level"] == "ERROR"]
        assert len(errors) == 2, errors
        for error in errors:
            assert error["source"] == "myapp"
            message = error["message"]
            assert message.startswith(
                f"payment {error['metadata']['seq']} failed\nTraceback (most recent call last):"
            ), message
            assert message.rstrip().endswith("KeyError: 'card'"), message
            assert error["metadata"]["exception_type"] == "KeyError"
            assert error["metadata"]["logger"] == "shop.payments"
        assert not [e for e in entries if e["message"].startswith(("Traceback", "  File"))]
        assert {e["level"] for e in entries} == {"INFO", "ERROR"}
        step.done(f"4 handler ({logged} records, {logged - down['seq']} after Ctrl-C)")

        # -- 5. `ingest --follow` across rotation and a killed follower -------------------
        tag = f"run{uuid.uuid4().hex[:12]}"
        log = user.elsewhere / "app.log"
        log.write_bytes(logfmt_lines(tag, 0, 200))
        follow_args = ("ingest", "app.log", "--source", "myapp", "--follow")
        follower = await user.start(*follow_args)
        running.append(follower)
        await wait_for_stderr(follower, "following app.log", 30)
        ours = {"metadata.run": tag}
        assert await user.wait_stored(ours, 200) == 200
        # logrotate's `create`: renamed, written to once more by the old writer, replaced.
        append(log, logfmt_lines(tag, 200, 300))
        log.rename(user.elsewhere / "app.log.1")
        append(user.elsewhere / "app.log.1", logfmt_lines(tag, 300, 350))
        log.write_bytes(logfmt_lines(tag, 350, 400))
        assert await user.wait_stored(ours, 400) == 400
        # Killed while it sends; the file grows while nothing follows it.
        for start in range(400, 700, 50):
            append(log, logfmt_lines(tag, start, start + 50))
        assert await user.wait_stored(ours, 401) > 400
        follower.kill()
        await follower.wait()
        append(log, logfmt_lines(tag, 700, 800))
        follower = await user.start(*follow_args)
        running.append(follower)
        resumed = await wait_for_stderr(follower, "following app.log", 30)
        assert "resuming app.log after line" in resumed, resumed
        assert await user.wait_stored(ours, 800) == 800
        step.done("5 follow")

        # -- 6. logfmt numbers found by value; a line that is not logfmt is kept whole ----
        prose = f"Connection at 10:00 is refused by {tag}"
        append(
            log, f'level=warn msg="upstream slow" duration_ms=30012 route=/pay\n{prose}\n'.encode()
        )
        assert await user.wait_stored({"q": tag}, 1) == 1  # the prose (the others: "follow N")
        assert await user.wait_stored({"metadata.route": "/pay"}, 1) == 1
        assert await stop_process(follower) == 0
        entries = await user.query_json("--meta", f"run={tag}")
        assert sorted(e["metadata"]["n"] for e in entries) == list(range(800))
        assert sorted(e["message"] for e in entries) == sorted(f"follow {n}" for n in range(800))
        (slow,) = await user.query_json("--source", "myapp", "--meta", "duration_ms=30012")
        assert slow["message"] == "upstream slow" and slow["level"] == "WARN", slow
        assert slow["metadata"] == {"duration_ms": 30012, "route": "/pay"}, slow
        (kept,) = await user.query_json(tag)
        assert kept["message"] == prose, kept
        assert kept["metadata"] == {"_parse_error": "not logfmt: no key=value pair"}, kept
        step.done("6 logfmt")

        # -- 7. `query` without --since finds what happened 3 hours ago -------------------
        word = f"zebra{uuid.uuid4().hex[:8]}"
        three_hours_ago = datetime.now(UTC) - timedelta(hours=3)
        old = b"".join(
            f"ts={(three_hours_ago + timedelta(seconds=n)).isoformat()} level=error "
            f'msg="{word} failure {n}"\n'.encode()
            for n in range(3)
        )
        sent = await user.ok("ingest", "-", "--source", "myapp", "--durable", stdin=old)
        assert "3 accepted" in sent.output, sent
        found = await user.ok("query", word)
        for n in range(3):
            assert f"{word} failure {n}" in found.output, found
        assert f"{three_hours_ago:%Y-%m-%d %H:%M:%S}" in found.output, found
        assert "3 entries" in found.output and "more match" not in found.output, found
        newest = await user.ok("query", word, "--limit", "1")
        assert "showing the newest entry; more match" in newest.output, newest
        assert f"{word} failure 2" in newest.output, newest
        assert f"{word} failure 1" not in newest.output, newest
        recent = await user.ok("query", word, "--since", "1h")
        assert "no entries in the last 1h; search further back" in recent.output, recent
        assert "time (UTC)" not in recent.output, recent  # no empty table above it
        step.done("7 query window")

        # -- 8. authentication on: the 401 says how; `login` keeps a private session ------
        await run_and_stop(up, user.data_dir)
        up = user.up(LOGKEEP_AUTH_REQUIRED="true")
        await up.start_and_wait_ready()
        assert "auth on:" in collapsed(up.stdout_path.read_text()), up.output()
        refused = await user.cli("query", word)
        assert refused.returncode == 1, refused
        assert "401" in refused.output, refused
        assert "logkeep login" in refused.output and "LOGKEEP_API_TOKEN" in refused.output
        login = await user.ok(
            "login", "-u", "admin", "--password-stdin",
            stdin=passwords["admin"].encode() + b"\n",
        )  # fmt: skip
        assert "logged in" in login.output and "admin" in login.output, login
        assert mode(user.credentials) == 0o600
        assert mode(user.credentials.parent) == 0o700
        found = await user.ok("query", word)
        assert "3 entries" in found.output, found
        step.done("8 login")

        # -- 9. `tail` and the follower ride out a restart; what came after it shows ------
        # Both with the saved session. The follower resumes at its checkpoint.
        follower = await user.start(*follow_args)
        running.append(follower)
        await wait_for_stderr(follower, "following app.log", 30)
        probe = f"tailprobe{uuid.uuid4().hex[:8]}"
        tail = await user.start("tail", "--json", "--contains", probe, stdout=True)
        running.append(tail)
        token = user.token()
        line = b""
        deadline = time.monotonic() + 30
        async with httpx.AsyncClient(
            base_url=user.base_url, headers={"Authorization": f"Bearer {token}"}
        ) as http:
            # Until the tail is listening, an entry passes unseen: write until one shows.
            while not line:
                assert time.monotonic() < deadline, "the tail printed nothing"
                response = await http.post(
                    "/api/v1/logs", json={"source": "myapp", "message": f"{probe} before"}
                )
                assert response.status_code == 201, response.text
                with contextlib.suppress(TimeoutError):
                    line = await read_line(tail.stdout, 1)
        assert orjson.loads(line)["message"] == f"{probe} before"
        with contextlib.suppress(TimeoutError):  # the other probes sent meanwhile
            while True:
                await read_line(tail.stdout, 0.5)
        await run_and_stop(up, user.data_dir)
        await wait_for_stderr(tail, "connection lost", 15)
        # Written while logkeep is away: the follower sends it once logkeep is back.
        append(log, logfmt_lines(tag, 800, 850))
        append(log, f'level=error msg="{probe} after restart" run={tag}x\n'.encode())
        up = user.up(LOGKEEP_AUTH_REQUIRED="true")
        await up.start_and_wait_ready()
        shown = orjson.loads(await read_line(tail.stdout, 60))
        assert (shown["message"], shown["level"]) == (f"{probe} after restart", "ERROR")
        await wait_for_stderr(tail, "reconnected", 5)
        assert tail.returncode is None and follower.returncode is None
        assert await user.wait_stored(ours, 850) == 850
        assert await stop_process(follower) == 0
        assert await stop_process(tail) == 0
        entries = await user.query_json("--meta", f"run={tag}")
        assert sorted(e["metadata"]["n"] for e in entries) == list(range(850))

        # 8, the end: `logout` ends the session, here and on the server.
        out = await user.ok("logout")
        assert "logged out" in out.output and not user.credentials.exists(), out
        async with httpx.AsyncClient(base_url=user.base_url) as http:
            me = await http.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert me.status_code == 401, me.text
        refused = await user.cli("query", word)
        assert refused.returncode == 1 and "401" in refused.output, refused
        step.done("9 tail, logout")

        await run_and_stop(up, user.data_dir)
        step.done("stop")
    finally:
        for proc in running:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        await up.kill_if_running()
    print("\nfirst hour: " + ", ".join(f"{name} {s:.1f}s" for name, s in step.times.items()))
    print(f"total {sum(step.times.values()):.1f}s")
