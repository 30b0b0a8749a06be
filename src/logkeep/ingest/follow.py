"""Reading lines for `logkeep ingest`: a file from an offset (following it as it grows and
is rotated), or a stream such as standard input, without ever blocking longer than asked.

Rotation by rename (logrotate's default, `create`): the path names a new file while the
old one is still open here; the old one is read to its end (and for ROTATE_GRACE_S after
its last write, for writers that reopen late) before the new one is read from its start.
Rotation by copytruncate: the file shrinks or its first bytes change under the same
inode; the bytes not yet read are in the copy, found next to the file by its first bytes,
and read from there before the file is read again from its start.
"""

from __future__ import annotations

import os
import select
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import accumulate, repeat
from operator import add
from pathlib import Path
from typing import cast

from logkeep.ingest.checkpoint import (
    FINGERPRINT_BYTES,
    Checkpoint,
    FileIdentity,
    identify,
    matches,
    refreshed,
)
from logkeep.ingest.multiline import Record

READ_SIZE = 1024 * 1024
# Keep reading a rotated file until it has had no new bytes for this long.
ROTATE_GRACE_S = 1.0

TooLong = Callable[[int, int], None]  # (line number, bytes)
Notice = Callable[[str], None]
Wait = Callable[[float], object]  # sleeps up to the given seconds (returns early to stop)


class LineSplitter:
    """Bytes into lines, with each line's number and end offset. A line longer than
    `max_line_bytes` is skipped (reported with its size), never held in memory whole."""

    def __init__(self, max_line_bytes: int, on_too_long: TooLong, offset: int, line: int) -> None:
        self.max_line_bytes = max_line_bytes
        self.on_too_long = on_too_long
        self.offset = offset  # just past the last complete line
        self.line = line  # lines before `offset`
        self._partial = b""
        self._skipped = 0  # bytes of an over-long line already let go

    def split(self, data: bytes) -> list[Record]:
        pieces = data.split(b"\n")
        tail = pieces.pop()
        lines: list[Record] = []
        if pieces and (self._partial or self._skipped):
            # The line begun in an earlier chunk ends here.
            self._slowly([self._partial + pieces[0]], lines, self._skipped)
            pieces = pieces[1:]
            self._partial, self._skipped = b"", 0
            if not pieces:
                self._partial = tail
                tail = b""
        if pieces:
            if b"\r" in data or max(map(len, pieces)) > self.max_line_bytes:
                self._slowly(pieces, lines, 0)
            else:
                self._quickly(pieces, lines)
            self._partial, self._skipped = tail, 0
        else:
            self._partial += tail
        if len(self._partial) > self.max_line_bytes:
            self._skipped += len(self._partial)
            self._partial = b""
        return lines

    def _quickly(self, pieces: list[bytes], lines: list[Record]) -> None:
        """Lines without CR and none too long: numbered and measured in C (zip, map,
        accumulate), about three times faster than a Python loop per line."""
        first = self.line + 1
        numbers = range(first, first + len(pieces))
        ends = list(accumulate(map(add, map(len, pieces), repeat(1)), initial=self.offset))
        fields = zip(pieces, numbers, numbers, ends[1:], strict=True)
        records = map(tuple.__new__, repeat(Record), fields)
        lines += cast("Iterator[Record]", records)
        self.line += len(pieces)
        self.offset = ends[-1]

    def _slowly(self, pieces: list[bytes], lines: list[Record], skipped: int) -> None:
        """Lines one by one: CRLF endings, lines too long (reported, not kept), and a
        first line `skipped` bytes of which were already let go."""
        for piece in pieces:
            self.line += 1
            self.offset += skipped + len(piece) + 1
            text = piece[:-1] if piece.endswith(b"\r") else piece
            if skipped or len(text) > self.max_line_bytes:
                self.on_too_long(self.line, skipped + len(text))
            else:
                lines.append(Record(text, self.line, self.line, self.offset))
            skipped = 0

    @property
    def pending_bytes(self) -> int:
        return len(self._partial) + self._skipped

    def finish(self) -> list[Record]:
        """The last line when the input ends without a newline."""
        if not (self._partial or self._skipped):
            return []
        partial, skipped = self._partial, self._skipped
        self._partial, self._skipped = b"", 0
        self.line += 1
        self.offset += skipped + len(partial)
        if skipped:
            self.on_too_long(self.line, skipped + len(partial))
            return []
        text = partial[:-1] if partial.endswith(b"\r") else partial
        return [Record(text, self.line, self.line, self.offset)]


