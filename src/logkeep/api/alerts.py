"""Alert rules, their preview, states and history (analysts and admins).

An analyst sees and edits only the rules all of whose sources they may read; a rule on
every source belongs to those who read every source. Evaluation reads what the rule's
owner may read at that time (alerting/rules.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, HTTPException, Query, Request, Response

from logkeep.alerting import store
from logkeep.alerting.preview import TooManyTicks, preview
from logkeep.alerting.rules import PreparedRule, RuleUnusable, Scope, prepare, scope_of
from logkeep.api.admin import Access, Analyst, _audit, _created
from logkeep.api.alert_models import (
    DEFINITION_FIELDS,
    AlertRuleCreate,
    AlertRulePreview,
    AlertRulePublic,
    AlertRuleUpdate,
    editable,
    public,
    stored_values,
    validated,
)
from logkeep.api.auth import readable_sources
from logkeep.api.fields import PathId
from logkeep.api.problems import answers
from logkeep.domain.alert_rules import tick_floor
from logkeep.domain.alert_states import silenced
from logkeep.domain.auth import Principal

router = APIRouter(prefix="/api/v1", tags=["alerts"], responses=answers(401, 403, 503))
BODY = answers(413, 422)
# `:int`: /alert-rules/preview is no rule id, so PATCH or GET there is a 405, not a 422.
A_RULE = "/alert-rules/{rule_id:int}"

STATES = """
SELECT r.id AS rule_id, r.name AS rule, r.kind, r.op, r.threshold, s.group_key, s.state,
       s.since, s.value, s.reason, s.labels, s.last_notified_at, s.updated_at
FROM alert_states s JOIN alert_rules r ON r.id = s.rule_id
WHERE {visible} AND ($2::text IS NULL OR s.state = $2)
ORDER BY CASE s.state WHEN 'firing' THEN 0 WHEN 'pending' THEN 1 WHEN 'no_data' THEN 2
         ELSE 3 END, r.name, s.group_key
LIMIT 5000
"""
RULE_HEALTH = """
SELECT r.id, r.name, r.is_active, st.health, st.reason, st.last_tick, st.evaluated_at,
       st.evaluated_by
