"""Search requests: parameters, keyset cursors and metadata filters. Pure, no I/O.

`parse_search` turns the query string of `GET /api/v1/logs` into a `SearchQuery`, or raises
InvalidQuery naming the parameter and the reason. Everything the database will see is
decided here, as typed values: the SQL layer binds them as parameters and never reads text
from the request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import orjson

from logkeep.domain import exactjson
from logkeep.domain.entry import Level
from logkeep.domain.filters import select_levels
from logkeep.domain.timerange import InvalidQuery, TimeRange, parse_time_range

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_SOURCES = 32  # each one is resolved with a lookup
MAX_METADATA_FILTERS = 8
MAX_METADATA_DEPTH = 8
MAX_TEXT_CHARS = 512  # q and contains
MAX_VALUE_CHARS = 1024  # any other value
MAX_CURSOR_CHARS = 256
METADATA_PREFIX = "metadata."
# `not.metadata.<key>=<value>` leaves out the entries whose metadata holds that value.
NOT_METADATA_PREFIX = "not.metadata."

SINGLE_PARAMS = ("from", "to", "since", "min_level", "q", "contains", "limit", "cursor")
REPEATABLE_PARAMS = ("source", "level")
KNOWN_PARAMS = (*SINGLE_PARAMS, *REPEATABLE_PARAMS, "metadata.<key>", "not.metadata.<key>")

# These patterns are used with fullmatch: `$` also matches before a final newline, so
# match would take "a\n" for the key a, and "500\n" for the number 500.
_METADATA_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_JSON_NUMBER = re.compile(r"^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$")
_WORD_CHARACTER = re.compile(r"[^\W_]")  # a letter or digit: what the text parser indexes
_SHOWABLE_NAME = re.compile(r"^[A-Za-z0-9_.\-\[\]]{1,64}$")
_MAX_ENTRY_ID = 2**63 - 1  # log_entries.id is a bigint

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class OutputFormat(StrEnum):
    JSON = "application/json"
    NDJSON = "application/x-ndjson"
    CSV = "text/csv"


@dataclass(frozen=True, slots=True)
class Position:
    """A row's place in newest-first order; a page continues strictly after it."""

    timestamp: datetime
    id: int


@dataclass(frozen=True, slots=True)
class Cursor:
    position: Position
    # The window's start as the first page computed it. Relative windows (`since=1h`)
    # would otherwise move forward between pages and drop their oldest rows.
    window_start: datetime
    fingerprint: str  # of the filters the cursor was made for


@dataclass(frozen=True, slots=True)
class SearchQuery:
    window: TimeRange
    source_refs: tuple[str, ...]  # as given, deduplicated and sorted; resolved by the caller
    levels: tuple[Level, ...] | None  # None: every level
    words: str | None  # full-text: every word must appear
    contains: str | None  # case-insensitive substring of the message
    metadata: dict[str, Any] | None  # containment document: metadata @> this
    limit: int
    cursor: Cursor | None
    fingerprint: str
    # Documents no entry may contain (not.metadata.<key>=<value>), one per filter.
    excluded_metadata: tuple[dict[str, Any], ...] = ()

    @property
    def after(self) -> Position | None:
        return None if self.cursor is None else self.cursor.position

    @property
    def page_window(self) -> TimeRange:
        """The window of this page: a cursor pins the start of the first page's window."""
        if self.cursor is None:
            return self.window
        return TimeRange(self.cursor.window_start, self.window.end)

    @property
    def contains_pattern(self) -> str | None:
        return None if self.contains is None else like_pattern(self.contains)

    def next_cursor(self, last: Position) -> str:
        return encode_cursor(Cursor(last, self.page_window.start, self.fingerprint))

    def cache_params(self, source_ids: Iterable[int] | None) -> dict[str, Any]:
        """Everything the page's rows depend on, normalised, for its cache key.
        The fingerprint is in it because the result carries a cursor bound to it."""
        window = self.page_window
        return {
            "start": to_micros(window.start),
            "end": to_micros(window.end),
            "sources": None if source_ids is None else sorted(set(source_ids)),
            "levels": None if self.levels is None else [lv.value for lv in self.levels],
            "words": self.words,
            "contains": self.contains,
            "metadata": self.metadata,
            "excluded_metadata": list(self.excluded_metadata),
            "limit": self.limit,
            "after": None
            if self.after is None
            else [to_micros(self.after.timestamp), self.after.id],
            "fingerprint": self.fingerprint,
        }


