"""LogEntry, Level and parse_timestamp: validation of every field, pure."""

from __future__ import annotations

import dataclasses
import math
import re
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import orjson
import pytest

from logkeep.domain.entry import (
    DEFAULT_LIMITS,
    EntryLimits,
    InvalidLogEntry,
    Level,
    LogEntry,
    parse_timestamp,
)

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
LONE_SURROGATE = b"\xff".decode("utf-8", "surrogateescape")


def entry(
    message: Any = "hello world",
    source_id: Any = 1,
    level: Any = "INFO",
    metadata: Any = None,
    timestamp: Any = None,
    limits: EntryLimits = DEFAULT_LIMITS,
) -> LogEntry:
    """Build an entry relative to the fixed NOW; `Any` lets tests pass wrong types."""
    return LogEntry(message, source_id, level, metadata, timestamp, limits=limits, now=NOW)


def rejected(field: str, match: str, **kwargs: Any) -> InvalidLogEntry:
    with pytest.raises(InvalidLogEntry, match=match) as info:
        entry(**kwargs)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")
    return info.value


# --- the exception itself -------------------------------------------------------------


def test_invalid_log_entry_is_a_value_error_with_field_and_reason() -> None:
    exc = InvalidLogEntry("message", "must not be empty")
    assert isinstance(exc, ValueError)
    assert exc.field == "message"
    assert exc.reason == "must not be empty"
    assert str(exc) == "message: must not be empty"


# --- a valid entry --------------------------------------------------------------------


def test_valid_entry_with_defaults() -> None:
    e = entry()
    assert e.message == "hello world"
    assert e.source_id == 1
    assert e.level is Level.INFO
    assert e.metadata == {}
    assert e.timestamp == NOW
    assert e.metadata_json == b"{}"


def test_level_defaults_to_info_when_not_given() -> None:
    assert LogEntry("m", 3, now=NOW).level is Level.INFO


def test_timestamp_defaults_to_current_time_without_injected_now() -> None:
    before = datetime.now(UTC)
    e = LogEntry("m", 1)
    after = datetime.now(UTC)
    assert before <= e.timestamp <= after
    assert e.timestamp.utcoffset() == timedelta(0)


def test_entry_is_frozen() -> None:
    e = entry()
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.message = "changed"  # type: ignore[misc]


def test_metadata_is_copied_and_encoded() -> None:
    original: dict[str, Any] = {"user": "ana", "nested": {"n": [1, 2.5, None, True]}}
    e = entry(metadata=original)
    original["user"] = "mallory"
    assert e.metadata["user"] == "ana"
    assert orjson.loads(e.metadata_json) == {
        "user": "ana",
        "nested": {"n": [1, 2.5, None, True]},
    }


def test_unicode_message_is_accepted() -> None:
    text = "café ☕ — 日本語 🚀"
    assert entry(message=text).message == text


# --- level ----------------------------------------------------------------------------


@pytest.mark.parametrize("level", ["VERBOSE", "information", "5", "", "   ", "DEBUGX"])
def test_unknown_level_is_rejected(level: str) -> None:
    exc = rejected("level", "unknown level", level=level)
    assert repr(level) in exc.reason
    assert "DEBUG, INFO, WARN, ERROR, FATAL" in exc.reason


def test_unknown_level_echo_is_truncated() -> None:
    exc = rejected("level", "unknown level", level="Q" * 10_000)
    assert len(str(exc)) < 200


@pytest.mark.parametrize(
    ("level", "type_name"), [(3, "int"), (None, "NoneType"), (b"INFO", "bytes"), (["INFO"], "list")]
)
def test_non_string_level_is_rejected(level: object, type_name: str) -> None:
    rejected("level", f"must be a string, got {type_name}$", level=level)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("debug", Level.DEBUG),
        ("Info", Level.INFO),
        ("WARN", Level.WARN),
        ("warn", Level.WARN),
        ("warning", Level.WARN),
        ("WARNING", Level.WARN),
        ("Warning", Level.WARN),
        ("error", Level.ERROR),
        ("err", Level.ERROR),
        ("fatal", Level.FATAL),
        ("critical", Level.FATAL),
        ("CRITICAL", Level.FATAL),
        ("crit", Level.FATAL),
        ("emerg", Level.FATAL),
        ("alert", Level.FATAL),
        ("panic", Level.FATAL),
        ("trace", Level.DEBUG),
        ("notice", Level.INFO),
        ("  error \n", Level.ERROR),
    ],
)
def test_level_parse_names_and_aliases(text: str, expected: Level) -> None:
    assert Level.parse(text) is expected


