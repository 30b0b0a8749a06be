"""A new user's first start, as they would do it: `./scripts/run` in a fresh clone under a
private (0700) directory, as root, stopped with Ctrl-C and started again; and every other
command run from another directory, finding that instance and its data by itself."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from logkeep.api.local import free_port
from logkeep.embedded import SERVER_STATE_DIR
from tests.integration.test_cli import (
    LOGKEEP,
    SEED_SOURCES,
    Up,
    assert_stopped_cleanly,
    clean_env,
    migration_files,
    process_exists,
    remove_data_dir,
    run_cli,
)

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
IS_ROOT = os.geteuid() == 0
NOT_ROOT_REASON = (
    "not root: PostgreSQL runs as this user, so there is no other account to find a place for"
)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def user_env(home: Path, **values: str) -> dict[str, str]:
    """A user's environment with nothing of logkeep configured: its data directory is the
    default one under `home`."""
    env = clean_env(HOME=str(home), NO_COLOR="1", COLUMNS="200", **values)
    env.pop("XDG_DATA_HOME")
    return env


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (the servers `logkeep up` started, and theirs)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # exited meanwhile
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def pip_settings() -> dict[str, str]:
    """pip's cache and per-user configuration (indexes, find-links) of the user running the
    tests, which a fake HOME would hide: `./scripts/run` still installs everything itself."""
    settings = {"PIP_CACHE_DIR": os.environ.get("PIP_CACHE_DIR", str(Path.home() / ".cache/pip"))}
    user_config = Path(os.environ.get("PIP_CONFIG_FILE", Path.home() / ".config/pip/pip.conf"))
    if user_config.is_file():
        settings["PIP_CONFIG_FILE"] = str(user_config)
    return settings


def git_clone(into: Path) -> None:
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(into)], check=True)


def postgres_binary(up_pid: int) -> Path:
    """The executable of the PostgreSQL server that `up_pid` started."""
    for pid in descendants(up_pid):
        with contextlib.suppress(OSError):
            exe = Path(f"/proc/{pid}/exe").resolve(strict=True)
            if exe.name == "postgres":
                return exe
    pytest.fail(f"no postgres process below {up_pid}")


def send_syslog(port: int, message: str) -> None:
    subprocess.run(
        ["logger", "--server", "127.0.0.1", "--port", str(port), "--tcp", "--rfc5424",
         "-t", "myapp", "-p", "local0.err", message],
        check=True,
    )  # fmt: skip


def count_with_database(env: dict[str, str], cwd: Path) -> int:
    """Entries counted by a user's program through `Database()`, given no settings: in
    both tiers, as `up` compacts the seed's closed slices while it runs."""
    program = (
        "import asyncio\nfrom logkeep import Database\n"
        "async def main():\n    async with Database() as db:\n"
        "        print(await db.pool.fetchval('SELECT (SELECT count(*) FROM log_entries)"
        " + (SELECT coalesce(sum(events), 0) FROM log_chunks)'))\n"
        "asyncio.run(main())\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


@pytest.fixture
def private_parent() -> Iterator[Path]:
    """A directory as `mktemp -d` makes it (0700), removed with the data it came to hold."""
    parent = Path(tempfile.mkdtemp(prefix="lk-first-"))
    assert mode(parent) == 0o700
    yield parent
    remove_data_dir(parent / "home" / ".local" / "share" / "logkeep")
    shutil.rmtree(parent, ignore_errors=True)


async def ingest_durably(base_url: str, message: str) -> None:
    event = {"source": "app_errors", "message": message, "level": "error"}
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        response = await http.post(
            "/api/v1/ingest",
            params={"mode": "durable"},
            content=orjson.dumps(event) + b"\n",
            headers={"content-type": "application/x-ndjson"},
        )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1, response.text


async def search(base_url: str, words: str) -> list[str]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        response = await http.get("/api/v1/logs", params={"q": words, "since": "1h"})
    assert response.status_code == 200, response.text
    return [item["message"] for item in response.json()["items"]]


async def entry_count(base_url: str) -> int:
    """Entries of the seed's sources (up to 1,000), newest first through the API."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        response = await http.get("/api/v1/logs/recent", params={"limit": 1000})
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert {item["source"] for item in items} <= SEED_SOURCES
    return len(items)


async def run_and_stop(up: Up, data_dir: Path) -> set[int]:
    """Wait until stopped by SIGINT (Ctrl-C); every process it started is gone by then."""
    assert up.proc is not None
    started = descendants(up.proc.pid)
    returncode = await up.terminate(sig=signal.SIGINT)
    assert_stopped_cleanly(up, returncode, data_dir)
    alive = [pid for pid in started if process_exists(pid)]
    assert alive == [], f"still running after Ctrl-C: {alive}\n{up.output()}"
    return started


@pytest.mark.timeout(900)
async def test_scripts_run_in_a_fresh_clone_under_a_private_directory(
    private_parent: Path,
) -> None:
    clone = private_parent / "logkeep"
    await asyncio.to_thread(git_clone, clone)
    home = private_parent / "home"
    home.mkdir(mode=0o700)
    data_dir = home / ".local" / "share" / "logkeep"
    # Only the wheels' servers, as on a machine without PostgreSQL or Redis installed.
    env = user_env(home, LOGKEEP_EMBEDDED_BINARIES="wheels", **pip_settings())
    modes = {path: mode(path) for path in (private_parent, clone, home)}
    args = ["--seed-rows", "300", "--no-syslog"]
    marker = f"firstrun{uuid.uuid4().hex}"

    run = [str(clone / "scripts" / "run")]
    first = Up(private_parent, "first", env, args, command=run, cwd=clone)
    try:
        first_s = await first.start_and_wait_ready(deadline_s=600)
        assert await entry_count(first.base_url) == 300
        await ingest_durably(first.base_url, f"{marker} payment failed")
        assert await search(first.base_url, marker) == [f"{marker} payment failed"]
        output = " ".join(first.output().split())
        assert f"data {data_dir}" in output, first.output()
        assert "LOGKEEP_DATABASE_URL='postgresql://" in output, first.output()
        assert "LOGKEEP_REDIS_URL='unix://" in output, first.output()
        assert "auth off" in output, first.output()
        assert first.proc is not None
        postgres_exe = postgres_binary(first.proc.pid)
        await run_and_stop(first, data_dir)
    finally:
        await first.kill_if_running()
    assert {path: mode(path) for path in modes} == modes  # nothing of the user's loosened
    assert (clone / ".venv" / "bin" / "logkeep").exists()  # scripts/run made the virtualenv

    second = Up(private_parent, "second", env, args, command=run, cwd=clone)
    try:
        second_s = await second.start_and_wait_ready(deadline_s=180)
        assert await search(second.base_url, marker) == [f"{marker} payment failed"]
        assert await entry_count(second.base_url) == 301  # the seed, once, and the marker
        assert "log entries were already loaded" in " ".join(second.output().split())
        await run_and_stop(second, data_dir)
    finally:
        await second.kill_if_running()
    assert {path: mode(path) for path in modes} == modes

    print(
        f"\n./scripts/run in a fresh clone: to /readyz 200 {first_s:.1f}s (virtualenv "
        f"included), second start {second_s:.1f}s"
    )
    if not IS_ROOT:
        pytest.skip(NOT_ROOT_REASON)
    # PostgreSQL's files went to a directory of its account's, linked from the data
    # directory; it ran a root-owned copy of the wheel's binaries, not the clone's.
    link = data_dir / "postgres"
    assert link.is_symlink() and link.resolve().parent == SERVER_STATE_DIR
    assert postgres_exe.is_relative_to(SERVER_STATE_DIR), postgres_exe
    assert not postgres_exe.is_relative_to(clone)


def wait_for_line(
    path: Path, text: str, process: subprocess.Popen[bytes], deadline_s: float
) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if text in path.read_text(errors="replace"):
            return
        if process.poll() is not None:
            pytest.fail(f"exited {process.returncode} before {text!r}:\n{path.read_text()}")
        time.sleep(0.1)
    pytest.fail(f"no {text!r} within {deadline_s:.0f}s:\n{path.read_text()}")


def start_command(
    args: list[str], env: dict[str, str], cwd: Path, log: Path
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [str(LOGKEEP), *args], env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
        )


def stop_command(process: subprocess.Popen[bytes], log: Path) -> None:
    process.send_signal(signal.SIGINT)
    try:
        returncode = process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        pytest.fail(f"did not stop within 60s of SIGINT:\n{log.read_text()}")
    assert returncode == 0, f"exit {returncode}:\n{log.read_text()}"


@pytest.mark.timeout(600)
async def test_commands_from_another_directory_find_the_running_up(
    private_parent: Path,
) -> None:
    home = private_parent / "home"
    home.mkdir(mode=0o700)
    data_dir = home / ".local" / "share" / "logkeep"
    started_in = private_parent / "project"
    elsewhere = private_parent / "elsewhere"
    started_in.mkdir()
    elsewhere.mkdir()
    env = user_env(home)

    up = Up(private_parent, "up", env, ["--seed-rows", "200", "--no-syslog"], cwd=started_in)
    try:
        await up.start_and_wait_ready()
        assert up.proc is not None

        # A second `up` on the same data directory would stop the first one's servers
        # when it stops: refused, saying where the first one is.
        second = await run_cli("up", "--port", str(free_port()), env=env, cwd=elsewhere)
        assert second.returncode == 1, second
        assert f"already running for {data_dir} (pid {up.proc.pid}" in second.output, second

        status = await run_cli("db", "status", env=env, cwd=elsewhere)
        assert status.returncode == 0, status
        assert "applied 0001_initial.sql" in status.output, status
        assert "up to date" in status.output, status
        assert "pending" not in status.output, status

        users = await run_cli("users", "list", env=env, cwd=elsewhere)
        assert users.returncode == 0, users
        for name in ("admin", "analyst", "viewer"):
            assert name in users.output, users

        doctor = await run_cli("doctor", env=env, cwd=elsewhere)
        assert doctor.returncode == 0, doctor
        assert f"logkeep up (pid {up.proc.pid}) of {data_dir}" in doctor.output, doctor
        assert f"API {up.base_url}" in doctor.output, doctor
        assert "connected to" in doctor.output, doctor

        # syslog alone: the running instance's stores, no URL given.
        port = free_port()
        log = private_parent / "syslog.log"
        receiver = start_command(["syslog", "--port", str(port)], env, elsewhere, log)
        try:
            wait_for_line(log, "syslog_listening", receiver, 30)
            word = f"disk{uuid.uuid4().hex[:12]}"
            send_syslog(port, f"{word} is full")
            # `query` finds the API at up's own --port, found through the record.
            deadline = time.monotonic() + 30
            found: list[dict[str, object]] = []
            while not found and time.monotonic() < deadline:
                query = await run_cli("query", word, "--json", env=env, cwd=elsewhere)
                assert query.returncode == 0, query
                found = [orjson.loads(line) for line in query.stdout.splitlines() if line]
                if not found:
                    await asyncio.sleep(0.2)
            assert [(e["source"], e["level"], e["message"]) for e in found] == [
                ("syslog", "ERROR", f"{word} is full")
            ]
        finally:
            stop_command(receiver, log)

        log = private_parent / "worker.log"
        worker = start_command(["worker"], env, elsewhere, log)
        try:
            wait_for_line(log, "worker_started", worker, 30)
        finally:
            stop_command(worker, log)
        assert "worker_stopped" in log.read_text()

        # The brief's `Database()`, in a program of the user's, without arguments.
        assert count_with_database(env, elsewhere) == 201  # the seed and the syslog message

        await run_and_stop(up, data_dir)
    finally:
        await up.kill_if_running()

    # Stopped: commands that need a running instance say so; the data is still found.
    alone = await run_cli("syslog", "--port", str(free_port()), env=env, cwd=elsewhere)
    assert alone.returncode == 2, alone
    assert f"no `logkeep up` is running for the data directory {data_dir}" in alone.output
    status = await run_cli("db", "status", env=env, cwd=elsewhere)
    assert status.returncode == 0, status
    assert f"applied {migration_files()[-1]}" in status.output, status
    users = await run_cli("users", "list", env=env, cwd=elsewhere)
    assert users.returncode == 0 and "analyst" in users.output, users
