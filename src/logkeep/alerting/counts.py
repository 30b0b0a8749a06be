"""The counts, samples and entries an evaluation reads from PostgreSQL.

Counts come from the per-minute rollups (log_metrics) where the query allows it — only
sources and levels, grouped by nothing or by source — for the whole minutes of the
window, plus an index-backed count of the partial minutes at its edges (the primary
key's (source_id, "timestamp") walk or BRIN on time): exact, and a 1-hour window reads
60 rollup rows per source and level instead of every entry. Any other query (words,
substrings, metadata, grouping by a metadata key) counts the matches of both storage
tiers over the window as a search finds them (db/tiers.py: the hot rows narrowed in
PostgreSQL, the chunks its Bloom filters and level masks let through), so it means what
GET /api/v1/logs means. Nothing from a rule becomes SQL text: fragments are constants,
values are parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from logkeep.db import tiers
from logkeep.db.search import PLANNER_SETTINGS, item, source_names
from logkeep.db.types import Conn
from logkeep.domain.alert_rules import MAX_GROUPS, GroupBy, metadata_group_key
from logkeep.domain.chunks import ChunkEvent, micros
from logkeep.domain.entry import Level
from logkeep.domain.histogram import ceil_minute, floor_minute
from logkeep.domain.search import SearchQuery
from logkeep.domain.timerange import TimeRange

ROLLUP_COUNT = """
SELECT source_id::text AS g, sum(count)::bigint AS n
FROM log_metrics
WHERE bucket >= $1 AND bucket < $2 AND level = ANY($3::log_level[])
  AND ($4::integer[] IS NULL OR source_id = ANY($4::integer[]))
GROUP BY source_id
"""


def metadata_at(metadata: Any, path: Sequence[str]) -> Any:
    """PostgreSQL's `metadata #> path`: None where the path leads nowhere."""
    node = metadata
    for step in path:
        if isinstance(node, dict):
            if step not in node:
                return None
            node = node[step]
        elif isinstance(node, list):
            try:
                index = int(step)
            except ValueError:
                return None
            if not -len(node) <= index < len(node):
                return None
            node = node[index]
        else:
            return None
    return node


def by_metadata(group_by: GroupBy | None) -> bool:
    """Whether the groups are read from the events' metadata."""
    return group_by is not None and not group_by.source


def group_key(group_by: GroupBy | None) -> Callable[[ChunkEvent], str | None]:
    """An event's group: '' without groups, its source id as text, or the JSON text of
    its metadata value (None: in no group)."""
    if group_by is None:
        return lambda event: ""
    if group_by.source:
        return lambda event: str(event.source_id)
    path = list(group_by.path)

    def by_metadata(event: ChunkEvent) -> str | None:
        value = metadata_at(event.metadata, path)
        return None if value is None else metadata_group_key(value)

    return by_metadata


def rollup_eligible(query: SearchQuery, group_by: GroupBy | None) -> bool:
    """Rollups count by source, minute and level only."""
    plain = (
        query.words is None
        and query.contains is None
        and query.metadata is None
        and not query.excluded_metadata
    )
    return plain and (group_by is None or group_by.source)


def _filter(
    query: SearchQuery, window: TimeRange, source_ids: Sequence[int] | None
) -> tiers.EventFilter:
    return tiers.EventFilter.of(query, source_ids, window=window)


async def _grouped_count(
    conn: Conn,
    query: SearchQuery,
    window: TimeRange,
    source_ids: Sequence[int] | None,
    group_by: GroupBy | None,
) -> dict[str, int]:
    await tiers.hold_still(conn)
    counted = await tiers.aggregate(
        conn,
        _filter(query, window, source_ids),
        group_key(group_by),
        reads_metadata=by_metadata(group_by),
    )
    top = sorted(counted.items(), key=lambda kv: -kv[1])[:MAX_GROUPS]
    return {str(key): n for key, n in top}


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
    await tiers.hold_still(conn)
    events = await tiers.first(conn, _filter(query, window, source_ids), limit)
    names = await source_names(conn)
    return [item(event, names) for event in events]


async def entries_after(
    conn: Conn,
    query: SearchQuery,
    window: TimeRange,
    source_ids: Sequence[int] | None,
    after: tuple[datetime, int],
    limit: int,
) -> list[ChunkEvent]:
    """Entries in `window` after (timestamp, id), oldest first."""
    await tiers.hold_still(conn)
    return await tiers.first(
        conn,
        _filter(query, window, source_ids),
        limit,
        descending=False,
        after=(micros(after[0]), after[1]),
    )


async def newest(
    conn: Conn,
    query: SearchQuery,
    window: TimeRange,
    source_ids: Sequence[int] | None,
    limit: int,
) -> list[ChunkEvent]:
    """The newest `limit` entries of `window`, returned oldest first."""
    await tiers.hold_still(conn)
    return list(reversed(await tiers.first(conn, _filter(query, window, source_ids), limit)))


async def in_snapshot(conn: Conn, query: SearchQuery) -> None:
    """The planner settings a search runs with (inside the caller's transaction)."""
    await conn.execute(PLANNER_SETTINGS)


async def buckets(
    conn: Conn,
    query: SearchQuery,
    span: TimeRange,
    step: timedelta,
    source_ids: Sequence[int] | None,
    group_by: GroupBy | None,
    origin: datetime,
) -> dict[tuple[str, datetime], int]:
    """Matches per (group, date_bin(step, timestamp, origin)) over `span`."""
    size = step // timedelta(microseconds=1)
    base = micros(origin)
    group = group_key(group_by)

    def key(event: ChunkEvent) -> Hashable | None:
        g = group(event)
        if g is None:
            return None
        at = micros(event.timestamp) - base
        return (g, origin + timedelta(microseconds=at - at % size))

    await tiers.hold_still(conn)
    counted = await tiers.aggregate(
        conn, _filter(query, span, source_ids), key, reads_metadata=by_metadata(group_by)
    )
    return {cast(tuple[str, datetime], k): n for k, n in counted.items()}


SECOND = timedelta(seconds=1)
