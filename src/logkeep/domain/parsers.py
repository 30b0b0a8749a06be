"""Raw log lines into events, by a source's format_type and parsing_rules: pure, no I/O.

`compile_parser` checks the rules once and returns a closure that runs on every ingested
line, so everything that can be decided from the rules alone (regexes, field names, level
tables) is decided there. A line that does not fit raises LineParseError with a short
reason; what to do with it (keep it raw, with the reason) is the caller's choice.
"""

from __future__ import annotations

import contextlib
import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from logkeep.domain import exactjson
from logkeep.domain.entry import InvalidLogEntry, Level, parse_timestamp


@dataclass(frozen=True, slots=True)
class ParsedLine:
    message: str
    timestamp: datetime | None = None  # aware UTC; None when the line carries none
    level: Level | None = None  # None: the caller uses its default
    metadata: dict[str, Any] = field(default_factory=dict)
    event_id: str | None = None


class InvalidRules(ValueError):
    """The parsing rules themselves are wrong; the message starts with the rule's key."""


class LineParseError(ValueError):
    """This line does not fit its source's format; the message says why, in under 200
    characters (it is stored next to the raw line)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason if len(reason) < 200 else reason[:196] + "...")


LineParser = Callable[[str], ParsedLine]

MAX_EVENT_ID_CHARS = 256  # as ingest accepts in a JSON event
MAX_PATTERN_CHARS = 2000
# A regex only sees the first 8 KiB of a line. Python's re is quadratic for the most
# ordinary patterns when a line almost matches (`(?P<k>\w+)=` searched over a long run of
# letters without "=": 0.25 s at 4 KiB, 1.3 s at 8 KiB, 47 s at 64 KiB), and no rule check
# can rule that out. Groups past the window are cut; the message, when it is the whole
# line, is not.
REGEX_MAX_CHARS = 8 * 1024

# pino and bunyan write levels as numbers.
_NUMERIC_LEVELS = {
    10: Level.DEBUG,
    20: Level.DEBUG,
    30: Level.INFO,
    40: Level.WARN,
    50: Level.ERROR,
    60: Level.FATAL,
}
# Level names as they are usually spelled, looked up before Level.parse's general path.
_LEVEL_NAMES = {
    spelling: Level.parse(spelling)
    for name in (*Level, "TRACE", "NOTICE", "WARNING", "ERR", "CRITICAL", "CRIT")
    for spelling in (name, name.lower(), name.title())
}
# Epoch seconds or milliseconds written as text (logfmt, regex groups, some JSON shippers).
_EPOCH_TEXT = re.compile(r"-?[0-9]{1,17}(?:\.[0-9]+)?")
_NUMBER_STARTS = frozenset("-0123456789")
_BOOLEANS = {"true": True, "false": False}


# -- values from a line ------------------------------------------------------------------


def _level_of(value: object, name: str) -> Level:
    if isinstance(value, str) and (level := _LEVEL_NAMES.get(value)) is not None:
        return level
    if isinstance(value, int) and not isinstance(value, bool):
        level = _NUMERIC_LEVELS.get(value)
        if level is None:
            raise LineParseError(f"{name}: numeric level is not one of 10, 20, ..., 60")
        return level
    try:
        return Level.parse(value)
    except InvalidLogEntry as exc:
        raise LineParseError(f"{name}: {exc.reason}") from None


def read_timestamp(value: object, name: str) -> datetime:
    """parse_timestamp, with numbers written as text read as epoch seconds (or ms), and
    LineParseError naming the field."""
    if isinstance(value, str):
        # The common case, UTC in RFC 3339, without parse_timestamp's general path
        # (it costs four times as much, and runs on every line).
        with contextlib.suppress(ValueError):
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is UTC:
                return parsed
        if _EPOCH_TEXT.fullmatch(value):
            value = float(value)
    try:
        return parse_timestamp(value)
    except InvalidLogEntry as exc:
        raise LineParseError(f"{name}: {exc.reason}") from None


def _event_id_of(value: object, name: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise LineParseError(f"{name}: event id must be text or an integer")
    text = str(value)
    if not text or len(text) > MAX_EVENT_ID_CHARS:
        raise LineParseError(f"{name}: event id must be 1 to {MAX_EVENT_ID_CHARS} characters")
    return text


def _message_of(value: object, name: str) -> str:
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise LineParseError(f"{name}: message must be text, got {type(value).__name__}")
    if not value.strip():
        raise LineParseError(f"{name}: message is empty")
    return value


def typed_text(text: str) -> Any:
    """A value of a format without types of its own (logfmt, regex groups, syslog
    structured data), typed the one way for all of them: a number written plainly
    (`30012`, `-1.5`; no exponent, no leading zero, so ids like `007` and hex like `1e5`
    stay text) becomes that exact number, `true` and `false` booleans; the rest is text."""
    if text[:1] in _NUMBER_STARTS:
        number = exactjson.number_from_text(text)
        return text if number is None else number
    return _BOOLEANS.get(text, text)


def _require_text(line: str) -> None:
    if not line.strip():
        raise LineParseError("empty line")


# -- rules -------------------------------------------------------------------------------


def _check_keys(rules: Mapping[str, Any], allowed: frozenset[str], format_type: str) -> None:
    for key in rules:
        if key not in allowed:
            accepted = ", ".join(sorted(allowed)) or "none"
            raise InvalidRules(
                f"parsing_rules.{key}: not a rule of format {format_type!r} (accepted: {accepted})"
            )


def _name_rule(rules: Mapping[str, Any], key: str) -> str | None:
    value = rules.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise InvalidRules(f"parsing_rules.{key}: must be a non-empty string")
    return value


def _names_rule(rules: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    value = rules.get(key)
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise InvalidRules(f"parsing_rules.{key}: must be a list of non-empty strings")
    return tuple(value)


def _fields_rule(rules: Mapping[str, Any], key: str, defaults: tuple[str, ...]) -> tuple[str, ...]:
    """A named field wins outright; without one, the conventional names are tried in turn."""
    name = _name_rule(rules, key)
    return defaults if name is None else (name,)


def _level_rule(key: str, value: object) -> Level:
    try:
        return Level.parse(value)
    except InvalidLogEntry as exc:
        raise InvalidRules(f"parsing_rules.{key}: {exc.reason}") from None


_STATUS_CLASS = re.compile(r"([1-5])xx", re.IGNORECASE)
_STATUS_CODE = re.compile(r"[1-5][0-9]{2}")

StatusLevels = Callable[[int], Level | None]


DEFAULT_BY_STATUS = {"5xx": "ERROR", "4xx": "WARN", "default": "INFO"}


def _status_levels(key: str, table: object) -> StatusLevels:
    """`{"5xx": "ERROR", "404": "INFO", "default": "INFO"}`: an exact code wins over its
    class, the class over the default."""
    if not isinstance(table, Mapping):
        raise InvalidRules(f"parsing_rules.{key}: must be an object")
    exact: dict[int, Level] = {}
    classes: dict[int, Level] = {}
    default: Level | None = None
    for name, value in table.items():
        level = _level_rule(f"{key}.{name}", value)
        if name == "default":
            default = level
        elif _STATUS_CODE.fullmatch(name):
            exact[int(name)] = level
        elif match := _STATUS_CLASS.fullmatch(name):
            classes[int(match[1])] = level
        else:
            raise InvalidRules(
                f"parsing_rules.{key}.{name}: expected a status class like '5xx', "
                "a code like '404', or 'default'"
            )

    def level_of(status: int) -> Level | None:
        return exact.get(status) or classes.get(status // 100) or default

    return level_of


def _threshold_levels(key: str, table: object) -> Callable[[str | None], Level | None]:
    """`{"5000": "ERROR", "1000": "WARN", "default": "INFO"}`: the highest threshold the
    value reaches. A table with status classes ("5xx") reads its numbers as status codes."""
    if not isinstance(table, Mapping):
        raise InvalidRules(f"parsing_rules.{key}: must be an object")
    if any(isinstance(name, str) and _STATUS_CLASS.fullmatch(name) for name in table):
        by_status = _status_levels(key, table)
        default = by_status(0)

        def status_level(value: str | None) -> Level | None:
            if value is None or not value.isdigit() or len(value) > 3:
                return default
            return by_status(int(value))

        return status_level
    thresholds: list[tuple[float, Level]] = []
    default = None
    for name, value in table.items():
        level = _level_rule(f"{key}.{name}", value)
        if name == "default":
            default = level
        elif isinstance(name, str) and _EPOCH_TEXT.fullmatch(name):
            thresholds.append((float(name), level))
        else:
            raise InvalidRules(
                f"parsing_rules.{key}.{name}: expected a number, a status class like '5xx', "
                "or 'default'"
            )
    thresholds.sort(reverse=True)

    def threshold_level(value: str | None) -> Level | None:
        if value is None or not _EPOCH_TEXT.fullmatch(value):
            return default
        number = float(value)
        for threshold, level in thresholds:
            if number >= threshold:
                return level
        return default

    return threshold_level


# -- text --------------------------------------------------------------------------------


def _text_line(line: str) -> ParsedLine:
    return ParsedLine(line)


def _text_parser(rules: Mapping[str, Any]) -> LineParser:
    _check_keys(rules, frozenset(), "text")
    return _text_line


# -- json and logfmt ---------------------------------------------------------------------

_KEYED_RULES = frozenset(
    {"message_field", "timestamp_field", "level_field", "event_id_field", "metadata_fields"}
)


def _first(obj: dict[str, Any], keys: tuple[str, ...], remove: bool) -> tuple[str, Any]:
    """The first of `keys` with a non-null value, as (key, value); ("", None) if none."""
    for key in keys:
        value = obj.pop(key, None) if remove else obj.get(key)
        if value is not None:
            return key, value
    return "", None


def _keyed_parser(
    format_type: str,
    rules: Mapping[str, Any],
    defaults: tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]],
    load: Callable[[str], dict[str, Any]],
    whole_line_message: bool,
    typed: bool,
) -> LineParser:
    """json and logfmt: a line of named fields, some of which say message, time and level.
    Without metadata_fields every other field joins the metadata; with `typed` (a format
    whose values are all text) its values are typed by `typed_text`."""
    _check_keys(rules, _KEYED_RULES, format_type)
    message_keys = _fields_rule(rules, "message_field", defaults[0])
    timestamp_keys = _fields_rule(rules, "timestamp_field", defaults[1])
    level_keys = _fields_rule(rules, "level_field", defaults[2])
    event_id_keys = _fields_rule(rules, "event_id_field", ("event_id",))
    kept = _names_rule(rules, "metadata_fields")
    remove = kept is None  # fields used for message, time and level leave the metadata

    def parse(line: str) -> ParsedLine:
        obj = load(line)
        metadata = obj if kept is None else {k: obj[k] for k in kept if k in obj}
        key, value = _first(obj, message_keys, remove)
        if value is None or value is True:  # logfmt: a bare `msg` key says nothing
            if not whole_line_message:
                raise LineParseError(f"no message field ({' or '.join(message_keys)})")
            message = line
        else:
            message = _message_of(value, key)
        key, value = _first(obj, timestamp_keys, remove)
        timestamp = None if value is None else read_timestamp(value, key)
        key, value = _first(obj, level_keys, remove)
        level = None if value is None else _level_of(value, key)
        key, value = _first(obj, event_id_keys, remove)
        event_id = None if value is None else _event_id_of(value, key)
        if typed:
            metadata = {k: typed_text(v) if type(v) is str else v for k, v in metadata.items()}
        return ParsedLine(message, timestamp, level, metadata, event_id)

    return parse


def _load_json(line: str) -> dict[str, Any]:
    try:
        obj = exactjson.loads(line, storable=True)
    except exactjson.JSONDecodeError as exc:
        raise LineParseError(f"not valid JSON: {exc}") from None
    except exactjson.UnstorableNumber as exc:
        # NaN, 1e999: the line is kept whole (as text), with the reason.
        raise LineParseError(str(exc)) from None
    if not isinstance(obj, dict):
        raise LineParseError(f"expected a JSON object, got {type(obj).__name__}")
    return obj


def _json_parser(rules: Mapping[str, Any]) -> LineParser:
    defaults = (
        ("message", "msg"),
        ("timestamp", "ts", "time", "@timestamp"),
        ("level", "severity"),
    )
    return _keyed_parser("json", rules, defaults, _load_json, whole_line_message=False, typed=False)


# key=value, key="quoted \"value\"", or a bare key; anything else (a stray quote, an
# unterminated quoted value) lands in the last group and makes the line not logfmt.
# Possessive quantifiers: no backtracking on long lines.
_LOGFMT_TOKEN = re.compile(
    r'([^\s="]++)(?:(=)(?:"((?:[^"\\]++|\\.)*+)"|((?!")\S*+)))?(?=\s|\Z)|(\S++)',
    re.DOTALL,
)
_LOGFMT_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_LOGFMT_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}


def _logfmt_unescape(match: re.Match[str]) -> str:
    char = match[1]
    return _LOGFMT_ESCAPES.get(char, "\\" + char)


def _load_logfmt(line: str) -> dict[str, Any]:
    """key=value pairs; a bare key is True. A line that is mostly words without `=`
    (prose, another format) is not logfmt, rather than a pile of `word: true`."""
    _require_text(line)
    pairs: dict[str, Any] = {}
    found = bare_words = 0
    if '"' not in line:
        # Nothing quoted: splitting on whitespace reads the same pairs, three times faster.
        for token in line.split():
            key, eq, value = token.partition("=")
            if not key:
                raise LineParseError(f"not logfmt at {token[:40]!r} (a value without a key)")
            pairs[key] = value if eq else True
            found += 1
            bare_words += not eq
    else:
        for key, eq, quoted, bare, junk in _LOGFMT_TOKEN.findall(line):
            if junk:
                raise LineParseError(f"not logfmt at {junk[:40]!r} (an unbalanced quote?)")
            found += 1
            if not eq:
                pairs[key] = True
                bare_words += 1
            elif quoted:
                escaped = "\\" in quoted
                pairs[key] = _LOGFMT_ESCAPE.sub(_logfmt_unescape, quoted) if escaped else quoted
            else:
                pairs[key] = bare
    if bare_words * 2 > found:
        if bare_words == found:
            raise LineParseError("not logfmt: no key=value pair")
        raise LineParseError(f"not logfmt: {bare_words} of {found} words are not key=value pairs")
    return pairs


def _logfmt_parser(rules: Mapping[str, Any]) -> LineParser:
    defaults = (("msg", "message"), ("ts", "time", "timestamp"), ("level",))
    return _keyed_parser(
        "logfmt", rules, defaults, _load_logfmt, whole_line_message=True, typed=True
    )


# -- nginx / apache combined ----------------------------------------------------------------

# $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
# "$http_referer" "$http_user_agent"; the last two are absent in the common format and
# anything after them (custom additions) is ignored. nginx writes `"` inside values as
# \x22, apache as \"; both are kept as logged.
_QUOTED = r'"((?:[^"\\]++|\\.)*+)"'  # possessive: seven times faster than plain
_COMBINED = re.compile(
    rf"(\S+) \S+ (\S+) \[([^\]]*)\] {_QUOTED} ([0-9]{{3}}) ([0-9]+|-)(?: {_QUOTED} {_QUOTED})?",
    re.DOTALL,
)
_REQUEST = re.compile(r"([A-Z][A-Z0-9_-]*) (\S+)(?: (\S+))?")
_CLF_TIME = re.compile(
    r"([0-9]{1,2})/([A-Za-z]{3})/([0-9]{4}):([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r" ([+-])([0-9]{2})([0-9]{2})"
)
MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        start=1,
    )
}
NGINX_FIELDS = (
    "client_ip",
    "remote_user",
    "method",
    "path",
    "protocol",
    "status",
    "bytes",
    "referer",
    "user_agent",
)


@lru_cache(maxsize=1024)  # lines come in bursts that share their second
def _clf_time(text: str) -> datetime:
    """`10/Oct/2000:13:55:36 -0700` (nginx $time_local) as UTC; strptime is ten times slower."""
    match = _CLF_TIME.fullmatch(text)
    month = MONTHS.get(match[2].title()) if match else None
    if match is None or month is None:
        raise LineParseError(f"time {text[:40]!r} is not like 10/Oct/2000:13:55:36 -0700")
    day, _, year, hour, minute, second, sign, off_h, off_m = match.groups()
    try:
        local = datetime(
            int(year), month, int(day), int(hour), int(minute), int(second), tzinfo=UTC
        )
    except ValueError as exc:
        raise LineParseError(f"time {text!r}: {exc}") from None
    offset = int(off_h) * 60 + int(off_m)
    if not offset:
        return local
    # Local time minus its offset is UTC (-0700 means seven hours behind UTC).
    return local - timedelta(minutes=offset if sign == "+" else -offset)


def _nginx_parser(rules: Mapping[str, Any]) -> LineParser:
    """The message is the line as logged (as with every format that names no message):
    nothing is lost, custom fields after the user agent included, and a search for an
    address or an agent finds it. The fields are metadata, status and bytes as numbers."""
    _check_keys(rules, frozenset({"pattern", "level_by_status", "fields"}), "nginx_combined")
    pattern = rules.get("pattern", "combined")
    if pattern not in ("combined", "common"):
        raise InvalidRules("parsing_rules.pattern: must be 'combined' or 'common' for nginx logs")
    # No level_by_status: what every access-log reader expects, server errors stand out.
    level_of = _status_levels("level_by_status", rules.get("level_by_status", DEFAULT_BY_STATUS))
    kept = _names_rule(rules, "fields")
    for name in kept or ():
        if name not in NGINX_FIELDS:
            raise InvalidRules(
                f"parsing_rules.fields: unknown field {name!r} (known: {', '.join(NGINX_FIELDS)})"
            )
    match_line = _COMBINED.match
    match_request = _REQUEST.fullmatch

    def parse(line: str) -> ParsedLine:
        match = match_line(line)
        if match is None:
            raise LineParseError("not an nginx/apache combined or common log line")
        client_ip, user, time_local, request, status_text, size, referer, agent = match.groups()
        status = int(status_text)
        metadata: dict[str, Any] = {"client_ip": client_ip}
        if user != "-":
            metadata["remote_user"] = user
        # A request line that is not `METHOD PATH [PROTOCOL]` ("-" for a closed
        # connection, escaped TLS bytes sent to a plain port) keeps only its text.
        if parts := match_request(request):
            metadata["method"], metadata["path"] = parts[1], parts[2]
            if parts[3] is not None:
                metadata["protocol"] = parts[3]
        metadata["status"] = status
        metadata["bytes"] = 0 if size == "-" else int(size)
        if referer is not None and referer != "-":
            metadata["referer"] = referer
        if agent is not None and agent != "-":
            metadata["user_agent"] = agent
        if kept is not None:
            metadata = {k: metadata[k] for k in kept if k in metadata}
        return ParsedLine(
            line,
            _clf_time(time_local),
            level_of(status) or Level.INFO,
            metadata,
        )

    return parse


# -- regex -------------------------------------------------------------------------------


# The parse tree `re.compile` itself builds (private, unchanged from 3.11 to 3.13): the
# one reliable way to see a pattern's repeats.
_re_parser: Any = importlib.import_module("re._parser")
_REPEATS = (_re_parser.MAX_REPEAT, _re_parser.MIN_REPEAT)


def _nested_repeat(items: Any, inside_unbounded: bool = False) -> bool:
    """Does a variable repeat sit inside an unbounded one, as in `(a+)+` or `(\\w+\\s)*`?
    That shape backtracks exponentially on a near-miss. Possessive repeats and atomic
    groups never give back what they took, so they are safe and not searched."""
    p = _re_parser
    for op, arg in items:
        if op in _REPEATS:
            low, high, body = arg
            if inside_unbounded and low != high and high > 1:  # `?` inside is harmless
                return True
            subpatterns = [(body, inside_unbounded or high == p.MAXREPEAT)]
        elif op is p.SUBPATTERN:
            subpatterns = [(arg[3], inside_unbounded)]
        elif op is p.BRANCH:
            subpatterns = [(branch, inside_unbounded) for branch in arg[1]]
        elif op in (p.ASSERT, p.ASSERT_NOT):
            subpatterns = [(arg[1], inside_unbounded)]
        elif op is p.GROUPREF_EXISTS:
            subpatterns = [(branch, inside_unbounded) for branch in arg[1:] if branch is not None]
        else:
            continue
        if any(_nested_repeat(sub, unbounded) for sub, unbounded in subpatterns):
            return True
    return False


def _compile_pattern(text: object) -> re.Pattern[str]:
    if not isinstance(text, str) or not text:
        raise InvalidRules("parsing_rules.pattern: required: a regular expression")
    if len(text) > MAX_PATTERN_CHARS:
        raise InvalidRules(
            f"parsing_rules.pattern: {len(text)} characters, over the {MAX_PATTERN_CHARS} limit"
        )
    try:
        pattern = re.compile(text)
    except re.error as exc:
        raise InvalidRules(
            f"parsing_rules.pattern: not a valid regular expression: {exc}"
        ) from None
    if _nested_repeat(_re_parser.parse(text)):
        raise InvalidRules(
            "parsing_rules.pattern: a repeat inside a repeat (like (a+)+) can take forever "
            "on a line that almost matches; make the inner one possessive (a++) or atomic"
        )
    return pattern


def _group_rule(
    rules: Mapping[str, Any], key: str, groups: Mapping[str, int], default: str
) -> str | None:
    name = _name_rule(rules, key)
    if name is None:
        return default if default in groups else None
    if name not in groups:
        raise InvalidRules(f"parsing_rules.{key}: the pattern has no group named {name!r}")
    return name


def _regex_parser(rules: Mapping[str, Any]) -> LineParser:
    pattern = _compile_pattern(rules.get("pattern"))
    groups = pattern.groupindex
    level_rules: list[tuple[str, Callable[[str | None], Level | None]]] = []
    for key, table in rules.items():
        if key.startswith("level_by_"):
            group = key.removeprefix("level_by_")
            if group not in groups:
                raise InvalidRules(f"parsing_rules.{key}: the pattern has no group named {group!r}")
            level_rules.append((group, _threshold_levels(key, table)))
    named = {"pattern", "message_group", "timestamp_group", "level_group"}
    _check_keys(rules, frozenset(named | {f"level_by_{g}" for g in groups}), "regex")
    message_group = _group_rule(rules, "message_group", groups, "message")
    timestamp_group = _group_rule(rules, "timestamp_group", groups, "timestamp")
    level_group = _group_rule(rules, "level_group", groups, "level")
    search = pattern.search

    def parse(line: str) -> ParsedLine:
        _require_text(line)
        match = search(line, 0, REGEX_MAX_CHARS)
        if match is None:
            raise LineParseError("line does not match parsing_rules.pattern")
        values = match.groupdict()
        message = line
        if message_group is not None:
            text = values.pop(message_group)
            if text is not None and text.strip():  # a group that matched nothing: the line
                message = text
        timestamp = level = None
        if timestamp_group is not None and (text := values.pop(timestamp_group)) is not None:
            timestamp = read_timestamp(text, timestamp_group)
        if level_group is not None and (text := values.pop(level_group)) is not None:
            level = _level_of(text, level_group)
        for group, level_by in level_rules:
            if level is not None:
                break
            level = level_by(match[group])
        metadata = {k: typed_text(v) for k, v in values.items() if v is not None}
        return ParsedLine(message, timestamp, level, metadata)

    return parse


# -- syslog ------------------------------------------------------------------------------


def _syslog_parser(rules: Mapping[str, Any]) -> LineParser:
    _check_keys(rules, frozenset(), "syslog")
    # Imported here: syslog.py builds on this module's ParsedLine and LineParseError.
    from logkeep.domain.syslog import parse_syslog, to_parsed_line

    def parse(line: str) -> ParsedLine:
        parsed = to_parsed_line(parse_syslog(line))
        if not parsed.message.strip():  # structured data alone: keep the line readable
            return replace(parsed, message=line.strip())
        return parsed

    return parse


# -- the registry ------------------------------------------------------------------------

_BUILDERS: dict[str, Callable[[Mapping[str, Any]], LineParser]] = {
    "text": _text_parser,
    "plain": _text_parser,
    "json": _json_parser,
    "logfmt": _logfmt_parser,
    "nginx_combined": _nginx_parser,
    "nginx": _nginx_parser,
    "apache_combined": _nginx_parser,
    "combined": _nginx_parser,
    "syslog": _syslog_parser,
    "regex": _regex_parser,
}
FORMAT_TYPES = frozenset(_BUILDERS)


def compile_parser(format_type: str, rules: Mapping[str, Any]) -> LineParser:
    """The parser for one source; InvalidRules (naming the rule) if its rules are wrong."""
    builder = _BUILDERS.get(format_type.strip().lower()) if isinstance(format_type, str) else None
    if builder is None:
        raise InvalidRules(
            f"format_type: unknown format {str(format_type)[:40]!r} "
            f"(accepted: {', '.join(sorted(FORMAT_TYPES))})"
        )
    if not isinstance(rules, Mapping):
        raise InvalidRules(f"parsing_rules: must be a JSON object, got {type(rules).__name__}")
    return builder(rules)