FROM alert_rules r LEFT JOIN alert_rule_status st ON st.rule_id = r.id
WHERE {visible}
ORDER BY r.name
"""
HISTORY = """
SELECT id, at, group_key, kind, from_state, to_state, value, detail, data
FROM alert_events
WHERE rule_id = $1 AND ($2::bigint IS NULL OR id < $2)
ORDER BY id DESC
LIMIT $3
"""
CHANNELS_EXIST = "SELECT array_agg(id) FROM alert_channels WHERE id = ANY($1::integer[])"


def _rules(request: Request) -> store.RuleStore:
    return store.RuleStore(request.app.state.db.pool)


def _retention(request: Request) -> timedelta:
    return timedelta(days=request.app.state.settings.retention_days)


def _readable(principal: Principal) -> list[int] | None:
    return readable_sources(principal, None)


def _owner(principal: Principal) -> int | None:
    return principal.id if principal.kind == "user" else None


def _check_sources(principal: Principal, source_ids: list[int]) -> None:
    if not source_ids and principal.sources is not None:
        raise HTTPException(403, "a rule on every source needs access to every source")
    readable_sources(principal, source_ids)


async def _check_channels(request: Request, channels: list[int]) -> None:
    if not channels:
        return
    async with request.app.state.db.pool.acquire() as conn:
        found = set(await conn.fetchval(CHANNELS_EXIST, channels) or [])
    missing = [c for c in channels if c not in found]
    if missing:
        raise HTTPException(
            422,
            [{"loc": ["body", "channels"], "msg": f"no channel {missing[0]}", "type": "invalid"}],
        )


async def _check_sources_exist(request: Request, source_ids: list[int]) -> None:
    sources = request.app.state.sources
    for source_id in source_ids:
        if await sources.get(source_id) is None:
            raise HTTPException(
                422, [{"loc": ["body", "sources"], "msg": f"no source {source_id}",
                       "type": "invalid"}],
            )  # fmt: skip


@router.get("/alert-rules", response_model=list[AlertRulePublic])
async def list_alert_rules(analyst: Analyst, request: Request) -> list[dict[str, Any]]:
    """Rules all of whose sources the caller may read."""
    return [public(r) for r in await _rules(request).list(_readable(analyst))]


@router.get(A_RULE, response_model=AlertRulePublic, responses=answers(404))
async def get_alert_rule(rule_id: PathId, analyst: Analyst, request: Request) -> dict[str, Any]:
    row = await _rules(request).get(rule_id, _readable(analyst))
    if row is None:
        raise HTTPException(404, f"no alert rule {rule_id} on your sources")
    return public(row)


@router.post(
    "/alert-rules",
    status_code=201,
    response_model=AlertRulePublic,
    responses=BODY
    | answers(409)
    | _created(
        "alert rule",
        DeleteAlertRule=("/alert-rules/{rule_id}", "delete", "rule_id"),
        AlertRuleHistory=("/alert-rules/{rule_id}/history", "get", "rule_id"),
    ),
)
async def create_alert_rule(
    body: AlertRuleCreate, analyst: Analyst, access: Access, request: Request
) -> dict[str, Any]:
    """A rule, checked as a whole: a query the search would refuse is a 422 naming the
    field. Evaluation starts at the next tick."""
    values, channels = stored_values(body, body.name, _owner(analyst), _retention(request))
    source_ids: list[int] = values[10]
    _check_sources(analyst, source_ids)
    await _check_sources_exist(request, source_ids)
    await _check_channels(request, channels)
    try:
        rule_id = await _rules(request).create(values, channels)
    except asyncpg.UniqueViolationError:
        raise HTTPException(409, f"an alert rule named {body.name!r} exists") from None
    await _audit(access, request, analyst, "alert_rule_created", "alert_rule", rule_id)
    row = await _rules(request).get(rule_id, None)
    assert row is not None
    return public(row)


@router.patch(
    A_RULE,
    response_model=AlertRulePublic,
    responses=BODY | answers(404, 409),
)
async def update_alert_rule(
    rule_id: PathId, body: AlertRuleUpdate, analyst: Analyst, access: Access, request: Request
) -> dict[str, Any]:
    """Change some fields; the rule is checked again as a whole. A change to what it
    evaluates starts its states afresh (its history stays)."""
    rules = _rules(request)
    current = await rules.get(rule_id, _readable(analyst))
    if current is None:
        raise HTTPException(404, f"no alert rule {rule_id} on your sources")
    merged = {**editable(current), **body.model_dump(exclude_unset=True)}
    if "source" in merged:  # the older field names one source
        merged["sources"] = [merged.pop("source")] if merged["source"] is not None else []
    checked = validated(AlertRuleCreate, merged)
    values, channels = stored_values(
        checked, checked.name, current["created_by"], _retention(request)
    )
    _check_sources(analyst, values[10])
    await _check_sources_exist(request, values[10])
    await _check_channels(request, channels)
    before = stored_values(
        AlertRuleCreate.model_validate(editable(current)), current["name"],
        current["created_by"], _retention(request),
    )[0]  # fmt: skip
    columns = ("name", "description", *DEFINITION_FIELDS)
    order = [
        "name", "description", "kind", "op", "threshold", "window_seconds", "interval_seconds",
        "for_seconds", "keep_firing_for_seconds", "repeat_interval_seconds", "source_ids",
        "search", "options", "group_by", "labels", "is_active", "created_by",
    ]  # fmt: skip
    changed = [c for c in columns if values[order.index(c)] != before[order.index(c)]]
    reset = any(c in DEFINITION_FIELDS for c in changed)
    try:
        await rules.update(rule_id, values[:-1], channels, reset=reset)
    except asyncpg.UniqueViolationError:
        raise HTTPException(409, f"an alert rule named {checked.name!r} exists") from None
    await _audit(
        access, request, analyst, "alert_rule_updated", "alert_rule", rule_id,
        {"changed": changed, "states_reset": reset},
    )  # fmt: skip
    row = await rules.get(rule_id, None)
    assert row is not None
    return public(row)


@router.delete(A_RULE, status_code=204, responses=answers(404, 422))
async def delete_alert_rule(
    rule_id: PathId, analyst: Analyst, access: Access, request: Request
) -> Response:
    if not await _rules(request).delete(rule_id, _readable(analyst)):
        raise HTTPException(404, f"no alert rule {rule_id} on your sources")
    await _audit(access, request, analyst, "alert_rule_deleted", "alert_rule", rule_id)
    return Response(status_code=204)


@router.post("/alert-rules/preview", responses=BODY)
async def preview_alert_rule(
    body: AlertRulePreview,
    analyst: Analyst,
    request: Request,
    range_: Annotated[Literal["24h", "7d"], Query(alias="range")] = "24h",
) -> dict[str, Any]:
    """What the rule would have done over the last 24 hours or 7 days: its transitions
    and notifications, tick by tick, as live evaluation decides them. Nothing is saved
    or sent; it reads only the caller's sources."""
    retention = _retention(request)
    values, _channels = stored_values(body, body.name, _owner(analyst), retention)
    _check_sources(analyst, values[10])
    await _check_sources_exist(request, values[10])
    row = {
        "id": 0, "name": body.name, "kind": values[2], "op": values[3], "threshold": values[4],
        "window_seconds": values[5], "interval_seconds": values[6], "for_seconds": values[7],
        "keep_firing_for_seconds": values[8], "repeat_interval_seconds": values[9],
        "source_ids": values[10], "search": values[11], "options": values[12],
        "group_by": values[13], "labels": values[14], "created_by": values[16], "channels": [],
    }  # fmt: skip
    rule: PreparedRule = prepare(row, retention)
    settle = timedelta(seconds=request.app.state.settings.alert_settle_s)
    end = tick_floor(datetime.now(UTC) - settle, rule.spec.timing.interval)
    span = timedelta(hours=24) if range_ == "24h" else timedelta(days=7)
    async with request.app.state.db.pool.acquire() as conn, conn.transaction(readonly=True):
        try:
            scope: Scope = await scope_of(conn, rule.spec)
        except RuleUnusable as exc:
            raise HTTPException(403, str(exc)) from None
        try:
            return await preview(conn, rule, scope, end - span, end)
        except TooManyTicks as exc:
            raise HTTPException(
                422, [{"loc": ["query", "range"], "msg": str(exc), "type": "invalid"}]
            ) from None


