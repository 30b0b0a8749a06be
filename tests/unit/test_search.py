"""Search parameters, cursors, metadata filters and SQL composition: pure, no servers."""

from __future__ import annotations

import base64
import csv
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest

from logkeep.api.search import CSV_COLUMNS, csv_chunk, ndjson_chunk
from logkeep.db.search import page_statement, stream_statement
from logkeep.domain.entry import Level
from logkeep.domain.search import (
    Cursor,
    OutputFormat,
    Position,
    SearchQuery,
    choose_format,
    decode_cursor,
    encode_cursor,
    like_pattern,
    metadata_document,
    metadata_value,
    parse_search,
    rfc3339,
)
from logkeep.domain.timerange import InvalidQuery

NOW = datetime(2025, 3, 10, 12, 30, 15, 250_000, tzinfo=UTC)
INJECTION = "'; DROP TABLE log_entries; --"


def parse(*items: tuple[str, str], now: datetime = NOW) -> SearchQuery:
    return parse_search(
        list(items),
        now=now,
        default_window=timedelta(hours=24),
        retention=timedelta(days=30),
        max_future=timedelta(hours=1),
    )


def refused(*items: tuple[str, str]) -> InvalidQuery:
    with pytest.raises(InvalidQuery) as info:
        parse(*items)
    return info.value


# ---------------------------------------------------------------------------------------
# Windows


def test_defaults() -> None:
    query = parse()
    # A relative window ends on the next whole second: nothing before the request is
    # left out, and the same query within a second shares a cache entry.
    end = datetime(2025, 3, 10, 12, 30, 16, tzinfo=UTC)
    assert query.window.end == end
    assert query.window.start == end - timedelta(hours=24)
    assert query.limit == 100
    assert query.source_refs == ()
    for unset in (query.levels, query.words, query.contains, query.metadata, query.cursor):
        assert unset is None


def test_since_and_absolute_windows() -> None:
    assert parse(("since", "15m")).window.span == timedelta(minutes=15)
    query = parse(("from", "2025-03-10T00:00:00Z"), ("to", "2025-03-10T06:00:00+00:00"))
    assert query.window.start == datetime(2025, 3, 10, tzinfo=UTC)
    assert query.window.end == datetime(2025, 3, 10, 6, tzinfo=UTC)


@pytest.mark.parametrize(
    ("items", "param"),
    [
        ((("from", "2025-03-10T06:00:00Z"), ("to", "2025-03-10T00:00:00Z")), "from"),
        ((("from", "2025-03-10T06:00:00Z"), ("to", "2025-03-10T06:00:00Z")), "from"),
        ((("from", "0001-01-01T00:00:00Z"),), "from"),  # longer than retention
        ((("since", "9999d"),), "since"),
        ((("since", "999999w"),), "since"),
        ((("to", "0001-01-01T00:00:00Z"),), "to"),
        ((("from", "1990-01-01T00:00:00Z"), ("to", "1990-01-02T00:00:00Z")), "to"),
        ((("from", "2030-01-01T00:00:00Z"), ("to", "2030-01-02T00:00:00Z")), "from"),
        ((("from", "99999-01-01T00:00:00Z"),), "from"),
        ((("to", "yesterday"),), "to"),
        ((("since", "forever"),), "since"),
        ((("since", "1h"), ("from", "2025-03-10T00:00:00Z")), "since"),
    ],
)
def test_bad_windows_name_the_parameter(items: tuple[tuple[str, str], ...], param: str) -> None:
    assert refused(*items).param == param


# ---------------------------------------------------------------------------------------
# Parameters


def test_unknown_parameters_are_named() -> None:
    error = refused(("sourc", "x"), ("colour", "red"), ("q", "a"))
    assert "sourc" in str(error) and "colour" in str(error)
    assert "unknown parameter" in str(error)
    assert INJECTION[:20] in str(refused((INJECTION, "1")))


