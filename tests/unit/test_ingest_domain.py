"""The pure part of ingest: bodies, lines, events, fingerprints and stream records."""

from __future__ import annotations

import gzip
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from logkeep.cache.ingest_buffer import DedupWindow, retry_after_header
from logkeep.client import shown_time
from logkeep.domain.entry import InvalidLogEntry, Level
from logkeep.domain.ingest import (
    PARSE_ERROR_KEY,
    BodyError,
    SourceRules,
    decode_line,
    decode_records,
    decompress,
    encode_dead_letter,
    encode_entry,
    entry_from_event,
    entry_from_line,
    event_source_ref,
    fingerprint,
    parse_json_array,
    parse_json_line,
    split_lines,
    timestamp_us,
)
from logkeep.domain.parsers import compile_parser
from logkeep.domain.stream_rows import CorruptRecord, decode_row, scan

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
APP = SourceRules(
    id=2,
    name="app_errors",
    is_active=True,
    format_type="json",
    parser=compile_parser("json", {"message_field": "msg", "timestamp_field": "ts"}),
)


def test_decompress_gzip_within_the_limit() -> None:
    assert decompress(gzip.compress(b"a\nb"), "gzip", 100) == b"a\nb"
    assert decompress(b"plain", None, 100) == b"plain"


@pytest.mark.parametrize(
    ("body", "encoding", "status", "words"),
    [
        (gzip.compress(b"x" * 1000), "gzip", 413, "decompressed size"),
        (b"not gzip at all", "gzip", 400, "not valid gzip"),
        (gzip.compress(b"abc")[:-6], "gzip", 400, "truncated"),
        (b"abc", "br", 415, "not supported"),
    ],
)
def test_decompress_refuses(body: bytes, encoding: str, status: int, words: str) -> None:
    with pytest.raises(BodyError, match=words) as info:
        decompress(body, encoding, 100)
    assert info.value.status == status


def test_split_lines_numbers_lines_and_skips_blank_ones() -> None:
    assert list(split_lines(b"a\r\n\n  \nb\n")) == [(1, b"a"), (4, b"b")]


def test_decode_line_names_the_problem() -> None:
    with pytest.raises(InvalidLogEntry, match="byte 2"):
        decode_line(b"ok\xffno", 100)
    with pytest.raises(InvalidLogEntry, match="over the 4-byte line limit"):
        decode_line(b"12345", 4)


def test_parse_json_array_accepts_one_object_and_refuses_scalars() -> None:
    assert parse_json_array(b'{"message": "m"}') == [{"message": "m"}]
    with pytest.raises(BodyError, match="expected a JSON array"):
        parse_json_array(b"42")


def test_event_fields_join_metadata_and_explicit_metadata_wins() -> None:
    event = {"source": "app_errors", "message": "m", "host": "a", "metadata": {"host": "b"}}
    prepared = entry_from_event(event, APP, now=NOW)
    assert prepared.entry.metadata == {"host": "b"}
    assert prepared.fingerprint is None  # no id, no timestamp of its own


def test_event_source_ref_uses_the_default_and_refuses_other_types() -> None:
    assert event_source_ref({"message": "m"}, "app") == "app"
    assert event_source_ref({"source": 3}, None) == 3
    with pytest.raises(InvalidLogEntry, match="is required"):
        event_source_ref({"message": "m"}, None)
    with pytest.raises(InvalidLogEntry, match="must be a JSON object"):
        event_source_ref([1], None)
    with pytest.raises(InvalidLogEntry, match="name or an id"):
        event_source_ref({"source": True}, None)


def test_parse_message_lets_event_fields_win() -> None:
    raw = orjson.dumps({"msg": "inner", "ts": "2026-11-26T11:00:00Z", "level": "warn"}).decode()
    prepared = entry_from_event(
        {"message": raw, "level": "error"}, APP, parse_message=True, now=NOW
    )
    assert prepared.entry.message == "inner"
    assert prepared.entry.level is Level.ERROR
    assert prepared.entry.timestamp == datetime(2026, 11, 26, 11, tzinfo=UTC)
    assert prepared.fingerprint is not None


