"""The per-environment configuration files of deploy/, in real servers.

PostgreSQL and Redis start as compose.yaml starts them: the profile's postgresql.conf and
pg_hba.conf, the initialisation script of deploy/postgres/initdb/, the profile's
redis.conf behind deploy/redis/entrypoint.sh (ACL users). Only paths and ports differ
(command-line overrides, which win over the files). Then the profile's `migrate` command
from compose.yaml runs, and logkeep ingests (durable) and searches. A file that does not
load fails here. Last, the brief's "survives restarts": kill -9 PostgreSQL, then Redis,
under steady durable ingest, with logkeep left running.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
import redis
import yaml

from logkeep.api.local import free_port
from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.db.partitions import maintain
from logkeep.db.repositories import SourceRepository
from logkeep.embedded import RunAs, find_postgres_bin_dir, find_redis_server
from logkeep.ingest.worker import Worker
from tests.conftest import make_settings, running_app
from tests.integration.test_cli import LOGKEEP, clean_env

# Every test here starts servers and `logkeep` processes.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROFILES = ("dev", "test", "prod")
# Test values, shaped as deploy/make-env.sh makes them (the scripts refuse short ones).
PASSWORDS = {
    "POSTGRES_PASSWORD": "pg-superuser-test-pw-0001",
    "LOGKEEP_DB_PASSWORD": "pg-logkeep-test-pw-0002",
    "LOGKEEP_APP_DB_PASSWORD": "pg-logkeep-app-test-pw-0007",
    "LOGKEEP_REDIS_PASSWORD": "redis-logkeep-test-pw-0003",
    "REDIS_ADMIN_PASSWORD": "redis-admin-test-pw-0004",
    "LOGKEEP_SECRET_KEY": "secret-key-test-value-0005",
    "LOGKEEP_ADMIN_PASSWORD": "admin-test-password-0006",
}
NDJSON = {"Content-Type": "application/x-ndjson"}


def wait_for(
    what: str, answers: Any, process: subprocess.Popen[bytes], log: Path, deadline_s: float = 30
) -> None:
    """Poll until `answers()`; a server that exits (a configuration it refuses) fails with
    the end of its log."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            pytest.fail(f"{what} exited with {process.returncode}:\n{tail}")
        if answers():
            return
        time.sleep(0.05)
    pytest.fail(f"{what} did not answer within {deadline_s}s; see {log}")


