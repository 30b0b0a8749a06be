"""Evaluate one rule at one tick, in one transaction: read, decide (domain/alert_states),
write the states, the history and the notifications to send (the outbox).

The transaction first locks the rule's status row and skips the tick when it is not
after the last one committed: two evaluators that both believe they hold the rule (a
process paused past its lease) commit each tick once, and the outbox's idempotency keys
queue each notification once.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import structlog

from logkeep import metrics
from logkeep.alerting import counts, store
from logkeep.alerting.observe import observe, shape_samples
from logkeep.alerting.rules import PreparedRule, RuleUnusable, Scope, prepare, scope_of
from logkeep.db.search import planner_settings
from logkeep.domain.alert_messages import explorer_link
from logkeep.domain.alert_rules import (
    group_labels,
    group_search_pairs,
    window_at,
)
from logkeep.domain.alert_states import (
    GroupState,
    Outcome,
    after_notification,
    prunable,
    silenced,
    step,
)
from logkeep.domain.search import rfc3339, to_micros
from logkeep.domain.shapes import ShapeBook
from logkeep.domain.timerange import InvalidQuery

log = structlog.get_logger("logkeep.alerting")

MAX_SAMPLED_GROUPS = 20  # groups of one message that carry sample entries
KEEP_RESOLVED = timedelta(days=7)  # resolved groups no longer reported are then forgotten


@dataclass(frozen=True, slots=True)
class EvaluatorConfig:
    public_url: str
    samples: int
    retention: timedelta
    identity: str  # who evaluates (process), recorded with the status


@dataclass(slots=True)
class Decision:
    """What one tick decided for a rule: for the transaction to write."""

    states: dict[str, GroupState] = field(default_factory=dict)
    labels: dict[str, dict[str, str]] = field(default_factory=dict)
    forget: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)  # to notify


def idempotency_key(rule_id: int, tick: datetime, channel_id: int) -> str:
    return f"lk-r{rule_id}-t{to_micros(tick) // 1000}-c{channel_id}"


def rule_labels(rule: PreparedRule) -> dict[str, str]:
    spec = rule.spec
    return {**spec.labels, "rule": spec.name, "rule_id": str(spec.id), "kind": spec.kind}


def decide(
    rule: PreparedRule,
    tick: datetime,
    previous: Mapping[str, GroupState],
    outcomes: Mapping[str, Outcome],
    silences: list[Any],
) -> Decision:
    """Pure: the states after this tick, the transitions, and what to notify."""
    spec = rule.spec
    decision = Decision()
    base_labels = rule_labels(rule)
    for key in sorted(set(outcomes) | set(previous)):
        outcome = outcomes.get(key)
        prev = previous.get(key)
        if outcome is None:  # a group no longer reported
            assert prev is not None
            if prunable(prev, tick, KEEP_RESOLVED):
                decision.forget.append(key)
            continue
        moved = step(prev, outcome, tick, spec.timing)
        labels = {**base_labels, **group_labels(spec.group_by, key), **(outcome.labels or {})}
        state = moved.state
        if moved.transition is not None:
            decision.events.append(
                {
                    "kind": "transition",
                    "group_key": key,
                    "from_state": moved.transition[0],
                    "to_state": moved.transition[1],
                    "value": outcome.value,
                    "detail": outcome.reason,
                }
            )
        if moved.notify is not None:
            muted = silenced(silences, spec.id, key, labels, tick)
            if moved.notify == "resolved" or muted is None:
                decision.alerts.append(
                    {"status": moved.notify, "group": key, "labels": labels, "state": state,
                     "outcome": outcome}
                )  # fmt: skip
            if muted is not None and moved.notify != "resolved":
                decision.events.append(
                    {"kind": "notification", "group_key": key, "to_state": "silenced",
                     "value": outcome.value, "detail": f"silenced by silence {muted.id}"}
                )  # fmt: skip
            state = after_notification(state, moved.notify, tick, muted is not None)
        decision.states[key] = state
        decision.labels[key] = labels
    return decision


class Evaluator:
    def __init__(self, pool: asyncpg.Pool, config: EvaluatorConfig) -> None:
        self._pool = pool
        self._config = config

    async def run_tick(self, rule_id: int, tick: datetime) -> bool:
        """Evaluate `rule_id` at `tick`; False when another evaluator committed it (or a
        later tick) first, or the rule is gone or off."""
        started = time.perf_counter()
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(store.ENSURE_STATUS, rule_id)
            status = await conn.fetchrow(store.LOCK_STATUS, rule_id)
            if status is None or (status["last_tick"] is not None and status["last_tick"] >= tick):
                return False
            row = await conn.fetchrow(store.RULE_BY_ID, rule_id)
            if row is None or not row["is_active"]:
                return False
            try:
                rule = prepare(row, self._config.retention)
                scope = await scope_of(conn, rule.spec)
            except (InvalidQuery, RuleUnusable) as exc:
                await self._failed(conn, rule_id, tick, status, str(exc))
                metrics.ALERT_EVALUATIONS.labels("error").inc()
                return True
            try:
                async with conn.transaction():  # a savepoint: a failed read is an error state
                    await conn.execute(planner_settings(rule.query))
                    await self._evaluate(conn, rule, scope, tick, status)
            except (asyncpg.QueryCanceledError, asyncpg.DataError) as exc:
                await self._failed(conn, rule_id, tick, status, f"{type(exc).__name__}: {exc}")
                metrics.ALERT_EVALUATIONS.labels("error").inc()
                return True
        metrics.ALERT_EVALUATIONS.labels("ok").inc()
        metrics.ALERT_EVALUATION_SECONDS.observe(time.perf_counter() - started)
        return True

    async def _failed(
        self, conn: Any, rule_id: int, tick: datetime, status: Any, reason: str
    ) -> None:
        if status["health"] != "error" or status["reason"] != reason:
            await store.insert_event(conn, rule_id, tick, "error", detail=reason)
        await conn.execute(
            store.SAVE_STATUS, rule_id, tick, "error", reason, self._config.identity,
            status["shapes"],
        )  # fmt: skip
        log.warning("alert_rule_error", rule_id=rule_id, reason=reason)

    async def _evaluate(
        self, conn: Any, rule: PreparedRule, scope: Scope, tick: datetime, status: Any
    ) -> None:
        spec = rule.spec
        previous = {r["group_key"]: store.group_state(r) for r in await conn.fetch(
            store.STATES, spec.id)}  # fmt: skip
        book = None
        if spec.kind == "new_pattern" and status["shapes"] is not None:
            book = ShapeBook.from_json(status["shapes"])
        watched = [k for k, s in previous.items() if not prunable(s, tick, KEEP_RESOLVED)]
        outcomes, book = await observe(conn, rule, scope, tick, watched, book)
        silences = await store.active_silences(conn, tick)
        decision = decide(rule, tick, previous, outcomes, silences)
        for event in decision.events:
            await store.insert_event(conn, spec.id, tick, **event)
        for key, state in decision.states.items():
            await conn.execute(
                store.UPSERT_STATE, spec.id, key, state.state, state.since, state.active_since,
                state.clear_since, state.value, state.reason, decision.labels[key],
                state.notified, state.last_notified_at, tick,
            )  # fmt: skip
        if decision.forget:
            await conn.execute(store.DELETE_STATES, spec.id, decision.forget)
        if decision.alerts and rule.channels:
            payload = await self._payload(conn, rule, scope, tick, decision, book)
            for channel_id in rule.channels:
                await conn.execute(
                    store.ENQUEUE, idempotency_key(spec.id, tick, channel_id), spec.id,
                    channel_id, tick, {**payload, "idempotency_key":
                                       idempotency_key(spec.id, tick, channel_id)},
                )  # fmt: skip
        shapes = None
        if book is not None:
            shapes = book.to_json(keep_samples_after=tick - 2 * spec.timing.window)
        await conn.execute(
            store.SAVE_STATUS, spec.id, tick, "ok", "", self._config.identity, shapes
        )

    async def _payload(
        self,
        conn: Any,
        rule: PreparedRule,
        scope: Scope,
        tick: datetime,
        decision: Decision,
        book: ShapeBook | None,
    ) -> dict[str, Any]:
        spec = rule.spec
        window = window_at(tick, spec.timing)
        alerts = []
        for index, alert in enumerate(decision.alerts):
            outcome: Outcome = alert["outcome"]
            key: str = alert["group"]
            link_pairs = [*spec.search, *self._source_pairs(scope, spec.group_by, key)]
            link_pairs += group_search_pairs(spec.group_by, key)
            entry: dict[str, Any] = {
                "status": alert["status"],
                "group": key,
                "labels": alert["labels"],
                "value": outcome.value,
                "op": "<" if spec.kind == "absence" else spec.op,
                "threshold": spec.threshold,
                "reason": outcome.reason,
                "since": rfc3339(alert["state"].since),
                "link": explorer_link(self._config.public_url, link_pairs, window.start, tick),
                "samples": [],
            }
            if spec.kind == "new_pattern":
                entry["template"] = (outcome.labels or {}).get("shape", "")
                entry["op"], entry["threshold"] = "new", None
            sampled = alert["status"] != "resolved" and index < MAX_SAMPLED_GROUPS
            if sampled and self._config.samples:
                entry["samples"] = await self._samples(conn, rule, scope, key, window, book, tick)
            alerts.append(entry)
        return {
            "version": 1,
            "rule": {"id": spec.id, "name": spec.name, "kind": spec.kind,
                     "window_seconds": int(spec.timing.window.total_seconds()),
                     "labels": dict(spec.labels)},
            "at": rfc3339(tick),
            "window": {"from": rfc3339(window.start), "to": rfc3339(tick)},
            "alerts": alerts,
        }  # fmt: skip

    @staticmethod
    def _source_pairs(scope: Scope, group_by: Any, key: str) -> list[tuple[str, str]]:
        """The rule's sources as the search names them (a source group adds its own)."""
        if scope.source_ids is None or (group_by is not None and group_by.source):
            return []
        return [("source", scope.names.get(s, str(s))) for s in scope.source_ids]

    async def _samples(
        self,
        conn: Any,
        rule: PreparedRule,
        scope: Scope,
        key: str,
        window: Any,
        book: ShapeBook | None,
        tick: datetime,
    ) -> list[dict[str, Any]]:
        spec = rule.spec
        limit = self._config.samples
        if spec.kind == "new_pattern":
            return [] if book is None else shape_samples(book, key, spec, tick)[:limit]
        if spec.kind == "absence":
            return []  # nothing matched: the evidence is the absence
        query, source_ids = rule.query, scope.source_ids
        if spec.group_by is not None and key:
            if spec.group_by.source:
                source_ids = [scope.ids_by_name()[key]] if key in scope.ids_by_name() else []
            else:
                from logkeep.domain.alert_rules import check_search

                pairs = [*spec.search, *group_search_pairs(spec.group_by, key)]
                try:
                    query = check_search(pairs, retention=self._config.retention)
                except InvalidQuery:
                    return []
        if source_ids == []:
            return []
        items = await counts.samples(conn, query, window, source_ids, limit)
        for sample in items:
            sample["message"] = sample["message"][:1000]
        return items