def test_level_parse_passes_levels_through() -> None:
    for level in Level:
        assert Level.parse(level) is level


def test_level_alias_is_applied_by_log_entry() -> None:
    assert entry(level="warning").level is Level.WARN
    assert entry(level="Critical").level is Level.FATAL


def test_level_severity_increases_in_declaration_order() -> None:
    severities = [level.severity for level in Level]
    assert severities == sorted(severities)
    assert len(set(severities)) == len(severities)
    assert Level.DEBUG.severity < Level.FATAL.severity


# --- message --------------------------------------------------------------------------


@pytest.mark.parametrize("message", ["", " ", "   \t\n  "])
def test_empty_or_blank_message_is_rejected(message: str) -> None:
    rejected("message", "must not be empty", message=message)


@pytest.mark.parametrize(
    ("message", "type_name"), [(b"bytes", "bytes"), (None, "NoneType"), (42, "int"), ({}, "dict")]
)
def test_non_string_message_is_rejected(message: object, type_name: str) -> None:
    rejected("message", f"must be a string, got {type_name}$", message=message)


@pytest.mark.parametrize(
    ("message", "position"), [("\x00abc", 0), ("abc\x00def", 3), ("ab\x00", 2)]
)
def test_nul_byte_in_message_is_rejected_with_its_position(message: str, position: int) -> None:
    rejected("message", f"NUL byte at character {position}$", message=message)


def test_lone_surrogate_in_message_is_rejected_with_its_position() -> None:
    assert LONE_SURROGATE == "\udcff"
    exc = rejected("message", "not valid UTF-8", message="ok " + LONE_SURROGATE + " tail")
    assert "character 3" in exc.reason


def test_unpaired_high_surrogate_in_message_is_rejected() -> None:
    rejected("message", r"not valid UTF-8 \(undecodable data at character 1\)", message="a\ud800b")


def test_message_over_the_character_limit_is_rejected() -> None:
    limits = EntryLimits(max_message_chars=10)
    assert entry(message="x" * 10, limits=limits).message == "x" * 10
    rejected("message", "is 11 characters, over the 10 limit", message="x" * 11, limits=limits)


def test_message_limit_counts_characters_not_bytes() -> None:
    limits = EntryLimits(max_message_chars=10)
    # 10 characters, 40 bytes in UTF-8.
    assert len(entry(message="🚀" * 10, limits=limits).message) == 10


def test_giant_message_is_rejected_by_default_limits() -> None:
    limit = DEFAULT_LIMITS.max_message_chars
    assert len(entry(message="y" * limit).message) == limit
    rejected("message", f"over the {limit} limit", message="y" * (limit + 1))


# --- source_id ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source_id",
    [
        *(0, -1, -(2**40), 2**31, 2**40, True, False, "abc", 1.0, None),
        *("0", "-1", "2147483648", "99999999999", " 1", "1 ", "+1", "1.0", ""),
        "\u0661",  # ARABIC-INDIC DIGIT ONE: a digit to str.isdigit, not an id
    ],
)
def test_invalid_source_id_is_rejected(source_id: object) -> None:
    exc = rejected("source_id", "must be an integer from 1 to 2147483647", source_id=source_id)
    assert repr(source_id) in exc.reason


def test_a_huge_source_id_is_rejected_without_printing_it() -> None:
    exc = rejected("source_id", "must be an integer", source_id=10**5000)
    assert "over 40 digits" in exc.reason


@pytest.mark.parametrize("source_id", [1, 2, 2**31 - 1])
def test_positive_source_id_is_accepted(source_id: int) -> None:
    assert entry(source_id=source_id).source_id == source_id


@pytest.mark.parametrize(("text", "number"), [("1", 1), ("12", 12), ("2147483647", 2**31 - 1)])
def test_source_id_as_its_digits_is_the_same_id(text: str, number: int) -> None:
    """The brief passes ids as text: LogEntry("Test log message", str(source_id), "INFO")."""
    e = LogEntry("Test log message", text, "INFO", now=NOW)
    assert e.source_id == number
    assert type(e.source_id) is int
    assert e == entry(message="Test log message", source_id=number, timestamp=e.timestamp)


# --- metadata -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "type_name"),
    [([("a", 1)], "list"), ("a=1", "str"), (5, "int"), ((("a", 1),), "tuple")],
)
def test_metadata_must_be_a_mapping(metadata: object, type_name: str) -> None:
    rejected("metadata", f"must be an object, got {type_name}$", metadata=metadata)