def test_unparseable_line_is_kept_with_the_reason() -> None:
    prepared = entry_from_line("not json", APP, now=NOW)
    assert prepared.entry.message == "not json"
    assert PARSE_ERROR_KEY in prepared.entry.metadata


def test_fingerprints_distinguish_source_id_and_content() -> None:
    entry = entry_from_event({"message": "m", "timestamp": "2026-11-26T11:00:00Z"}, APP, now=NOW)
    by_content = fingerprint(2, None, entry.entry)
    assert entry.fingerprint == by_content
    assert len(by_content) == 8
    assert fingerprint(3, None, entry.entry) != by_content
    assert fingerprint(2, "id-1", None) != fingerprint(2, "id-2", None)
    assert fingerprint(2, "id-1", None) == fingerprint(2, "id-1", entry.entry)


def test_event_id_limits() -> None:
    with pytest.raises(InvalidLogEntry, match="event_id"):
        entry_from_event({"message": "m", "event_id": "x" * 300}, APP, now=NOW)
    with pytest.raises(InvalidLogEntry, match="event_id"):
        entry_from_event({"message": "m", "event_id": 1.5}, APP, now=NOW)


def test_records_round_trip_through_the_stream_format() -> None:
    prepared = [
        entry_from_event(
            {"message": f"line\n{i} \u00e9", "metadata": {"k": [i, {"n": None}]}},
            APP,
            now=NOW + timedelta(microseconds=i),
        )
        for i in range(3)
    ]
    entries = [p.entry for p in prepared]
    dead_letter = encode_dead_letter(2, "raw \x00 \udcff", "why")
    payload = b"".join([prepared[0].record, dead_letter, *(p.record for p in prepared[1:])])
    scanned = scan(payload)
    rows = [decode_row(payload, at) for at in scanned.starts]
    assert [r.message for r in rows] == [e.message for e in entries]
    assert [r.timestamp for r in rows] == [e.timestamp for e in entries]
    assert [orjson.loads(r.metadata_json) for r in rows] == [dict(e.metadata) for e in entries]
    assert rows[0].copy_record()[2] == "INFO"
    # COPY gets the rows around the dead letter, as they are.
    assert b"".join(scanned.runs) == payload.replace(dead_letter, b"")
    minute = int(NOW.timestamp()) * 1_000_000
    assert scanned.counts == {(2, minute, "INFO"): 3}
    (dead,) = scanned.dead
    assert dead.source_id == 2
    assert dead.reason == "why"
    assert "\x00" not in dead.raw  # PostgreSQL text cannot hold NUL
    assert dead.raw.startswith("raw \\x00")


def test_a_dead_letter_without_a_source_is_read_back() -> None:
    (dead,) = scan(encode_dead_letter(None, "", "no source")).dead
    assert (dead.source_id, dead.raw, dead.reason) == (None, "", "no source")


def test_rollups_count_by_source_minute_and_level() -> None:
    def record(minute: int, level: str, source: SourceRules = APP) -> bytes:
        at = NOW + timedelta(minutes=minute, seconds=59)
        event = {"message": "m", "level": level, "timestamp": at.isoformat()}
        return entry_from_event(event, source, now=NOW + timedelta(hours=1)).record

    other = SourceRules(7, "other", True, "text", compile_parser("text", {}))
    payload = b"".join(
        [record(0, "INFO"), record(0, "INFO"), record(0, "ERROR"), record(1, "INFO"),
         record(0, "INFO", other)]
    )  # fmt: skip
    minute = int(NOW.timestamp()) * 1_000_000
    assert scan(payload).counts == {
        (2, minute, "INFO"): 2,
        (2, minute, "ERROR"): 1,
        (2, minute + 60_000_000, "INFO"): 1,
        (7, minute, "INFO"): 1,
    }


def _row_record() -> bytes:
    return entry_from_event({"message": "m"}, APP, now=NOW).record


@pytest.mark.parametrize(
    "payload",
    [
        b"garbage",
        _row_record()[:-1],  # cut short
        _row_record()[:20],
        b"\x00\x04" + _row_record()[2:],  # a field count no record has
        _row_record().replace(b"INFO", b"NOPE"),
        encode_dead_letter(2, "raw", "why")[:-2],
    ],
)
def test_corrupt_tuples_are_named(payload: bytes) -> None:
    with pytest.raises(CorruptRecord):
        scan(payload)


