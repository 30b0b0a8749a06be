from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import asyncpg

from logkeep.db.partitions import ensure_partitions, existing_partition_days, maintain
from logkeep.domain.partitions import partition_name

TODAY = datetime.now(UTC).date()


async def _maintain(conn: asyncpg.Connection, today: date = TODAY, retention: int = 30):  # type: ignore[no-untyped-def]
    return await maintain(
        conn, retention_days=retention, days_ahead=3, max_entry_age_days=30, today=today
    )


async def test_maintain_creates_days_ahead_and_is_idempotent(database_url_fixture: str) -> None:
    conn = await asyncpg.connect(database_url_fixture)
    try:
        await _maintain(conn)
        days = set(await existing_partition_days(conn))
        second = await _maintain(conn)
    finally:
        await conn.close()
    expected = {TODAY + timedelta(days=n) for n in range(-30, 4)}
    assert expected <= days
    assert not second.changed
    assert second.created == [] and second.dropped == []


async def test_retention_drops_whole_partitions(database_url_fixture: str) -> None:
    conn = await asyncpg.connect(database_url_fixture)
    try:
        old_day = TODAY - timedelta(days=45)
        await ensure_partitions(conn, [old_day])
        stamp = datetime(old_day.year, old_day.month, old_day.day, 12, tzinfo=UTC)
        await conn.execute(
            "INSERT INTO log_entries (source_id, \"timestamp\", message) VALUES (1, $1, 'old')",
            stamp,
        )
        report = await _maintain(conn)
        left = await conn.fetchval("SELECT count(*) FROM log_entries WHERE message = 'old'")
        still_there = await conn.fetchval("SELECT to_regclass($1)", partition_name(old_day))
    finally:
        await conn.close()
    assert partition_name(old_day) in report.dropped
    assert left == 0
    assert still_there is None


async def test_default_partition_rows_are_reported_then_moved(database_url_fixture: str) -> None:
    conn = await asyncpg.connect(database_url_fixture)
    try:
        await _maintain(conn)
        far_day = TODAY + timedelta(days=10)  # beyond the days created ahead
        stamp = datetime(far_day.year, far_day.month, far_day.day, 8, tzinfo=UTC)
        await conn.execute(
            'INSERT INTO log_entries (source_id, "timestamp", message) '
            "VALUES (1, $1, 'early'), (2, $1, 'early')",
            stamp,
        )
        report = await _maintain(conn)
        assert report.default_rows == 2
        assert report.default_oldest == stamp
        # Days later the partition for that day is due: the rows move into it.
        later = await _maintain(conn, today=far_day - timedelta(days=2))
        in_default = await conn.fetchval("SELECT count(*) FROM log_entries_default")
        in_partition = await conn.fetchval(
            f'SELECT count(*) FROM "{partition_name(far_day)}"'  # name from a date, not input
        )
        total = await conn.fetchval("SELECT count(*) FROM log_entries WHERE message = 'early'")
    finally:
        await conn.close()
    assert later.moved_from_default == 2
    assert later.default_rows == 0
    assert (in_default, in_partition, total) == (0, 2, 2)


async def test_rows_route_to_their_day(database_url_fixture: str) -> None:
    conn = await asyncpg.connect(database_url_fixture)
    try:
        await _maintain(conn)
        stamp = datetime.now(UTC)
        await conn.execute(
            "INSERT INTO log_entries (source_id, \"timestamp\", message) VALUES (1, $1, 'now')",
            stamp,
        )
        table = await conn.fetchval(
            "SELECT tableoid::regclass::text FROM log_entries WHERE message = 'now'"
        )
    finally:
        await conn.close()
    assert table == partition_name(stamp.date())