@pytest.mark.parametrize(
    "metadata",
    [
        {"obj": object()},
        {"set": {1, 2}},
        {"bytes": b"raw"},
        {1: "integer key"},
        {"nested": {"deep": [object()]}},
        {"surrogate": LONE_SURROGATE},
    ],
)
def test_metadata_that_is_not_json_serialisable_is_rejected(metadata: dict[Any, Any]) -> None:
    rejected("metadata", "is not JSON-serialisable", metadata=metadata)


@pytest.mark.parametrize(
    "metadata",
    [
        {"k": "a\x00b"},
        {"a\x00": "value"},
        {"nested": {"list": ["ok", "\x00"]}},
        {"\x00": "\x00"},
    ],
)
def test_metadata_with_nul_character_is_rejected(metadata: dict[str, Any]) -> None:
    rejected("metadata", "contains a NUL character", metadata=metadata)


def test_metadata_with_escaped_nul_text_is_accepted() -> None:
    # The six characters backslash-u-0-0-0-0 are ordinary text (an escaped JSON payload,
    # a Windows path); jsonb stores them fine. Only a real NUL character must be refused.
    text = "C:\\u0000dir and {\\u0000}"
    assert "\x00" not in text
    e = entry(metadata={"raw": text})
    assert e.metadata["raw"] == text
    assert orjson.loads(e.metadata_json) == {"raw": text}


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        (10**30, b"1000000000000000000000000000000"),
        (2**64, b"18446744073709551616"),
        (-(2**63) - 1, b"-9223372036854775809"),
        (Decimal("0.12345678901234567"), b"0.12345678901234567"),
        (Decimal("1E+30"), b"1E+30"),
        (Decimal("-0"), b"-0"),
        (0.1, b"0.1"),
        (2**64 - 1, b"18446744073709551615"),
    ],
)
def test_metadata_numbers_are_encoded_exactly(value: Any, stored: bytes) -> None:
    e = entry(metadata={"n": value, "nested": [{"n": value}]})
    assert e.metadata_json == b'{"n":' + stored + b',"nested":[{"n":' + stored + b"}]}"
    assert e.metadata["n"] == value


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (math.nan, "NaN is not a JSON number"),
        (math.inf, "Infinity is not a JSON number"),
        (-math.inf, "-Infinity is not a JSON number"),
        (Decimal("NaN"), "NaN is not a JSON number"),
        (Decimal("-Infinity"), "-Infinity is not a JSON number"),
        (Decimal("1e999"), "the number 1E+999 is out of range"),
        (Decimal("-1e999"), "the number -1E+999 is out of range"),
        (Decimal("1e-400"), "the number 1E-400 is out of range"),
        (10**400, "a number of about 401 digits is out of range"),
    ],
)
def test_metadata_numbers_out_of_range_are_refused_by_name(value: Any, reason: str) -> None:
    exc = rejected("metadata.a.b[1]", re.escape(reason), metadata={"a": {"b": [1, value]}})
    assert exc.reason.startswith(reason)
    if "out of range" in reason:
        assert exc.reason.endswith(
            "(numbers are kept as 0, or from 5e-324 to 1.8e308 in magnitude)"
        )


def test_metadata_over_the_byte_limit_is_rejected() -> None:
    limits = EntryLimits(max_metadata_bytes=100)
    # '{"k":""}' is 8 bytes, so 92 characters of payload make exactly 100 bytes.
    assert len(entry(metadata={"k": "x" * 92}, limits=limits).metadata_json) == 100
    rejected(
        "metadata",
        "is 101 bytes encoded, over the 100 limit",
        metadata={"k": "x" * 93},
        limits=limits,
    )


def test_metadata_limit_counts_encoded_bytes_not_characters() -> None:
    limits = EntryLimits(max_metadata_bytes=100)
    # 58 characters, but "é" is two bytes in UTF-8: 108 bytes encoded.
    rejected("metadata", "is 108 bytes encoded", metadata={"k": "é" * 50}, limits=limits)


def test_metadata_over_default_byte_limit_is_rejected() -> None:
    limit = DEFAULT_LIMITS.max_metadata_bytes
    rejected("metadata", f"over the {limit} limit", metadata={"blob": "z" * limit})


