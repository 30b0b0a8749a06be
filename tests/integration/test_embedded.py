"""The embedded servers as a fresh machine runs them: the wheels' binaries, and, as root,
a data directory and a virtualenv in a tree the postgres account cannot enter."""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
import redis

from logkeep.embedded import (
    LINKED_FROM,
    EmbeddedError,
    EmbeddedPostgres,
    EmbeddedStack,
    RunAs,
    temporary_root,
)

IS_ROOT = os.geteuid() == 0
NOT_ROOT_REASON = "not root: PostgreSQL runs as this user, so nothing is relocated or copied"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A throwaway 0755 directory (it stands for /var/lib and /tmp), with the state
    directory that stands for /var/lib/logkeep made inside it by the code under test."""
    with temporary_root("lk-e-") as root:
        yield root


def private_dir(parent: Path, name: str) -> Path:
    """A directory as `mktemp -d` or /root makes it: its owner's only."""
    path = parent / name
    path.mkdir(mode=0o700)
    path.chmod(0o700)
    return path


def wheel_site_copy(into: Path) -> Path:
    """The pgserver wheel's installed files copied into `into`, laid out as a
    site-packages directory of a virtualenv there."""
    spec = importlib.util.find_spec("pgserver")
    assert spec is not None and spec.origin is not None, "the pgserver wheel is not installed"
    site = Path(spec.origin).parent.parent
    target = into / "site-packages"
    target.mkdir()
    shutil.copytree(site / "pgserver", target / "pgserver", symlinks=True)
    if (site / "pgserver.libs").is_dir():
        shutil.copytree(site / "pgserver.libs", target / "pgserver.libs", symlinks=True)
    return target


