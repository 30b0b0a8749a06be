"""Per-minute rollups of a batch of entries: pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

MinuteKey = tuple[int, datetime, str]


class Countable(Protocol):
    """What a rollup needs of an entry (LogEntry and rows read from the ingest stream)."""

    @property
    def source_id(self) -> int: ...
    @property
    def timestamp(self) -> datetime: ...
    @property
    def level(self) -> str: ...


def minute_counts(entries: Iterable[Countable]) -> Counter[MinuteKey]:
    """Count entries by (source_id, minute, level)."""
    counts: Counter[MinuteKey] = Counter()
    for entry in entries:
        minute = entry.timestamp.replace(second=0, microsecond=0)
        counts[(entry.source_id, minute, str(entry.level))] += 1
    return counts


def as_columns(
    counts: Counter[MinuteKey],
) -> tuple[list[int], list[datetime], list[str], list[int]]:
    """Parallel arrays for an unnest() upsert."""
    sources: list[int] = []
    minutes: list[datetime] = []
    levels: list[str] = []
    values: list[int] = []
    for (source_id, minute, level), count in sorted(counts.items()):
        sources.append(source_id)
        minutes.append(minute)
        levels.append(level)
        values.append(count)
    return sources, minutes, levels, values