# --- timestamp: accepted forms -------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01T11:59:30Z", datetime(2024, 5, 1, 11, 59, 30, tzinfo=UTC)),
        ("2024-05-01T11:59:30.250Z", datetime(2024, 5, 1, 11, 59, 30, 250_000, tzinfo=UTC)),
        ("2024-05-01T11:59:30+00:00", datetime(2024, 5, 1, 11, 59, 30, tzinfo=UTC)),
        ("2024-05-01T13:59:30+02:00", datetime(2024, 5, 1, 11, 59, 30, tzinfo=UTC)),
        ("2024-05-01T06:59:30-05:00", datetime(2024, 5, 1, 11, 59, 30, tzinfo=UTC)),
        ("2024-05-01T17:29:30+05:30", datetime(2024, 5, 1, 11, 59, 30, tzinfo=UTC)),
        ("2024-05-01T11:59:30", datetime(2024, 5, 1, 11, 59, 30, tzinfo=UTC)),
        ("  2024-05-01T11:59:30Z  ", datetime(2024, 5, 1, 11, 59, 30, tzinfo=UTC)),
    ],
)
def test_rfc3339_timestamps(value: str, expected: datetime) -> None:
    e = entry(timestamp=value)
    assert e.timestamp == expected
    assert e.timestamp.tzinfo is UTC


def test_lowercase_z_is_rfc3339() -> None:
    # RFC 3339 section 5.6: "T" and "Z" may alternatively be lower case.
    assert parse_timestamp("2024-05-01T11:59:30z") == datetime(2024, 5, 1, 11, 59, 30, tzinfo=UTC)


def test_naive_datetime_is_treated_as_utc() -> None:
    e = entry(timestamp=datetime(2024, 5, 1, 11, 0))
    assert e.timestamp == datetime(2024, 5, 1, 11, 0, tzinfo=UTC)
    assert e.timestamp.tzinfo is UTC


def test_aware_datetime_is_converted_to_utc() -> None:
    tokyo = timezone(timedelta(hours=9))
    e = entry(timestamp=datetime(2024, 5, 1, 20, 30, tzinfo=tokyo))
    assert e.timestamp == datetime(2024, 5, 1, 11, 30, tzinfo=UTC)
    assert e.timestamp.tzinfo is UTC


def test_epoch_seconds() -> None:
    seconds = int(NOW.timestamp()) - 90
    assert entry(timestamp=seconds).timestamp == NOW - timedelta(seconds=90)
    assert entry(timestamp=seconds + 0.5).timestamp == NOW - timedelta(seconds=89.5)


def test_epoch_milliseconds() -> None:
    millis = int(NOW.timestamp()) * 1000 - 90_500
    assert entry(timestamp=millis).timestamp == NOW - timedelta(seconds=90.5)
    assert entry(timestamp=float(millis)).timestamp == NOW - timedelta(seconds=90.5)


def test_epoch_seconds_and_milliseconds_agree() -> None:
    seconds = 1_714_564_800  # 2024-05-01T12:00:00Z
    assert parse_timestamp(seconds) == parse_timestamp(seconds * 1000) == NOW


# --- timestamp: rejected values -------------------------------------------------------