@dataclass
class ConfiguredPostgres:
    """PostgreSQL with deploy/postgres/<profile>.conf and pg_hba.conf, initialised like the
    official image does: superuser `postgres` with a password, then the initdb scripts."""

    root: Path
    profile: str
    conf: Path | None = None  # default: deploy/postgres/<profile>.conf
    port: int = field(default_factory=free_port)
    bin_dir: Path = field(default_factory=find_postgres_bin_dir)
    run_as: RunAs | None = field(default_factory=RunAs.for_postgres)
    process: subprocess.Popen[bytes] | None = None

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def log(self) -> Path:
        return self.root / "postgres.log"

    def url(self, role: str = "logkeep_app") -> str:
        """The app's role by default; `logkeep`, the schema's owner, for migrations."""
        key = "LOGKEEP_APP_DB_PASSWORD" if role == "logkeep_app" else "LOGKEEP_DB_PASSWORD"
        return f"postgresql://{role}:{PASSWORDS[key]}@127.0.0.1:{self.port}/logkeep"

    def _owned(self, path: Path, mode: int) -> Path:
        """Give `path` to the account the server runs as."""
        path.chmod(mode)
        if self.run_as is not None:
            os.chown(path, self.run_as.uid, self.run_as.gid)
        return path

    def _as_server(self) -> dict[str, Any]:
        if self.run_as is None:
            return {}
        return {"user": self.run_as.uid, "group": self.run_as.gid, "extra_groups": []}

    def initialise(self) -> None:
        self.root.mkdir(mode=0o755)
        # Byte for byte what compose mounts, where the server's account can read it.
        conf = self.conf or DEPLOY / "postgres" / f"{self.profile}.conf"
        for source, name in (
            (conf, "postgresql.conf"),
            (DEPLOY / "postgres" / "pg_hba.conf", "pg_hba.conf"),
        ):
            shutil.copyfile(source, self.root / name)
            (self.root / name).chmod(0o644)
        (self.root / "run").mkdir()
        self._owned(self.root / "run", 0o700)
        self.pgdata.mkdir()
        self._owned(self.pgdata, 0o700)
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORDS["POSTGRES_PASSWORD"] + "\n")
        self._owned(pwfile, 0o600)
        subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(self.pgdata), "--username=postgres",
             f"--pwfile={pwfile}", "--auth=scram-sha-256", "--encoding=UTF8", "--locale=C",
             "--no-sync"],
            check=True, capture_output=True, **self._as_server(),
        )  # fmt: skip
        self.start()
        # As the image runs /docker-entrypoint-initdb.d: psql as the superuser, PGPASSWORD set.
        env = clean_env(
            PATH=f"{self.bin_dir}:{os.environ['PATH']}",
            PGHOST="127.0.0.1",
            PGPORT=str(self.port),
            PGPASSWORD=PASSWORDS["POSTGRES_PASSWORD"],
            POSTGRES_USER="postgres",
            POSTGRES_DB="postgres",
            LOGKEEP_DB_PASSWORD=PASSWORDS["LOGKEEP_DB_PASSWORD"],
            LOGKEEP_APP_DB_PASSWORD=PASSWORDS["LOGKEEP_APP_DB_PASSWORD"],
        )
        for script in sorted((DEPLOY / "postgres" / "initdb").glob("*.sh")):
            result = subprocess.run(["sh", str(script)], env=env, capture_output=True, check=False)
            assert result.returncode == 0, result.stderr.decode()

    def start(self) -> None:
        argv = [
            str(self.bin_dir / "postgres"),
            "-D", str(self.pgdata),
            "-c", f"config_file={self.root / 'postgresql.conf'}",
            "-c", f"hba_file={self.root / 'pg_hba.conf'}",
            "-c", f"port={self.port}",
            "-c", "listen_addresses=127.0.0.1",
            "-c", f"unix_socket_directories={self.root / 'run'}",
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: kill() takes every backend
                **self._as_server(),
            )
        # Over TCP, as compose's healthcheck asks.
        isready = [str(self.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        wait_for(
            f"PostgreSQL with {self.profile}.conf",
            lambda: subprocess.run(isready, check=False).returncode == 0,
            self.process,
            self.log,
        )

    def kill(self) -> None:
        """kill -9 of the whole server, as when its container is killed."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)  # fast shutdown, as the image's STOPSIGNAL
            self.process.wait(timeout=30)
        self.process = None


@dataclass
class ConfiguredRedis:
    """redis-server with deploy/redis/<profile>.conf, started by deploy/redis/entrypoint.sh."""

    root: Path
    profile: str
    conf: Path | None = None  # default: deploy/redis/<profile>.conf
    # Also listen on this loopback TCP port (for clients that cannot reach the socket,
    # such as a container running as another user); 0: the Unix socket only.
    tcp_port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.root / "redis.sock"

    @property
    def log(self) -> Path:
        return self.root / "redis.log"

    def url(self) -> str:
        return f"unix://logkeep:{PASSWORDS['LOGKEEP_REDIS_PASSWORD']}@{self.socket}?db=0"

    def tcp_url(self) -> str:
        assert self.tcp_port, "started without a TCP port"
        return f"redis://logkeep:{PASSWORDS['LOGKEEP_REDIS_PASSWORD']}@127.0.0.1:{self.tcp_port}/0"

    def admin(self) -> redis.Redis:
        return redis.Redis(
            unix_socket_path=str(self.socket),
            username="admin",
            password=PASSWORDS["REDIS_ADMIN_PASSWORD"],
            socket_timeout=2,
        )

    def _answers(self) -> bool:
        client = self.admin()
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def start(self) -> None:
        if not self.root.exists():
            self.root.mkdir(mode=0o700)
            conf = self.conf or DEPLOY / "redis" / f"{self.profile}.conf"
            shutil.copyfile(conf, self.root / "redis.conf")
            (self.root / "data").mkdir()
        acl = self.root / "users.acl"
        env = clean_env(
            REDIS_ACLFILE=str(acl),
            LOGKEEP_REDIS_PASSWORD=PASSWORDS["LOGKEEP_REDIS_PASSWORD"],
            REDIS_ADMIN_PASSWORD=PASSWORDS["REDIS_ADMIN_PASSWORD"],
        )
        argv = [
            "sh", str(DEPLOY / "redis" / "entrypoint.sh"),
            str(find_redis_server()), str(self.root / "redis.conf"),
            "--port", str(self.tcp_port),
            "--bind", "127.0.0.1",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.root / "data"),
            "--aclfile", str(acl),
        ]  # fmt: skip
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        wait_for(f"Redis with {self.profile}.conf", self._answers, self.process, self.log)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)  # the entrypoint exec'd: this is Redis
        self.process.wait()
        self.process = None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=30)
        self.process = None


@pytest.fixture
def servers(short_tmp: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """Start (PostgreSQL, Redis) for a profile, stopped afterwards."""
    started: list[ConfiguredPostgres | ConfiguredRedis] = []

    def start(profile: str) -> tuple[ConfiguredPostgres, ConfiguredRedis]:
        postgres = ConfiguredPostgres(short_tmp / f"pg-{profile}", profile)
        started.append(postgres)
        postgres.initialise()
        store = ConfiguredRedis(short_tmp / f"redis-{profile}", profile)
        started.append(store)
        store.start()
        return postgres, store

    try:
        yield start
    finally:
        for server in reversed(started):
            server.stop()


def logkeep_env(
    profile: str, postgres: ConfiguredPostgres, store: ConfiguredRedis, *, role: str = "logkeep"
) -> dict[str, str]:
    """What compose.yaml gives logkeep's containers (`migrate`'s role by default), with
    this test's addresses."""
    return clean_env(
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        LOGKEEP_ENV=profile,
        LOGKEEP_DATABASE_URL=postgres.url(role),
        LOGKEEP_REDIS_URL=store.url(),
        LOGKEEP_SECRET_KEY=PASSWORDS["LOGKEEP_SECRET_KEY"],
        LOGKEEP_ADMIN_PASSWORD=PASSWORDS["LOGKEEP_ADMIN_PASSWORD"],
        LOGKEEP_SEED_ROWS="500",
        LOGKEEP_LOG_LEVEL="warning",
    )


def migrate_command(profile: str) -> list[str]:
    """The profile's one-shot `migrate` service, exactly as compose.yaml has it."""
    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    entrypoint: list[str] = services[f"migrate-{profile}"]["entrypoint"]
    return entrypoint


async def run(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


def app_settings(profile: str, postgres: ConfiguredPostgres, store: ConfiguredRedis) -> Settings:
    return make_settings(
        postgres.url(),
        store.url(),
        env=profile,
        redis_key_prefix="logkeep:",  # the app's ACL user may touch logkeep:* only
        secret_key=PASSWORDS["LOGKEEP_SECRET_KEY"],
        admin_password=PASSWORDS["LOGKEEP_ADMIN_PASSWORD"],
        worker_batch_wait_ms=20,
        auth_required=False,  # these tests are about the stores, not about callers
    )


async def durable_ingest_and_search(settings: Settings, source: str) -> None:
    tag = uuid.uuid4().hex
    body = b"\n".join(
        orjson.dumps({"source": source, "message": f"{tag} smoke {i}", "level": "error"})
        for i in range(3)
    )
    stop = asyncio.Event()
    async with Database(settings) as worker_db, running_app(settings) as api:
        worker = asyncio.create_task(Worker(worker_db, settings, name="smoke").run(stop))
        try:
            response = await api.post("/api/v1/ingest?mode=durable", content=body, headers=NDJSON)
            assert response.status_code == 200, response.text
            assert response.json()["accepted"] == 3
            found = await api.get(
                "/api/v1/logs", params={"source": source, "contains": tag, "since": "1h"}
            )
            assert found.status_code == 200, found.text
            assert sorted(i["message"] for i in found.json()["items"]) == [
                f"{tag} smoke {i}" for i in range(3)
            ]
        finally:
            stop.set()
            await worker


async def server_settings(conn: asyncpg.Connection, names: list[str]) -> dict[str, str]:
    rows = await conn.fetch("SELECT name, setting FROM pg_settings WHERE name = ANY($1)", names)
    return {row["name"]: row["setting"] for row in rows}


# What each profile's files must have changed, read back from the running servers.
EXPECTED_PG = {
    "dev": {"log_min_duration_statement": "0", "shared_buffers": "8192"},
    "test": {"fsync": "off", "synchronous_commit": "off", "wal_level": "minimal"},
    "prod": {
        "default_toast_compression": "lz4",
        "password_encryption": "scram-sha-256",
        "shared_preload_libraries": "pg_stat_statements",
        "synchronous_commit": "on",
        "wal_compression": "lz4",
        "max_connections": "200",
    },
}
EXPECTED_REDIS = {
    "dev": {"appendonly": "no", "save": "", "maxmemory-policy": "noeviction"},
    "test": {"appendonly": "no", "save": "", "maxmemory-policy": "noeviction"},
    "prod": {"appendonly": "yes", "appendfsync": "everysec", "maxmemory-policy": "noeviction"},
}


@pytest.mark.parametrize("profile", PROFILES)
async def test_profile_configuration_serves_logkeep(
    profile: str, servers: Any, short_tmp: Path
) -> None:
    postgres, store = servers(profile)

    code, output = await run(
        migrate_command(profile), logkeep_env(profile, postgres, store), short_tmp
    )
    assert code == 0, output

    # The servers run with the profile's settings, and logkeep's accounts are not admins.
    conn = await asyncpg.connect(postgres.url())  # scram-sha-256 over TCP, as in compose
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE app_may_not (x int)")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("TRUNCATE log_entries")
        # Read as the owner: some settings are visible only to pg_monitor, which the app
        # role (rows only) does not have.
        owner = await asyncpg.connect(postgres.url("logkeep"))
        try:
            running = await server_settings(owner, list(EXPECTED_PG[profile]))
            statements = await owner.fetchval(
                "SELECT count(*) FROM pg_stat_statements" if profile == "prod" else "SELECT 1"
            )
        finally:
            await owner.close()
        assert running == EXPECTED_PG[profile]
        assert statements > 0
        assert (
            await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            is False
        )
        # The API's partition maintenance runs as this role: DDL through the owner's
        # SECURITY DEFINER functions, one day further ahead than `migrate` went.
        report = await maintain(conn, retention_days=30, days_ahead=4, max_entry_age_days=30)
        assert len(report.created) == 1
        sources = {r["name"] for r in await conn.fetch("SELECT name FROM log_sources")}
        users = {r["username"] for r in await conn.fetch("SELECT username FROM users")}
        entries = await conn.fetchval("SELECT count(*) FROM log_entries")
    finally:
        await conn.close()
    admin = store.admin()
    try:
        for key, value in EXPECTED_REDIS[profile].items():
            assert admin.config_get(key)[key] == value, key
        assert admin.acl_getuser("default")["enabled"] is False
    finally:
        admin.close()
    app_user = redis.Redis.from_url(store.url())
    try:
        with pytest.raises(redis.exceptions.NoPermissionError):
            app_user.flushall()
    finally:
        app_user.close()

    # Each profile's seed: realistic rows, the deterministic set, or the first admin only.
    if profile == "prod":
        assert (sources, users, entries) == (set(), {"admin"}, 0)
    else:
        assert {"nginx_access", "app_errors", "db_slow_queries"} <= sources
        assert users == {"admin", "analyst", "viewer"}
        assert entries == {"dev": 500, "test": 60}[profile]

    settings = app_settings(profile, postgres, store)
    if profile == "prod":
        # Sources are the operator's to create in prod.
        async with Database(settings) as db:
            await SourceRepository(db.pool).create(
                "app_errors", source_type="application", format_type="json"
            )
    await durable_ingest_and_search(settings, "app_errors")


async def test_a_full_redis_refuses_ingest_and_evicts_nothing(
    servers: Any, short_tmp: Path
) -> None:
    """prod's noeviction: at maxmemory, ingest is 503 (retried by shippers), the stream and
    keys with a TTL (sessions, dedup) stay, and nothing is half-written."""
    postgres, store = servers("prod")
    code, output = await run(
        migrate_command("prod"), logkeep_env("prod", postgres, store), short_tmp
    )
    assert code == 0, output
    settings = app_settings("prod", postgres, store)
    async with Database(settings) as db:
        await SourceRepository(db.pool).create("app", source_type="application", format_type="json")
    event = orjson.dumps({"source": "app", "message": "before", "timestamp": time.time()})
    admin = store.admin()
    stream = "logkeep:{ingest}:stream"
    try:
        async with running_app(settings) as api:
            assert (
                await api.post("/api/v1/ingest", content=event, headers=NDJSON)
            ).status_code == 202
            admin.set("logkeep:session:probe", b"x", ex=3600)
            keys_before = set(admin.scan_iter("logkeep:*"))
            length = admin.xlen(stream)
            admin.config_set("maxmemory", int(admin.info("memory")["used_memory"]) // 2)
            full = await api.post(
                "/api/v1/ingest",
                content=orjson.dumps(
                    {"source": "app", "message": "during", "timestamp": time.time()}
                ),
                headers=NDJSON,
            )
            assert full.status_code == 503, full.text
            assert full.headers["Retry-After"]
            assert admin.xlen(stream) == length
            assert keys_before <= set(admin.scan_iter("logkeep:*"))
            admin.config_set("maxmemory", "1gb")
            again = await api.post(
                "/api/v1/ingest",
                content=orjson.dumps(
                    {"source": "app", "message": "after", "timestamp": time.time()}
                ),
                headers=NDJSON,
            )
            assert again.status_code == 202, again.text
            assert admin.xlen(stream) == length + 1
    finally:
        admin.close()


@pytest.mark.parametrize("store", ["postgres", "redis"])
def test_a_configuration_that_does_not_load_fails(store: str, short_tmp: Path) -> None:
    """The harness above notices a file the server refuses (a misspelt setting)."""
    bad = short_tmp / "bad.conf"
    server: ConfiguredPostgres | ConfiguredRedis
    if store == "postgres":
        bad.write_text("shared_bufers = 1GB\n")
        server = ConfiguredPostgres(short_tmp / "pg", "prod", conf=bad)
    else:
        bad.write_text("maxmemory-polcy volatile-lru\n")
        server = ConfiguredRedis(short_tmp / "redis", "prod", conf=bad)
    try:
        with pytest.raises(pytest.fail.Exception, match="exited"):
            server.initialise() if isinstance(server, ConfiguredPostgres) else server.start()
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------
# Surviving restarts


@dataclass
class Sender:
    """Steady durable ingest from a few concurrent clients; remembers what was acknowledged
    (answered 200: committed) and how many requests were not."""

    api_url: str
    tag: str = field(default_factory=lambda: uuid.uuid4().hex)
    acknowledged: set[str] = field(default_factory=set)
    refused: int = 0
    sent: int = 0

    async def run(self, client_no: int, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=self.api_url, timeout=15) as http:
            request = 0
            while not stop.is_set():
                messages = [f"{self.tag} {client_no}-{request}-{i}" for i in range(20)]
                request += 1
                body = b"\n".join(
                    orjson.dumps({"source": "app_errors", "message": m}) for m in messages
                )
                self.sent += 1
                try:
                    response = await http.post(
                        "/api/v1/ingest?mode=durable", content=body, headers=NDJSON
                    )
                except httpx.HTTPError:
                    response = None
                if response is not None and response.status_code == 200:
                    assert response.json()["accepted"] == len(messages)
                    self.acknowledged.update(messages)
                else:
                    # Not acknowledged: these events may or may not be stored (at most once).
                    assert response is None or response.status_code == 503, response.text
                    self.refused += 1
                    await asyncio.sleep(0.1)

    async def wait_for_more(self, count: int, deadline_s: float = 30) -> None:
        """Until `count` more events are acknowledged: ingest works (again)."""
        target = len(self.acknowledged) + count
        deadline = time.monotonic() + deadline_s
        while len(self.acknowledged) < target:
            assert time.monotonic() < deadline, f"ingest did not resume ({self.refused} refused)"
            await asyncio.sleep(0.05)


async def wait_ready(api_url: str, ready: bool, deadline_s: float = 30) -> None:
    """Until /readyz answers 200 (ready) or anything else (not ready)."""
    deadline = time.monotonic() + deadline_s
    async with httpx.AsyncClient(base_url=api_url, timeout=3) as http:
        while True:
            try:
                status = (await http.get("/readyz")).status_code
            except httpx.HTTPError:
                status = 0
            if (status == 200) == ready:
                return
            assert time.monotonic() < deadline, f"/readyz still {status}"
            await asyncio.sleep(0.1)


async def start_logkeep(
    command: list[str], env: dict[str, str], log: Path
) -> asyncio.subprocess.Process:
    with log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            str(LOGKEEP), *command, env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
        )  # fmt: skip


@pytest.fixture
async def processes() -> AsyncIterator[list[asyncio.subprocess.Process]]:
    """logkeep processes of a test, stopped with SIGTERM afterwards."""
    started: list[asyncio.subprocess.Process] = []
    try:
        yield started
    finally:
        for proc in started:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(proc.wait(), 30)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def test_acknowledged_events_survive_kill_9_of_postgres_then_redis(
    servers: Any, short_tmp: Path, processes: list[asyncio.subprocess.Process]
) -> None:
    postgres, store = servers("prod")
    port = free_port()
    env = logkeep_env("prod", postgres, store, role="logkeep_app") | {
        "LOGKEEP_HTTP_PORT": str(port),
        # Fail durable requests fast while a store is away, and hand a batch whose
        # acknowledgement was lost to a worker soon (the default waits 30 s for both).
        "LOGKEEP_INGEST_DURABLE_TIMEOUT_S": "3",
        "LOGKEEP_WORKER_CLAIM_IDLE_MS": "1000",
        "LOGKEEP_WORKER_BATCH_WAIT_MS": "20",
        "LOGKEEP_MAINTENANCE_INTERVAL_S": "0",
        # This test is about the stores under prod configuration, not about callers: the
        # processes run as the test environment, where credentials may be turned off
        # (prod refuses that).
        "LOGKEEP_ENV": "test",
        "LOGKEEP_AUTH_REQUIRED": "false",
    }
    owner = env | {"LOGKEEP_DATABASE_URL": postgres.url("logkeep")}
    code, output = await run([str(LOGKEEP), "db", "migrate"], owner, short_tmp)
    assert code == 0, output
    code, output = await run([str(LOGKEEP), "db", "roles"], owner, short_tmp)
    assert code == 0, output  # as compose's migrate service does
    code, output = await run([str(LOGKEEP), "db", "seed", "--env", "test"], owner, short_tmp)
    assert code == 0, output  # the test sources, in a prod-configured stack
    log = short_tmp / "logkeep.log"
    processes.append(await start_logkeep(["serve"], env, log))
    processes.append(await start_logkeep(["worker"], env, log))
    api_url = f"http://127.0.0.1:{port}"
    await wait_ready(api_url, True)

    sender = Sender(api_url)
    stop = asyncio.Event()
    clients = [asyncio.create_task(sender.run(n, stop)) for n in range(2)]
    try:
        await sender.wait_for_more(200)
        for server in (postgres, store):
            server.kill()
            await wait_ready(api_url, False)  # logkeep noticed
            await asyncio.sleep(1)  # ingest goes on failing meanwhile
            server.start()  # the same data directory (and, for Redis, its AOF)
            await wait_ready(api_url, True)
            await sender.wait_for_more(200)
    finally:
        stop.set()
        await asyncio.gather(*clients)
    # Nothing was restarted but the stores.
    assert [proc.returncode for proc in processes] == [None, None], log.read_text()[-3000:]

    # Let the worker commit what was buffered but not acknowledged, then count.
    admin = store.admin()
    try:
        deadline = time.monotonic() + 30
        while admin.xlen("logkeep:{ingest}:stream"):
            assert time.monotonic() < deadline, "the worker did not drain the stream"
            await asyncio.sleep(0.1)
    finally:
        admin.close()
    conn = await asyncpg.connect(postgres.url())
    try:
        rows = await conn.fetch(
            "SELECT message, count(*) AS copies FROM log_entries WHERE message LIKE $1 "
            "GROUP BY message",
            f"{sender.tag} %",
        )
    finally:
        await conn.close()
    copies = {row["message"]: row["copies"] for row in rows}
    assert [m for m, n in copies.items() if n > 1] == []  # nothing twice
    assert sender.acknowledged - set(copies) == set()  # every acknowledged event is there
    assert len(sender.acknowledged) >= 600
