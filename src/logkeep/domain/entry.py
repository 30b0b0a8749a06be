"""Log entries and their validation: pure, no I/O."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from logkeep.domain import exactjson


class Level(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"
    FATAL = "FATAL"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]

    @classmethod
    def parse(cls, value: object) -> Level:
        """Accept a level name in any case, plus the common aliases shippers send."""
        if isinstance(value, Level):
            return value
        level = _SPELLINGS.get(value) if isinstance(value, str) else None
        if level is not None:  # as levels are usually spelled: no strip, no upper
            return level
        if not isinstance(value, str):
            raise InvalidLogEntry("level", f"must be a string, got {type(value).__name__}")
        name = value.strip().upper()
        level = _ALIASES.get(name)
        if level is None:
            try:
                level = cls(name)
            except ValueError:
                allowed = ", ".join(m.value for m in cls)
                raise InvalidLogEntry(
                    "level", f"unknown level {value[:40]!r} (expected one of {allowed})"
                ) from None
        return level


_SEVERITY = {Level.DEBUG: 10, Level.INFO: 20, Level.WARN: 30, Level.ERROR: 40, Level.FATAL: 50}
_ALIASES = {
    "TRACE": Level.DEBUG,
    "NOTICE": Level.INFO,
    "WARNING": Level.WARN,
    "ERR": Level.ERROR,
    "CRITICAL": Level.FATAL,
    "CRIT": Level.FATAL,
    "EMERG": Level.FATAL,
    "ALERT": Level.FATAL,
    "PANIC": Level.FATAL,
}
_SPELLINGS = {
    spelling: level
    for name, level in (*((level.value, level) for level in Level), *_ALIASES.items())
    for spelling in (name, name.lower(), name.title())
}


class InvalidLogEntry(ValueError):
    """An entry field is invalid; `field` names it and the message says why."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


@dataclass(frozen=True, slots=True)
class EntryLimits:
    """How far from now a timestamp may be, and how large an entry may grow."""

    max_age: timedelta = timedelta(days=30)
    max_future: timedelta = timedelta(hours=1)
    max_message_chars: int = 256 * 1024
    max_metadata_bytes: int = 64 * 1024


DEFAULT_LIMITS = EntryLimits()
MAX_SOURCE_ID = 2**31 - 1  # log_sources.id is a PostgreSQL integer


def parse_timestamp(value: object) -> datetime:
    """RFC 3339 text, epoch seconds (or milliseconds), or a datetime; naive means UTC."""
    if type(value) is str:
        # The common case, UTC as orjson and most shippers write it, without the general
        # path below (which gives the same answer for it, at four times the cost).
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is UTC:
                return parsed
    elif type(value) is datetime and value.tzinfo is UTC:  # as parsers give it
        return value
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, bool):
        raise InvalidLogEntry("timestamp", "must be RFC 3339 text or epoch seconds, not a boolean")
    elif isinstance(value, Decimal):
        # An epoch with more digits than a double holds: microseconds are what is kept.
        return parse_timestamp(float(value) if value.is_finite() else math.nan)
    elif isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidLogEntry("timestamp", "epoch value is not a finite number")
        try:
            # Values this large are milliseconds, as JavaScript shippers send them.
            seconds = value / 1000 if abs(value) >= 1e11 else value
            parsed = datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            # str() refuses integers of more than 4300 digits.
            text = str(value) if abs(value) < 10**1000 else "of over 1000 digits"
            shown = text if len(text) <= 32 else f"{text[:32]}..."
            raise InvalidLogEntry("timestamp", f"epoch value {shown} is out of range") from None
    elif isinstance(value, str):
        text = value.strip()
        if text[-1:] in ("Z", "z"):  # RFC 3339 allows either case
            text = text[:-1] + "+00:00"
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError:
            raise InvalidLogEntry(
                "timestamp", f"{value[:64]!r} is not an RFC 3339 timestamp"
            ) from None
    else:
        raise InvalidLogEntry(
            "timestamp", f"must be RFC 3339 text or epoch seconds, got {type(value).__name__}"
        )
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise InvalidLogEntry("timestamp", f"{parsed.isoformat()} is out of range") from None


def _check_text(field_name: str, text: str) -> None:
    nul = text.find("\x00")
    if nul >= 0:
        raise InvalidLogEntry(field_name, f"contains a NUL byte at character {nul}")
    if text.isascii():  # known without looking at the text: no surrogate in it
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidLogEntry(
            field_name, f"is not valid UTF-8 (undecodable data at character {exc.start})"
        ) from None