@pytest.mark.parametrize("value", [True, False])
def test_boolean_timestamp_is_rejected(value: bool) -> None:
    rejected("timestamp", "not a boolean", timestamp=value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_epoch_is_rejected(value: float) -> None:
    rejected("timestamp", "not a finite number", timestamp=value)


@pytest.mark.parametrize(
    "value",
    ["yesterday", "", "   ", "Z", "2024-13-01T00:00:00Z", "2024-05-01T25:00:00Z", "12/05/2024"],
)
def test_garbage_timestamp_string_is_rejected(value: str) -> None:
    exc = rejected("timestamp", "is not an RFC 3339 timestamp", timestamp=value)
    assert repr(value) in exc.reason


def test_garbage_timestamp_echo_is_truncated() -> None:
    exc = rejected("timestamp", "is not an RFC 3339 timestamp", timestamp="9" * 5000)
    assert len(str(exc)) < 200


@pytest.mark.parametrize(("value", "type_name"), [([2024], "list"), ({}, "dict"), (b"1", "bytes")])
def test_timestamp_of_other_type_is_rejected(value: object, type_name: str) -> None:
    rejected("timestamp", f"got {type_name}$", timestamp=value)


@pytest.mark.parametrize("value", [1e20, -1e20, 10**20])
def test_epoch_out_of_range_is_rejected(value: float) -> None:
    rejected("timestamp", "out of range", timestamp=value)


@pytest.mark.parametrize(
    "value", [pytest.param(10**400, id="10**400"), pytest.param(-(10**400), id="-10**400")]
)
def test_epoch_too_large_for_a_float_is_rejected(value: int) -> None:
    # JSON allows integers of any size; a huge one must be a validation error too.
    with pytest.raises(InvalidLogEntry) as info:
        parse_timestamp(value)
    assert info.value.field == "timestamp"


@pytest.mark.parametrize("value", ["9999-12-31T23:30:00-01:00", "0001-01-01T00:30:00+01:00"])
def test_timestamp_outside_datetime_range_after_utc_conversion_is_rejected(value: str) -> None:
    with pytest.raises(InvalidLogEntry) as info:
        parse_timestamp(value)
    assert info.value.field == "timestamp"


@pytest.mark.parametrize(
    "value", ["1994-05-01T12:00:00Z", "1970-01-01T00:00:00Z", 0, 1, "2024-03-01T00:00:00Z"]
)
def test_timestamp_too_far_in_the_past_is_rejected(value: object) -> None:
    rejected("timestamp", "is more than 30 days in the past", timestamp=value)


@pytest.mark.parametrize("value", ["2054-05-01T12:00:00Z", "9999-12-31T23:59:59Z", 4_102_444_800])
def test_timestamp_too_far_in_the_future_is_rejected(value: object) -> None:
    rejected("timestamp", "is more than 3600s in the future", timestamp=value)


def test_timestamp_window_boundaries() -> None:
    oldest = NOW - DEFAULT_LIMITS.max_age
    newest = NOW + DEFAULT_LIMITS.max_future
    assert entry(timestamp=oldest).timestamp == oldest
    assert entry(timestamp=newest).timestamp == newest
    rejected("timestamp", "in the past", timestamp=oldest - timedelta(seconds=1))
    rejected("timestamp", "in the future", timestamp=newest + timedelta(seconds=1))


def test_timestamp_window_follows_the_limits() -> None:
    limits = EntryLimits(max_age=timedelta(days=2), max_future=timedelta(seconds=10))
    e = entry(timestamp=NOW - timedelta(days=1), limits=limits)
    assert e.timestamp == NOW - timedelta(days=1)
    rejected(
        "timestamp",
        "more than 2 days in the past",
        timestamp=NOW - timedelta(days=3),
        limits=limits,
    )
    rejected(
        "timestamp",
        "more than 10s in the future",
        timestamp=NOW + timedelta(seconds=11),
        limits=limits,
    )


def test_past_rejection_names_the_parsed_timestamp() -> None:
    exc = rejected("timestamp", "in the past", timestamp="1994-05-01T14:00:00+02:00")
    assert "1994-05-01T12:00:00+00:00" in exc.reason


# --- serialisation ---------------------------------------------------------------------


def test_to_dict_round_trip() -> None:
    original = entry(
        message="payment declined",
        source_id=7,
        level="error",
        metadata={"order": "ORD-1", "amount": 12.5, "tags": ["a", "b"]},
        timestamp="2024-05-01T13:30:15.123456+02:00",
    )
    data = original.to_dict()
    assert data == {
        "message": "payment declined",
        "source_id": 7,
        "level": "ERROR",
        "metadata": {"order": "ORD-1", "amount": 12.5, "tags": ["a", "b"]},
        "timestamp": "2024-05-01T11:30:15.123456+00:00",
    }
    # Survives JSON and rebuilds an equal entry.
    rebuilt = LogEntry(**orjson.loads(orjson.dumps(data)), now=NOW)
    assert rebuilt == original
    assert rebuilt.metadata_json == original.metadata_json


def test_to_dict_metadata_is_a_copy() -> None:
    e = entry(metadata={"a": 1})
    data = e.to_dict()
    data["metadata"]["a"] = 2
    assert e.metadata == {"a": 1}


def test_copy_record_shape() -> None:
    e = entry(
        message="slow query",
        source_id=3,
        level="warning",
        metadata={"duration_ms": 1500.5},
        timestamp="2024-05-01T11:00:00Z",
    )
    record = e.copy_record()
    assert len(record) == 5
    source_id, timestamp, level, message, metadata = record
    assert source_id == 3
    assert timestamp == datetime(2024, 5, 1, 11, 0, tzinfo=UTC)
    assert level == "WARN"
    assert message == "slow query"
    assert isinstance(metadata, bytes)
    assert orjson.loads(metadata) == {"duration_ms": 1500.5}
