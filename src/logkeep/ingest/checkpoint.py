"""Where `logkeep ingest FILE` got to: a file's identity and the offset logkeep acknowledged.

A file is known by its device and inode plus a fingerprint of its first bytes, so a new
file that reuses a deleted one's inode is not mistaken for it, and a file rewritten from
the start (copytruncate) is noticed. A checkpoint is written atomically (temporary file,
fsync, rename) and only says what logkeep acknowledged; the batch being sent is recorded
too (`in_flight`) before it is sent, so a restart resends exactly that range under the
same Idempotency-Key and logkeep answers it as a replay if the first attempt was stored.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import orjson

FINGERPRINT_BYTES = 1024
FORMAT_VERSION = 1
# An acknowledged batch is written with the next batch's record, or after this long.
COMMIT_DELAY_S = 1.0


class CheckpointError(RuntimeError):
    """A checkpoint file exists but cannot be used; the message names it and the way out."""


@dataclass(frozen=True)
class FileIdentity:
    dev: int
    ino: int
    fingerprint: str  # sha256 of the first `fingerprint_len` bytes
    fingerprint_len: int

    def same_inode(self, st: os.stat_result) -> bool:
        return (st.st_dev, st.st_ino) == (self.dev, self.ino)


def _prefix_hash(fd: int, length: int) -> tuple[str, int]:
    data = os.pread(fd, length, 0)
    return hashlib.sha256(data).hexdigest(), len(data)


def identify(fd: int) -> FileIdentity:
    """The identity of the open file `fd`, fingerprinted over its first bytes as they are now."""
    st = os.fstat(fd)
    fingerprint, length = _prefix_hash(fd, FINGERPRINT_BYTES)
    return FileIdentity(st.st_dev, st.st_ino, fingerprint, length)


def matches(identity: FileIdentity, fd: int) -> bool:
    """Whether `fd` is the file `identity` names: same inode, and the same first bytes."""
    if not identity.same_inode(os.fstat(fd)):
        return False
    return _prefix_hash(fd, identity.fingerprint_len) == (
        identity.fingerprint,
        identity.fingerprint_len,
    )


def refreshed(identity: FileIdentity, fd: int) -> FileIdentity:
    """`identity` with its fingerprint widened to the file's first FINGERPRINT_BYTES
    once the file has grown past a short fingerprint (checked to still match first)."""
    if identity.fingerprint_len >= FINGERPRINT_BYTES or not matches(identity, fd):
        return identity
    fingerprint, length = _prefix_hash(fd, FINGERPRINT_BYTES)
    return replace(identity, fingerprint=fingerprint, fingerprint_len=length)


@dataclass(frozen=True)
class Checkpoint:
    """What logkeep acknowledged of one file, sent as one source."""

    path: str  # the file followed (for people reading the checkpoint)
    source: str
    file: FileIdentity
    offset: int  # bytes of the file acknowledged
    line: int  # lines before `offset`
    generation: int = 0  # bumped by --from-start, so a deliberate resend gets new batch keys
    in_flight: tuple[int, int] | None = None  # (start, end) of a batch sent, not yet answered

    def to_json(self) -> bytes:
        body: dict[str, Any] = {"version": FORMAT_VERSION, **asdict(self)}
        return orjson.dumps(body, option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, data: bytes) -> Checkpoint:
        body = orjson.loads(data)
        if body.get("version") != FORMAT_VERSION:
            raise ValueError(f"version {body.get('version')!r}, expected {FORMAT_VERSION}")
        flight = body.get("in_flight")
        return cls(
            path=str(body["path"]),
            source=str(body["source"]),
            file=FileIdentity(**body["file"]),
            offset=int(body["offset"]),
            line=int(body["line"]),
            generation=int(body.get("generation", 0)),
            in_flight=(int(flight[0]), int(flight[1])) if flight else None,
        )


def state_home() -> Path:
    """$XDG_STATE_HOME, or ~/.local/state (the XDG Base Directory default)."""
    value = os.environ.get("XDG_STATE_HOME", "")
    # The specification says a relative path is invalid and must be ignored.
    return Path(value) if os.path.isabs(value) else Path.home() / ".local" / "state"


def default_path(file: Path, source: str) -> Path:
    """The checkpoint of `file` sent as `source`: one per (file, source) pair, under
    $XDG_STATE_HOME/logkeep/checkpoints/, named after the file for people to find."""
    real = os.path.realpath(file)
    digest = hashlib.sha256(f"{source}\0{real}".encode("utf-8", "surrogateescape")).hexdigest()
    name = re.sub(r"[^A-Za-z0-9._-]", "_", os.path.basename(real))[:64] or "file"
    return state_home() / "logkeep" / "checkpoints" / f"{name}-{digest[:16]}.json"


class CheckpointStore:
    """One checkpoint file, read once and replaced atomically on every save."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> Checkpoint | None:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise CheckpointError(
                f"cannot read the checkpoint {self.path}: {exc.strerror}"
            ) from None
        try:
            return Checkpoint.from_json(data)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise CheckpointError(
                f"the checkpoint {self.path} is not usable ({exc}); delete it, or pass "
                "--from-start to send the whole file again"
            ) from None

    def save(self, checkpoint: Checkpoint) -> None:
        """Write `checkpoint` so that a crash at any moment leaves the old one or the new
        one, whole: a temporary file in the same directory, fsync, rename, fsync the
        directory."""
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = directory / f".{self.path.name}.{os.getpid()}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, checkpoint.to_json())
            os.fsync(fd)
        finally:
            os.close(fd)
        try:
            os.replace(temporary, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class Keeper:
    """The checkpoint of one run. A batch is recorded as in flight (one atomic write)
    before it is sent; logkeep's answer moves the offset past it in memory, written with
    the next batch's record or within COMMIT_DELAY_S, whichever comes first. That is one
    fsync per batch, not two, and loses nothing: a run that dies before writing an
    answer resends that batch under the same key, which logkeep answers as a replay
    (for 24 hours)."""

    def __init__(self, store: CheckpointStore, checkpoint: Checkpoint) -> None:
        self.store = store
        self.checkpoint = checkpoint
        self._unwritten_since: float | None = None

    def batch_key(self, start: int, end: int, body: bytes, params: str) -> str:
        """The Idempotency-Key of a batch: the same bytes of the same file at the same
        place, sent the same way, get the same key in every run (so a resend after a
        crash is answered as a replay); a --from-start resend gets new ones."""
        cp = self.checkpoint
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{self.store.path}|{cp.generation}|{cp.file.dev}:{cp.file.ino}|".encode())
        h.update(f"{cp.file.fingerprint}|{start}|{end}|{params}|".encode())
        h.update(body)
        return h.hexdigest()

    def begin(self, start: int, end: int) -> None:
        """Before sending the bytes from `start` to `end` (and with it, what was answered)."""
        self._save(replace(self.checkpoint, in_flight=(start, end)))

    def commit(self, end: int, line: int, identity: FileIdentity) -> None:
        """Logkeep answered for the bytes up to `end`; `identity` is the file's as now
        known (its fingerprint widens while the file is young)."""
        self.checkpoint = replace(
            self.checkpoint, file=identity, offset=end, line=line, in_flight=None
        )
        if self._unwritten_since is None:
            self._unwritten_since = time.monotonic()

    def write_due(self) -> None:
        """Write an answer that has waited COMMIT_DELAY_S for the next batch."""
        since = self._unwritten_since
        if since is not None and time.monotonic() - since >= COMMIT_DELAY_S:
            self.write()

    def write(self) -> None:
        """Write what logkeep answered, if not yet written."""
        if self._unwritten_since is not None:
            self._save(self.checkpoint)

    def switch(self, identity: FileIdentity) -> None:
        """The file in hand is done: the one now at the path, from its start."""
        self._save(replace(self.checkpoint, file=identity, offset=0, line=0, in_flight=None))

    def _save(self, checkpoint: Checkpoint) -> None:
        self.store.save(checkpoint)
        self.checkpoint = checkpoint
        self._unwritten_since = None