@router.get(A_RULE + "/history", responses=answers(404))
async def alert_rule_history(
    rule_id: PathId,
    analyst: Analyst,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before: Annotated[int | None, Query(ge=1, le=2**63 - 1, description="an event id")] = None,
) -> dict[str, Any]:
    """Transitions, notifications (sent, retried, failed, silenced) and errors, newest
    first; `before` pages on."""
    if await _rules(request).get(rule_id, _readable(analyst)) is None:
        raise HTTPException(404, f"no alert rule {rule_id} on your sources")
    async with request.app.state.db.pool.acquire() as conn:
        rows = await conn.fetch(HISTORY, rule_id, before, limit)
    events = [dict(r) for r in rows]
    return {"events": events, "next_before": events[-1]["id"] if len(events) == limit else None}


@router.get("/alerts")
async def list_alerts(
    analyst: Analyst,
    request: Request,
    state: Annotated[
        Literal["ok", "pending", "firing", "resolved", "no_data"] | None, Query()
    ] = None,
) -> dict[str, Any]:
    """The state of every group of the caller's rules (firing first), each with the
    silence muting it now (`silenced_by`, an id, or null), and each rule's health (an
    error names its reason)."""
    readable = _readable(analyst)
    now = datetime.now(UTC)
    async with request.app.state.db.pool.acquire() as conn:
        states = await conn.fetch(STATES.format(visible=store.VISIBLE), readable, state)
        health = await conn.fetch(RULE_HEALTH.format(visible=store.VISIBLE), readable)
        silences = await store.active_silences(conn, now) if states else []
    alerts = []
    for row in states:
        muted = silenced(silences, row["rule_id"], row["group_key"], row["labels"], now)
        alerts.append({**dict(row), "silenced_by": None if muted is None else muted.id})
    return {"alerts": alerts, "rules": [dict(r) for r in health]}