# ---------------------------------------------------------------------------------------
# Small conversions


def to_micros(instant: datetime) -> int:
    """Microseconds since the epoch: exact, as PostgreSQL stores timestamps."""
    return (instant - EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def rfc3339(instant: datetime) -> str:
    """UTC instants written the way the API's models write them (`...Z`)."""
    return instant.astimezone(UTC).isoformat().replace("+00:00", "Z")


def like_pattern(text: str) -> str:
    """An ILIKE pattern matching `text` anywhere: its %, _ and \\ are escaped so they
    match themselves (backslash is LIKE's default escape character)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _show(name: str) -> str:
    """A parameter name safe to echo in an error message."""
    return name if _SHOWABLE_NAME.fullmatch(name) else repr(name[:64])


def choose_format(accept: str | None) -> OutputFormat:
    """The format asked for by an Accept header: NDJSON or CSV when preferred, else JSON.
    Quality values count; ties go to the earlier entry."""
    if not accept:
        return OutputFormat.JSON
    best, best_q = OutputFormat.JSON, -1.0
    for part in accept.split(","):
        media, _, params = part.partition(";")
        quality = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        try:
            fmt = OutputFormat(media.strip().lower())
        except ValueError:
            if media.strip() in ("*/*", "application/*"):
                fmt = OutputFormat.JSON
            else:
                continue
        if quality > best_q and quality > 0:
            best, best_q = fmt, quality
    return best


# ---------------------------------------------------------------------------------------
# Metadata filters


def metadata_value(text: str) -> Any:
    """A filter value: a JSON number, true, false or null is that JSON value; a quoted JSON
    string is that string (so `"500"` finds the text 500); anything else is the text."""
    if text in ("true", "false", "null"):
        return {"true": True, "false": False, "null": None}[text]
    if _JSON_NUMBER.fullmatch(text):
        # Exactly, as ingest stores it (jsonb compares numbers by value): 10**30 finds
        # 10**30, and 0.12345678901234567 is not rounded to a double first.
        number = exactjson.number(text)
        problem = exactjson.number_problem(number)
        if problem is not None:
            raise ValueError(problem)
        return number
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            decoded = orjson.loads(text)
        except orjson.JSONDecodeError:
            return text
        if isinstance(decoded, str):
            if "\x00" in decoded:
                raise ValueError("contains a NUL character")
            return decoded
    return text


def metadata_document(filters: Iterable[tuple[str, str]]) -> dict[str, Any] | None:
    """`metadata.a.b=1` filters as one containment document ({"a": {"b": 1}}), or None."""
    pairs = list(filters)
    if not pairs:
        return None
    if len(pairs) > MAX_METADATA_FILTERS:
        raise InvalidQuery(
            "metadata", f"at most {MAX_METADATA_FILTERS} metadata filters, got {len(pairs)}"
        )
    document: dict[str, Any] = {}
    for name, raw in pairs:
        path = name[len(METADATA_PREFIX) :].split(".")
        if len(path) > MAX_METADATA_DEPTH or not all(_METADATA_KEY.fullmatch(k) for k in path):
            raise InvalidQuery(
                _show(name),
                "metadata keys are 1 to 64 of A-Z a-z 0-9 _ -, nested with dots, "
                f"at most {MAX_METADATA_DEPTH} deep",
            )
        try:
            value = metadata_value(raw)
        except ValueError as exc:
            raise InvalidQuery(name, str(exc)) from None
        node = document
        for key in path[:-1]:
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                raise InvalidQuery(name, "conflicts with another metadata filter")
            node = child
        if path[-1] in node:
            raise InvalidQuery(name, "conflicts with another metadata filter")
        node[path[-1]] = value
    return document


# ---------------------------------------------------------------------------------------
# Cursors: base64url of a small JSON object, checked field by field


def encode_cursor(cursor: Cursor) -> str:
    payload = {
        "v": 1,
        "t": to_micros(cursor.position.timestamp),
        "i": cursor.position.id,
        "s": to_micros(cursor.window_start),
        "f": cursor.fingerprint,
    }
    return base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode("ascii")


_CURSOR_TEXT = re.compile(r"^[A-Za-z0-9_-]+$")
_FINGERPRINT = re.compile(r"^[0-9a-f]{16}$")
_NOT_OURS = "is not a cursor this server issued (malformed, truncated or altered)"


def _cursor_int(payload: Mapping[str, Any], key: str, low: int, high: int) -> int:
    value = payload.get(key)
    if type(value) is not int or not low <= value <= high:  # bool is not an int here
        raise InvalidQuery("cursor", _NOT_OURS)
    return value


def decode_cursor(text: str) -> Cursor:
    """The cursor in `text`; InvalidQuery("cursor") for anything this server did not make.

    Without a secret, a cursor written by hand cannot be told from ours; it can only name
    a position and a window start, which are checked like any other parameter."""
    if len(text) > MAX_CURSOR_CHARS or not _CURSOR_TEXT.fullmatch(text) or len(text) % 4 == 1:
        raise InvalidQuery("cursor", _NOT_OURS)
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        payload = orjson.loads(raw)
    except (binascii.Error, ValueError):
        raise InvalidQuery("cursor", _NOT_OURS) from None
    # Re-encoding must give back the same text: altered padding bits are refused too.
    canonical = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
    if (
        canonical != text
        or not isinstance(payload, dict)
        or set(payload) != {"v", "t", "i", "s", "f"}
        or payload["v"] != 1
        or type(payload["v"]) is not int
        or not isinstance(payload["f"], str)
        or not _FINGERPRINT.fullmatch(payload["f"])
    ):
        raise InvalidQuery("cursor", _NOT_OURS)
    low, high = (
        to_micros(datetime(1, 1, 2, tzinfo=UTC)),
        to_micros(datetime(9999, 12, 30, tzinfo=UTC)),
    )
    at = _cursor_int(payload, "t", low, high)
    start = _cursor_int(payload, "s", low, at)
    entry_id = _cursor_int(payload, "i", 1, _MAX_ENTRY_ID)
    return Cursor(Position(from_micros(at), entry_id), from_micros(start), payload["f"])


# ---------------------------------------------------------------------------------------
# The whole request


def _ceil_to_second(instant: datetime) -> datetime:
    # Relative windows end on a whole second (rounded up, so nothing committed before the
    # request is left out): the same query repeated within a second shares a cache entry.
    if instant.microsecond == 0:
        return instant
    return instant.replace(microsecond=0) + timedelta(seconds=1)


def _levels(level: list[str], min_level: str | None) -> tuple[Level, ...] | None:
    chosen = select_levels(level, min_level)
    return None if len(chosen) == len(Level) else chosen  # every level: no filter at all


def _words(q: str | None) -> str | None:
    if q is None:
        return None
    words = " ".join(q.split())
    if not words:
        raise InvalidQuery("q", "must not be empty")
    if len(q) > MAX_TEXT_CHARS:
        raise InvalidQuery("q", f"is longer than {MAX_TEXT_CHARS} characters")
    if not _WORD_CHARACTER.search(words):
        raise InvalidQuery("q", "has no words to search for (use contains= for punctuation)")
    return words


def _contains(contains: str | None) -> str | None:
    if contains is None:
        return None
    if not contains:
        raise InvalidQuery("contains", "must not be empty")
    if len(contains) > MAX_TEXT_CHARS:
        raise InvalidQuery("contains", f"is longer than {MAX_TEXT_CHARS} characters")
    return contains


def _limit(text: str | None) -> int:
    if text is None:
        return DEFAULT_LIMIT
    if not (text.isascii() and text.isdigit() and len(text) <= 10) or not (
        1 <= int(text) <= MAX_LIMIT
    ):
        raise InvalidQuery("limit", f"must be an integer from 1 to {MAX_LIMIT}, got {text[:32]!r}")
    return int(text)


def _fingerprint(values: dict[str, Any]) -> str:
    return hashlib.blake2b(
        exactjson.dumps(values, option=orjson.OPT_SORT_KEYS), digest_size=8
    ).hexdigest()


def excluded_documents(filters: Iterable[tuple[str, str]]) -> tuple[dict[str, Any], ...]:
    """`not.metadata.a=1` filters as one containment document each (an entry is left out
    when it contains any of them)."""
    documents = []
    for name, value in filters:
        try:
            document = metadata_document([(name[len("not.") :], value)])
        except InvalidQuery as exc:  # named as it was given, with its "not."
            raise InvalidQuery(_show(name), exc.reason) from None
        if document is not None:
            documents.append(document)
    return tuple(documents)


def _split_params(
    items: Iterable[tuple[str, str]],
) -> tuple[dict[str, str], dict[str, list[str]], list[tuple[str, str]]]:
    single: dict[str, str] = {}
    repeated: dict[str, list[str]] = {name: [] for name in REPEATABLE_PARAMS}
    metadata: list[tuple[str, str]] = []  # with not.metadata. ones, told apart by prefix
    unknown: list[str] = []
    for name, value in items:
        if "\x00" in name or "\x00" in value:
            raise InvalidQuery(_show(name), "contains a NUL character")
        limit = MAX_CURSOR_CHARS if name == "cursor" else MAX_VALUE_CHARS
        if len(value) > limit and name not in ("q", "contains"):
            raise InvalidQuery(_show(name), f"is longer than {limit} characters")
        if name.startswith((METADATA_PREFIX, NOT_METADATA_PREFIX)):
            metadata.append((name, value))
        elif name in repeated:
            repeated[name].append(value)
        elif name in SINGLE_PARAMS:
            if name in single:
                raise InvalidQuery(name, "given more than once")
            single[name] = value
        elif name not in unknown:
            unknown.append(name)
    if unknown:
        names = ", ".join(_show(n) for n in unknown[:8])
        plural = "s" if len(unknown) > 1 else ""
        raise InvalidQuery(names, f"unknown parameter{plural} (known: {', '.join(KNOWN_PARAMS)})")
    if len(repeated["source"]) > MAX_SOURCES:
        raise InvalidQuery("source", f"at most {MAX_SOURCES} sources")
    return single, repeated, metadata


def parse_search(
    items: Iterable[tuple[str, str]],
    *,
    now: datetime,
    default_window: timedelta,
    retention: timedelta,
    max_future: timedelta,
) -> SearchQuery:
    """A search request from its query parameters (name, value pairs, repeats allowed).

    The window is at most `retention` long and must overlap the period entries can
    exist in (from `retention` plus a day of partition slack ago to `max_future` ahead)."""
    single, repeated, all_metadata = _split_params(items)
    metadata_filters = [(n, v) for n, v in all_metadata if n.startswith(METADATA_PREFIX)]
    excluded = excluded_documents(
        (n, v) for n, v in all_metadata if n.startswith(NOT_METADATA_PREFIX)
    )
    if len(all_metadata) > MAX_METADATA_FILTERS:
        raise InvalidQuery(
            "metadata",
            f"at most {MAX_METADATA_FILTERS} metadata filters, got {len(all_metadata)}",
        )
    window = parse_time_range(
        start=single.get("from"),
        end=single.get("to"),
        since=single.get("since"),
        now=_ceil_to_second(now),
        default=default_window,
        max_span=retention,
    )
    if window.end <= now - retention - timedelta(days=1):
        raise InvalidQuery(
            "to", f"the window ends before the {retention.days}-day retention period"
        )
    if window.start > now + max_future:
        raise InvalidQuery("from", "the window starts in the future, where no entries can be")
    refs = tuple(sorted(set(repeated["source"])))
    levels = _levels(repeated["level"], single.get("min_level"))
    words = _words(single.get("q"))
    contains = _contains(single.get("contains"))
    metadata = metadata_document(metadata_filters)
    fingerprint = _fingerprint(
        {
            # Absolute bounds as parsed instants; a relative window by its text, since
            # its instants move (the cursor pins where it started).
            "from": None if "from" not in single else to_micros(window.start),
            "to": None if "to" not in single else to_micros(window.end),
            "since": single.get("since"),
            "sources": list(refs),
            "levels": None if levels is None else [lv.value for lv in levels],
            "words": words,
            "contains": contains,
            "metadata": metadata,
            # Added only when present, so cursors issued before it stay valid.
            **({"excluded_metadata": list(excluded)} if excluded else {}),
        }
    )
    cursor = None
    if "cursor" in single:
        cursor = decode_cursor(single["cursor"])
        if cursor.fingerprint != fingerprint:
            raise InvalidQuery(
                "cursor", "was issued for different filters; repeat the first request without it"
            )
        if "from" in single and cursor.window_start != window.start:
            raise InvalidQuery("cursor", _NOT_OURS)
        if not (
            cursor.window_start <= cursor.position.timestamp
            and cursor.position.timestamp - cursor.window_start <= retention
            and cursor.window_start < window.end
            # A cursor's window is the first page's: never wider than a window could be.
            and window.end - cursor.window_start <= retention + timedelta(days=1)
        ):
            raise InvalidQuery("cursor", _NOT_OURS)
    return SearchQuery(
        window=window,
        source_refs=refs,
        levels=levels,
        words=words,
        contains=contains,
        metadata=metadata,
        limit=_limit(single.get("limit")),
        cursor=cursor,
        fingerprint=fingerprint,
        excluded_metadata=excluded,
    )
