"""A rule run over history: at every tick of the range, what it would have decided.

The same ticks, outcome functions and state machine as live evaluation (observe.py,
evaluator.decide), so on the same data the preview shows what evaluation does. Counts
are read once for the whole range, in buckets of gcd(window, interval) (from the
rollups when the query allows and the buckets are whole minutes, else one index-backed
grouped count), and each tick's window is a sum of whole buckets: exact, and a 7-day
preview is one or two queries instead of thousands. New-pattern rules replay their
entries in order through a shape book, as evaluation does.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from logkeep.alerting import counts
from logkeep.alerting.evaluator import decide
from logkeep.alerting.observe import (
    _named,
    advance_book,
    outcomes_absence,
    outcomes_new_pattern,
    outcomes_ratio,
    outcomes_threshold,
)
from logkeep.alerting.rules import PreparedRule, Scope
from logkeep.db.search import planner_settings
from logkeep.db.types import Conn
from logkeep.domain.alert_rules import EPOCH, RuleSpec, metadata_group_key, ticks, window_at
from logkeep.domain.alert_states import GroupState, prunable
from logkeep.domain.search import SearchQuery, rfc3339
from logkeep.domain.shapes import ShapeBook
from logkeep.domain.timerange import TimeRange

MAX_TICKS = 20_160  # a week at 30 s
MAX_SHOWN = 500  # transitions and notifications listed

BUCKETS_ROLLUPS = """
SELECT date_bin($1, bucket, $2) AS b, source_id::text AS g, sum(count)::bigint AS n
FROM log_metrics
WHERE bucket >= $3 AND bucket < $4 AND level = ANY($5::log_level[])
  AND ($6::integer[] IS NULL OR source_id = ANY($6::integer[]))
GROUP BY 1, 2
"""


class TooManyTicks(ValueError):
    pass


Buckets = dict[str, dict[datetime, int]]


async def buckets(
    conn: Conn,
    query: SearchQuery,
    span: TimeRange,
    step: timedelta,
    source_ids: Sequence[int] | None,
    spec: RuleSpec,
) -> Buckets:
    """Counts per group and bucket over `span`."""
    result: Buckets = defaultdict(dict)
    if counts.rollup_eligible(query, spec.group_by) and step % timedelta(minutes=1) == timedelta(0):
        from logkeep.domain.entry import Level

        levels = [lv.value for lv in (query.levels or tuple(Level))]
        rows = await conn.fetch(
            BUCKETS_ROLLUPS, step, EPOCH, span.start, span.end, levels,
            None if source_ids is None else list(source_ids),
        )  # fmt: skip
        by_source = True
    else:
        counted = await counts.buckets(conn, query, span, step, source_ids, spec.group_by, EPOCH)
        for (key, start), n in counted.items():
            result[key][start] = result[key].get(start, 0) + n
        return result
    for row in rows:
        value = row["g"]
        if value is None:
            continue
        if by_source and spec.group_by is None:
            key = ""
        elif spec.group_by is not None and not spec.group_by.source and not by_source:
            key = metadata_group_key(value)
        else:
            key = str(value)
        result[key][row["b"]] = result[key].get(row["b"], 0) + int(row["n"])
    return result


def window_sum(series: Buckets, window: TimeRange, step: timedelta) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, per_bucket in series.items():
        total = 0
        at = window.start
        while at < window.end:
            total += per_bucket.get(at, 0)
            at += step
        if total:
            out[key] = total
    return out


async def preview(
    conn: Conn, rule: PreparedRule, scope: Scope, start: datetime, end: datetime
) -> dict[str, Any]:
    spec = rule.spec
    interval = spec.timing.interval
    all_ticks = ticks(start - interval, end, interval)
    all_ticks = [t for t in all_ticks if t > start]
    if len(all_ticks) > MAX_TICKS:
        raise TooManyTicks(
            f"{len(all_ticks)} evaluations at this interval; preview a shorter range or a "
            f"longer interval (at most {MAX_TICKS})"
        )
    await conn.execute(planner_settings(rule.query))
    step = timedelta(
        seconds=math.gcd(int(spec.timing.window.total_seconds()), int(interval.total_seconds()))
    )
    lookback = spec.seen_lookback if spec.kind == "absence" and spec.group_by else None
    reach = max(spec.timing.window, lookback or timedelta(0))
    first = all_ticks[0] if all_ticks else end
    span = TimeRange(first - reach, all_ticks[-1] if all_ticks else end)
    main: Buckets = {}
    denominator: Buckets = {}
    book: ShapeBook | None = None
    if spec.kind != "new_pattern" and all_ticks:
        main = await buckets(conn, rule.query, span, step, scope.source_ids, spec)
        if spec.kind == "ratio":
            assert rule.denominator is not None
            denominator = await buckets(conn, rule.denominator, span, step, scope.source_ids, spec)

    states: dict[str, GroupState] = {}
    transitions: list[dict[str, Any]] = []
    notifications: list[dict[str, Any]] = []
    fired = 0
    for tick in all_ticks:
        window = window_at(tick, spec.timing)
        known = [k for k, s in states.items() if not prunable(s, tick, timedelta(days=7))]
        if spec.kind == "new_pattern":
            book = await advance_book(conn, rule, scope, book, tick)
            outcomes = outcomes_new_pattern(spec, book, tick, scope.names, known)
        else:
            values = _named(window_sum(main, window, step), spec, scope)
            if spec.kind == "threshold":
                outcomes = outcomes_threshold(spec, values, known)
            elif spec.kind == "ratio":
                volume = _named(window_sum(denominator, window, step), spec, scope)
                outcomes = outcomes_ratio(spec, values, volume, known)
            else:
                seen: list[str] = []
                if lookback:
                    recent = TimeRange(tick - lookback, tick)
                    seen = list(_named(window_sum(main, recent, step), spec, scope))
                outcomes = outcomes_absence(spec, values, seen, known)
        decision = decide(rule, tick, states, outcomes, [])
        for key in decision.forget:
            states.pop(key, None)
        states.update(decision.states)
        for event in decision.events:
            if event["kind"] == "transition" and len(transitions) < MAX_SHOWN:
                transitions.append(_shown_event(tick, event))
        for alert in decision.alerts:
            fired += alert["status"] == "firing"
            if len(notifications) < MAX_SHOWN:
                notifications.append(
                    {"at": rfc3339(tick), "status": alert["status"], "group": alert["group"],
                     "value": alert["outcome"].value}
                )  # fmt: skip
    return {
        "from": rfc3339(start),
        "to": rfc3339(end),
        "evaluations": len(all_ticks),
        "transitions": transitions,
        "notifications": notifications,
        "fired": fired,
        "states": {k: _shown_state(s) for k, s in sorted(states.items())},
    }


def _shown_event(tick: datetime, event: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "at": rfc3339(tick),
        "group": event["group_key"],
        "from": event["from_state"],
        "to": event["to_state"],
        "value": event["value"],
        "reason": event.get("detail", ""),
    }


def _shown_state(state: GroupState) -> dict[str, Any]:
    return {"state": state.state, "since": rfc3339(state.since), "value": state.value}
