"""Sample data: deterministic per seed, realistic, and always valid entries."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from logkeep.domain.entry import Level, LogEntry
from logkeep.domain.samples import (
    APP,
    NGINX,
    SLOW_QUERIES,
    SOURCES,
    SampleEntry,
    SampleGenerator,
    fixed_test_entries,
)

END = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
SOURCE_IDS = {spec.name: n for n, spec in enumerate(SOURCES, start=1)}
COUNT = 1500


@pytest.fixture(scope="module")
def generated() -> list[SampleEntry]:
    return SampleGenerator(seed=7).generate(COUNT, END)


def as_log_entry(sample: SampleEntry, now: datetime) -> LogEntry:
    return LogEntry(
        sample.message,
        SOURCE_IDS[sample.source],
        sample.level,
        sample.metadata,
        sample.timestamp,
        now=now,
    )


def test_sources_are_the_three_of_the_brief() -> None:
    assert [s.name for s in SOURCES] == ["nginx_access", "app_errors", "db_slow_queries"]
    assert sum(s.share for s in SOURCES) == pytest.approx(1.0)


def test_generate_is_deterministic_for_a_seed(generated: list[SampleEntry]) -> None:
    again = SampleGenerator(seed=7).generate(COUNT, END)
    assert again == generated


def test_generate_differs_between_seeds() -> None:
    a = SampleGenerator(seed=1).generate(50, END)
    b = SampleGenerator(seed=2).generate(50, END)
    assert [e.message for e in a] != [e.message for e in b]


@pytest.mark.parametrize("count", [0, 1, 37])
def test_generate_returns_the_requested_count(count: int) -> None:
    assert len(SampleGenerator(seed=3).generate(count, END)) == count


def test_generate_is_in_time_order_within_the_window(generated: list[SampleEntry]) -> None:
    stamps = [e.timestamp for e in generated]
    assert stamps == sorted(stamps)
    assert all(END - timedelta(days=7) <= ts <= END for ts in stamps)
    # Spread over the window, not bunched at one end.
    assert stamps[0] < END - timedelta(days=6)
    assert stamps[-1] > END - timedelta(days=1)


def test_generate_respects_a_shorter_window() -> None:
    entries = SampleGenerator(seed=3).generate(200, END, days=1)
    assert all(END - timedelta(days=1) <= e.timestamp <= END for e in entries)


def test_all_three_sources_appear_in_their_shares(generated: list[SampleEntry]) -> None:
    by_source = Counter(e.source for e in generated)
    assert set(by_source) == {NGINX.name, APP.name, SLOW_QUERIES.name}
    assert 0.6 < by_source[NGINX.name] / COUNT < 0.8
    assert 0.08 < by_source[APP.name] / COUNT < 0.22
    assert 0.08 < by_source[SLOW_QUERIES.name] / COUNT < 0.22


def test_nginx_levels_follow_status(generated: list[SampleEntry]) -> None:
    nginx = [e for e in generated if e.source == NGINX.name]
    statuses = set()
    for e in nginx:
        status = e.metadata["status"]
        statuses.add(status)
        expected = Level.ERROR if status >= 500 else Level.WARN if status >= 400 else Level.INFO
        assert e.level is expected, (status, e.level)
        assert f'HTTP/1.1" {status} ' in e.message
    # The sample is big enough to exercise all three branches.
    assert any(s >= 500 for s in statuses)
    assert any(400 <= s < 500 for s in statuses)
    assert any(s < 400 for s in statuses)


def test_slow_query_levels_follow_duration(generated: list[SampleEntry]) -> None:
    slow = [e for e in generated if e.source == SLOW_QUERIES.name]
    assert slow
    for e in slow:
        duration = e.metadata["duration_ms"]
        expected = (
            Level.ERROR if duration >= 5000 else Level.WARN if duration >= 1000 else Level.INFO
        )
        assert e.level is expected, (duration, e.level)
        assert e.message.startswith(f"duration: {duration} ms  statement: ")


def test_app_messages_name_their_exception(generated: list[SampleEntry]) -> None:
    app = [e for e in generated if e.source == APP.name]
    assert app
    for e in app:
        assert e.message.startswith(f"{e.metadata['exception']}: ")
        assert len(e.metadata["trace_id"]) == 32


@pytest.mark.parametrize("seed", [5, 7, 11])
def test_every_generated_entry_is_a_valid_log_entry(seed: int) -> None:
    samples = SampleGenerator(seed=seed).generate(1000, END)
    for sample in samples:
        entry = as_log_entry(sample, END)
        assert entry.timestamp == sample.timestamp
        assert entry.level is sample.level
        assert entry.metadata == sample.metadata


def test_iter_batches_splits_the_same_entries() -> None:
    batches = list(SampleGenerator(seed=4).iter_batches(250, END, batch=100))
    assert [len(b) for b in batches] == [100, 100, 50]
    assert [e for b in batches for e in b] == SampleGenerator(seed=4).generate(250, END)


NOW_WITH_MICROS = datetime(2024, 5, 1, 12, 0, 0, 654_321, tzinfo=UTC)


def test_fixed_test_entries_shape() -> None:
    entries = fixed_test_entries(NOW_WITH_MICROS)
    assert len(entries) == 60
    assert Counter(e.source for e in entries) == {s.name: 20 for s in SOURCES}
    stamps = [e.timestamp for e in entries]
    assert stamps == sorted(stamps)
    assert all(ts.microsecond == 0 for ts in stamps)
    assert all(NOW_WITH_MICROS - timedelta(minutes=21) <= ts < NOW_WITH_MICROS for ts in stamps)


def test_fixed_test_entries_are_deterministic() -> None:
    assert fixed_test_entries(END) == fixed_test_entries(END)


def test_fixed_test_entries_levels_cycle_per_source() -> None:
    levels = list(Level)
    for e in fixed_test_entries(END):
        seq = e.metadata["seq"]
        assert e.level is levels[seq % len(levels)]
        assert e.timestamp == END - timedelta(minutes=seq + 1)
        assert e.message == f"{e.source} test entry {seq:02d} ({e.level.value})"
    per_source_levels = Counter((e.source, e.level) for e in fixed_test_entries(END))
    assert set(per_source_levels.values()) == {4}


def test_fixed_test_entries_are_valid_log_entries() -> None:
    for sample in fixed_test_entries(NOW_WITH_MICROS):
        entry = as_log_entry(sample, NOW_WITH_MICROS)
        assert entry.timestamp == sample.timestamp
