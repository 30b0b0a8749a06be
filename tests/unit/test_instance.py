"""The data directory and the record of a running `logkeep up` (logkeep.instance)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from logkeep.config import Settings
from logkeep.instance import (
    RECORD_MODE,
    Instance,
    connect_host,
    default_data_dir,
    process_is_alive,
    record_path,
    remove_record,
    running_instance,
    with_running_instance,
    write_record,
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.upper().startswith("LOGKEEP_"):
            monkeypatch.delenv(name)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def live_logkeep() -> Iterator[int]:
    """A live process whose command line names logkeep, as a running `up`'s does."""
    process = subprocess.Popen(["logkeep-stand-in", "60"], executable="/bin/sleep")
    # Until the child has exec'd, /proc shows the forking Python's command line.
    cmdline = Path(f"/proc/{process.pid}/cmdline")
    deadline = time.monotonic() + 10
    while b"logkeep-stand-in" not in cmdline.read_bytes():
        assert time.monotonic() < deadline, "the stand-in never started"
        time.sleep(0.01)
    try:
        yield process.pid
    finally:
        process.kill()
        process.wait()


def instance(pid: int, data_dir: Path, **overrides: object) -> Instance:
    values: dict[str, object] = {
        "pid": pid,
        "data_dir": str(data_dir),
        "database_url": "postgresql://logkeep@/logkeep?host=/var/lib/logkeep/x/run&port=5432",
        "redis_url": f"unix://{data_dir}/redis/redis.sock?db=0",
        "api_url": "http://127.0.0.1:18555",
        "auth_required": False,
        "started_at": "2025-01-01T00:00:00+00:00",
    }
    values.update(overrides)
    return Instance(**values)  # type: ignore[arg-type]


def test_the_data_directory_is_per_user_not_per_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = tmp_path / "home" / ".local" / "share" / "logkeep"
    assert default_data_dir() == expected
    assert Settings(_env_file=None).resolved_data_dir == expected
    monkeypatch.chdir(tmp_path / "..")
    assert Settings(_env_file=None).resolved_data_dir == expected

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert Settings(_env_file=None).resolved_data_dir == tmp_path / "xdg" / "logkeep"
    monkeypatch.setenv("XDG_DATA_HOME", "relative/xdg")  # not absolute: ignored, as XDG says
    assert default_data_dir() == expected

    monkeypatch.setenv("LOGKEEP_DATA_DIR", str(tmp_path / "mine"))
    assert Settings(_env_file=None).resolved_data_dir == tmp_path / "mine"


def test_a_record_is_written_whole_and_private(tmp_path: Path, live_logkeep: int) -> None:
    recorded = instance(live_logkeep, tmp_path)
    path = write_record(tmp_path, recorded)
    assert path == record_path(tmp_path)
    assert path.stat().st_mode & 0o777 == RECORD_MODE
    assert running_instance(tmp_path) == recorded
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_a_record_of_a_dead_or_foreign_process_is_ignored(tmp_path: Path) -> None:
    dead = subprocess.Popen(["logkeep-stand-in", "0"], executable="/bin/sleep")
    dead.wait()
    write_record(tmp_path, instance(dead.pid, tmp_path))
    assert not process_is_alive(dead.pid)
    assert running_instance(tmp_path) is None

    # A live process that is not logkeep: the recorded pid was reused (after a reboot).
    other = subprocess.Popen(["sleep", "60"])
    try:
        write_record(tmp_path, instance(other.pid, tmp_path))
        assert not process_is_alive(other.pid)
        assert running_instance(tmp_path) is None
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize(
    "content", [b"", b"{", b"[]", b'{"pid": 1}', b"\x00\xff", b'{"pid": "x", "data_dir": 1}']
)
def test_an_unreadable_record_is_no_instance(tmp_path: Path, content: bytes) -> None:
    record_path(tmp_path).write_bytes(content)
    assert running_instance(tmp_path) is None


def test_remove_record_leaves_a_later_instance_alone(tmp_path: Path, live_logkeep: int) -> None:
    write_record(tmp_path, instance(live_logkeep, tmp_path))
    remove_record(tmp_path, live_logkeep + 1)
    assert record_path(tmp_path).exists()
    remove_record(tmp_path, live_logkeep)
    assert not record_path(tmp_path).exists()
    remove_record(tmp_path, live_logkeep)  # already gone: nothing to do


def test_unset_settings_come_from_the_running_instance_explicit_ones_win(
    tmp_path: Path, live_logkeep: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    monkeypatch.setenv("LOGKEEP_DATA_DIR", str(data_dir))
    before = Settings(_env_file=None)
    assert with_running_instance(before) is before  # nothing recorded
    assert before.resolved_api_url == "http://127.0.0.1:8000"

    recorded = instance(live_logkeep, data_dir)
    write_record(data_dir, recorded)
    found = with_running_instance(Settings(_env_file=None))
    assert (found.database_url, found.redis_url) == (recorded.database_url, recorded.redis_url)
    assert found.resolved_api_url == recorded.api_url

    monkeypatch.setenv("LOGKEEP_DATABASE_URL", "postgresql://db.internal/logkeep")
    mixed = with_running_instance(Settings(_env_file=None))
    assert mixed.database_url == "postgresql://db.internal/logkeep"
    assert mixed.redis_url == recorded.redis_url

    monkeypatch.setenv("LOGKEEP_API_URL", "http://logs.internal:9000")
    assert Settings(_env_file=None).resolved_api_url == "http://logs.internal:9000"
    monkeypatch.delenv("LOGKEEP_API_URL")
    monkeypatch.setenv("LOGKEEP_HTTP_PORT", "9001")  # an address of one's own: not the record's
    assert Settings(_env_file=None).resolved_api_url == "http://127.0.0.1:9001"


@pytest.mark.parametrize(
    ("bind", "client"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("0.0.0.0", "127.0.0.1"),  # noqa: S104 - a bind address under test
        ("::", "[::1]"),
        ("::1", "[::1]"),
        ("logs.internal", "logs.internal"),
    ],
)
def test_connect_host(bind: str, client: str) -> None:
    assert connect_host(bind) == client
