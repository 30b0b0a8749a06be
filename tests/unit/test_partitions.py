"""Daily partition arithmetic: names, wanted days, expired days."""

from __future__ import annotations

import itertools
from datetime import date, timedelta

import pytest

from logkeep.domain.partitions import (
    expired_days,
    partition_day,
    partition_name,
    retention_cutoff,
    wanted_days,
)

TODAY = date(2024, 5, 10)


def test_partition_name_format() -> None:
    assert partition_name(date(2024, 5, 1)) == "log_entries_p20240501"
    assert partition_name(date(2024, 12, 31)) == "log_entries_p20241231"


def test_partition_name_and_day_round_trip_over_a_leap_year() -> None:
    day = date(2023, 12, 25)
    seen: set[str] = set()
    while day <= date(2025, 1, 5):
        name = partition_name(day)
        assert partition_day(name) == day
        seen.add(name)
        day += timedelta(days=1)
    assert "log_entries_p20240229" in seen
    assert len(seen) == (date(2025, 1, 5) - date(2023, 12, 25)).days + 1


@pytest.mark.parametrize(
    "name",
    [
        "log_entries",
        "log_entries_default",
        "log_entries_p",
        "log_entries_p2024050",
        "log_entries_p202405011",
        "log_entries_p2024-05-01",
        "log_entries_p20240501_old",
        "xlog_entries_p20240501",
        "log_metrics_p20240501",
        "LOG_ENTRIES_P20240501",
        "log_entries_pabcdefgh",
        " log_entries_p20240501",
        "",
    ],
)
def test_non_matching_partition_names_give_none(name: str) -> None:
    assert partition_day(name) is None


@pytest.mark.parametrize(
    "name", ["log_entries_p20241301", "log_entries_p20230229", "log_entries_p20240500"]
)
def test_partition_name_shaped_but_impossible_day_gives_none(name: str) -> None:
    # Names come from the catalogue; one odd table must not crash the retention job.
    assert partition_day(name) is None


def test_retention_cutoff() -> None:
    assert retention_cutoff(TODAY, 30) == date(2024, 4, 10)
    assert retention_cutoff(date(2024, 3, 1), 1) == date(2024, 2, 29)


def test_wanted_days_bounded_by_max_entry_age_when_retention_is_longer() -> None:
    days = wanted_days(TODAY, retention_days=30, days_ahead=3, max_entry_age_days=7)
    assert days[0] == date(2024, 5, 3)
    assert days[-1] == date(2024, 5, 13)
    assert len(days) == 11


def test_wanted_days_bounded_by_retention_when_it_is_shorter() -> None:
    days = wanted_days(TODAY, retention_days=5, days_ahead=2, max_entry_age_days=30)
    assert days[0] == date(2024, 5, 5)
    assert days[-1] == date(2024, 5, 12)
    assert len(days) == 8


@pytest.mark.parametrize(
    ("retention", "ahead", "age"),
    [(1, 1, 1), (30, 3, 30), (30, 3, 7), (7, 3, 30), (90, 14, 45), (2, 1, 365)],
)
def test_wanted_days_are_contiguous_and_cover_the_window(
    retention: int, ahead: int, age: int
) -> None:
    days = wanted_days(TODAY, retention_days=retention, days_ahead=ahead, max_entry_age_days=age)
    assert days[0] == TODAY - timedelta(days=min(retention, age))
    assert days[-1] == TODAY + timedelta(days=ahead)
    assert TODAY in days
    assert len(days) == min(retention, age) + ahead + 1
    assert all(b - a == timedelta(days=1) for a, b in itertools.pairwise(days))
    # Nothing the same run wants is something it would drop.
    assert expired_days(days, TODAY, retention) == []


def test_wanted_days_cross_month_and_year_boundaries() -> None:
    days = wanted_days(date(2024, 1, 1), retention_days=3, days_ahead=2, max_entry_age_days=30)
    assert days == [
        date(2023, 12, 29),
        date(2023, 12, 30),
        date(2023, 12, 31),
        date(2024, 1, 1),
        date(2024, 1, 2),
        date(2024, 1, 3),
    ]


def test_expired_days_are_those_before_the_cutoff_sorted() -> None:
    existing = [
        TODAY,
        TODAY - timedelta(days=100),
        TODAY - timedelta(days=29),
        TODAY - timedelta(days=30),
        TODAY - timedelta(days=31),
        TODAY + timedelta(days=3),
    ]
    assert expired_days(existing, TODAY, 30) == [
        TODAY - timedelta(days=100),
        TODAY - timedelta(days=31),
    ]


def test_expired_days_of_nothing_is_nothing() -> None:
    assert expired_days([], TODAY, 30) == []
    assert expired_days([TODAY, TODAY - timedelta(days=5)], TODAY, 30) == []