def test_records_of_the_earlier_json_format_are_still_read() -> None:
    entries = [
        entry_from_event({"message": f"m{i}"}, APP, now=NOW + timedelta(microseconds=i)).entry
        for i in range(2)
    ]
    legacy_dead_letter = b'{"source_id": 2, "raw": "raw", "reason": "why"}'
    rows, dead = decode_records(b"\n".join([*map(encode_entry, entries), legacy_dead_letter]))
    assert [r.message for r in rows] == ["m0", "m1"]
    assert [r.timestamp for r in rows] == [e.timestamp for e in entries]
    assert [(d.source_id, d.raw, d.reason) for d in dead] == [(2, "raw", "why")]


@pytest.mark.parametrize(
    "payload",
    [b"garbage", b'[1, 2, "INFO", "m"]', b'["x", 1, "INFO", "m", {}]', b'[1,1,"NOPE","m",{}]'],
)
def test_corrupt_payloads_are_named(payload: bytes) -> None:
    with pytest.raises(CorruptRecord):
        decode_records(payload)


def test_timestamp_us_is_exact() -> None:
    assert timestamp_us(datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=UTC)) == 1_000_005


def test_dedup_window_buckets() -> None:
    window = DedupWindow(60)
    assert window.bucket_ms == 15_000
    assert window.bucket_indexes(30_000) == [2, 1, 0, -1, -2]
    assert window.ttl_ms == 75_000
    assert DedupWindow(0).bucket_indexes(30_000) == []


def test_retry_after_is_whole_seconds_never_zero() -> None:
    assert retry_after_header(0.001) == "1"
    assert retry_after_header(2.2) == "3"


def test_shown_time_has_one_width() -> None:
    assert shown_time("2026-11-26T16:58:31Z") == "2026-11-26 16:58:31.000"
    assert shown_time("2026-11-26T16:58:31.273456+00:00") == "2026-11-26 16:58:31.273"


def test_concatenated_gzip_members_are_all_read() -> None:
    body = gzip.compress(b"a\n") + gzip.compress(b"b\n")
    assert decompress(body, "gzip", 100) == b"a\nb\n"
    with pytest.raises(BodyError, match="not valid gzip"):
        decompress(gzip.compress(b"a") + b"trailing junk", "gzip", 100)


def test_only_data_errors_make_dead_letters() -> None:
    import asyncpg

    from logkeep.ingest.worker import is_about_the_data

    assert is_about_the_data(asyncpg.DataError())
    assert is_about_the_data(asyncpg.UniqueViolationError())
    assert not is_about_the_data(asyncpg.ReadOnlySQLTransactionError())
    assert not is_about_the_data(asyncpg.DiskFullError())
    assert not is_about_the_data(asyncpg.OutOfMemoryError())


# --- numbers: the same on every way in ------------------------------------------------

NUMBERS = (
    b'{"big": 1000000000000000000000000000000, "u64": 18446744073709551616,'
    b' "neg": -9223372036854775809, "frac": 0.12345678901234567, "exp": 1e30,'
    b' "zero": -0, "tiny": 5e-324}'
)
STORED = (
    b'{"big":1000000000000000000000000000000,"u64":18446744073709551616,'
    b'"neg":-9223372036854775809,"frac":0.12345678901234567,"exp":1e+30,'
    b'"zero":0,"tiny":5e-324}'
)


def test_numbers_of_an_ndjson_line_an_array_and_a_text_line_are_stored_exactly() -> None:
    """The three ways an event reaches entry_from_event/entry_from_line, one result."""
    line = b'{"message": "m", "metadata": ' + NUMBERS + b"}"
    from_line = entry_from_event(parse_json_line(line.decode()), APP, now=NOW).entry
    from_array = entry_from_event(parse_json_array(b"[" + line + b"]")[0], APP, now=NOW).entry
    text = NUMBERS[:-1] + b', "msg": "m"}'
    from_text = entry_from_line(text.decode(), APP, now=NOW).entry
    assert from_line.metadata_json == from_array.metadata_json == STORED
    assert from_text.metadata_json == STORED
    assert from_line.metadata["big"] == 10**30


