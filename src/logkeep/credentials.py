"""Where `logkeep login` keeps session tokens: one JSON file in the user's config
directory (`$XDG_CONFIG_HOME/logkeep/credentials.json` on Linux), readable by the user
alone, holding one token per API URL. Nothing else reads or writes it."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import platformdirs

FILE_NAME = "credentials.json"
FORMAT_VERSION = 1


class CredentialsError(RuntimeError):
    """The credentials file cannot be used; the message names it and says what to do."""


def config_dir() -> Path:
    """The user's logkeep config directory (honours XDG_CONFIG_HOME on Linux)."""
    return Path(platformdirs.user_config_dir("logkeep", appauthor=False))


def credentials_path() -> Path:
    return config_dir() / FILE_NAME


def api_key(api_url: str) -> str:
    """The API URL as tokens are filed under: scheme, host and port (always written),
    and the path without a trailing slash, so equivalent spellings find one token."""
    url = httpx.URL(api_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise CredentialsError(f"not an http(s) URL: {api_url!r}")
    port = url.port or (443 if url.scheme == "https" else 80)
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{url.scheme}://{host}:{port}{url.path.rstrip('/')}"


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            mode = os.fstat(handle.fileno()).st_mode
            raw = handle.read()
    except FileNotFoundError:
        return {"version": FORMAT_VERSION, "sessions": {}}
    except OSError as exc:
        raise CredentialsError(f"cannot read {path}: {exc.strerror}") from None
    if stat.S_IMODE(mode) & 0o077:
        raise CredentialsError(
            f"{path} may be read by other users (mode {stat.S_IMODE(mode):04o}); "
            f"run `chmod 600 {path}`, or remove it and `logkeep login` again"
        )
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CredentialsError(
            f"{path} is not valid JSON ({exc}); remove it and `logkeep login` again"
        ) from None
    sessions = document.get("sessions") if isinstance(document, dict) else None
    if not isinstance(sessions, dict):
        raise CredentialsError(
            f"{path} is not a logkeep credentials file; remove it and `logkeep login` again"
        )
    return {"version": document.get("version", FORMAT_VERSION), "sessions": sessions}


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """One writer at a time, so two logins at once cannot drop each other's token."""
    lock_path = directory / f".{FILE_NAME}.lock"
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write(path: Path, document: dict[str, Any]) -> None:
    """Replace the file in one step: a crash leaves the old file or the new, never half
    of one; mkstemp creates the new one 0600 from the start."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{FILE_NAME}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(orjson.dumps(document, option=orjson.OPT_INDENT_2))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _ensure_dir(directory: Path) -> None:
    """Create the directory 0700 (whatever the umask); an existing one is left as it is."""
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        directory.mkdir(mode=0o700)
    except FileExistsError:
        return
    except OSError as exc:
        raise CredentialsError(f"cannot create {directory}: {exc.strerror}") from None
    directory.chmod(0o700)


def load_token(api_url: str, path: Path | None = None) -> str | None:
    """The token stored for this API, or None."""
    entry = _read(path or credentials_path())["sessions"].get(api_key(api_url))
    token = entry.get("token") if isinstance(entry, dict) else None
    return token if isinstance(token, str) and token else None


def save_token(api_url: str, token: str, username: str, path: Path | None = None) -> Path:
    """Store the session token for this API (replacing an older one); the file's path."""
    path = path or credentials_path()
    _ensure_dir(path.parent)
    try:
        with _locked(path.parent):
            document = _read(path)
            document["version"] = FORMAT_VERSION
            document["sessions"][api_key(api_url)] = {
                "token": token,
                "username": username,
                "saved_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            _write(path, document)
    except OSError as exc:
        raise CredentialsError(f"cannot write {path}: {exc.strerror}") from None
    return path


def forget_token(api_url: str, path: Path | None = None) -> bool:
    """Remove this API's token; whether there was one. The file goes when it is empty."""
    path = path or credentials_path()
    if not path.exists():
        return False
    try:
        with _locked(path.parent):
            document = _read(path)
            if document["sessions"].pop(api_key(api_url), None) is None:
                return False
            if document["sessions"]:
                _write(path, document)
            else:
                path.unlink()
    except OSError as exc:
        raise CredentialsError(f"cannot write {path}: {exc.strerror}") from None
    return True
