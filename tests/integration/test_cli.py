"""The real `logkeep` console script, run as subprocesses against real servers."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path

import asyncpg
import httpx
import pytest

import logkeep
from logkeep.api.local import free_port
from logkeep.embedded import LINKED_FROM, EmbeddedStack
from tests.conftest import Stores

# Every test here starts `logkeep` processes (the marker's definition of slow).
pytestmark = pytest.mark.slow

LOGKEEP = Path(sys.executable).parent / "logkeep"
SEED_SOURCES = {"nginx_access", "app_errors", "db_slow_queries"}


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        """stdout and stderr with whitespace collapsed (rich wraps long lines)."""
        return " ".join(f"{self.stdout}\n{self.stderr}".split())

    def __str__(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


@functools.cache
def isolated_data_home() -> Path:
    """An empty XDG data directory for this test run, removed at exit: commands run by
    the tests never find the machine user's data or running `logkeep up`."""
    path = Path(tempfile.mkdtemp(prefix="lk-xdg-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def clean_env(**values: str) -> dict[str, str]:
    """This process's environment without any LOGKEEP_* setting and with a data home of
    its own (see isolated_data_home), plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGKEEP_")}
    env["XDG_DATA_HOME"] = str(isolated_data_home())
    env.update(values)
    return env


async def run_cli(*args: str, env: dict[str, str], cwd: Path, deadline_s: float = 90) -> Result:
    proc = await asyncio.create_subprocess_exec(
        str(LOGKEEP),
        *args,
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), deadline_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))


def migration_files() -> list[str]:
    return sorted(
        entry.name
        for entry in resources.files("logkeep.db.migrations").iterdir()
        if entry.name.endswith(".sql")
    )


def store_env(database_url: str, stores: Stores, prefix: str) -> dict[str, str]:
    return clean_env(
        LOGKEEP_DATABASE_URL=database_url,
        LOGKEEP_REDIS_URL=stores.redis_url,
        LOGKEEP_REDIS_KEY_PREFIX=prefix,
    )


# ---------------------------------------------------------------------------------------
# Small commands


async def test_version_prints_the_version(workdir: Path) -> None:
    result = await run_cli("version", env=clean_env(), cwd=workdir)
    assert result.returncode == 0, result
    assert result.stdout.strip() == logkeep.__version__ == metadata.version("logkeep")


@pytest.mark.parametrize(
    ("extra", "named", "not_named"),
    [
        ({}, ["LOGKEEP_SECRET_KEY", "LOGKEEP_ADMIN_PASSWORD"], []),
        (
            {"LOGKEEP_SECRET_KEY": "changeme", "LOGKEEP_ADMIN_PASSWORD": "a-long-admin-password"},
            ["LOGKEEP_SECRET_KEY"],
            ["LOGKEEP_ADMIN_PASSWORD"],
        ),
        (
            {"LOGKEEP_SECRET_KEY": "Zq7-k9", "LOGKEEP_ADMIN_PASSWORD": "a-long-admin-password"},
            ["LOGKEEP_SECRET_KEY"],
            ["LOGKEEP_ADMIN_PASSWORD"],
        ),
    ],
    ids=["no-secrets", "placeholder-secret", "short-secret"],
)
async def test_serve_in_prod_without_secrets_exits_2_naming_them(
    workdir: Path,
    stores: Stores,
    migrated_database_url: str,
    extra: dict[str, str],
    named: list[str],
    not_named: list[str],
) -> None:
    env = clean_env(
        LOGKEEP_ENV="prod",
        LOGKEEP_DATABASE_URL=migrated_database_url,
        LOGKEEP_REDIS_URL=stores.redis_url,
        LOGKEEP_HTTP_PORT=str(free_port()),
        **extra,
    )
    result = await run_cli("serve", env=env, cwd=workdir, deadline_s=30)
    assert result.returncode == 2, result
    for name in named:
        assert name in result.output, result
    for name in not_named:
        assert name not in result.output, result
    # No secret value is echoed back.
    for value in extra.values():
        assert value not in result.output, result


# ---------------------------------------------------------------------------------------
# db migrate / seed / maintain


async def test_two_concurrent_migrate_processes_apply_each_migration_once(
    workdir: Path, stores: Stores, empty_database_url: str, redis_prefix: str
) -> None:
    env = store_env(empty_database_url, stores, redis_prefix)
    first, second = await asyncio.gather(
        run_cli("db", "migrate", env=env, cwd=workdir),
        run_cli("db", "migrate", env=env, cwd=workdir),
    )
    assert first.returncode == 0, first
    assert second.returncode == 0, second

    files = migration_files()
    assert files, "no migration files ship with the package"
    conn = await asyncpg.connect(empty_database_url)
    try:
        rows = await conn.fetch("SELECT version, name FROM schema_migrations ORDER BY version")
        assert await conn.fetchval("SELECT to_regclass('log_entries') IS NOT NULL")
    finally:
        await conn.close()
    assert [f"{r['version']:04d}_{r['name']}.sql" for r in rows] == files
    # Each migration was applied by exactly one of the two processes.
    for name in files:
        assert (first.output + " " + second.output).count(f"applied {name}") == 1, (first, second)


async def test_migrate_again_reports_up_to_date_and_changes_nothing(
    workdir: Path, stores: Stores, migrated_database_url: str, redis_prefix: str
) -> None:
    conn = await asyncpg.connect(migrated_database_url)
    try:
        before = await conn.fetch("SELECT * FROM schema_migrations ORDER BY version")
        result = await run_cli(
            "db", "migrate", env=store_env(migrated_database_url, stores, redis_prefix), cwd=workdir
        )
        after = await conn.fetch("SELECT * FROM schema_migrations ORDER BY version")
    finally:
        await conn.close()
    assert result.returncode == 0, result
    assert "schema is up to date" in result.output, result
    assert "applied" not in result.output, result
    assert [dict(r) for r in after] == [dict(r) for r in before]
    assert len(after) == len(migration_files())


async def test_status_lists_pending_then_applied_migrations_with_when(
    workdir: Path, stores: Stores, empty_database_url: str, redis_prefix: str
) -> None:
    env = store_env(empty_database_url, stores, redis_prefix)
    files = migration_files()
    before = await run_cli("db", "status", env=env, cwd=workdir)
    assert before.returncode == 0, before
    assert [line.split() for line in before.stdout.splitlines() if line.startswith("pending")] == [
        ["pending", name] for name in files
    ]
    assert "applied" not in before.stdout, before
    assert f"current migration: 0000; {len(files)} pending" in before.output, before

    migrated = await run_cli("db", "migrate", env=env, cwd=workdir)
    assert migrated.returncode == 0, migrated
    after = await run_cli("db", "status", env=env, cwd=workdir)
    assert after.returncode == 0, after
    conn = await asyncpg.connect(empty_database_url)
    try:
        when = {
            f"{r['version']:04d}_{r['name']}.sql": f"{r['applied_at']:%Y-%m-%d %H:%M:%S} UTC"
            for r in await conn.fetch("SELECT version, name, applied_at FROM schema_migrations")
        }
    finally:
        await conn.close()
    applied = [line.split(maxsplit=2) for line in after.stdout.splitlines()]
    assert [row for row in applied if row[0] == "applied"] == [
        ["applied", name, when[name]] for name in files
    ]
    assert "pending" not in after.stdout, after
    assert f"current migration: {files[-1][:4]}; up to date" in after.output, after


async def test_seed_dev_twice_loads_entries_once(
    workdir: Path, stores: Stores, migrated_database_url: str, redis_prefix: str
) -> None:
    env = store_env(migrated_database_url, stores, redis_prefix)
    first = await run_cli("db", "seed", "--env", "dev", "--rows", "500", env=env, cwd=workdir)
    assert first.returncode == 0, first
    assert "loaded 500 log entries" in first.output, first
    second = await run_cli("db", "seed", "--env", "dev", "--rows", "500", env=env, cwd=workdir)
    assert second.returncode == 0, second
    assert "already loaded" in second.output, second
    assert "users created: none" in second.output, second

    conn = await asyncpg.connect(migrated_database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM log_entries") == 500
        assert await conn.fetchval("SELECT coalesce(sum(count), 0) FROM log_metrics") == 500
        names = {r["name"] for r in await conn.fetch("SELECT name FROM log_sources")}
        users = {r["username"] for r in await conn.fetch("SELECT username FROM users")}
        runs = await conn.fetch("SELECT name, rows FROM seed_runs")
    finally:
        await conn.close()
    assert names == SEED_SOURCES
    assert users == {"admin", "analyst", "viewer"}
    assert [dict(r) for r in runs] == [{"name": "dev-entries", "rows": 500}]


async def test_maintain_twice_changes_nothing_the_second_time(
    workdir: Path, stores: Stores, migrated_database_url: str, redis_prefix: str
) -> None:
    env = store_env(migrated_database_url, stores, redis_prefix)
    list_partitions = (
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
        " WHERE i.inhparent = 'log_entries'::regclass ORDER BY 1"
    )
    first = await run_cli("db", "maintain", env=env, cwd=workdir)
    assert first.returncode == 0, first
    assert "partitions: created" in first.output, first
    assert "created 0," not in first.output, first  # a fresh schema has no daily partitions
    conn = await asyncpg.connect(migrated_database_url)
    try:
        after_first = [r[0] for r in await conn.fetch(list_partitions)]
        second = await run_cli("db", "maintain", env=env, cwd=workdir)
        after_second = [r[0] for r in await conn.fetch(list_partitions)]
    finally:
        await conn.close()
    assert second.returncode == 0, second
    assert "created 0, dropped 0" in second.output, second
    assert after_second == after_first
    assert len(after_first) > 1


# ---------------------------------------------------------------------------------------
# `logkeep up`: embedded servers, seed, serve, stop, start again


def pids_under(path: Path) -> list[int]:
    """Processes whose command line names `path` (the embedded servers do)."""
    result = subprocess.run(["pgrep", "-f", str(path)], capture_output=True, check=False)
    return [int(pid) for pid in result.stdout.split()]


def server_dirs(data_dir: Path) -> list[Path]:
    """The data directory and, when PostgreSQL's files were put elsewhere (as root, for
    a data directory its account cannot enter), the directory its link points at (when
    that directory says it belongs to this link)."""
    link = data_dir / "postgres"
    if not link.is_symlink():
        return [data_dir]
    home = link.resolve()
    with contextlib.suppress(OSError):
        if (home / LINKED_FROM).read_text().strip() == str(link):
            return [data_dir, home]
    return [data_dir]


def server_pids(data_dir: Path) -> list[int]:
    return sorted({pid for path in server_dirs(data_dir) for pid in pids_under(path)})


def remove_data_dir(data_dir: Path) -> None:
    """Kill what still runs in `data_dir` (started by the test that made it), and remove
    it with the directory its PostgreSQL link points at."""
    for pid in server_pids(data_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for path in reversed(server_dirs(data_dir)):
        shutil.rmtree(path, ignore_errors=True)


def process_exists(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


@pytest.fixture
def up_root() -> Iterator[Path]:
    root = Path(tempfile.mkdtemp(prefix="lku-", dir="/tmp"))
    root.chmod(0o755)
    yield root
    # Anything still running under it was started by this test's `logkeep up`.
    remove_data_dir(root / "data")
    shutil.rmtree(root, ignore_errors=True)


class Up:
    """One `logkeep up` process, with output in files (no pipe to fill up)."""

    def __init__(
        self,
        root: Path,
        name: str,
        env: dict[str, str],
        args: list[str],
        *,
        command: list[str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.root = root
        self.name = name
        self.env = env
        self.args = args
        self.command = command or [str(LOGKEEP), "up"]
        self.cwd = cwd or root
        self.port = free_port()
        self.stdout_path = root / f"{name}.stdout"
        self.stderr_path = root / f"{name}.stderr"
        self.proc: asyncio.subprocess.Process | None = None
        self.base_url = f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        texts = [p.read_text(errors="replace") for p in (self.stdout_path, self.stderr_path)]
        return "--- stdout\n{}\n--- stderr\n{}".format(*texts)

    async def start_and_wait_ready(self, deadline_s: float = 180) -> float:
        """Launch; poll /readyz until 200; the seconds from launch to ready."""
        started = time.monotonic()
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                *self.command,
                "--port",
                str(self.port),
                *self.args,
                env=self.env,
                cwd=self.cwd,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        deadline = started + deadline_s
        last = "no answer yet"
        async with httpx.AsyncClient(base_url=self.base_url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.returncode is not None:
                    pytest.fail(
                        f"`logkeep up` exited with {self.proc.returncode} before it was ready\n"
                        + self.output()
                    )
                try:
                    response = await client.get("/readyz")
                except httpx.TransportError as exc:
                    last = f"{type(exc).__name__}: {exc}"
                else:
                    if response.status_code == 200:
                        return time.monotonic() - started
                    last = f"{response.status_code}: {response.text}"
                await asyncio.sleep(0.1)
        pytest.fail(f"/readyz not 200 within {deadline_s:.0f}s ({last})\n" + self.output())

    async def terminate(self, deadline_s: float = 60, sig: signal.Signals = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        try:
            return await asyncio.wait_for(self.proc.wait(), deadline_s)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            pytest.fail(f"`logkeep up` did not exit within {deadline_s:.0f}s of {sig.name}")

    async def kill_if_running(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def database_facts(dsn: str) -> tuple[int, int, list[tuple[str, int]]]:
    """Events stored (both tiers: `up` compacts closed slices of the seed as it runs), the
    newest id (the open slices stay hot), and the seed runs."""
    conn = await asyncpg.connect(dsn)
    try:
        count: int = await conn.fetchval(
            "SELECT (SELECT count(*) FROM log_entries)"
            " + (SELECT coalesce(sum(events), 0) FROM log_chunks)"
        )
        max_id: int = await conn.fetchval("SELECT coalesce(max(id), 0) FROM log_entries")
        runs = [(r["name"], r["rows"]) for r in await conn.fetch("SELECT * FROM seed_runs")]
    finally:
        await conn.close()
    return count, max_id, runs


async def recent_ids(base_url: str) -> list[int]:
    async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as client:
        response = await client.get("/api/v1/logs/recent", params={"limit": 1000})
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    assert {i["source"] for i in items} <= SEED_SOURCES
    return [i["id"] for i in items]


def assert_stopped_cleanly(up: Up, returncode: int, data_dir: Path) -> None:
    # A normal exit (0, or 128+signal from `logkeep`'s own handler), not death by signal.
    assert returncode in (0, 128 + signal.SIGTERM, 128 + signal.SIGINT), (
        f"exit {returncode}\n{up.output()}"
    )
    leftovers = server_pids(data_dir)
    assert leftovers == [], f"processes left under {data_dir}: {leftovers}\n{up.output()}"
    assert not (data_dir / "instance.json").exists(), "the instance record outlived `up`"


@pytest.mark.timeout(480)
async def test_up_starts_seeds_serves_stops_and_restarts_with_the_same_data(
    up_root: Path,
) -> None:
    data_dir = up_root / "data"
    env = clean_env(LOGKEEP_DATA_DIR=str(data_dir))

    cold = Up(up_root, "cold", env, ["--seed-rows", "2000"])
    try:
        cold_s = await cold.start_and_wait_ready()
        dsn = EmbeddedStack(data_dir).postgres.dsn()  # after the start: it may be relocated
        running = server_pids(data_dir)
        # The postmaster and redis-server both name the data directory on their command line.
        assert len(running) >= 2, f"embedded servers not found by pgrep: {running}"
        count, max_id, runs = await database_facts(dsn)
        assert count == 2000
        assert runs == [("dev-entries", 2000)]
        ids = await recent_ids(cold.base_url)
        assert len(ids) == 1000
        assert max(ids) == max_id
        assert "loaded 2000 log entries" in " ".join(cold.output().split())
        returncode = await cold.terminate()
    finally:
        await cold.kill_if_running()
    assert_stopped_cleanly(cold, returncode, data_dir)
    for pid in running:
        assert not process_exists(pid), f"process {pid} outlived `logkeep up`"

    warm = Up(up_root, "warm", env, ["--seed-rows", "2000"])
    try:
        warm_s = await warm.start_and_wait_ready()
        assert await database_facts(dsn) == (count, max_id, runs)  # no re-seed, nothing lost
        assert await recent_ids(warm.base_url) == ids
        output = " ".join(warm.output().split())
        assert "log entries were already loaded" in output, warm.output()
        assert "already running" not in output, warm.output()  # the first run stopped them
        returncode = await warm.terminate()
    finally:
        await warm.kill_if_running()
    assert_stopped_cleanly(warm, returncode, data_dir)

    print(f"\nlogkeep up: launch to /readyz 200: cold {cold_s:.1f}s, warm {warm_s:.1f}s")