@pytest.mark.slow
async def test_wheel_binaries_in_a_private_tree_start_restart_and_keep_data(
    scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOGKEEP_EMBEDDED_BINARIES", "wheels")
    private = private_dir(scratch, "private")
    venv_site = wheel_site_copy(private_dir(private, "venv"))
    monkeypatch.syspath_prepend(str(venv_site))  # this "virtualenv" is where pgserver is found
    state = scratch / "state"
    data = private / "data"

    stack = EmbeddedStack(data, state_dir=state)
    assert stack.postgres.bin_dir.is_relative_to(venv_site)
    assert "site-packages" in str(stack.redis.server)
    stack.start()
    try:
        conn = await asyncpg.connect(stack.postgres.dsn())
        try:
            await conn.execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('yes')")
        finally:
            await conn.close()
        client = redis.Redis.from_url(stack.redis.url())
        client.set("kept", "yes")
        client.close()
        first_home, first_bin_dir = stack.postgres.home, stack.postgres.bin_dir
    finally:
        stack.stop()
    assert stack.postgres.process is None and stack.redis.process is None
    # The user's directories keep their modes.
    modes = (mode(private), mode(private / "venv"), mode(data))
    assert modes[:2] == (0o700, 0o700)

    again = EmbeddedStack(data, state_dir=state)
    again.start()
    try:
        assert not again.postgres.reused  # it had stopped: this is a real restart
        assert (again.postgres.home, again.postgres.bin_dir) == (first_home, first_bin_dir)
        conn = await asyncpg.connect(again.postgres.dsn())
        try:
            assert await conn.fetchval("SELECT v FROM kept") == "yes"
        finally:
            await conn.close()
        client = redis.Redis.from_url(again.redis.url())
        assert client.get("kept") == b"yes"  # AOF brought it back
        client.close()
    finally:
        again.stop()
    assert (mode(private), mode(private / "venv"), mode(data)) == modes

    if not IS_ROOT:
        assert not again.postgres.relocated and first_bin_dir.is_relative_to(venv_site)
        pytest.skip(NOT_ROOT_REASON)
    run_as = RunAs.for_postgres()
    assert run_as is not None
    assert run_as.blocker(data) == private  # why PostgreSQL's files had to go elsewhere
    # Its directory is the server account's own, under the state directory, linked from
    # the data directory, and named after it.
    assert again.postgres.relocated
    assert os.readlink(data / "postgres") == str(first_home)
    assert first_home.parent == state
    assert first_home.stat().st_uid == run_as.uid and mode(first_home) == 0o700
    assert (first_home / LINKED_FROM).read_text().strip() == str(data / "postgres")
    assert (first_home / "pgdata" / "PG_VERSION").is_file()
    # The wheel's binaries were copied once, root's and read-only, where the account can
    # run them; the virtualenv's own copy stayed where it was, unreachable.
    assert first_bin_dir.is_relative_to(state) and first_bin_dir.name == "bin"
    postgres = first_bin_dir / "postgres"
    assert postgres.stat().st_uid == 0 and mode(postgres) == 0o555
    assert run_as.blocker(postgres) is None
    assert run_as.blocker(venv_site / "pgserver" / "pginstall" / "bin" / "postgres") == private
    copies = [p.name for p in state.iterdir() if p.name.startswith("postgres-")]
    assert len(copies) == 1, copies
    assert mode(state) == 0o755 and state.stat().st_uid == 0


def test_two_data_directories_never_share_a_server_home(scratch: Path) -> None:
    if not IS_ROOT:
        pytest.skip(NOT_ROOT_REASON)
    run_as = RunAs.for_postgres()
    assert run_as is not None
    state = scratch / "state"
    private = private_dir(scratch, "private")
    first = EmbeddedPostgres(private / "one" / "postgres", state_dir=state, bin_dir=scratch)
    first.prepare_root(run_as)
    home = first.home
    assert first.relocated and home.parent == state

    # A data directory copied with its link would write into the same cluster: refused.
    copy = private / "copy"
    copy.mkdir()
    (copy / "postgres").symlink_to(home)
    with pytest.raises(EmbeddedError, match="cannot share"):
        EmbeddedPostgres(copy / "postgres", state_dir=state, bin_dir=scratch).prepare_root(run_as)
    (copy / "postgres").unlink()

    # A moved data directory keeps its cluster, which now belongs to the new place.
    (private / "one").rename(private / "moved")
    moved = EmbeddedPostgres(private / "moved" / "postgres", state_dir=state, bin_dir=scratch)
    moved.prepare_root(run_as)
    assert moved.home == home
    assert (home / LINKED_FROM).read_text().strip() == str(private / "moved" / "postgres")

    # A new data directory where the old one was gets a cluster of its own only once the
    # old one's is dealt with: nothing is reused or deleted silently.
    (private / "moved" / "postgres").unlink()
    gone = EmbeddedPostgres(private / "moved" / "postgres", state_dir=state, bin_dir=scratch)
    (private / "moved" / "postgres").symlink_to(state / "no-such-home")
    with pytest.raises(EmbeddedError, match="which does not exist"):
        gone.prepare_root(run_as)
    (private / "moved" / "postgres").unlink()
    with pytest.raises(EmbeddedError, match="earlier data directory"):
        EmbeddedPostgres(
            private / "one" / "postgres", state_dir=state, bin_dir=scratch
        ).prepare_root(run_as)


def test_a_cluster_its_account_cannot_reach_is_not_moved_or_opened_up(scratch: Path) -> None:
    """A cluster left inside a directory the account cannot enter (made before that
    directory was closed): nothing is moved or chmod-ed; the error says how to move it."""
    if not IS_ROOT:
        pytest.skip(NOT_ROOT_REASON)
    run_as = RunAs.for_postgres()
    assert run_as is not None
    private = private_dir(scratch, "private")
    root = private / "data" / "postgres"
    (root / "pgdata").mkdir(parents=True)
    (root / "pgdata" / "PG_VERSION").write_text("16\n")
    postgres = EmbeddedPostgres(root, state_dir=scratch / "state", bin_dir=scratch)
    with pytest.raises(EmbeddedError, match=r"mv .* && chown -R .* && ln -s "):
        postgres.prepare_root(run_as)
    assert mode(private) == 0o700 and not postgres.relocated
    assert (root / "pgdata" / "PG_VERSION").read_text() == "16\n"


def test_socket_path_too_long_is_refused(short_tmp: Path) -> None:
    deep = short_tmp / ("d" * 120)
    with pytest.raises(EmbeddedError, match="longer than"):
        EmbeddedStack(deep).start()


def test_relative_data_dir_works(short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(short_tmp)
    stack = EmbeddedStack(Path("rel"), state_dir=short_tmp / "state")
    stack.start()
    try:
        assert stack.postgres.socket_dir.is_absolute()
        assert "rel_db" not in stack.postgres.psql("SELECT datname FROM pg_database")
        stack.postgres.create_database("rel_db")
        assert "rel_db" in stack.postgres.psql("SELECT datname FROM pg_database")
        assert redis.Redis.from_url(stack.redis.url()).ping()
    finally:
        stack.stop()