def test_the_stream_record_carries_the_numbers_exactly() -> None:
    line = b'{"message": "m", "metadata": ' + NUMBERS + b"}"
    record = entry_from_event(parse_json_line(line.decode()), APP, now=NOW).record
    payload = record + record
    rows = [decode_row(payload, at) for at in scan(payload).starts]
    assert [r.metadata_json for r in rows] == [STORED, STORED]
    assert rows[0].metadata["neg"] == -(2**63) - 1
    assert rows[0].copy_record()[4] == STORED


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("1e999", "metadata.x.n: the number 1E+999 is out of range (numbers are kept as"),
        ("-1e999", "metadata.x.n: the number -1E+999 is out of range"),
        ("1e-400", "metadata.x.n: the number 1E-400 is out of range"),
        ("NaN", "metadata.x.n: NaN is not a JSON number"),
        ("-Infinity", "metadata.x.n: -Infinity is not a JSON number"),
    ],
)
def test_an_event_with_a_number_logkeep_does_not_store_is_refused_alone(
    value: str, reason: str
) -> None:
    event = f'{{"message": "m", "x": {{"n": {value}}}}}'
    body = f'[{{"message": "ok"}}, {event}]'.encode()
    first, second = parse_json_array(body)  # the body is read: only the event is refused
    assert entry_from_event(first, APP, now=NOW).entry.message == "ok"
    with pytest.raises(InvalidLogEntry) as info:
        entry_from_event(second, APP, now=NOW)
    assert str(info.value).startswith(reason)
    with pytest.raises(InvalidLogEntry) as as_line:
        entry_from_event(parse_json_line(event), APP, now=NOW)
    assert str(as_line.value) == str(info.value)
    # A text line is kept whole, with the same reason (the path is the line's own field).
    kept = entry_from_line(f'{{"msg": "m", "x": {{"n": {value}}}}}', APP, now=NOW).entry
    assert kept.message == f'{{"msg": "m", "x": {{"n": {value}}}}}'
    assert kept.metadata[PARSE_ERROR_KEY] == str(info.value).removeprefix("metadata.")


def test_an_epoch_timestamp_with_more_digits_than_a_double_is_read() -> None:
    event = parse_json_line('{"message": "m", "timestamp": 1795003200.12345678901}')
    entry = entry_from_event(event, APP, now=NOW).entry
    assert entry.timestamp == datetime(2026, 11, 18, 12, 0, 0, 123457, tzinfo=UTC)
    event = parse_json_line('{"message": "m", "timestamp": NaN}')
    with pytest.raises(InvalidLogEntry, match="timestamp: epoch value is not a finite number"):
        entry_from_event(event, APP, now=NOW)


def test_a_record_written_another_way_still_gives_its_metadata_exactly() -> None:
    """Records are COPYed with their metadata's own bytes; one written with spaces (not by
    encode_entry) is read and written again, exactly."""
    rows, _ = decode_records(b'[2, 1, "INFO", "m", {"n": 1000000000000000000000000000000}]')
    assert rows[0].metadata_json == b'{"n":1000000000000000000000000000000}'
    assert rows[0].metadata == {"n": 10**30}


def test_an_event_nested_deeper_than_orjson_writes_is_refused_with_the_reason() -> None:
    event = parse_json_line('{"message": "m", "x": ' + "[" * 1000 + "null" + "]" * 1000 + "}")
    with pytest.raises(InvalidLogEntry, match="metadata: is not JSON-serialisable: Recursion"):
        entry_from_event(event, APP, now=NOW)


@pytest.mark.parametrize(
    "payload",
    [b'[2,1,"INFO","m",{}]', b'[2, 1, "INFO", "m", {}]', b'[2,1,"INFO","m",{"a":[1]}]'],
)
def test_short_or_spaced_records_are_read_whole(payload: bytes) -> None:
    (row,), _ = decode_records(payload)
    assert row.metadata == orjson.loads(payload)[4]