class StreamFeed:
    """Lines of a pipe or terminal (standard input) as they come."""

    rotation_ready = False

    def __init__(self, fd: int, max_line_bytes: int, on_too_long: TooLong) -> None:
        self._fd = fd
        self._splitter = LineSplitter(max_line_bytes, on_too_long, 0, 0)
        self.ended = False

    def read(self, timeout: float) -> list[Record]:
        ready, _, _ = select.select([self._fd], [], [], max(timeout, 0.0))
        if not ready:
            return []
        data = os.read(self._fd, READ_SIZE)
        if not data:
            self.ended = True
            return self._splitter.finish()
        return self._splitter.split(data)

    def switch(self) -> bool:
        return False


class FileFeed:
    """A file's lines from an offset. Without `follow` it ends at the end of the file;
    with it, it waits for more and follows rotation: `rotation_ready` says the file in
    hand is finished, and `switch()` moves to the file now at `path`, from its start."""

    def __init__(
        self,
        path: Path,
        fd: int,
        identity: FileIdentity,
        offset: int,
        line: int,
        *,
        follow: bool,
        max_line_bytes: int,
        on_too_long: TooLong,
        notice: Notice,
        wait: Wait,
        finished: bool = False,
    ) -> None:
        self.path = path
        self.identity = identity
        self.follow = follow
        self.ended = False
        self.rotation_ready = False
        self._fd = fd
        self._position = offset  # next byte to read
        self._splitter = LineSplitter(max_line_bytes, on_too_long, offset, line)
        self._notice = notice
        self._wait = wait
        # Set once the file in hand is known to be done (rotated, or a copy being read):
        # read it to its end, then switch.
        self._finishing_since: float | None = time.monotonic() if finished else None
        self._last_data = time.monotonic()

    def read(self, timeout: float) -> list[Record]:
        if self.rotation_ready:  # finished, and no file at `path` to switch to yet
            self._wait(timeout)
            return []
        data = os.pread(self._fd, READ_SIZE, self._position)
        now = time.monotonic()
        if data and self.follow and self._finishing_since is None and not self._same_file():
            # Rewritten from the start since the last read: those bytes are not its
            # continuation.
            self._truncated(now)
            data = b""
        if data:
            self._position += len(data)
            self._last_data = now
            if self.identity.fingerprint_len < FINGERPRINT_BYTES and self._finishing_since is None:
                # Created empty (logrotate's `create`): fingerprint what it holds now.
                self.identity = refreshed(self.identity, self._fd)
            return self._splitter.split(data)
        if self.follow and self._finishing_since is None:
            self._look_for_rotation(now)
        if self.rotation_ready:
            return self._splitter.finish()
        if self._finishing_since is not None:
            quiet_since = max(self._finishing_since, self._last_data)
            if not self.follow or now - quiet_since >= ROTATE_GRACE_S:
                self.rotation_ready = True
                return self._splitter.finish()
        elif not self.follow:
            self.ended = True
            return self._splitter.finish()
        self._wait(timeout)
        return []

    def _same_file(self) -> bool:
        return os.fstat(self._fd).st_size >= self._position and matches(self.identity, self._fd)

    def _look_for_rotation(self, now: float) -> None:
        try:
            st = os.stat(self.path)
        except OSError:
            return  # moved away, its successor not there (or not readable) yet: keep reading
        if not self.identity.same_inode(st):
            self._finishing_since = now  # renamed; the new file waits for this one's end
        elif not self._same_file():
            self._truncated(now)

    def _truncated(self, now: float) -> None:
        """Truncated or rewritten in place (copytruncate): what was not read is in the
        copy; read it from there, then the file from its start."""
        copy = find_copy(self.path, self.identity, self._position)
        if copy is None:
            self._notice(
                f"{self.path} was truncated at byte {self._position} and no copy of it was "
                "found next to it; reading it again from its start"
            )
            self.rotation_ready = True
            return
        os.close(self._fd)
        self._fd = copy
        self._finishing_since = now

    def switch(self) -> bool:
        """Read the file now at `path` from its start; False if there is none yet."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False  # not there, or not readable yet (logrotate sets its mode after)
        os.close(self._fd)
        self._fd = fd
        self.identity = identify(fd)
        self._position = 0
        self._splitter = LineSplitter(
            self._splitter.max_line_bytes, self._splitter.on_too_long, 0, 0
        )
        self._finishing_since = None
        self.rotation_ready = False
        self._last_data = time.monotonic()
        return True

    def close(self) -> None:
        os.close(self._fd)


def _siblings(path: Path) -> list[tuple[Path, os.stat_result]]:
    """Regular files next to `path` whose names start with its name (app.log.1,
    app.log-20240101, ...), newest first."""
    found = []
    try:
        entries = list(path.parent.iterdir())
    except OSError:
        return []
    for entry in entries:
        if entry.name == path.name or not entry.name.startswith(path.name):
            continue
        try:
            st = entry.stat()
        except OSError:
            continue
        if os.path.isfile(entry):
            found.append((entry, st))
    found.sort(key=lambda item: item[1].st_mtime_ns, reverse=True)
    return found


def _open_if(candidate: Path, test: Callable[[int], bool]) -> int | None:
    try:
        fd = os.open(candidate, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    if test(fd):
        return fd
    os.close(fd)
    return None


def find_copy(path: Path, identity: FileIdentity, size: int) -> int | None:
    """An open copy of the file `identity` names (same first bytes, at least `size` long,
    another inode): where copytruncate put it."""

    def same_start(fd: int) -> bool:
        st = os.fstat(fd)
        if identity.same_inode(st) or st.st_size < size:
            return False
        return matches(
            FileIdentity(st.st_dev, st.st_ino, identity.fingerprint, identity.fingerprint_len),
            fd,
        )

    for candidate, _st in _siblings(path):
        fd = _open_if(candidate, same_start)
        if fd is not None:
            return fd
    return None


def find_renamed(path: Path, identity: FileIdentity) -> int | None:
    """The file `identity` names, renamed next to `path` (rotation by rename)."""
    for candidate, st in _siblings(path):
        if identity.same_inode(st):
            fd = _open_if(candidate, lambda fd: matches(identity, fd))
            if fd is not None:
                return fd
    return None


@dataclass(frozen=True)
class Start:
    """Where reading begins, and what the checkpoint says about it."""

    fd: int
    identity: FileIdentity
    offset: int
    line: int
    in_flight: tuple[int, int] | None
    finished: bool  # the file in hand was rotated away: read it to its end, then switch


def resume(path: Path, fd: int, checkpoint: Checkpoint | None, notice: Notice) -> Start:
    """Where to start reading `path` (open as `fd`) given its checkpoint: the same file
    at its offset; or, when it was rotated or truncated since, the rest of the old file
    first (found next to it); or a new file from its start."""
    current = identify(fd)
    if checkpoint is None:
        return Start(fd, current, 0, 0, None, finished=False)
    cp = checkpoint
    if matches(cp.file, fd) and os.fstat(fd).st_size >= cp.offset:
        return Start(fd, cp.file, cp.offset, cp.line, cp.in_flight, finished=False)
    if cp.file.same_inode(os.fstat(fd)):
        old = find_copy(path, cp.file, cp.offset)
        gone = f"{path} was truncated since the checkpoint"
    else:
        old = find_renamed(path, cp.file)
        gone = f"{path} was replaced since the checkpoint"
    if old is None:
        notice(
            f"{gone}, and the file it checkpointed was not found next to it: what was "
            "not sent of that file is lost; sending the new file from its start"
        )
        return Start(fd, current, 0, 0, None, finished=False)
    os.close(fd)
    return Start(old, cp.file, cp.offset, cp.line, cp.in_flight, finished=True)
