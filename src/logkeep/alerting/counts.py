"""The counts, samples and entries an evaluation reads from PostgreSQL.

Counts come from the per-minute rollups (log_metrics) where the query allows it — only
sources and levels, grouped by nothing or by source — for the whole minutes of the
window, plus an index-backed count of the partial minutes at its edges (the primary
key's (source_id, "timestamp") walk or BRIN on time): exact, and a 1-hour window reads
60 rollup rows per source and level instead of every entry. Any other query (words,
substrings, metadata, grouping by a metadata key) is one grouped count over the window
with the search's own conditions (db/search.py), so it means what GET /api/v1/logs
means and uses the same indexes. Nothing from a rule becomes SQL text: fragments are
constants, values are parameters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from logkeep.db.search import (
    Arguments,
    fetch_filtered_page,
    filter_conditions,
    item,
    page_statement,
    planner_settings,
    uses_filtered_shape,
)
from logkeep.db.types import Conn
from logkeep.domain.alert_rules import MAX_GROUPS, GroupBy, metadata_group_key
from logkeep.domain.entry import Level
from logkeep.domain.histogram import ceil_minute, floor_minute
from logkeep.domain.search import SearchQuery
from logkeep.domain.timerange import TimeRange

SOURCES = "le.source_id = ANY({}::integer[])"
GROUP_NONE = "''"
GROUP_SOURCE = "le.source_id::text"
GROUP_METADATA = "le.metadata #> {}::text[]"
GROUPED_COUNT = """
SELECT {group} AS g, count(*) AS n
FROM log_entries le
WHERE {conditions}
GROUP BY 1
ORDER BY 2 DESC
LIMIT {limit}
"""
ROLLUP_COUNT = """
SELECT source_id::text AS g, sum(count)::bigint AS n
FROM log_metrics
WHERE bucket >= $1 AND bucket < $2 AND level = ANY($3::log_level[])
  AND ($4::integer[] IS NULL OR source_id = ANY($4::integer[]))
GROUP BY source_id
"""
# A new-pattern rule's entries, oldest first, continuing after (timestamp, id).
ENTRIES_AFTER = """
SELECT le.id, le.source_id, le."timestamp", le.level::text AS level, le.message
FROM log_entries le
WHERE {conditions} AND (le."timestamp", le.id) > ({at}, {id})
ORDER BY le."timestamp", le.id
LIMIT {limit}
"""
# The newest entries of a range, to learn from when a rule starts.
NEWEST = """
SELECT le.id, le.source_id, le."timestamp", le.level::text AS level, le.message
FROM log_entries le
WHERE {conditions}
ORDER BY le."timestamp" DESC, le.id DESC
LIMIT {limit}
"""


def rollup_eligible(query: SearchQuery, group_by: GroupBy | None) -> bool:
    """Rollups count by source, minute and level only."""
    plain = (
        query.words is None
        and query.contains is None
        and query.metadata is None
        and not query.excluded_metadata
    )
    return plain and (group_by is None or group_by.source)


def _conditions(
    query: SearchQuery, window: TimeRange, source_ids: Sequence[int] | None, args: Arguments
) -> list[str]:
    conditions = filter_conditions(query, args, paged=False, window=window)
    if source_ids is not None:
        conditions.append(SOURCES.format(args.add(list(source_ids))))
    return conditions


async def _grouped_count(
    conn: Conn,
    query: SearchQuery,
    window: TimeRange,
    source_ids: Sequence[int] | None,
    group_by: GroupBy | None,
) -> dict[str, int]:
    args = Arguments()
    conditions = _conditions(query, window, source_ids, args)
    if group_by is None:
        group = GROUP_NONE
    elif group_by.source:
        group = GROUP_SOURCE
    else:
        group = GROUP_METADATA.format(args.add(list(group_by.path)))
    sql = GROUPED_COUNT.format(
        group=group, conditions=" AND ".join(conditions), limit=args.add(MAX_GROUPS)
    )
    counts: dict[str, int] = {}
    for row in await conn.fetch(sql, *args.values):
        value = row["g"]
        if value is None:  # entries without the key belong to no group
            continue
        key = value if isinstance(value, str) else metadata_group_key(value)
        if group_by is not None and not group_by.source:
            key = metadata_group_key(value)
        counts[key] = counts.get(key, 0) + int(row["n"])
    return counts


async def count(
    conn: Conn,
    query: SearchQuery,
    window: TimeRange,
    source_ids: Sequence[int] | None,
    group_by: GroupBy | None,
) -> dict[str, int]:
    """Matches in `window` per group key ('' without groups; source ids as text for
    source groups, JSON text of the value for metadata groups)."""
    if not rollup_eligible(query, group_by):
        return await _grouped_count(conn, query, window, source_ids, group_by)
    whole = TimeRange(ceil_minute(window.start), floor_minute(window.end))
    if whole.start >= whole.end:
        return await _grouped_count(conn, query, window, source_ids, group_by)
    levels = [lv.value for lv in (query.levels or tuple(Level))]
    rows = await conn.fetch(
        ROLLUP_COUNT,
        whole.start,
        whole.end,
        levels,
        None if source_ids is None else list(source_ids),
    )
    by_source: dict[str, int] = {row["g"]: int(row["n"]) for row in rows}
    for edge in (TimeRange(window.start, whole.start), TimeRange(whole.end, window.end)):
        if edge.start < edge.end:
            for key, n in (
                await _grouped_count(conn, query, edge, source_ids, GroupBy(source=True))
            ).items():
                by_source[key] = by_source.get(key, 0) + n
    by_source = {k: v for k, v in by_source.items() if v}
    if group_by is None:
        total = sum(by_source.values())
        return {"": total} if total else {}
    return by_source


async def samples(
    conn: Conn,
    query: SearchQuery,
    window: TimeRange,
    source_ids: Sequence[int] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """The newest `limit` matches in the window, in the search's item shape."""
    page = replace(query, window=window, cursor=None, limit=limit)
    if uses_filtered_shape(page):
        rows: list[asyncpg.Record] = await fetch_filtered_page(conn, page, source_ids)
    else:
        sql, args = page_statement(page, source_ids)
        rows = await conn.fetch(sql, *args)
    return [item(row) for row in rows[:limit]]


async def entries_after(
    conn: Conn,
    query: SearchQuery,
    window: TimeRange,
    source_ids: Sequence[int] | None,
    after: tuple[datetime, int],
    limit: int,
) -> list[asyncpg.Record]:
    """Entries in `window` after (timestamp, id), oldest first."""
    args = Arguments()
    conditions = _conditions(query, window, source_ids, args)
    sql = ENTRIES_AFTER.format(
        conditions=" AND ".join(conditions),
        at=args.add(after[0]),
        id=args.add(after[1]),
        limit=args.add(limit),
    )
    return list(await conn.fetch(sql, *args.values))


async def newest(
    conn: Conn,
    query: SearchQuery,
    window: TimeRange,
    source_ids: Sequence[int] | None,
    limit: int,
) -> list[asyncpg.Record]:
    """The newest `limit` entries of `window`, returned oldest first."""
    args = Arguments()
    conditions = _conditions(query, window, source_ids, args)
    sql = NEWEST.format(conditions=" AND ".join(conditions), limit=args.add(limit))
    return list(reversed(await conn.fetch(sql, *args.values)))


async def in_snapshot(conn: Conn, query: SearchQuery) -> None:
    """The planner settings a search runs with (inside the caller's transaction)."""
    await conn.execute(planner_settings(query))


SECOND = timedelta(seconds=1)
