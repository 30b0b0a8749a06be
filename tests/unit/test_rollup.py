"""Per-minute rollups of a batch of entries."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from logkeep.domain.entry import Level, LogEntry
from logkeep.domain.rollup import MinuteKey, as_columns, minute_counts

NOW = datetime(2024, 5, 1, 12, 30, tzinfo=UTC)
NOON = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
ONE_PAST = datetime(2024, 5, 1, 12, 1, tzinfo=UTC)


def make(source_id: int, timestamp: str, level: str = "INFO") -> LogEntry:
    return LogEntry("m", source_id, level, timestamp=timestamp, now=NOW)


BATCH = [
    make(1, "2024-05-01T12:00:00Z"),
    make(1, "2024-05-01T12:00:59.999999Z"),
    make(1, "2024-05-01T12:01:00Z"),
    make(1, "2024-05-01T12:00:30Z", "ERROR"),
    make(2, "2024-05-01T12:00:10Z"),
    # Same UTC minute as the entry above, sent with an offset.
    make(2, "2024-05-01T17:30:45+05:30"),
    make(2, "2024-05-01T12:00:20Z", "warning"),
]


def test_minute_counts_groups_by_source_minute_and_level() -> None:
    counts = minute_counts(BATCH)
    assert counts == Counter(
        {
            (1, NOON, "INFO"): 2,
            (1, ONE_PAST, "INFO"): 1,
            (1, NOON, "ERROR"): 1,
            (2, NOON, "INFO"): 2,
            (2, NOON, "WARN"): 1,
        }
    )
    assert sum(counts.values()) == len(BATCH)


def test_minute_keys_are_whole_utc_minutes() -> None:
    for _, minute, level in minute_counts(BATCH):
        assert minute.second == 0
        assert minute.microsecond == 0
        assert minute.utcoffset() == timedelta(0)
        assert level in {lv.value for lv in Level}


def test_minute_counts_accepts_any_iterable() -> None:
    assert minute_counts(iter(BATCH)) == minute_counts(BATCH)
    assert minute_counts(e for e in BATCH[:1]) == Counter({(1, NOON, "INFO"): 1})


def test_empty_batch() -> None:
    counts = minute_counts([])
    assert counts == Counter()
    assert as_columns(counts) == ([], [], [], [])


def test_as_columns_yields_sorted_parallel_arrays() -> None:
    counts = minute_counts(BATCH)
    sources, minutes, levels, values = as_columns(counts)
    assert len(sources) == len(minutes) == len(levels) == len(values) == len(counts)
    assert sources == [1, 1, 1, 2, 2]
    assert minutes == [NOON, NOON, ONE_PAST, NOON, NOON]
    assert levels == ["ERROR", "INFO", "INFO", "INFO", "WARN"]
    assert values == [1, 2, 1, 2, 1]


def test_as_columns_round_trips_to_the_counts() -> None:
    counts = minute_counts(BATCH)
    sources, minutes, levels, values = as_columns(counts)
    rebuilt: Counter[MinuteKey] = Counter()
    for key, value in zip(zip(sources, minutes, levels, strict=True), values, strict=True):
        rebuilt[key] = value
    assert rebuilt == counts
    keys = list(zip(sources, minutes, levels, strict=True))
    assert keys == sorted(keys)
