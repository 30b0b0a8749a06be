"""Lines into entries: one line each, or lines joined so that a stack trace is one entry.

Pure: lines in, records out; the caller decides when an entry has waited long enough
(`flush`). `auto` knows Python tracebacks (chained ones too) and Java stack traces; a
regular expression instead says which lines start an entry (every other line continues
the one before).
"""

from __future__ import annotations

import re
from typing import NamedTuple

# Lines that continue an entry whatever came before them.
_CONTINUATION = re.compile(
    rb"^(?:[ \t]"  # indented: frames, source lines, Java's "\tat ...", "... N more"
    rb"|Traceback \(most recent call last\):"
    rb"|During handling of the above exception, another exception occurred:"
    rb"|The above exception was the direct cause of the following exception:"
    rb"|Caused by: |Suppressed: )"
)
# A Java exception line: a dotted class name ending in Exception/Error/Throwable.
_JAVA_EXCEPTION = re.compile(
    rb"^(?:[A-Za-z_$][\w$]*\.)+[A-Za-z_$][\w$]*(?:Exception|Error|Throwable)(?::|$)"
)
# The last line of a Python traceback, right after its indented frames: `Name` or `Name: text`.
_PYTHON_EXCEPTION = re.compile(rb"^[A-Za-z_][\w.]*(?::|$)")
_TRACEBACK_HEADER = b"Traceback (most recent call last):"


class Record(NamedTuple):
    """One line as read (first_line == last_line), or an entry of lines joined with "\n".
    A named tuple: a million of them are made per million lines read."""

    data: bytes  # without line endings
    first_line: int  # 1-based, in its file or stream
    last_line: int
    end: int  # byte offset just past its last line and newline


class SingleLines:
    """Every non-blank line is an entry."""

    pending = False

    def feed_many(self, lines: list[Record]) -> list[Record]:
        return [line for line in lines if line.data and not line.data.isspace()]

    def flush(self) -> list[Record]:
        return []


class Joiner:
    """Lines joined into entries: a line that starts an entry closes the one before.

    `start` is a regular expression (searched in each line) for lines that start an
    entry, or None for `auto`. An entry never grows past `max_bytes`: the line that would
    take it over starts the next one (nothing is dropped). Blank lines inside an entry are
    kept when a continuation line follows them, dropped otherwise.
    """

    def __init__(self, start: re.Pattern[bytes] | None, max_bytes: int) -> None:
        self._start = start
        self._max_bytes = max_bytes
        self._parts: list[bytes] = []
        self._size = 0
        self._first = 0
        self._last = 0
        self._end = 0
        self._blanks: list[Record] = []
        self._in_python_traceback = False
        self._previous_indented = False

    @property
    def pending(self) -> bool:
        return bool(self._parts)

    def _continues(self, data: bytes) -> bool:
        if self._start is not None:
            return self._start.search(data) is None
        if _CONTINUATION.match(data) or _JAVA_EXCEPTION.match(data):
            return True
        return (
            self._in_python_traceback
            and self._previous_indented
            and _PYTHON_EXCEPTION.match(data) is not None
        )

    def feed_many(self, lines: list[Record]) -> list[Record]:
        out: list[Record] = []
        for line in lines:
            out += self.feed(line)
        return out

    def feed(self, line: Record) -> list[Record]:
        if not line.data.strip():
            if self._parts:
                self._blanks.append(line)
            return []
        out: list[Record] = []
        joined = bool(self._parts) and self._continues(line.data)
        extra = sum(len(b.data) + 1 for b in self._blanks) + len(line.data) + 1
        if joined and self._size + extra > self._max_bytes:
            joined = False  # too big to join: this line starts the next entry
        if joined:
            for blank in self._blanks:
                self._parts.append(blank.data)
            self._parts.append(line.data)
            self._size += extra
        else:
            out = self.flush()
            self._parts = [line.data]
            self._size = len(line.data)
            self._first = line.first_line
            self._in_python_traceback = False
        self._blanks = []
        self._last = line.last_line
        self._end = line.end
        if line.data.startswith(_TRACEBACK_HEADER):
            self._in_python_traceback = True
        self._previous_indented = line.data[:1] in (b" ", b"\t")
        return out

    def flush(self) -> list[Record]:
        """The entry in hand, finished (the caller saw no continuation come in time)."""
        if not self._parts:
            return []
        record = Record(b"\n".join(self._parts), self._first, self._last, self._end)
        self._parts = []
        self._blanks = []
        self._size = 0
        self._in_python_traceback = False
        self._previous_indented = False
        return [record]


def make_joiner(multiline: str | None, max_bytes: int) -> SingleLines | Joiner:
    """`None`: one entry per line; `auto`: tracebacks and stack traces joined; anything
    else: a regular expression for the lines that start an entry (ValueError if bad)."""
    if multiline is None:
        return SingleLines()
    if multiline == "auto":
        return Joiner(None, max_bytes)
    try:
        start = re.compile(multiline.encode())
    except re.error as exc:
        raise ValueError(
            f"--multiline: {multiline!r} is not a regular expression ({exc})"
        ) from None
    return Joiner(start, max_bytes)
