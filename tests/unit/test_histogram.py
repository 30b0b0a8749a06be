"""Histogram intervals, bucket alignment and zero filling, level filters, summary arithmetic."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from logkeep.domain.entry import Level
from logkeep.domain.filters import select_levels
from logkeep.domain.histogram import (
    EPOCH,
    MAX_BUCKETS,
    MINUTE,
    TARGET_BUCKETS,
    BucketCount,
    SourceLevelCount,
    align,
    auto_interval,
    bucket_count,
    bucket_starts,
    ceil_minute,
    check_window_bounds,
    fill_buckets,
    floor_minute,
    histogram_result,
    parse_interval,
    plan_histogram,
    summarise,
    summary_window,
    top_sources,
    whole_minutes,
)
from logkeep.domain.timerange import InvalidQuery, TimeRange

NOW = datetime(2024, 5, 1, 12, 34, 27, 123456, tzinfo=UTC)
RETENTION = timedelta(days=30)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def window(span: timedelta, end: datetime = NOW) -> TimeRange:
    return TimeRange(end - span, end)


# -- windows ------------------------------------------------------------------------------


def test_minutes_floor_and_ceil() -> None:
    assert floor_minute(NOW) == at("2024-05-01T12:34:00")
    assert ceil_minute(NOW) == at("2024-05-01T12:35:00")
    exact = at("2024-05-01T12:34:00")
    assert floor_minute(exact) == ceil_minute(exact) == exact
    assert ceil_minute(exact + timedelta(microseconds=1)) == exact + MINUTE


def test_whole_minutes_widens_to_the_minutes_touched() -> None:
    widened = whole_minutes(TimeRange(at("2024-05-01T12:00:30"), NOW))
    assert widened == TimeRange(at("2024-05-01T12:00:00"), at("2024-05-01T12:35:00"))
    aligned = TimeRange(at("2024-05-01T12:00:00"), at("2024-05-01T13:00:00"))
    assert whole_minutes(aligned) == aligned


def test_summary_window_is_the_last_hours_in_whole_minutes() -> None:
    assert summary_window(NOW, 24) == TimeRange(
        at("2024-04-30T12:34:00"), at("2024-05-01T12:35:00")
    )


@pytest.mark.parametrize(
    ("span_end", "param"),
    [
        (NOW + timedelta(days=3), "to"),
        (NOW - RETENTION - timedelta(days=2), "to"),
    ],
)
def test_windows_that_can_hold_nothing_are_refused(span_end: datetime, param: str) -> None:
    with pytest.raises(InvalidQuery) as info:
        check_window_bounds(window(timedelta(hours=1), span_end), NOW, RETENTION)
    assert info.value.param == param


def test_ordinary_windows_pass_the_bounds() -> None:
    check_window_bounds(window(timedelta(days=1)), NOW, RETENTION)
    # A day view of today ends up to a day ahead.
    today = TimeRange(at("2024-05-01T00:00:00"), at("2024-05-02T00:00:00"))
    check_window_bounds(today, NOW, RETENTION)
    check_window_bounds(window(timedelta(days=1), NOW - RETENTION), NOW, RETENTION)


# -- intervals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("span", "expected"),
    [
        (timedelta(minutes=15), timedelta(minutes=1)),
        (timedelta(hours=1), timedelta(minutes=1)),
        (timedelta(hours=2), timedelta(minutes=1)),
        (timedelta(hours=2, minutes=1), timedelta(minutes=5)),
        (timedelta(hours=24), timedelta(minutes=15)),
        (timedelta(days=7), timedelta(hours=3)),
        (timedelta(days=30), timedelta(hours=6)),
        (timedelta(days=60), timedelta(hours=12)),
        (timedelta(days=365), timedelta(days=1)),  # past the largest: the largest
    ],
)
def test_auto_interval_is_the_smallest_giving_at_most_120_buckets(
    span: timedelta, expected: timedelta
) -> None:
    assert auto_interval(span) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1m", timedelta(minutes=1)),
        ("60s", timedelta(minutes=1)),
        ("5m", timedelta(minutes=5)),
        ("20m", timedelta(minutes=20)),
        ("1h", timedelta(hours=1)),
        ("8h", timedelta(hours=8)),
        ("1d", timedelta(days=1)),
    ],
)
def test_parse_interval_accepts_whole_minutes_dividing_a_day(
    text: str, expected: timedelta
) -> None:
    assert parse_interval(text) == expected


@pytest.mark.parametrize(
    "text",
    ["30s", "90s", "0m", "7m", "5h", "2d", "1w", "5 minutes", "", "-5m", "'; DROP TABLE x; --"],
)
def test_parse_interval_refuses_the_rest(text: str) -> None:
    with pytest.raises(InvalidQuery) as info:
        parse_interval(text)
    assert info.value.param == "interval"


# -- buckets ------------------------------------------------------------------------------


@pytest.mark.parametrize("minutes", [1, 5, 15, 30, 60, 180, 360, 720, 1440])
def test_buckets_are_aligned_contiguous_and_cover_the_window(minutes: int) -> None:
    interval = timedelta(minutes=minutes)
    span = window(timedelta(days=7))
    starts = bucket_starts(whole_minutes(span), interval)
    assert starts[0] <= span.start < starts[0] + interval
    assert starts[-1] < span.end <= starts[-1] + interval
    assert all(b - a == interval for a, b in pairwise(starts))
    for start in starts:
        assert (start - EPOCH) % interval == timedelta(0)
        # Every interval divides a day: buckets also fall on the same times each UTC day.
        midnight = start.replace(hour=0, minute=0)
        assert (start - midnight) % interval == timedelta(0)
    assert len(starts) == bucket_count(whole_minutes(span), interval)


def test_aligned_window_has_exactly_span_over_interval_buckets() -> None:
    day = TimeRange(at("2024-05-01T00:00:00"), at("2024-05-02T00:00:00"))
    assert bucket_count(day, timedelta(minutes=15)) == 96
    assert bucket_count(day, timedelta(hours=1)) == 24
    assert bucket_count(day, timedelta(days=1)) == 1


def test_align_matches_date_bin_from_the_epoch() -> None:
    assert align(at("2024-05-01T12:34:56"), timedelta(minutes=15)) == at("2024-05-01T12:30:00")
    assert align(at("2024-05-01T12:30:00"), timedelta(minutes=15)) == at("2024-05-01T12:30:00")
    assert align(at("2024-05-01T01:00:00"), timedelta(hours=3)) == at("2024-05-01T00:00:00")
    assert align(at("2024-05-01T23:59:59"), timedelta(days=1)) == at("2024-05-01T00:00:00")


def test_auto_sized_histograms_stay_near_the_target() -> None:
    for span in (timedelta(minutes=15), timedelta(hours=1), timedelta(days=1), timedelta(days=7)):
        query = plan_histogram(
            window(span), interval=None, levels=[], min_level=None, source_ids=None
        )
        # Widening and alignment add at most one bucket to ceil(span / interval).
        assert len(query.bucket_starts()) <= TARGET_BUCKETS + 1


def test_explicit_interval_refused_past_max_buckets() -> None:
    with pytest.raises(InvalidQuery) as info:
        plan_histogram(
            window(timedelta(days=7)), interval="1m", levels=[], min_level=None, source_ids=None
        )
    assert info.value.param == "interval"
    assert str(MAX_BUCKETS) in str(info.value)
    # A day of minutes is 1441 buckets at most: allowed.
    query = plan_histogram(
        window(timedelta(days=1)), interval="1m", levels=[], min_level=None, source_ids=None
    )
    assert len(query.bucket_starts()) == 1441


def test_equivalent_requests_have_equal_cache_params() -> None:
    a = plan_histogram(
        TimeRange(at("2024-05-01T10:00:05"), at("2024-05-01T12:00:01")),
        interval=None,
        levels=["error", "FATAL"],
        min_level=None,
        source_ids=[3, 1, 3],
    )
    b = plan_histogram(
        TimeRange(at("2024-05-01T10:00:55"), at("2024-05-01T12:00:50")),
        interval=None,
        levels=["critical", "err"],
        min_level=None,
        source_ids=[1, 3],
    )
    assert a.cache_params() == b.cache_params()
    assert a.cache_params() == {
        "from": "2024-05-01T10:00:00+00:00",
        "to": "2024-05-01T12:01:00+00:00",
        "interval_s": 60,
        "levels": ["ERROR", "FATAL"],
        "sources": [1, 3],
    }


def test_fill_buckets_fills_zeros_and_totals() -> None:
    query = plan_histogram(
        TimeRange(at("2024-05-01T10:00:00"), at("2024-05-01T10:05:00")),
        interval="1m",
        levels=[],
        min_level="warn",
        source_ids=None,
    )
    rows = [
        BucketCount(at("2024-05-01T10:01:00"), "ERROR", 3),
        BucketCount(at("2024-05-01T10:01:00"), "WARN", 2),
        BucketCount(at("2024-05-01T10:04:00"), "FATAL", 1),
    ]
    buckets = fill_buckets(query, rows)
    assert [b["start"] for b in buckets] == [f"2024-05-01T10:0{n}:00+00:00" for n in range(5)]
    assert buckets[0] == {
        "start": buckets[0]["start"],
        "counts": dict.fromkeys(["WARN", "ERROR", "FATAL"], 0),
        "total": 0,
    }
    assert buckets[1]["counts"] == {"WARN": 2, "ERROR": 3, "FATAL": 0}
    assert buckets[1]["total"] == 5
    assert buckets[4]["total"] == 1
    result = histogram_result(query, rows)
    assert result["total"] == 6
    assert result["interval_s"] == 60
    assert result["resolution_s"] == 60
    assert result["levels"] == ["WARN", "ERROR", "FATAL"]


def test_fill_buckets_refuses_rows_outside_the_query() -> None:
    query = plan_histogram(
        TimeRange(at("2024-05-01T10:00:00"), at("2024-05-01T10:05:00")),
        interval="1m",
        levels=["error"],
        min_level=None,
        source_ids=None,
    )
    with pytest.raises(ValueError, match="not in the query"):
        fill_buckets(query, [BucketCount(at("2024-05-01T11:00:00"), "ERROR", 1)])
    with pytest.raises(ValueError, match="not in the query"):
        fill_buckets(query, [BucketCount(at("2024-05-01T10:00:00"), "INFO", 1)])


# -- levels -------------------------------------------------------------------------------


def test_select_levels() -> None:
    assert select_levels([], None) == tuple(Level)
    assert select_levels(["fatal", "error", "ERROR"], None) == (Level.ERROR, Level.FATAL)
    assert select_levels(["warning"], None) == (Level.WARN,)
    assert select_levels([], "warn") == (Level.WARN, Level.ERROR, Level.FATAL)
    assert select_levels([], "debug") == tuple(Level)


@pytest.mark.parametrize(
    ("levels", "min_level", "param"),
    [
        (["error"], "warn", "min_level"),
        (["bogus"], None, "level"),
        ([""], None, "level"),
        (["'; DROP TABLE log_entries; --"], None, "level"),
        ([], "bogus", "min_level"),
    ],
)
def test_select_levels_refuses(levels: list[str], min_level: str | None, param: str) -> None:
    with pytest.raises(InvalidQuery) as info:
        select_levels(levels, min_level)
    assert info.value.param == param


# -- the summary --------------------------------------------------------------------------


def test_summarise_counts_rates_and_error_summary() -> None:
    span = summary_window(NOW, 24)
    last = at("2024-05-01T12:00:00")
    rows = [
        SourceLevelCount(1, "nginx", True, "INFO", 90, last),
        SourceLevelCount(1, "nginx", True, "ERROR", 10, last),
        SourceLevelCount(2, "app", True, "ERROR", 5, last - MINUTE),
        SourceLevelCount(2, "app", True, "FATAL", 5, last),
        SourceLevelCount(3, "quiet", True, None, 0, None),
        SourceLevelCount(4, "retired", False, None, 0, None),
        SourceLevelCount(5, "retired_busy", False, "DEBUG", 1, last),
    ]
    summary = summarise(span, 24, rows)
    assert summary["totals"] == {"events": 111, "errors": 20, "error_rate": round(20 / 111, 6)}
    by_name = {s["source"]: s for s in summary["sources"]}
    assert [s["source"] for s in summary["sources"]] == ["nginx", "app", "retired_busy", "quiet"]
    assert by_name["nginx"]["error_rate"] == 0.1
    assert by_name["app"]["error_rate"] == 1.0
    assert by_name["app"]["counts"] == {"DEBUG": 0, "INFO": 0, "WARN": 0, "ERROR": 5, "FATAL": 5}
    assert by_name["app"]["last_error_minute"] == last.isoformat()
    assert by_name["quiet"]["events"] == 0
    assert by_name["quiet"]["error_rate"] == 0.0
    assert by_name["quiet"]["last_error_minute"] is None
    assert summary["error_summary"] == [
        {
            "source_id": 1,
            "source": "nginx",
            "level": "ERROR",
            "count": 10,
            "last_minute": last.isoformat(),
        },
        {
            "source_id": 2,
            "source": "app",
            "level": "ERROR",
            "count": 5,
            "last_minute": (last - MINUTE).isoformat(),
        },
        {
            "source_id": 2,
            "source": "app",
            "level": "FATAL",
            "count": 5,
            "last_minute": last.isoformat(),
        },
    ]
    assert [t["source"] for t in top_sources(summary, 2)] == ["nginx", "app"]
    assert top_sources(summary, 1) == [
        {"source_id": 1, "source": "nginx", "events": 100, "share": round(100 / 111, 6)}
    ]
    # Quiet sources are listed but are never "top".
    assert [t["source"] for t in top_sources(summary, 10)] == ["nginx", "app", "retired_busy"]


def test_summarise_of_nothing() -> None:
    summary = summarise(summary_window(NOW, 1), 1, [])
    assert summary["totals"] == {"events": 0, "errors": 0, "error_rate": 0.0}
    assert summary["sources"] == []
    assert top_sources(summary, 5) == []