def test_single_parameters_may_not_repeat() -> None:
    assert refused(("limit", "5"), ("limit", "6")).param == "limit"
    assert refused(("q", "a"), ("q", "b")).param == "q"


def test_nul_is_refused_in_names_and_values() -> None:
    assert refused(("q", "a\x00b")).param == "q"
    assert refused(("contains", "\x00")).param == "contains"
    assert refused(("metadata.k", "v\x00")).param == "metadata.k"


@pytest.mark.parametrize("text", ["0", "-1", "1001", str(10**9), "ten", "", "1.5", "+5", "٣"])
def test_bad_limits(text: str) -> None:
    error = refused(("limit", text))
    assert error.param == "limit"
    assert "1 to 1000" in str(error)


def test_limit_bounds() -> None:
    assert parse(("limit", "1")).limit == 1
    assert parse(("limit", "1000")).limit == 1000


def test_levels_exact_and_minimum() -> None:
    assert parse(("level", "error"), ("level", "WARNING")).levels == (Level.WARN, Level.ERROR)
    assert parse(("min_level", "error")).levels == (Level.ERROR, Level.FATAL)
    # Every level is no filter at all.
    assert parse(("min_level", "debug")).levels is None
    assert refused(("level", "error"), ("min_level", "warn")).param == "min_level"
    assert refused(("level", "LOUD")).param == "level"
    assert refused(("min_level", "")).param == "min_level"


def test_sources_are_deduplicated_and_bounded() -> None:
    assert parse(("source", "b"), ("source", "a"), ("source", "b")).source_refs == ("a", "b")
    assert refused(*[("source", f"s{n}") for n in range(33)]).param == "source"


def test_words() -> None:
    assert parse(("q", "  disk   FULL ")).words == "disk FULL"
    assert refused(("q", "")).param == "q"
    assert refused(("q", "   ")).param == "q"
    assert "no words" in str(refused(("q", "-- ;'")))
    assert refused(("q", "x" * 513)).param == "q"


def test_contains_escapes_like_wildcards() -> None:
    assert parse(("contains", " 100%_done\\ ")).contains_pattern == "% 100\\%\\_done\\\\ %"
    assert like_pattern("a") == "%a%"
    assert refused(("contains", "")).param == "contains"


# ---------------------------------------------------------------------------------------
# Metadata


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("500", 500),
        ("-3", -3),
        ("0.25", 0.25),
        ("1e3", 1000.0),
        ("true", True),
        ("false", False),
        ("null", None),
        ("GET", "GET"),
        ('"500"', "500"),
        ('"unterminated', '"unterminated'),
        ("0500", "0500"),  # not a JSON number
        ("NaN", "NaN"),
        ("", ""),
        ("True", "True"),
    ],
)
def test_metadata_values(text: str, value: Any) -> None:
    parsed = metadata_value(text)
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (str(2**64), 2**64),
        ("-" + str(2**63 + 1), -(2**63) - 1),
        ("1" + "0" * 30, 10**30),
        ("0.12345678901234567", Decimal("0.12345678901234567")),  # not rounded to a double
    ],
)
def test_metadata_values_are_exact_as_ingest_stores_them(text: str, value: Any) -> None:
    parsed = metadata_value(text)
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize("text", ["1e999", "-1e999", "1e-400", "9" * 400, '"a\\u0000b"'])
def test_metadata_values_out_of_range(text: str) -> None:
    with pytest.raises(ValueError, match=r"out of range \(numbers are kept as|NUL"):
        metadata_value(text)


def test_metadata_document_nests_and_merges() -> None:
    document = metadata_document(
        [("metadata.http.status", "500"), ("metadata.http.method", "GET"), ("metadata.ok", "true")]
    )
    assert document == {"http": {"status": 500, "method": "GET"}, "ok": True}
    assert metadata_document([]) is None


