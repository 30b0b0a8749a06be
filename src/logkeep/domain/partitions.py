"""Which daily partitions should exist: pure date arithmetic."""

from __future__ import annotations

import re
from datetime import date, timedelta

PARTITION_NAME = re.compile(r"^log_entries_p(\d{4})(\d{2})(\d{2})$")


def partition_name(day: date) -> str:
    return f"log_entries_p{day:%Y%m%d}"


def partition_day(name: str) -> date | None:
    match = PARTITION_NAME.match(name)
    if match is None:
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:  # shaped like ours but not a calendar day: not one of ours
        return None


def retention_cutoff(today: date, retention_days: int) -> date:
    """The oldest day kept: partitions of earlier days are dropped."""
    return today - timedelta(days=retention_days)


def wanted_days(
    today: date, *, retention_days: int, days_ahead: int, max_entry_age_days: int
) -> list[date]:
    """Every day an accepted entry may fall on, within retention, plus days ahead."""
    first = max(today - timedelta(days=max_entry_age_days), retention_cutoff(today, retention_days))
    last = today + timedelta(days=days_ahead)
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def expired_days(existing: list[date], today: date, retention_days: int) -> list[date]:
    cutoff = retention_cutoff(today, retention_days)
    return sorted(day for day in existing if day < cutoff)
