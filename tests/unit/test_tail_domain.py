from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from logkeep.domain import exactjson
from logkeep.domain.search import excluded_documents, metadata_document
from logkeep.domain.tail import EventPosition, TailFilter, contains
from logkeep.domain.timerange import InvalidQuery, parse_time_range


def item(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "source_id": 1,
        "level": "ERROR",
        "message": "Disk full on db-1",
        "metadata": {"http": {"status": 500}, "tags": ["a", "b"]},
    }
    base.update(overrides)
    return base


@pytest.mark.parametrize(
    ("document", "wanted", "expected"),
    [
        ({"a": 1, "b": 2}, {"a": 1}, True),
        ({"a": 1}, {"a": 2}, False),
        ({"a": {"b": {"c": 1}}}, {"a": {"b": {}}}, True),
        ({"tags": ["a", "b"]}, {"tags": ["b"]}, True),
        ({"tags": ["a"]}, {"tags": ["c"]}, False),
        ({"n": 1}, {"n": True}, False),  # jsonb: true is not 1
        ({"n": "500"}, {"n": 500}, False),
        ({}, {}, True),
    ],
)
def test_contains_follows_jsonb_containment(document: Any, wanted: Any, expected: bool) -> None:
    assert contains(document, wanted) is expected


# (metadata.n as stored, the filter's value as written in `metadata.n=...`, whether
# jsonb's @> finds it: tests/integration/test_tail_matching.py asks PostgreSQL the same)
NUMBER_CASES = [
    ("5", "5.0", True),  # the issue: an integer 5 found by metadata.n=5.0, as search does
    ("5.0", "5", True),
    ("5", "5", True),
    ("1e30", "1000000000000000000000000000000", True),  # stored as 10**30
    ("1000000000000000000000000000000", "1E+30", True),
    ("12.50", "12.5", True),
    ("-0.0", "0", True),  # PostgreSQL's numbers have no negative zero
    ("0.12345678901234567", "0.12345678901234567", True),  # a Decimal on both sides
    ("0.12345678901234567", "0.12345678901234568", False),  # one double, not equal
    ("1.5e3", "1500", True),
    ("18446744073709551616", "1.8446744073709552e19", False),  # 2**64 + 384: not 2**64
    ("18446744073709551616", "18446744073709551617", False),
    ("1", "true", False),  # true is not 1
    ("true", "true", True),
    ('"5"', "5", False),  # text is not a number
    ('"5"', '"5"', True),
    ("null", "null", True),
    ("null", "0", False),
    ("[1, 2.0]", "2", False),  # an array does not contain its element at a nested key
]


@pytest.mark.parametrize(("stored", "query", "expected"), NUMBER_CASES)
def test_metadata_numbers_match_by_value_as_search_does(
    stored: str, query: str, expected: bool
) -> None:
    """The metadata as the worker reads it for tail (exactjson), the filter as the API
    builds it from `metadata.n=...` (search's parser): jsonb's answer."""
    metadata = exactjson.loads(exactjson.dumps_storable({"n": exactjson.loads(stored)}))
    wanted = metadata_document([("metadata.n", query)])
    flt = TailFilter.build(
        source_ids=None, levels=[], min_level=None, q=None, substring=None, metadata=wanted
    )
    assert flt.matches(item(metadata=metadata)) is expected
    excluding = TailFilter.build(
        source_ids=None, levels=[], min_level=None, q=None, substring=None,
        excluded_metadata=excluded_documents([("not.metadata.n", query)]),
    )  # fmt: skip
    assert excluding.matches(item(metadata=metadata)) is not expected


def test_filter_by_every_field() -> None:
    flt = TailFilter.build(
        source_ids=[1, 3],
        levels=[],
        min_level="warn",
        q="disk FULL",
        substring="DB-1",
        metadata={"http": {"status": 500}},
    )
    assert flt.matches(item())
    assert not flt.matches(item(source_id=2))
    assert not flt.matches(item(level="INFO"))
    assert not flt.matches(item(message="disk ok on db-1"))  # word "full" missing
    assert not flt.matches(item(message="Disk full on db-2"))  # substring missing
    assert not flt.matches(item(metadata={"http": {"status": 503}}))


def test_words_match_whole_words_only() -> None:
    flt = TailFilter.build(source_ids=None, levels=[], min_level=None, q="disk", substring=None)
    assert flt.matches(item(message="disk"))
    assert not flt.matches(item(message="diskette"))


def test_empty_filter_matches_everything() -> None:
    flt = TailFilter.build(source_ids=None, levels=[], min_level=None, q=None, substring=None)
    assert flt.matches(item())


@pytest.mark.parametrize(
    ("levels", "min_level", "named"),
    [(["ERROR"], "WARN", "min_level"), (["LOUD"], None, "level"), ([], "LOUD", "min_level")],
)
def test_bad_level_filters(levels: list[str], min_level: str | None, named: str) -> None:
    with pytest.raises(InvalidQuery) as info:
        TailFilter.build(
            source_ids=None, levels=levels, min_level=min_level, q=None, substring=None
        )
    assert info.value.param == named


def test_event_ids_round_trip_and_resume_before_their_entry() -> None:
    position = EventPosition.parse("1700000000123-4:17")
    assert position == EventPosition("1700000000123-4", 17)
    assert position.event_id() == "1700000000123-4:17"
    assert position.read_after() == "1700000000123-3"
    assert EventPosition("1700000000123-0", 0).read_after() == f"1700000000122-{2**64 - 1}"
    assert EventPosition("0-0", 0).read_after() == "0-0"


@pytest.mark.parametrize("text", ["", "abc", "1-2", "1-2:", "1:2", "x-1:2", "1-2:3; DROP"])
def test_forged_event_ids_are_refused(text: str) -> None:
    with pytest.raises(InvalidQuery, match="Last-Event-ID"):
        EventPosition.parse(text)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"since": "999999w"}, "since"),
        ({"end": "0001-01-01T00:00:00Z", "since": "2d"}, "since"),
        ({"since": "25h"}, "since"),
        ({"start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"}, "from"),
        ({"start": "yesterday"}, "from"),
        ({"since": "2h", "start": "2026-01-01T00:00:00Z"}, "since"),
    ],
)
def test_time_ranges_out_of_bounds_name_their_parameter(kwargs: dict[str, str], named: str) -> None:
    args: dict[str, Any] = {"start": None, "end": None, "since": None}
    args.update(kwargs)
    with pytest.raises(InvalidQuery) as info:
        parse_time_range(
            **args,
            now=datetime(2026, 1, 1, tzinfo=UTC),
            default=timedelta(hours=1),
            max_span=timedelta(days=1),
        )
    assert info.value.param == named


@pytest.mark.parametrize("text", ["99999999999999999999-0:0", "0-18446744073709551616:0"])
def test_stream_ids_beyond_64_bits_are_refused(text: str) -> None:
    with pytest.raises(InvalidQuery, match="Last-Event-ID"):
        EventPosition.parse(text)
