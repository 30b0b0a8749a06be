"""Line parsers by format_type and parsing_rules: pure, no I/O."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest

from logkeep.domain.entry import Level
from logkeep.domain.parsers import (
    FORMAT_TYPES,
    MAX_PATTERN_CHARS,
    REGEX_MAX_CHARS,
    InvalidRules,
    LineParseError,
    ParsedLine,
    compile_parser,
)
from logkeep.domain.samples import APP, NGINX, SLOW_QUERIES, SOURCES, SampleGenerator

LONE_SURROGATE = b"\xff".decode("utf-8", "surrogateescape")
END = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def parse(format_type: str, line: str, rules: Mapping[str, Any] | None = None) -> ParsedLine:
    return compile_parser(format_type, rules or {})(line)


def parse_error(format_type: str, line: str, rules: Mapping[str, Any] | None = None) -> str:
    with pytest.raises(LineParseError) as info:
        parse(format_type, line, rules)
    message = str(info.value)
    assert 0 < len(message) < 200
    return message


def invalid_rules(format_type: str, rules: Any) -> str:
    with pytest.raises(InvalidRules) as info:
        compile_parser(format_type, rules)
    return str(info.value)


# --- the registry ---------------------------------------------------------------------


def test_format_types_are_exactly_the_documented_ones() -> None:
    assert {
        "text",
        "plain",
        "json",
        "logfmt",
        "nginx_combined",
        "nginx",
        "apache_combined",
        "combined",
        "syslog",
        "regex",
    } == FORMAT_TYPES


def test_unknown_format_type_lists_the_accepted_ones() -> None:
    message = invalid_rules("yaml", {})
    assert message.startswith("format_type: unknown format 'yaml'")
    for name in FORMAT_TYPES:
        assert name in message


def test_format_type_is_read_case_insensitively() -> None:
    assert parse(" JSON ", '{"message": "hi"}').message == "hi"


def test_rules_must_be_an_object() -> None:
    assert invalid_rules("json", ["message_field"]).startswith("parsing_rules: must be")


@pytest.mark.parametrize(
    ("format_type", "rules", "key"),
    [
        ("text", {"pattern": "x"}, "pattern"),
        ("syslog", {"rfc": "5424"}, "rfc"),
        ("json", {"message_feild": "msg"}, "message_feild"),
        ("logfmt", {"pattern": "x"}, "pattern"),
        ("nginx_combined", {"level_by_code": {}}, "level_by_code"),
        ("regex", {"pattern": "(?P<a>x)", "extra": 1}, "extra"),
    ],
)
def test_unknown_rule_keys_are_named(format_type: str, rules: dict[str, Any], key: str) -> None:
    message = invalid_rules(format_type, rules)
    assert message.startswith(f"parsing_rules.{key}: not a rule of format")


def test_parsed_line_defaults() -> None:
    line = ParsedLine("hello")
    assert (line.timestamp, line.level, line.metadata, line.event_id) == (None, None, {}, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        line.message = "changed"  # type: ignore[misc]


# --- the seeded sources ---------------------------------------------------------------


def test_seeded_rules_compile() -> None:
    for spec in SOURCES:
        assert callable(compile_parser(spec.format_type, spec.parsing_rules))


def app_line(message: str, level: Level, ts: datetime, metadata: dict[str, Any]) -> str:
    """An app_errors line as the application writes it (samples.py keeps only the parts)."""
    return orjson.dumps(
        {"ts": ts.isoformat(), "level": level.value.lower(), "msg": message, **metadata, "pid": 7}
    ).decode()


def test_generated_sample_lines_parse_to_the_generated_values() -> None:
    parsers = {s.name: compile_parser(s.format_type, s.parsing_rules) for s in SOURCES}
    entries = SampleGenerator(seed=11).generate(600, END)
    assert {e.source for e in entries} == {s.name for s in SOURCES}
    for e in entries:
        if e.source == APP.name:
            parsed = parsers[e.source](app_line(e.message, e.level, e.timestamp, e.metadata))
            assert parsed.message == e.message
            assert parsed.timestamp == e.timestamp
            assert parsed.metadata == e.metadata  # metadata_fields: "pid" is left out
        elif e.source == NGINX.name:
            parsed = parsers[e.source](e.message)
            assert parsed.timestamp == e.timestamp.replace(microsecond=0)
            kept = {k: v for k, v in e.metadata.items() if k != "request_time"}
            if kept["referer"] == "-":
                del kept["referer"]
            assert parsed.metadata == kept
            assert parsed.message == e.message  # the line as logged, as the seed stores it
        else:
            parsed = parsers[e.source](e.message)
            assert parsed.message == e.message
            assert parsed.timestamp is None
            assert parsed.metadata["duration_ms"] == e.metadata["duration_ms"]
            assert parsed.metadata["statement"] == e.message.split("statement: ", 1)[1]
        assert parsed.level == e.level, e.message


# --- text -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line", ["hello", "", "   ", "nul \x00 byte", LONE_SURROGATE, "x" * 1_000_000, '{"a": 1}']
)
@pytest.mark.parametrize("format_type", ["text", "plain"])
def test_text_is_the_line_and_never_fails(format_type: str, line: str) -> None:
    assert parse(format_type, line) == ParsedLine(line)


# --- json -----------------------------------------------------------------------------


def test_json_default_fields_and_everything_else_as_metadata() -> None:
    parsed = parse(
        "json",
        '{"timestamp": "2024-05-01T10:00:00.250+02:00", "level": "warning", "message": "disk 91%",'
        ' "event_id": "evt-1", "host": "db-1", "disk": {"mount": "/", "used": [1, 2]}}',
    )
    assert parsed == ParsedLine(
        "disk 91%",
        datetime(2024, 5, 1, 8, 0, 0, 250_000, tzinfo=UTC),
        Level.WARN,
        {"host": "db-1", "disk": {"mount": "/", "used": [1, 2]}},
        "evt-1",
    )
    assert parsed.timestamp is not None and parsed.timestamp.tzinfo is UTC


@pytest.mark.parametrize(
    ("line", "message", "timestamp", "level"),
    [
        ('{"msg": "m", "ts": 1714564800}', "m", datetime(2024, 5, 1, 12, tzinfo=UTC), None),
        (
            '{"msg": "m", "time": 1714564800123}',
            "m",
            datetime(2024, 5, 1, 12, 0, 0, 123_000, tzinfo=UTC),
            None,
        ),
        (
            '{"msg": "m", "@timestamp": "2024-05-01T12:00:00Z"}',
            "m",
            datetime(2024, 5, 1, 12, tzinfo=UTC),
            None,
        ),
        (
            '{"msg": "m", "ts": "1714564800.5"}',
            "m",
            datetime(2024, 5, 1, 12, 0, 0, 500_000, tzinfo=UTC),
            None,
        ),
        (
            '{"msg": "m", "ts": "2024-05-01 12:00:00"}',
            "m",
            datetime(2024, 5, 1, 12, tzinfo=UTC),
            None,
        ),
        ('{"msg": "m", "severity": "CRITICAL"}', "m", None, Level.FATAL),
        ('{"message": "a", "msg": "b", "level": "Info"}', "a", None, Level.INFO),
        ('{"message": null, "msg": "b"}', "b", None, None),
        ('{"msg": "m", "level": 50}', "m", None, Level.ERROR),  # pino
        ('{"msg": 42}', "42", None, None),
    ],
)
def test_json_fallback_fields(
    line: str, message: str, timestamp: datetime | None, level: Level | None
) -> None:
    parsed = parse("json", line)
    assert (parsed.message, parsed.timestamp, parsed.level) == (message, timestamp, level)


def test_json_used_fallbacks_leave_the_metadata_and_others_stay() -> None:
    parsed = parse("json", '{"message": "a", "msg": "b", "ts": 0, "time": "x"}')
    assert parsed.metadata == {"msg": "b", "time": "x"}
    assert parsed.timestamp == datetime(1970, 1, 1, tzinfo=UTC)


def test_json_named_fields_replace_the_defaults() -> None:
    rules = {"message_field": "text", "timestamp_field": "when", "level_field": "lvl"}
    rules |= {"event_id_field": "uuid"}
    parsed = parse(
        "json",
        '{"text": "t", "message": "ignored", "when": "2300-01-01T00:00:00Z", "lvl": "debug",'
        ' "uuid": 123}',
        rules,
    )
    assert parsed == ParsedLine(
        "t", datetime(2300, 1, 1, tzinfo=UTC), Level.DEBUG, {"message": "ignored"}, "123"
    )
    assert "no message field (text)" in parse_error("json", '{"message": "m"}', rules)


def test_json_metadata_fields_keep_only_those() -> None:
    rules = {"metadata_fields": ["service", "msg", "missing"]}
    parsed = parse("json", '{"msg": "m", "service": "api", "secret": "x"}', rules)
    assert parsed.message == "m"
    assert parsed.metadata == {"service": "api", "msg": "m"}


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("", "not valid JSON"),
        ("not json", "not valid JSON"),
        ('{"msg": "a"', "not valid JSON"),
        ("[1, 2]", "expected a JSON object, got list"),
        ('"text"', "expected a JSON object, got str"),
        ("null", "expected a JSON object, got NoneType"),
        ('{"level": "info"}', "no message field (message or msg)"),
        ('{"msg": null}', "no message field"),
        ('{"msg": "  "}', "msg: message is empty"),
        ('{"msg": {"a": 1}}', "msg: message must be text, got dict"),
        ('{"msg": "m", "ts": "yesterday"}', "ts: 'yesterday' is not an RFC 3339 timestamp"),
        ('{"msg": "m", "ts": true}', "ts: must be RFC 3339 text or epoch seconds"),
        ('{"msg": "m", "ts": 1e300}', "ts: epoch value"),
        ('{"msg": "m", "level": "loud"}', "level: unknown level 'loud'"),
        ('{"msg": "m", "level": 35}', "level: numeric level"),
        ('{"msg": "m", "severity": ["x"]}', "severity: must be a string, got list"),
        ('{"msg": "m", "event_id": 1.5}', "event_id: event id must be text or an integer"),
        ('{"msg": "m", "event_id": ""}', "event_id: event id must be 1 to 256 characters"),
        ('{"msg": "m", "a": {"b": 1e400}}', "a.b: the number 1E+400 is out of range"),
        ('{"msg": "m", "a": [1e-400]}', "a[0]: the number 1E-400 is out of range"),
        ('{"msg": "m", "a": NaN}', "a: NaN is not a JSON number"),
        ('{"msg": "m", "a": -Infinity}', "a: -Infinity is not a JSON number"),
        ('{"msg": "m", "ts": NaN}', "ts: NaN is not a JSON number"),
    ],
)
def test_json_bad_lines(line: str, reason: str) -> None:
    assert reason in parse_error("json", line)


def test_json_nasty_input() -> None:
    assert "not valid JSON" in parse_error("json", '{"msg": "\udcff"}')
    assert "not valid JSON" in parse_error("json", '{"msg": "x"}\x00')
    deep = '{"msg": "m", "a": ' + "[" * 5000 + "]" * 5000 + "}"
    assert "not valid JSON" in parse_error("json", deep)
    big = parse("json", '{"msg": "m", "big": 18446744073709551615, "huge": 1' + "0" * 40 + "}")
    assert big.metadata == {"big": 18446744073709551615, "huge": 10**40}  # exactly
    escaped_nul = parse("json", '{"msg": "a\\u0000b"}')
    assert escaped_nul.message == "a\x00b"  # kept; LogEntry refuses it with its reason
    long = parse("json", orjson.dumps({"msg": "x" * 1_000_000}).decode())
    assert len(long.message) == 1_000_000
    assert parse("json", '{"msg": "m", "ts": "1970-01-01T00:00:00Z"}').timestamp == datetime(
        1970, 1, 1, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("rules", "reason"),
    [
        ({"message_field": ""}, "parsing_rules.message_field: must be a non-empty string"),
        ({"level_field": 3}, "parsing_rules.level_field: must be a non-empty string"),
        ({"metadata_fields": "service"}, "parsing_rules.metadata_fields: must be a list"),
        ({"metadata_fields": ["a", 1]}, "parsing_rules.metadata_fields: must be a list"),
    ],
)
def test_json_bad_rules(rules: dict[str, Any], reason: str) -> None:
    assert invalid_rules("json", rules).startswith(reason)


# --- logfmt ---------------------------------------------------------------------------


def test_logfmt_pairs_quotes_and_bare_keys() -> None:
    parsed = parse(
        "logfmt",
        'ts=2024-05-01T12:00:00Z level=warn msg="disk \\"root\\" at 91%" host=db-1 '
        'path=/a?b=c empty= quoted_empty="" dry_run tab="a\\tb" odd="a\\qb"',
    )
    assert parsed == ParsedLine(
        'disk "root" at 91%',
        datetime(2024, 5, 1, 12, tzinfo=UTC),
        Level.WARN,
        {
            "host": "db-1",
            "path": "/a?b=c",
            "empty": "",
            "quoted_empty": "",
            "dry_run": True,
            "tab": "a\tb",
            "odd": "a\\qb",
        },
    )


def test_logfmt_without_a_message_key_is_the_whole_line() -> None:
    line = "  level=error code=500 retry  "
    parsed = parse("logfmt", line)
    assert parsed.message == line
    assert parsed.level == Level.ERROR
    assert parsed.metadata == {"code": 500, "retry": True}
    assert parse("logfmt", "msg level=info").message == "msg level=info"  # bare msg: no text


def test_logfmt_fallback_and_named_fields() -> None:
    parsed = parse("logfmt", "message=hi time=1714564800 event_id=e1")
    assert (parsed.message, parsed.timestamp, parsed.event_id) == (
        "hi",
        datetime(2024, 5, 1, 12, tzinfo=UTC),
        "e1",
    )
    rules = {"message_field": "text", "metadata_fields": ["a"]}
    parsed = parse("logfmt", "text=hello a=1 b=2 msg=other", rules)
    assert (parsed.message, parsed.metadata) == ("hello", {"a": 1})


def test_logfmt_values_are_typed_as_regex_groups_are() -> None:
    """The one rule for formats without types: plain numbers and true/false become those,
    quoted or not (loggers that quote every value are common); fields that become the
    message, time, level or event id keep their text."""
    parsed = parse(
        "logfmt",
        'msg=42 ts=1714564800 event_id=0012 duration_ms=30012 ratio="0.25" ok=true '
        "cached=false id=007 big=123456789012345678901234567890 hex=1e5 ver=1.2.3 neg=-3",
    )
    assert parsed.message == "42"
    assert parsed.event_id == "0012"
    assert parsed.metadata == {
        "duration_ms": 30012,
        "ratio": 0.25,
        "ok": True,
        "cached": False,
        "id": "007",
        "big": 123456789012345678901234567890,
        "hex": "1e5",
        "ver": "1.2.3",
        "neg": -3,
    }
    assert parse("logfmt", "msg=1.50 n=1.50").message == "1.50"  # a message is text as logged


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("Connection at 10:00 is refused", "not logfmt: no key=value pair"),
        ("lonely", "not logfmt: no key=value pair"),
        ("user jdoe logged in attempt=3", "not logfmt: 4 of 5 words are not key=value pairs"),
        (
            'error while reading config path=/etc/x msg="a b"',
            "not logfmt: 4 of 6 words are not key=value pairs",
        ),
    ],
)
def test_a_line_of_words_is_not_logfmt(line: str, reason: str) -> None:
    assert parse_error("logfmt", line) == reason


def test_logfmt_tolerates_a_few_bare_keys() -> None:
    assert parse("logfmt", "level=info retry").metadata == {"retry": True}
    assert parse("logfmt", 'msg="m" dry_run verbose a=1').metadata == {
        "dry_run": True,
        "verbose": True,
        "a": 1,
    }


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("", "empty line"),
        (" \t ", "empty line"),
        ('msg="unterminated value', "not logfmt at 'msg=\"unterminated'"),
        ('msg="a" "stray"', "not logfmt at '\"stray\"'"),
        ('a="x"y', "not logfmt"),
        ("=value", "not logfmt at '=value' (a value without a key)"),
        ('="value"', "not logfmt at '=\"value\"' (an unbalanced quote?)"),
        ("msg=m level=shouting", "level: unknown level 'shouting'"),
        ("msg=m ts=soon", "ts: 'soon' is not an RFC 3339 timestamp"),
        ("msg=m ts=99999999999999999", "ts: epoch value"),
    ],
)
def test_logfmt_bad_lines(line: str, reason: str) -> None:
    assert reason in parse_error("logfmt", line)


@pytest.mark.parametrize(
    "line",
    [
        "a=1 b=two c d= e==f url=/x?y=z",
        "  \tlevel=info\u3000user=jdoe\x0bk=v  ",  # every kind of whitespace
        "a=1 a=2",
        "lonely word=1",
    ],
)
def test_logfmt_lines_without_quotes_read_as_with_them(line: str) -> None:
    """Lines without quotes take a faster path; adding a quoted pair must not change how
    the rest of the line reads."""
    fast = parse("logfmt", line).metadata
    assert parse("logfmt", line + ' q="x"').metadata == {**fast, "q": "x"}


@pytest.mark.parametrize("line", ["k=v =stray", "=="])
def test_logfmt_value_without_key_with_and_without_quotes(line: str) -> None:
    assert "not logfmt at '=" in parse_error("logfmt", line)
    assert "not logfmt at '=" in parse_error("logfmt", line + ' q="x"')


def test_logfmt_nasty_input() -> None:
    assert parse("logfmt", "msg=a\x00b k=v").message == "a\x00b"
    assert parse("logfmt", f"msg={LONE_SURROGATE} k=v").message == LONE_SURROGATE
    huge = parse("logfmt", 'msg="' + "y " * 500_000 + '" k=v')
    assert len(huge.message) == 1_000_000 and huge.metadata == {"k": "v"}
    assert "not logfmt" in parse_error("logfmt", 'msg="' + "y" * 1_000_000)
    assert parse("logfmt", "msg=m ts=2300-01-01T00:00:00Z").timestamp == datetime(
        2300, 1, 1, tzinfo=UTC
    )


# --- nginx / apache -------------------------------------------------------------------

COMBINED = (
    '203.0.113.9 - alice [10/Oct/2000:13:55:36 -0700] "GET /index.html?q=1 HTTP/1.1" 404 2326 '
    '"https://example.com/start" "Mozilla/5.0 (X11; Linux x86_64)"'
)


def test_combined_line_every_field() -> None:
    parsed = parse("nginx_combined", COMBINED)
    assert parsed == ParsedLine(
        COMBINED,  # the line as logged: nothing is lost
        datetime(2000, 10, 10, 20, 55, 36, tzinfo=UTC),
        Level.WARN,  # no level_by_status: 5xx ERROR, 4xx WARN, else INFO
        {
            "client_ip": "203.0.113.9",
            "remote_user": "alice",
            "method": "GET",
            "path": "/index.html?q=1",
            "protocol": "HTTP/1.1",
            "status": 404,
            "bytes": 2326,
            "referer": "https://example.com/start",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64)",
        },
    )


@pytest.mark.parametrize("format_type", ["nginx", "apache_combined", "combined", "NGINX_COMBINED"])
def test_combined_aliases(format_type: str) -> None:
    assert parse(format_type, COMBINED).metadata["status"] == 404


def test_common_format_and_dashes() -> None:
    parsed = parse("nginx", '::1 - - [01/Jan/2024:00:00:00 +0530] "HEAD / HTTP/1.0" 304 -')
    assert parsed.timestamp == datetime(2023, 12, 31, 18, 30, tzinfo=UTC)
    assert parsed.metadata == {
        "client_ip": "::1",
        "method": "HEAD",
        "path": "/",
        "protocol": "HTTP/1.0",
        "status": 304,
        "bytes": 0,
    }


@pytest.mark.parametrize(
    ("request_line", "expected"),
    [
        ("-", {}),
        ("", {}),
        ("\\x16\\x03\\x01\\x00\\xA5\\x01\\x00\\x00\\xA1\\x03\\x03", {}),  # TLS to a plain port
        ("GET /", {"method": "GET", "path": "/"}),  # HTTP/0.9
        ('GET /say?q=\\"hi\\" HTTP/1.1', {"method": "GET", "path": '/say?q=\\"hi\\"'}),  # apache
    ],
)
def test_malformed_request_lines_still_parse(request_line: str, expected: dict[str, str]) -> None:
    line = f'198.51.100.2 - - [10/Oct/2000:13:55:36 +0000] "{request_line}" 400 150 "-" "-"'
    parsed = parse("nginx", line)
    assert parsed.message == line
    request_fields = {k: v for k, v in parsed.metadata.items() if k in ("method", "path")}
    assert request_fields == expected
    assert "referer" not in parsed.metadata and "user_agent" not in parsed.metadata


def test_extra_fields_after_the_user_agent_stay_in_the_message() -> None:
    parsed = parse("nginx", COMBINED + ' "10.0.0.1" 0.123')
    assert parsed.metadata["user_agent"] == "Mozilla/5.0 (X11; Linux x86_64)"
    assert parsed.message == COMBINED + ' "10.0.0.1" 0.123'  # not lost


@pytest.mark.parametrize(
    ("status", "level"),
    [(200, Level.INFO), (302, Level.DEBUG), (404, Level.INFO), (410, Level.WARN),
     (500, Level.ERROR), (503, Level.FATAL), (101, Level.INFO)],
)  # fmt: skip
def test_level_by_status_exact_code_beats_class_beats_default(status: int, level: Level) -> None:
    rules = {
        "level_by_status": {
            "5xx": "ERROR",
            "4xx": "warning",
            "3XX": "debug",
            "404": "INFO",
            "503": "fatal",
            "default": "INFO",
        }
    }
    line = f'1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" {status} 1'
    assert parse("nginx", line, rules).level == level


def test_level_by_status_without_default_is_info() -> None:
    rules = {"level_by_status": {"5xx": "ERROR"}}
    line = '1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 1'
    assert parse("nginx", line, rules).level == Level.INFO


def test_fields_restrict_the_metadata() -> None:
    parsed = parse("nginx", COMBINED, {"fields": ["status", "path", "referer"]})
    assert parsed.metadata == {
        "status": 404,
        "path": "/index.html?q=1",
        "referer": "https://example.com/start",
    }


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("", "not an nginx/apache combined or common log line"),
        ("GET / HTTP/1.1", "not an nginx/apache combined or common log line"),
        ('1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET /" abc 1', "not an nginx"),
        ('1.2.3.4 - - [2000-10-10T13:55:36Z] "GET /" 200 1', "time '2000-10-10T13:55:36Z'"),
        ('1.2.3.4 - - [10/Foo/2000:13:55:36 +0000] "GET /" 200 1', "is not like 10/Oct/2000"),
        ('1.2.3.4 - - [31/Feb/2000:13:55:36 +0000] "GET /" 200 1', "day is out of range"),
        ('1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET /\x00" 200 1', None),
    ],
)
def test_nginx_bad_lines(line: str, reason: str | None) -> None:
    if reason is None:  # NUL inside the request: parsed, LogEntry decides
        assert parse("nginx", line).metadata["path"] == "/\x00"
    else:
        assert reason in parse_error("nginx", line)


def test_nginx_nasty_input() -> None:
    assert "not an nginx" in parse_error("nginx", LONE_SURROGATE)
    long_agent = COMBINED[:-1] + "x" * 1_000_000 + '"'
    assert len(parse("nginx", long_agent).metadata["user_agent"]) > 1_000_000
    line = f'1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET /{LONE_SURROGATE}" 200 1'
    assert parse("nginx", line).metadata["path"] == f"/{LONE_SURROGATE}"
    old = '1.2.3.4 - - [01/Jan/1970:00:00:00 +0000] "GET /" 200 1'
    assert parse("nginx", old).timestamp == datetime(1970, 1, 1, tzinfo=UTC)
    future = '1.2.3.4 - - [01/Jan/2300:00:00:00 -0100] "GET /" 200 1'
    assert parse("nginx", future).timestamp == datetime(2300, 1, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("rules", "reason"),
    [
        ({"pattern": "main"}, "parsing_rules.pattern: must be 'combined' or 'common'"),
        ({"level_by_status": "5xx"}, "parsing_rules.level_by_status: must be an object"),
        ({"level_by_status": {"5xx": "LOUD"}}, "parsing_rules.level_by_status.5xx: unknown level"),
        ({"level_by_status": {"6xx": "ERROR"}}, "parsing_rules.level_by_status.6xx: expected"),
        ({"level_by_status": {">=500": "ERROR"}}, "parsing_rules.level_by_status.>=500"),
        ({"fields": ["status", "country"]}, "parsing_rules.fields: unknown field 'country'"),
    ],
)
def test_nginx_bad_rules(rules: dict[str, Any], reason: str) -> None:
    assert invalid_rules("nginx_combined", rules).startswith(reason)


# --- regex ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("duration", "level"),
    [("0.5", Level.INFO), ("999.9", Level.INFO), ("1000", Level.WARN), ("4999.99", Level.WARN),
     ("5000.0", Level.ERROR), ("123456", Level.ERROR)],
)  # fmt: skip
def test_seeded_slow_query_thresholds(duration: str, level: Level) -> None:
    line = f"duration: {duration} ms  statement: SELECT 1"
    parsed = parse(SLOW_QUERIES.format_type, line, SLOW_QUERIES.parsing_rules)
    assert parsed.level == level
    assert parsed.message == line
    assert parsed.metadata == {"duration_ms": float(duration), "statement": "SELECT 1"}


def test_regex_conventional_groups() -> None:
    rules = {
        "pattern": r"^(?P<timestamp>\S+) \[(?P<level>\w+)\] (?P<logger>[\w.]+): (?P<message>.*)$"
    }
    parsed = parse("regex", "2024-05-01T12:00:00+02:00 [warning] app.db: pool exhausted", rules)
    assert parsed == ParsedLine(
        "pool exhausted",
        datetime(2024, 5, 1, 10, tzinfo=UTC),
        Level.WARN,
        {"logger": "app.db"},
    )


def test_regex_named_groups_and_searching() -> None:
    rules = {
        "pattern": r"at=(?P<when>\d+) lvl=(?P<sev>\w+) text=(?P<text>.+)",
        "message_group": "text",
        "timestamp_group": "when",
        "level_group": "sev",
    }
    parsed = parse("regex", "prefix at=1714564800 lvl=err text=boom", rules)
    assert parsed == ParsedLine("boom", datetime(2024, 5, 1, 12, tzinfo=UTC), Level.ERROR, {})


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("42", 42),
        ("-7", -7),
        ("0", 0),
        ("3.25", 3.25),
        ("007", "007"),  # leading zeros: an id, not a number
        ("1" * 19, int("1" * 19)),
        ("1" * 30, int("1" * 30)),  # beyond 64 bits: kept exactly
        ("9" * 400, "9" * 400),  # beyond what a double holds: stays text
        ("0.12345678901234567", Decimal("0.12345678901234567")),  # exactly, not rounded
        ("12.50", 12.5),
        ("-0", 0),
        ("true", True),
        ("false", False),
        ("True", "True"),
        ("null", "null"),
        ("1e5", "1e5"),  # hex-like: text
        ("+1", "+1"),
        (".5", ".5"),
        ("12abc", "12abc"),
        ("", ""),
    ],
)
def test_regex_numbers_become_numbers(value: str, expected: object) -> None:
    parsed = parse("regex", f"v={value};", {"pattern": r"v=(?P<v>[^;]*);"})
    assert parsed.metadata == {"v": expected}
    assert type(parsed.metadata["v"]) is type(expected)


def test_regex_groups_that_did_not_match() -> None:
    rules = {"pattern": r"(?P<a>a)?(?P<b>b)?(?P<message>m)?(?P<timestamp>t)?(?P<level>l)?x"}
    parsed = parse("regex", "bx", rules)
    assert parsed == ParsedLine("bx", None, None, {"b": "b"})


def test_regex_status_classes_for_a_group() -> None:
    rules = {
        "pattern": r"status=(?P<status>\d+)",
        "level_by_status": {"5xx": "ERROR", "404": "DEBUG", "4xx": "WARN", "default": "INFO"},
    }
    levels = [parse("regex", f"status={s}", rules).level for s in ("503", "404", "400", "200")]
    assert levels == [Level.ERROR, Level.DEBUG, Level.WARN, Level.INFO]
    assert parse("regex", "status=2000", rules).level == Level.INFO  # not a status: default


def test_regex_level_group_wins_over_level_by() -> None:
    rules = {
        "pattern": r"(?P<level>\w+) took (?P<ms>\d+)",
        "level_by_ms": {"100": "WARN"},
    }
    assert parse("regex", "debug took 500", rules).level == Level.DEBUG
    no_default = parse(
        "regex", "x took 5", {"pattern": r"took (?P<ms>\d+)", "level_by_ms": {"100": "WARN"}}
    )
    assert no_default.level is None


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("no numbers here", "line does not match parsing_rules.pattern"),
        ("", "empty line"),
        ("at 2024-13-45 level=info", "timestamp: '2024-13-45' is not an RFC 3339 timestamp"),
        ("at 2024-05-01 level=chatty", "level: unknown level 'chatty'"),
    ],
)
def test_regex_bad_lines(line: str, reason: str) -> None:
    rules = {"pattern": r"at (?P<timestamp>[\d-]+) level=(?P<level>\w+)|(?P<n>\d+)"}
    assert reason in parse_error("regex", line, rules)


def test_regex_nasty_input() -> None:
    rules = SLOW_QUERIES.parsing_rules
    long = "duration: 1 ms  statement: " + "x" * 1_000_000
    parsed = parse("regex", long, rules)
    assert parsed.message == long  # the whole line, uncut
    assert len(parsed.metadata["statement"]) == REGEX_MAX_CHARS - len("duration: 1 ms  statement: ")
    # Quadratic for re.search, but only over the window: about a second, not an hour.
    quadratic = {"pattern": r"(?P<a>\S+) (?P<b>\S+)$"}
    assert "does not match" in parse_error("regex", "x" * 1_000_000, quadratic)
    nul = parse("regex", "duration: 2 ms  statement: \x00", rules)
    assert nul.metadata["statement"] == "\x00"
    surrogate = parse("regex", f"duration: 2 ms  statement: {LONE_SURROGATE}", rules)
    assert surrogate.metadata["statement"] == LONE_SURROGATE
    old = parse("regex", "at 0", {"pattern": r"at (?P<timestamp>\d+)"})
    assert old.timestamp == datetime(1970, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("rules", "reason"),
    [
        ({}, "parsing_rules.pattern: required"),
        ({"pattern": ""}, "parsing_rules.pattern: required"),
        ({"pattern": "(unclosed"}, "parsing_rules.pattern: not a valid regular expression: "),
        ({"pattern": "x" * (MAX_PATTERN_CHARS + 1)}, "parsing_rules.pattern: 2001 characters"),
        ({"pattern": "(a+)+b"}, "parsing_rules.pattern: a repeat inside a repeat"),
        ({"pattern": r"(?:\w+\s?)*$"}, "parsing_rules.pattern: a repeat inside a repeat"),
        ({"pattern": r"^(a|b+)*c"}, "parsing_rules.pattern: a repeat inside a repeat"),
        ({"pattern": r"(?=(a*)*)x"}, "parsing_rules.pattern: a repeat inside a repeat"),
        (
            {"pattern": "x", "message_group": "message"},
            "parsing_rules.message_group: the pattern has no group named 'message'",
        ),
        ({"pattern": "(?P<t>x)", "timestamp_group": 1}, "parsing_rules.timestamp_group: must be"),
        (
            {"pattern": "x", "level_by_ms": {}},
            "parsing_rules.level_by_ms: the pattern has no group named 'ms'",
        ),
        ({"pattern": "(?P<ms>x)", "level_by_ms": []}, "parsing_rules.level_by_ms: must be"),
        (
            {"pattern": "(?P<ms>x)", "level_by_ms": {"fast": "INFO"}},
            "parsing_rules.level_by_ms.fast: expected a number",
        ),
        (
            {"pattern": "(?P<ms>x)", "level_by_ms": {"10": "NOPE"}},
            "parsing_rules.level_by_ms.10: unknown level",
        ),
        (
            {"pattern": "(?P<s>x)", "level_by_s": {"5xx": "ERROR", "soon": "INFO"}},
            "parsing_rules.level_by_s.soon: expected a status class",
        ),
    ],
)
def test_regex_bad_rules(rules: dict[str, Any], reason: str) -> None:
    assert invalid_rules("regex", rules).startswith(reason)


@pytest.mark.parametrize(
    "pattern",
    [
        r"(?:\w++\s?)*$",  # possessive inner repeat
        r"(?>\w+\s?)*$",  # atomic group
        r"(?:\d{3}-)+\d+",  # fixed-count inner repeat
        r'(?:[^"\\]|\\.)*',  # alternatives of single characters
        SLOW_QUERIES.parsing_rules["pattern"],
    ],
)
def test_regex_safe_repeats_are_accepted(pattern: str) -> None:
    assert callable(compile_parser("regex", {"pattern": pattern}))


# --- syslog ---------------------------------------------------------------------------


def test_syslog_format() -> None:
    parsed = parse("syslog", "<13>Nov 26 16:22:49 web-01 sshd[1234]: Accepted publickey")
    assert parsed.message == "Accepted publickey"
    assert parsed.level == Level.INFO
    assert parsed.metadata["app_name"] == "sshd"


def test_syslog_without_text_keeps_the_line() -> None:
    line = '<165>1 2003-10-11T22:14:15.003Z host app - ID47 [a@1 x="1"]'
    parsed = parse("syslog", line)
    assert parsed.message == line
    assert parsed.metadata["structured_data"] == {"a@1": {"x": 1}}


def test_syslog_empty_line() -> None:
    assert parse_error("syslog", "  ") == "empty syslog message"


# --- every format against the worst input ---------------------------------------------

NASTY = [
    "",
    "\x00",
    "a\x00b",
    LONE_SURROGATE,
    "x" * 1_000_000,
    " " * 1_000_000,
    '"' * 10_000,
    "[" * 10_000,
    "=" * 10_000,
    "<" * 10_000,
    '{"a":' * 2000,
    "\ufeff",
    "\r\n",
]
FORMATS = [
    ("text", {}),
    ("json", {}),
    ("logfmt", {}),
    ("nginx", {}),
    ("syslog", {}),
    ("regex", {"pattern": r"level=(?P<level>\w+) (?P<a>\w+)=(?P<b>\d+)"}),
    *((spec.format_type, spec.parsing_rules) for spec in SOURCES),
]


@pytest.mark.parametrize("line", NASTY, ids=lambda line: repr(line[:8]) + f"x{len(line)}")
@pytest.mark.parametrize(("format_type", "rules"), FORMATS, ids=lambda v: str(v)[:14])
def test_nasty_input_parses_or_fails_cleanly(
    format_type: str, rules: dict[str, Any], line: str
) -> None:
    parser = compile_parser(format_type, rules)
    outcome: ParsedLine | LineParseError
    try:
        outcome = parser(line)
    except LineParseError as exc:  # the one exception a parser may raise
        outcome = exc
    if isinstance(outcome, LineParseError):
        assert 0 < len(str(outcome)) < 200
    else:
        assert isinstance(outcome.message, str)
        assert outcome.timestamp is None or outcome.timestamp.utcoffset() == timedelta(0)


def test_timestamps_are_utc_datetimes() -> None:
    parsed = parse("json", '{"msg": "m", "ts": "2024-05-01T12:00:00-05:00"}')
    assert parsed.timestamp == datetime(2024, 5, 1, 12, tzinfo=timezone(timedelta(hours=-5)))
    assert parsed.timestamp is not None and parsed.timestamp.tzinfo is UTC


@pytest.mark.parametrize(
    "line",
    ['{"msg": "m", "a": "\\ud800"}', '{"msg": "m", "n": 123456789012345678901234, "a": "\\udc00"}'],
)
def test_a_json_line_with_an_escaped_lone_surrogate_is_not_json_to_keep(line: str) -> None:
    """Text that is not UTF-8 cannot be stored: the line is kept whole, with the reason,
    whichever reader read its numbers."""
    assert "surrogate" in parse_error("json", line)
