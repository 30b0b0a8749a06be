"""Partition maintenance: create days ahead, drop expired days, watch the DEFAULT partition."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import asyncpg

from logkeep.db.queries import q
from logkeep.db.types import Conn
from logkeep.domain.partitions import (
    expired_days,
    partition_day,
    partition_name,
    retention_cutoff,
    wanted_days,
)

# Serialises maintenance runs (and seeding, which creates partitions too).
MAINTENANCE_LOCK_KEY = 0x6C6F676B656571
# Creating or dropping a partition locks log_entries exclusively. Behind a long query
# that lock would queue every insert and read; give up quickly and try again instead.
DDL_LOCK_TIMEOUT = "2s"
DDL_ATTEMPTS = 5


async def _run_ddl(conn: Conn, query: str, day: date) -> Any:
    """One partition DDL call in its own transaction, retried on lock timeouts."""
    for attempt in range(1, DDL_ATTEMPTS + 1):
        try:
            async with conn.transaction():
                await conn.execute(f"SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'")
                return await conn.fetchval(query, day)
        except asyncpg.LockNotAvailableError:
            if attempt == DDL_ATTEMPTS:
                raise
            await asyncio.sleep(0.5 * attempt)
    return None


@dataclass
class MaintenanceReport:
    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    moved_from_default: int = 0
    default_rows: int = 0
    default_oldest: datetime | None = None
    default_newest: datetime | None = None
    rollups_deleted: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.created or self.dropped or self.moved_from_default or self.rollups_deleted)


async def ensure_partitions(conn: Conn, days: Iterable[date]) -> tuple[list[str], int]:
    """Create the partitions of `days` that are missing; (created names, rows moved)."""
    created: list[str] = []
    moved_total = 0
    await conn.execute("SELECT pg_advisory_lock($1)", MAINTENANCE_LOCK_KEY)
    try:
        for day in sorted(set(days)):
            moved = await _run_ddl(conn, q("ensure_partition"), day)
            if moved is not None:
                created.append(partition_name(day))
                moved_total += moved
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MAINTENANCE_LOCK_KEY)
    return created, moved_total


async def existing_partition_days(conn: Conn) -> list[date]:
    rows = await conn.fetch(q("list_partitions"))
    return [d for row in rows if (d := partition_day(row["name"])) is not None]


async def maintain(
    conn: Conn,
    *,
    retention_days: int,
    days_ahead: int,
    max_entry_age_days: int,
    today: date | None = None,
) -> MaintenanceReport:
    """Bring partitions in line with policy; a second run changes nothing."""
    today = today or datetime.now(UTC).date()
    report = MaintenanceReport()
    days = wanted_days(
        today,
        retention_days=retention_days,
        days_ahead=days_ahead,
        max_entry_age_days=max_entry_age_days,
    )
    report.created, report.moved_from_default = await ensure_partitions(conn, days)

    await conn.execute("SELECT pg_advisory_lock($1)", MAINTENANCE_LOCK_KEY)
    try:
        for day in expired_days(await existing_partition_days(conn), today, retention_days):
            if await _run_ddl(conn, q("drop_partition"), day):
                report.dropped.append(partition_name(day))
        cutoff = datetime(*retention_cutoff(today, retention_days).timetuple()[:3], tzinfo=UTC)
        status = await conn.execute(q("delete_old_rollups"), cutoff)
        report.rollups_deleted = int(status.split()[-1])
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MAINTENANCE_LOCK_KEY)

    default = await conn.fetchrow(q("default_partition_rows"))
    assert default is not None  # an aggregate always returns one row
    report.default_rows = default["rows"]
    report.default_oldest = default["oldest"]
    report.default_newest = default["newest"]
    return report
