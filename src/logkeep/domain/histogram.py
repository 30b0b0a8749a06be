"""The pure parts of the aggregates: windows in whole minutes, histogram intervals, bucket
alignment and zero filling, level filters, and the summary's arithmetic. No I/O.

Aggregates read the per-minute rollups (log_metrics), so their resolution is one minute:
every window is widened to the whole minutes it touches, and every interval is a whole
number of minutes. Buckets are aligned to multiples of the interval counted from the Unix
epoch in UTC (what PostgreSQL's `date_bin(interval, t, '1970-01-01Z')` computes); each
interval divides a day, so buckets also start on UTC midnight.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from logkeep.domain.entry import Level
from logkeep.domain.filters import select_levels
from logkeep.domain.timerange import InvalidQuery, TimeRange, parse_duration

MINUTE = timedelta(minutes=1)
DAY = timedelta(days=1)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # the origin passed to date_bin

# Intervals the histogram sizes itself with: the smallest giving at most TARGET_BUCKETS
# buckets over the requested span (a chart about 120 bars wide), else the largest.
AUTO_INTERVALS: tuple[timedelta, ...] = tuple(
    timedelta(minutes=m) for m in (1, 5, 15, 30, 60, 180, 360, 720, 1440)
)
TARGET_BUCKETS = 120
# An explicit interval= may ask for finer buckets, up to this many (30 days of 30m).
MAX_BUCKETS = 1500
# A window ending further ahead than this is a mistake (entries are refused past an hour
# ahead; a day view of today ends at most a day ahead), and far-future instants would
# overflow datetime arithmetic.
MAX_FUTURE = timedelta(days=2)
ERROR_LEVELS = (Level.ERROR, Level.FATAL)


def _ceil_div(a: timedelta, b: timedelta) -> int:
    return -(-a // b)


# -- windows ------------------------------------------------------------------------------


def floor_minute(t: datetime) -> datetime:
    return t.replace(second=0, microsecond=0)


def ceil_minute(t: datetime) -> datetime:
    floor = floor_minute(t)
    return floor if floor == t else floor + MINUTE


def whole_minutes(window: TimeRange) -> TimeRange:
    """The whole minutes `window` touches. Rollups count whole minutes, so the minute in
    progress (already in log_metrics at commit) is counted up to now, and a `from` of
    12:00:30 counts from 12:00:00."""
    return TimeRange(floor_minute(window.start), ceil_minute(window.end))


def check_window_bounds(window: TimeRange, now: datetime, retention: timedelta) -> None:
    """Refuse windows that can hold no entries at all: far in the future, or ended before
    the retention period (a day of slack for partitions not yet dropped)."""
    if window.end > now + MAX_FUTURE:
        raise InvalidQuery(
            "to", f"{window.end.isoformat()} is more than {MAX_FUTURE.days} days ahead"
        )
    oldest = now - retention - DAY
    if window.end <= oldest:
        raise InvalidQuery(
            "to",
            f"the window ends before the {retention.days}-day retention period "
            f"({window.end.isoformat()}); nothing is kept that old",
        )


def summary_window(now: datetime, hours: int) -> TimeRange:
    """The last `hours` up to now, in whole minutes."""
    return whole_minutes(TimeRange(now - timedelta(hours=hours), now))


# -- intervals and buckets ----------------------------------------------------------------


def align(instant: datetime, interval: timedelta) -> datetime:
    """Start of the bucket holding `instant`, as date_bin(interval, instant, EPOCH)."""
    return EPOCH + ((instant - EPOCH) // interval) * interval


def bucket_count(window: TimeRange, interval: timedelta) -> int:
    return _ceil_div(window.end - align(window.start, interval), interval)


def bucket_starts(window: TimeRange, interval: timedelta) -> list[datetime]:
    """Every bucket overlapping the window, in order; the first and last may be partial
    (they count only the minutes inside the window)."""
    first = align(window.start, interval)
    return [first + n * interval for n in range(bucket_count(window, interval))]


def auto_interval(span: timedelta) -> timedelta:
    """The smallest AUTO_INTERVALS entry giving at most TARGET_BUCKETS over `span`."""
    for candidate in AUTO_INTERVALS:
        if _ceil_div(span, candidate) <= TARGET_BUCKETS:
            return candidate
    return AUTO_INTERVALS[-1]


def parse_interval(text: str) -> timedelta:
    """An explicit interval: whole minutes (the rollups' resolution), dividing a day so
    buckets start at the same times every UTC day."""
    interval = parse_duration(text, "interval")
    if interval < MINUTE or interval % MINUTE:
        raise InvalidQuery(
            "interval", f"{text[:32]!r} is not a whole number of minutes (counts are per minute)"
        )
    if interval > DAY or DAY % interval:
        raise InvalidQuery(
            "interval", f"{text[:32]!r} does not divide a day (use e.g. 1m, 5m, 15m, 1h, 6h, 1d)"
        )
    return interval


# -- levels -------------------------------------------------------------------------------


# -- the histogram ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HistogramQuery:
    """A normalised histogram request: equal requests make equal cache keys."""

    window: TimeRange  # whole minutes
    interval: timedelta
    levels: tuple[Level, ...]
    source_ids: tuple[int, ...] | None  # sorted; None means every source

    def bucket_starts(self) -> list[datetime]:
        return bucket_starts(self.window, self.interval)

    def cache_params(self) -> dict[str, Any]:
        return {
            "from": self.window.start.isoformat(),
            "to": self.window.end.isoformat(),
            "interval_s": int(self.interval.total_seconds()),
            "levels": [lv.value for lv in self.levels],
            "sources": None if self.source_ids is None else list(self.source_ids),
        }


def plan_histogram(
    requested: TimeRange,
    *,
    interval: str | None,
    levels: Sequence[str],
    min_level: str | None,
    source_ids: Sequence[int] | None,
) -> HistogramQuery:
    """Validate and normalise a histogram request (InvalidQuery names the parameter)."""
    window = whole_minutes(requested)
    # Auto-sizing looks at the requested span, so `since=2h` is 1m buckets at any second.
    chosen = auto_interval(requested.span) if interval is None else parse_interval(interval)
    count = bucket_count(window, chosen)
    if count > MAX_BUCKETS:
        raise InvalidQuery(
            "interval",
            f"{interval!r} gives {count} buckets over this window, more than {MAX_BUCKETS}; "
            "choose a longer interval or a shorter window",
        )
    return HistogramQuery(
        window=window,
        interval=chosen,
        levels=select_levels(levels, min_level),
        source_ids=None if source_ids is None else tuple(sorted(set(source_ids))),
    )


@dataclass(frozen=True, slots=True)
class BucketCount:
    start: datetime
    level: str
    count: int


def fill_buckets(query: HistogramQuery, rows: Iterable[BucketCount]) -> list[dict[str, Any]]:
    """Every bucket of the query, zeros included, each with counts per level and a total."""
    starts = query.bucket_starts()
    index = {start: n for n, start in enumerate(starts)}
    names = [lv.value for lv in query.levels]
    counts = [dict.fromkeys(names, 0) for _ in starts]
    for row in rows:
        n = index.get(row.start)
        if n is None or row.level not in counts[n]:
            raise ValueError(f"count for {row.start.isoformat()} {row.level} is not in the query")
        counts[n][row.level] += row.count
    return [
        {"start": start.isoformat(), "counts": c, "total": sum(c.values())}
        for start, c in zip(starts, counts, strict=True)
    ]


def histogram_result(query: HistogramQuery, rows: Iterable[BucketCount]) -> dict[str, Any]:
    """The histogram as JSON types, so fresh and cached answers are identical."""
    buckets = fill_buckets(query, rows)
    return {
        "from": query.window.start.isoformat(),
        "to": query.window.end.isoformat(),
        "interval_s": int(query.interval.total_seconds()),
        "resolution_s": int(MINUTE.total_seconds()),
        "levels": [lv.value for lv in query.levels],
        "sources": None if query.source_ids is None else list(query.source_ids),
        "total": sum(b["total"] for b in buckets),
        "buckets": buckets,
    }


# -- the summary --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceLevelCount:
    """One source with one level's count in the window; level None: no entries at all."""

    source_id: int
    source: str
    active: bool
    level: str | None
    count: int
    last_minute: datetime | None


def error_rate(errors: int, events: int) -> float:
    return round(errors / events, 6) if events else 0.0


def summarise(window: TimeRange, hours: int, rows: Iterable[SourceLevelCount]) -> dict[str, Any]:
    """Per source events, errors (ERROR + FATAL) and error rate, overall totals, and the
    error summary (per source and level, ERROR and FATAL). Active sources are listed even
    when quiet; inactive ones only when they have entries in the window."""
    sources: dict[int, dict[str, Any]] = {}
    error_summary: list[dict[str, Any]] = []
    for row in rows:
        item = sources.setdefault(
            row.source_id,
            {
                "source_id": row.source_id,
                "source": row.source,
                "active": row.active,
                "events": 0,
                "errors": 0,
                "counts": dict.fromkeys((lv.value for lv in Level), 0),
                "last_error_minute": None,
            },
        )
        if row.level is None or not row.count:
            continue
        item["counts"][row.level] += row.count
        item["events"] += row.count
        if row.level in ERROR_LEVELS:
            item["errors"] += row.count
            last = row.last_minute.isoformat() if row.last_minute else None
            if last and (item["last_error_minute"] is None or last > item["last_error_minute"]):
                item["last_error_minute"] = last
            error_summary.append(
                {
                    "source_id": row.source_id,
                    "source": row.source,
                    "level": row.level,
                    "count": row.count,
                    "last_minute": last,
                }
            )
    listed = [s for s in sources.values() if s["active"] or s["events"]]
    for item in listed:
        item["error_rate"] = error_rate(item["errors"], item["events"])
    listed.sort(key=lambda s: (-s["events"], s["source"]))
    error_summary.sort(key=lambda e: (-e["count"], e["source"], e["level"]))
    events = sum(s["events"] for s in listed)
    errors = sum(s["errors"] for s in listed)
    return {
        "hours": hours,
        "from": window.start.isoformat(),
        "to": window.end.isoformat(),
        "resolution_s": int(MINUTE.total_seconds()),
        "totals": {"events": events, "errors": errors, "error_rate": error_rate(errors, events)},
        "sources": listed,
        "error_summary": error_summary,
    }


def top_sources(summary: dict[str, Any], top: int) -> list[dict[str, Any]]:
    """The `top` busiest sources with entries in the window, with their share of events.
    Taken after the cache, so every `top` shares one cached summary."""
    total = summary["totals"]["events"]
    return [
        {
            "source_id": s["source_id"],
            "source": s["source"],
            "events": s["events"],
            "share": round(s["events"] / total, 6) if total else 0.0,
        }
        for s in summary["sources"][:top]
        if s["events"]
    ]