@pytest.mark.parametrize(
    "name",
    [
        "metadata.",
        "metadata.a..b",
        "metadata.a b",
        "metadata.ä",
        "metadata.a'",
        "metadata." + "k" * 65,
        "metadata." + ".".join(["k"] * 9),
        "metadata." + INJECTION,
        "metadata.a\n",  # `$` matches before a final newline: the key is checked whole
        "metadata.a\n.b",
    ],
)
def test_bad_metadata_keys(name: str) -> None:
    error = refused((name, "1"))
    assert "metadata keys" in str(error)
    assert error.param == repr(name[:64]) or "\n" not in name  # echoed escaped, never raw


@pytest.mark.parametrize("text", ["500\n", "1e3\n", "-3\n"])
def test_a_number_with_a_final_newline_is_text(text: str) -> None:
    """Only a whole JSON number is a number: `500\n` finds the text, not 500."""
    assert metadata_value(text) == text
    assert metadata_document([("metadata.status", text)]) == {"status": text}


def test_metadata_conflicts_and_count() -> None:
    assert refused(("metadata.a", "1"), ("metadata.a", "2")).param == "metadata.a"
    assert refused(("metadata.a", "1"), ("metadata.a.b", "2")).param == "metadata.a.b"
    assert refused(("metadata.a.b", "1"), ("metadata.a", "2")).param == "metadata.a"
    nine = [(f"metadata.k{n}", "1") for n in range(9)]
    error = refused(*nine)
    assert error.param == "metadata" and "at most 8" in str(error)
    assert parse(*nine[:8]).metadata == {f"k{n}": 1 for n in range(8)}


# ---------------------------------------------------------------------------------------
# Cursors


def cursor_for(query: SearchQuery, at: datetime, entry_id: int = 42) -> str:
    return query.next_cursor(Position(at, entry_id))


def test_cursor_round_trip_is_exact() -> None:
    at = datetime(2025, 3, 10, 11, 0, 0, 123_456, tzinfo=UTC)
    cursor = Cursor(Position(at, 2**63 - 1), at - timedelta(hours=1), "0123456789abcdef")
    text = encode_cursor(cursor)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", text)
    assert decode_cursor(text) == cursor


def test_cursor_continues_the_same_query_with_any_limit() -> None:
    first = parse(("q", "disk"), ("source", "app_errors"))
    at = NOW - timedelta(minutes=5)
    text = cursor_for(first, at)
    second = parse(("q", "disk"), ("source", "app_errors"), ("cursor", text), ("limit", "7"))
    assert second.after == Position(at, 42)
    assert second.limit == 7


def test_cursor_pins_a_relative_window() -> None:
    first = parse(("since", "1h"))
    text = cursor_for(first, NOW - timedelta(minutes=59))
    later = parse(("since", "1h"), ("cursor", text), now=NOW + timedelta(minutes=5))
    # The oldest rows of the first page's window stay in reach on later pages.
    assert later.page_window.start == first.window.start
    assert later.window.start > first.window.start


def test_cursor_of_other_filters_is_refused() -> None:
    text = cursor_for(parse(("q", "disk")), NOW - timedelta(minutes=5))
    for items in [(("q", "full"),), (("q", "disk"), ("level", "error")), ()]:
        error = refused(*items, ("cursor", text))
        assert error.param == "cursor"
        assert "different filters" in str(error)


