"""Alerting's tables in PostgreSQL: rules and their channels, states, history, the
notification outbox, silences and channels. Statements are constants; values are
parameters."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from logkeep.db.types import Conn
from logkeep.domain.alert_rules import RuleSpec, Timing, parse_group_by
from logkeep.domain.alert_states import GroupState, Silence

RULE_COLUMNS = """
r.id, r.name, r.description, r.kind, r.op, r.threshold, r.window_seconds,
r.interval_seconds, r.for_seconds, r.keep_firing_for_seconds, r.repeat_interval_seconds,
r.source_ids, r.search, r.options, r.group_by, r.labels, r.is_active, r.created_by,
r.created_at, r.updated_at,
array(SELECT c.channel_id FROM alert_rule_channels c WHERE c.rule_id = r.id
      ORDER BY c.channel_id) AS channels
"""
# A caller limited to some sources sees the rules all of whose sources it may read; a
# rule on every source only callers who read every source ($1 NULL).
VISIBLE = "($1::integer[] IS NULL OR (cardinality(r.source_ids) > 0 AND r.source_ids <@ $1))"
LIST_RULES = f"SELECT {RULE_COLUMNS} FROM alert_rules r WHERE {VISIBLE} ORDER BY r.name"
GET_RULE = f"SELECT {RULE_COLUMNS} FROM alert_rules r WHERE {VISIBLE} AND r.id = $2"
RULE_BY_ID = f"SELECT {RULE_COLUMNS} FROM alert_rules r WHERE r.id = $1"
INSERT_RULE = """
INSERT INTO alert_rules (name, description, kind, op, threshold, window_seconds,
    interval_seconds, for_seconds, keep_firing_for_seconds, repeat_interval_seconds,
    source_ids, search, options, group_by, labels, is_active, created_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
RETURNING id
"""
UPDATE_RULE = """
UPDATE alert_rules SET name = $2, description = $3, kind = $4, op = $5, threshold = $6,
    window_seconds = $7, interval_seconds = $8, for_seconds = $9,
    keep_firing_for_seconds = $10, repeat_interval_seconds = $11, source_ids = $12,
    search = $13, options = $14, group_by = $15, labels = $16, is_active = $17
WHERE id = $1
"""
DELETE_RULE = f"DELETE FROM alert_rules r WHERE {VISIBLE} AND r.id = $2 RETURNING r.id"
SET_CHANNELS = """
WITH gone AS (DELETE FROM alert_rule_channels WHERE rule_id = $1)
INSERT INTO alert_rule_channels (rule_id, channel_id)
SELECT $1, unnest($2::integer[])
"""
RESET_RULE = """
WITH s AS (DELETE FROM alert_states WHERE rule_id = $1)
UPDATE alert_rule_status SET last_tick = NULL, shapes = NULL, health = 'ok', reason = ''
WHERE rule_id = $1
"""

ACTIVE_RULES = """
SELECT r.id, r.interval_seconds, s.last_tick
FROM alert_rules r LEFT JOIN alert_rule_status s ON s.rule_id = r.id
WHERE r.is_active
"""
ENSURE_STATUS = "INSERT INTO alert_rule_status (rule_id) VALUES ($1) ON CONFLICT DO NOTHING"
LOCK_STATUS = """
SELECT last_tick, health, reason, shapes FROM alert_rule_status WHERE rule_id = $1 FOR UPDATE
"""
SAVE_STATUS = """
UPDATE alert_rule_status
SET last_tick = $2, health = $3, reason = $4, evaluated_at = now(), evaluated_by = $5,
    shapes = $6
WHERE rule_id = $1
"""
STATES = """
SELECT group_key, state, since, active_since, clear_since, value, reason, labels, notified,
       last_notified_at
FROM alert_states WHERE rule_id = $1
"""
UPSERT_STATE = """
INSERT INTO alert_states (rule_id, group_key, state, since, active_since, clear_since, value,
    reason, labels, notified, last_notified_at, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (rule_id, group_key) DO UPDATE SET state = EXCLUDED.state,
    since = EXCLUDED.since, active_since = EXCLUDED.active_since,
    clear_since = EXCLUDED.clear_since, value = EXCLUDED.value, reason = EXCLUDED.reason,
    labels = EXCLUDED.labels, notified = EXCLUDED.notified,
    last_notified_at = EXCLUDED.last_notified_at, updated_at = EXCLUDED.updated_at
"""
DELETE_STATES = "DELETE FROM alert_states WHERE rule_id = $1 AND group_key = ANY($2::text[])"
INSERT_EVENT = """
INSERT INTO alert_events (rule_id, at, group_key, kind, from_state, to_state, value, detail,
    data)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""
ENQUEUE = """
INSERT INTO alert_notifications (idempotency_key, rule_id, channel_id, tick, payload)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (idempotency_key) DO NOTHING
"""
SILENCES = """
SELECT id, rule_id, group_key, matchers, starts_at, ends_at, repeat, repeat_until
FROM alert_silences
WHERE (repeat IS NULL AND ends_at > $1)
   OR (repeat IS NOT NULL AND (repeat_until IS NULL OR repeat_until > $1))
"""


def rule_spec(row: Mapping[str, Any] | asyncpg.Record) -> RuleSpec:
    options: Mapping[str, Any] = row["options"]
    denominator = options.get("denominator")
    lookback = options.get("seen_lookback_seconds")
    return RuleSpec(
        id=row["id"],
        name=row["name"],
        kind=row["kind"],
        op=row["op"],
        threshold=float(row["threshold"]),
        timing=Timing(
            window=timedelta(seconds=row["window_seconds"]),
            interval=timedelta(seconds=row["interval_seconds"]),
            for_=timedelta(seconds=row["for_seconds"]),
            keep_firing_for=timedelta(seconds=row["keep_firing_for_seconds"]),
            repeat=timedelta(seconds=row["repeat_interval_seconds"]),
        ),
        source_ids=tuple(row["source_ids"]),
        search=tuple((str(n), str(v)) for n, v in row["search"]),
        group_by=parse_group_by(row["group_by"]),
        denominator=None
        if denominator is None
        else tuple((str(n), str(v)) for n, v in denominator),
        min_volume=int(options.get("min_volume", 1)),
        expected_groups=tuple(options.get("expected_groups", ())),
        seen_lookback=None if lookback is None else timedelta(seconds=int(lookback)),
        learning=timedelta(seconds=int(options.get("learning_seconds", 86_400))),
        labels=dict(row["labels"]),
        owner_id=row["created_by"],
    )


def group_state(row: Mapping[str, Any] | asyncpg.Record) -> GroupState:
    return GroupState(
        state=row["state"],
        since=row["since"],
        active_since=row["active_since"],
        clear_since=row["clear_since"],
        value=row["value"],
        reason=row["reason"],
        notified=row["notified"],
        last_notified_at=row["last_notified_at"],
    )


def silence(row: Mapping[str, Any] | asyncpg.Record) -> Silence:
    return Silence(
        id=row["id"],
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        rule_id=row["rule_id"],
        group_key=row["group_key"],
        matchers=dict(row["matchers"]),
        repeat=row["repeat"],
        repeat_until=row["repeat_until"],
    )


async def active_silences(conn: Conn, at: datetime) -> list[Silence]:
    return [silence(r) for r in await conn.fetch(SILENCES, at)]


async def insert_event(
    conn: Conn,
    rule_id: int,
    at: datetime,
    kind: str,
    *,
    group_key: str = "",
    from_state: str | None = None,
    to_state: str | None = None,
    value: float | None = None,
    detail: str = "",
    data: Mapping[str, Any] | None = None,
) -> None:
    await conn.execute(
        INSERT_EVENT,
        rule_id,
        at,
        group_key,
        kind,
        from_state,
        to_state,
        value,
        detail,
        dict(data or {}),
    )


class RuleStore:
    """The API's questions about rules."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def list(self, readable: Sequence[int] | None) -> list[dict[str, Any]]:
        async with self._pool.acquire() as conn:
            return [dict(r) for r in await conn.fetch(LIST_RULES, readable)]

    async def get(self, rule_id: int, readable: Sequence[int] | None) -> dict[str, Any] | None:
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(GET_RULE, readable, rule_id)
        return None if row is None else dict(row)

    async def create(self, values: Sequence[Any], channels: Sequence[int]) -> int:
        async with self._pool.acquire() as conn, conn.transaction():
            rule_id: int = await conn.fetchval(INSERT_RULE, *values)
            await conn.execute(SET_CHANNELS, rule_id, list(channels))
            await conn.execute(ENSURE_STATUS, rule_id)
        return rule_id

    async def update(
        self, rule_id: int, values: Sequence[Any], channels: Sequence[int], *, reset: bool
    ) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(UPDATE_RULE, rule_id, *values)
            await conn.execute(SET_CHANNELS, rule_id, list(channels))
            await conn.execute(ENSURE_STATUS, rule_id)
            if reset:
                await conn.execute(RESET_RULE, rule_id)

    async def delete(self, rule_id: int, readable: Sequence[int] | None) -> bool:
        async with self._pool.acquire() as conn:
            return await conn.fetchval(DELETE_RULE, readable, rule_id) is not None
