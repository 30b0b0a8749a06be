"""The shortcuts ingest takes for the common case (UTC RFC 3339 times, usual level
spellings, the record and fingerprint made once) give what the general path gives."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone, tzinfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from logkeep.domain.entry import InvalidLogEntry, Level, LogEntry, parse_timestamp
from logkeep.domain.ingest import (
    SourceRules,
    entry_from_event,
    fingerprint,
    timestamp_us,
)
from logkeep.domain.parsers import compile_parser
from logkeep.domain.stream_rows import encode_row

ALIASES = {"TRACE": "DEBUG", "NOTICE": "INFO", "WARNING": "WARN", "ERR": "ERROR"}
ALIASES |= dict.fromkeys(["CRITICAL", "CRIT", "EMERG", "ALERT", "PANIC"], "FATAL")


def general_time(text: str) -> datetime:
    """parse_timestamp's general path for text, as it was written before the shortcut."""
    text = text.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


# Naive, UTC itself, another zero offset, and a zone west of UTC.
ZONES = [None, UTC, timezone(timedelta(0)), timezone(timedelta(hours=-7))]


@given(
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9998, 1, 1)),
    st.sampled_from(ZONES),
    st.sampled_from(["auto", "seconds", "milliseconds", "microseconds"]),
    st.sampled_from(["", "Z", "z", " "]),
)
def test_times_read_as_the_general_path_reads_them(
    naive: datetime, zone: tzinfo | None, timespec: str, suffix: str
) -> None:
    moment = naive.replace(tzinfo=zone)
    text = moment.isoformat(timespec=timespec)
    if suffix in ("Z", "z") and moment.tzinfo is not None:
        if moment.utcoffset():
            return
        text = text.removesuffix("+00:00") + suffix
    else:
        text += suffix
    read = parse_timestamp(text)
    assert read == general_time(text) and read.tzinfo is UTC
    from_datetime = parse_timestamp(moment)
    assert from_datetime.tzinfo is UTC
    assert from_datetime == (moment if moment.tzinfo else moment.replace(tzinfo=UTC))


@pytest.mark.parametrize("text", ["2026-01-02", "2026-01-02T03:04:05.123456789Z", "nope", ""])
def test_odd_times_take_the_general_path(text: str) -> None:
    try:
        expected: datetime | str = general_time(text)
    except ValueError:
        expected = "refused"
    try:
        got: datetime | str = parse_timestamp(text)
    except InvalidLogEntry:
        got = "refused"
    assert got == expected


@given(
    st.sampled_from([*(lv.value for lv in Level), *ALIASES, "LOUD", "INFOS", ""]),
    st.sampled_from([str.upper, str.lower, str.title, str.swapcase]),
    st.sampled_from(["", " ", "\t"]),
)
def test_levels_parse_as_the_general_path_parses_them(name: str, case: object, pad: str) -> None:
    text = pad + case(name) + pad  # type: ignore[operator]
    key = text.strip().upper()
    expected = Level(ALIASES.get(key, key)) if ALIASES.get(key, key) in Level.__members__ else None
    try:
        got = Level.parse(text)
    except InvalidLogEntry:
        got = None
    assert got == expected
    try:
        entry_level = LogEntry("m", 1, level=text).level
    except InvalidLogEntry:
        entry_level = None
    assert entry_level == expected


def test_the_prepared_record_and_fingerprint_are_what_each_function_makes() -> None:
    now = datetime(2026, 11, 26, 12, tzinfo=UTC)
    source = SourceRules(3, "app", True, "json", compile_parser("json", {}))
    event = {
        "message": "héllo",
        "level": "warning",
        "timestamp": "2026-11-26T11:59:00.5Z",
        "metadata": {"n": 10**30, "f": 0.1},
        "host": "h1",
    }
    prepared = entry_from_event(event, source, now=now)
    entry = prepared.entry
    assert prepared.record == encode_row(
        3, timestamp_us(entry.timestamp), entry.level, "héllo".encode(), entry.metadata_json
    )
    assert prepared.fingerprint == fingerprint(3, None, entry)
    assert entry.metadata == {"host": "h1", "n": 10**30, "f": 0.1}
    # The fingerprint's bytes, as dedup has always hashed them (an update per part).
    h = hashlib.blake2b(digest_size=8)
    for part in (
        (3).to_bytes(4, "big"),
        b"t",
        timestamp_us(entry.timestamp).to_bytes(8, "big", signed=True),
        b"WARN",
        len("héllo").to_bytes(4, "big"),
        "héllo".encode(),
        entry.metadata_json,
    ):
        h.update(part)
    assert prepared.fingerprint == h.digest()
    assert timestamp_us(entry.timestamp) == 1_795_694_340_500_000