def _forge(payload: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode()


def forged_cursors() -> list[str]:
    query = parse()
    good = cursor_for(query, NOW - timedelta(minutes=5))
    payload = orjson.loads(base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)))
    t = payload["t"]
    flipped = good[:-1] + ("A" if good[-1] != "A" else "B")
    return [
        good[:-3],  # truncated
        good[:-1],
        good[: len(good) // 2],
        flipped,  # altered
        good + "=",
        good + "A",
        "",
        "garbage!",
        "bm90IGpzb24",  # base64 of "not json"
        _forge({**payload, "i": True}),
        _forge({**payload, "i": 0}),
        _forge({**payload, "i": -5}),
        _forge({**payload, "i": 2**63}),
        _forge({**payload, "i": "42"}),
        _forge({**payload, "t": 1.5}),
        _forge({**payload, "s": t + 1}),  # window starts after the position
        _forge({**payload, "s": t - 40 * 86_400_000_000}),  # a window longer than retention
        _forge({**payload, "t": 2**62}),  # past the year 9999
        _forge({**payload, "v": 2}),
        _forge({**payload, "v": True}),
        _forge({**payload, "f": "x" * 16}),
        _forge({**payload, "f": payload["f"] + "\n"}),
        good + "\n",
        _forge({**payload, "extra": 1}),
        _forge({k: v for k, v in payload.items() if k != "f"}),
        _forge([1, 2, 3]),  # type: ignore[arg-type]
        "A" * 300,
        INJECTION,
    ]


@pytest.mark.parametrize("text", forged_cursors())
def test_forged_truncated_or_garbage_cursors_are_refused(text: str) -> None:
    error = refused(("cursor", text))
    assert error.param == "cursor"


def test_a_cursor_fingerprint_is_checked_whole() -> None:
    good = cursor_for(parse(), NOW - timedelta(minutes=5))
    payload = orjson.loads(base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)))
    assert decode_cursor(good).fingerprint == payload["f"]
    with pytest.raises(InvalidQuery, match="not a cursor this server issued"):
        decode_cursor(_forge({**payload, "f": payload["f"] + "\n"}))


def test_cursor_with_a_changed_from_is_refused() -> None:
    first = parse(("from", "2025-03-10T00:00:00Z"))
    text = cursor_for(first, NOW - timedelta(minutes=5))
    assert parse(("from", "2025-03-10T00:00:00Z"), ("cursor", text)).after is not None
    assert refused(("from", "2025-03-10T01:00:00Z"), ("cursor", text)).param == "cursor"


# ---------------------------------------------------------------------------------------
# Formats and cache keys


@pytest.mark.parametrize(
    ("accept", "fmt"),
    [
        (None, OutputFormat.JSON),
        ("", OutputFormat.JSON),
        ("*/*", OutputFormat.JSON),
        ("application/json", OutputFormat.JSON),
        ("application/x-ndjson", OutputFormat.NDJSON),
        ("text/csv", OutputFormat.CSV),
        ("text/csv; charset=utf-8", OutputFormat.CSV),
        ("application/json;q=0.5, text/csv", OutputFormat.CSV),
        ("text/csv;q=0, application/json", OutputFormat.JSON),
        ("application/x-ndjson, text/csv", OutputFormat.NDJSON),
        ("text/html", OutputFormat.JSON),
    ],
)
def test_choose_format(accept: str | None, fmt: OutputFormat) -> None:
    assert choose_format(accept) is fmt


def test_cache_params_are_normalised_json() -> None:
    a = parse(("q", "disk  full"), ("level", "error"), ("level", "warn"), ("source", "x"))
    b = parse(("source", "x"), ("level", "WARN"), ("level", "ERROR"), ("q", "disk full"))
    assert a.cache_params([3]) == b.cache_params([3])
    assert orjson.loads(orjson.dumps(a.cache_params([3]))) == a.cache_params([3])
    assert a.cache_params([3]) != a.cache_params([4])
    # Same window and filters reached differently: different cursors, different keys.
    c = parse(("since", "24h"))
    d = parse(("from", rfc3339(c.window.start)), ("to", rfc3339(c.window.end)))
    assert c.window == d.window
    assert c.cache_params(None) != d.cache_params(None)


def test_rfc3339_matches_the_api_models() -> None:
    assert rfc3339(datetime(2025, 1, 2, 3, 4, 5, 6, tzinfo=UTC)) == "2025-01-02T03:04:05.000006Z"


# ---------------------------------------------------------------------------------------
# SQL composition