_ESCAPED_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def _encode_metadata(metadata: Mapping[str, Any], limits: EntryLimits) -> bytes:
    """The metadata as JSON, its numbers exactly as given (see exactjson)."""
    try:
        encoded = exactjson.dumps_storable(metadata)
    except exactjson.UnstorableNumber as exc:
        raise InvalidLogEntry(f"metadata{exc.path}", exc.reason) from None
    except TypeError as exc:
        raise InvalidLogEntry("metadata", f"is not JSON-serialisable: {exc}") from None
    # PostgreSQL's jsonb cannot store the NUL character. orjson writes it as \u0000; an
    # even number of backslashes before it means the text "\u0000", which is fine.
    # The regex costs ~16 us on typical metadata; the substring test well under 1 us.
    if b"\\u0000" in encoded and _ESCAPED_NUL.search(encoded):
        raise InvalidLogEntry("metadata", "contains a NUL character")
    if len(encoded) > limits.max_metadata_bytes:
        raise InvalidLogEntry(
            "metadata",
            f"is {len(encoded)} bytes encoded, over the {limits.max_metadata_bytes} limit",
        )
    return encoded


def _source_id(value: object) -> int:
    """An id as an int, or as its decimal digits (`"12"`), from 1 to MAX_SOURCE_ID."""
    number = value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10:
        number = int(value)
    if isinstance(number, bool) or not isinstance(number, int) or not 0 < number <= MAX_SOURCE_ID:
        too_long = isinstance(number, int) and abs(number) >= 10**40  # and str() may refuse it
        shown = "an integer of over 40 digits" if too_long else repr(value)[:40]
        raise InvalidLogEntry(
            "source_id",
            f"must be an integer from 1 to {MAX_SOURCE_ID} (or its digits as text), got {shown}",
        )
    return number


@dataclass(frozen=True, slots=True, init=False)
class LogEntry:
    """One validated log event. Construction raises InvalidLogEntry on bad input."""

    message: str
    source_id: int
    level: Level
    metadata: Mapping[str, Any]
    timestamp: datetime
    metadata_json: bytes = field(repr=False, compare=False)

    def __init__(
        self,
        message: str,
        source_id: int | str,
        level: Level | str = Level.INFO,
        metadata: Mapping[str, Any] | None = None,
        timestamp: datetime | str | float | None = None,
        *,
        limits: EntryLimits = DEFAULT_LIMITS,
        now: datetime | None = None,
    ) -> None:
        if not isinstance(message, str):
            raise InvalidLogEntry("message", f"must be a string, got {type(message).__name__}")
        if not message or message.isspace():  # as `not message.strip()`, without a copy
            raise InvalidLogEntry("message", "must not be empty")
        if len(message) > limits.max_message_chars:
            raise InvalidLogEntry(
                "message",
                f"is {len(message)} characters, over the {limits.max_message_chars} limit",
            )
        _check_text("message", message)
        if type(source_id) is not int or not 0 < source_id <= MAX_SOURCE_ID:
            source_id = _source_id(source_id)
        parsed_level = _SPELLINGS.get(level) if isinstance(level, str) else None
        if parsed_level is None:
            parsed_level = Level.parse(level)
        if metadata is None:
            metadata = {}
        if type(metadata) is not dict and not isinstance(metadata, Mapping):
            raise InvalidLogEntry("metadata", f"must be an object, got {type(metadata).__name__}")
        metadata_json = _encode_metadata(metadata, limits)
        if now is None:
            current = datetime.now(UTC)
        else:
            current = now if now.tzinfo is UTC else parse_timestamp(now)
        ts = current if timestamp is None else parse_timestamp(timestamp)
        if ts < current - limits.max_age:
            raise InvalidLogEntry(
                "timestamp",
                f"{ts.isoformat()} is more than {limits.max_age.days} days in the past",
            )
        if ts > current + limits.max_future:
            raise InvalidLogEntry(
                "timestamp",
                f"{ts.isoformat()} is more than {int(limits.max_future.total_seconds())}s "
                "in the future",
            )
        set_ = object.__setattr__
        set_(self, "message", message)
        set_(self, "source_id", source_id)
        set_(self, "level", parsed_level)
        set_(self, "metadata", dict(metadata))
        set_(self, "timestamp", ts)
        set_(self, "metadata_json", metadata_json)

    def to_dict(self) -> dict[str, Any]:
        return {
            "message": self.message,
            "source_id": self.source_id,
            "level": self.level.value,
            "metadata": dict(self.metadata),
            "timestamp": self.timestamp.isoformat(),
        }

    def copy_record(self) -> tuple[int, datetime, str, str, bytes]:
        """The row for COPY into log_entries (source_id, timestamp, level, message, metadata)."""
        return (self.source_id, self.timestamp, self.level.value, self.message, self.metadata_json)
