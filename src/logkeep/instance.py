"""Where logkeep keeps its data, and how every command finds the running `logkeep up`.

The data directory is one place per user, whatever the current directory:
`$XDG_DATA_HOME/logkeep` (`~/.local/share/logkeep`), unless LOGKEEP_DATA_DIR says
otherwise. `logkeep up` records what it runs in `instance.json` there (store URLs, API
URL, whether authentication is on, its pid), and removes the record when it stops. A
command with a setting left unset takes the recorded value while that `up` lives;
explicit LOGKEEP_* settings always win, and a record whose process is gone is ignored.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from logkeep.config import Settings

RECORD_NAME = "instance.json"
# The record holds store URLs, which may carry passwords: owner only.
RECORD_MODE = 0o600


def default_data_dir() -> Path:
    """`$XDG_DATA_HOME/logkeep`, else `~/.local/share/logkeep` (the XDG base directory
    rules: a relative XDG_DATA_HOME is ignored)."""
    xdg = os.environ.get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "logkeep"


@dataclass(frozen=True)
class Instance:
    """A running `logkeep up`, as it recorded itself."""

    pid: int
    data_dir: str
    database_url: str
    redis_url: str
    api_url: str
    auth_required: bool
    started_at: str  # RFC 3339, UTC

    @classmethod
    def from_record(cls, raw: bytes) -> Instance | None:
        """The record's instance, or None when it is not one (partly written, edited)."""
        try:
            data: Any = orjson.loads(raw)
            return cls(**{name: data[name] for name in cls.__dataclass_fields__})
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return None


def record_path(data_dir: Path) -> Path:
    return data_dir / RECORD_NAME


def process_is_alive(pid: int) -> bool:
    """True while `pid` is a running logkeep (a reused pid of another program is not)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, and belongs to someone else
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc to ask (macOS): the pid is all we know
    return b"logkeep" in cmdline


def running_instance(data_dir: Path) -> Instance | None:
    """The `logkeep up` recorded in `data_dir`, or None when none is running."""
    try:
        raw = record_path(data_dir).read_bytes()
    except OSError:
        return None
    instance = Instance.from_record(raw)
    if instance is None or not process_is_alive(instance.pid):
        return None
    return instance


def write_record(data_dir: Path, instance: Instance) -> Path:
    """Record `instance` atomically (a reader sees the old record or the new, whole)."""
    path = record_path(data_dir)
    fd, temporary = tempfile.mkstemp(prefix=".instance-", dir=data_dir)
    try:
        os.fchmod(fd, RECORD_MODE)
        with os.fdopen(fd, "wb") as file:
            file.write(orjson.dumps(asdict(instance), option=orjson.OPT_INDENT_2))
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return path


def remove_record(data_dir: Path, pid: int) -> None:
    """Remove the record if it is still `pid`'s (not one a later `up` wrote)."""
    path = record_path(data_dir)
    try:
        recorded = Instance.from_record(path.read_bytes())
    except OSError:
        return
    if recorded is None or recorded.pid == pid:
        path.unlink(missing_ok=True)


def with_running_instance(settings: Settings) -> Settings:
    """`settings` with each unset store URL taken from the running `logkeep up` of its
    data directory, if there is one; explicit settings are left as they are."""
    if settings.database_url and settings.redis_url:
        return settings
    instance = running_instance(settings.resolved_data_dir)
    if instance is None:
        return settings
    return settings.model_copy(
        update={
            "database_url": settings.database_url or instance.database_url,
            "redis_url": settings.redis_url or instance.redis_url,
        }
    )


def connect_host(bind_host: str) -> str:
    """The address a client on this machine uses to reach a server bound to `bind_host`."""
    if bind_host in ("", "0.0.0.0"):  # noqa: S104 - names the wildcard, binds nothing
        return "127.0.0.1"
    if bind_host == "::":
        return "[::1]"
    return f"[{bind_host}]" if ":" in bind_host else bind_host