def test_input_reaches_sql_only_as_parameters() -> None:
    query = parse(
        ("q", INJECTION),
        ("contains", INJECTION),
        ("metadata.k", INJECTION),
        ("source", "x"),
        ("min_level", "warn"),
        (
            "cursor",
            cursor_for(
                parse(
                    ("q", INJECTION),
                    ("contains", INJECTION),
                    ("metadata.k", INJECTION),
                    ("source", "x"),
                    ("min_level", "warn"),
                ),
                NOW - timedelta(minutes=1),
            ),
        ),
    )
    for sql, args in (page_statement(query, [7]), stream_statement(query, [7], 50)):
        assert "DROP" not in sql and INJECTION not in sql
        placeholders = {int(n) for n in re.findall(r"\$(\d+)", sql)}
        assert placeholders == set(range(1, len(args) + 1))
        assert any(INJECTION in str(a) for a in args)
        assert 'le."timestamp" >= $1' in sql and 'le."timestamp" < $2' in sql


def test_page_statement_without_filters() -> None:
    sql, args = page_statement(parse(("limit", "10")), None)
    assert args[2] == 11  # one more row than asked, to know whether a page follows
    assert "ANY(" not in sql and "@@" not in sql and "ILIKE" not in sql


def test_words_narrow_the_hot_tier_with_ascii_ilike_hints() -> None:
    sql, args = page_statement(parse(("q", "Disk ORD-12"), ("contains", "ünï_x")), None)
    assert "ILIKE $" in sql and 'COLLATE "C"' in sql
    assert {"%Disk%", "%ORD-12%", "%\\_x%"} <= set(args)


# ---------------------------------------------------------------------------------------
# Export encodings


ITEMS: list[dict[str, Any]] = [
    {
        "id": 1,
        "source_id": 2,
        "source": "app_errors",
        "timestamp": "2025-01-02T03:04:05Z",
        "level": "ERROR",
        "message": 'multi\nline, "quoted" =cmd()',
        "metadata": {"a": [1, "x,y"], "b": None},
        "ingested_at": "2025-01-02T03:04:06Z",
    },
    {
        "id": 3,
        "source_id": 2,
        "source": "app_errors",
        "timestamp": "2025-01-02T03:04:04Z",
        "level": "INFO",
        "message": "plain ünïcode",
        "metadata": {},
        "ingested_at": "2025-01-02T03:04:06Z",
    },
]


def test_csv_parses_back() -> None:
    text = (csv_chunk(ITEMS[:1], header=True) + csv_chunk(ITEMS[1:])).decode("utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == list(CSV_COLUMNS)
    assert len(rows) == 3
    for row, entry in zip(rows[1:], ITEMS, strict=True):
        assert row[:5] == [
            str(entry["id"]),
            entry["timestamp"],
            entry["source"],
            entry["level"],
            entry["message"],
        ]
        assert orjson.loads(row[5]) == entry["metadata"]


def test_ndjson_parses_back() -> None:
    lines = ndjson_chunk(ITEMS).decode("utf-8").splitlines()
    assert [orjson.loads(line) for line in lines] == ITEMS


def test_a_hand_made_cursor_far_in_the_past_is_refused_not_a_crash() -> None:
    first = parse(("q", "disk"))
    ancient = datetime(1, 1, 2, tzinfo=UTC)
    forged = encode_cursor(
        Cursor(Position(ancient + timedelta(days=29), 1), ancient, first.fingerprint)
    )
    assert refused(("q", "disk"), ("cursor", forged)).param == "cursor"


@pytest.mark.parametrize("message", ['=HYPERLINK("http://x")', "+1+1", "-2", "@SUM(A1)", "\tx"])
def test_csv_cells_never_start_a_formula(message: str) -> None:
    item = {**ITEMS[0], "message": message}
    row = next(csv.reader(io.StringIO(csv_chunk([item]).decode("utf-8"))))
    assert row[4] == "'" + message


def test_csv_leaves_ordinary_text_alone() -> None:
    item = {**ITEMS[0], "message": "GET /health -> 200"}
    row = next(csv.reader(io.StringIO(csv_chunk([item]).decode("utf-8"))))
    assert row[4] == "GET /health -> 200"
