"""Notification channels and silences.

Channels are made by admins (a webhook makes the server send requests where it is told:
that is an administrator's decision) and used by any rule; analysts list them. A
channel's secret and the URL of a Slack or Teams webhook (which is itself a credential)
are never shown again. Silences mute notifications of a rule, of one of its groups, or
of every alert whose labels match, over a time range that may repeat (maintenance)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import asyncpg
from fastapi import APIRouter, HTTPException, Request, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from logkeep.alerting import store
from logkeep.api.admin import Access, Admin, Analyst, _audit, _created
from logkeep.api.auth import readable_sources
from logkeep.api.fields import PathId, RowId, Text
from logkeep.api.problems import answers

router = APIRouter(prefix="/api/v1", tags=["alerts"], responses=answers(401, 403, 503))
BODY = answers(413, 422)
_EMAIL = re.compile(r"^[^@\s,<>]{1,64}@[A-Za-z0-9.-]{1,253}$")
MIN_SECRET = 16

CHANNEL_COLUMNS = "id, name, kind, url, recipients, secret <> '' AS has_secret, created_at"
LIST_CHANNELS = f"SELECT {CHANNEL_COLUMNS} FROM alert_channels ORDER BY name"
INSERT_CHANNEL = f"""
INSERT INTO alert_channels (name, kind, url, recipients, secret, created_by)
VALUES ($1, $2, $3, $4, $5, $6) RETURNING {CHANNEL_COLUMNS}
"""
DELETE_CHANNEL = "DELETE FROM alert_channels WHERE id = $1 RETURNING id"
SILENCE_COLUMNS = """
s.id, s.rule_id, s.group_key, s.matchers, s.starts_at, s.ends_at, s.repeat, s.repeat_until,
s.comment, s.created_by, s.created_at
"""
# Silences of the caller's rules, and silences by labels alone (for callers of every
# source, who may make them).
LIST_SILENCES = f"""
SELECT {SILENCE_COLUMNS} FROM alert_silences s LEFT JOIN alert_rules r ON r.id = s.rule_id
WHERE (s.rule_id IS NULL AND $1::integer[] IS NULL)
   OR (s.rule_id IS NOT NULL AND {store.VISIBLE})
ORDER BY s.ends_at DESC
"""
INSERT_SILENCE = f"""
INSERT INTO alert_silences AS s (rule_id, group_key, matchers, starts_at, ends_at, repeat,
    repeat_until, comment, created_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING {SILENCE_COLUMNS}
"""
DELETE_SILENCE = "DELETE FROM alert_silences WHERE id = $1 RETURNING id"
SILENCE_BY_ID = f"SELECT {SILENCE_COLUMNS} FROM alert_silences s WHERE s.id = $1"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChannelCreate(Strict):
    name: Text = Field(min_length=1, max_length=100)
    kind: Literal["webhook", "email", "slack", "teams"]
    url: Text | None = Field(default=None, max_length=2048)
    to: list[Text] | Text | None = Field(default=None, description="email: the addresses")
    secret: Text | None = Field(
        default=None, max_length=256, description="webhook: the HMAC-SHA256 key (16+ characters)"
    )


class ChannelPublic(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    name: str
    kind: str
    url: str = Field(description="a webhook's URL; Slack and Teams: only the host")
    to: list[str]
    has_secret: bool
    created_at: datetime


def _refuse(field: str, reason: str) -> HTTPException:
    return HTTPException(422, [{"loc": ["body", field], "msg": reason, "type": "invalid"}])


def _url(url: str | None, *, https: bool) -> str:
    if not url:
        raise _refuse("url", "is required for this kind")
    parts = urlsplit(url)
    schemes = ("https",) if https else ("http", "https")
    if parts.scheme not in schemes or not parts.hostname:
        raise _refuse("url", f"is an absolute {' or '.join(schemes)} URL")
    return url


def channel_public(row: Any) -> dict[str, Any]:
    url = row["url"]
    if row["kind"] in ("slack", "teams") and url:
        url = f"{urlsplit(url).scheme}://{urlsplit(url).hostname}/…"
    return {
        "id": row["id"], "name": row["name"], "kind": row["kind"], "url": url,
        "to": list(row["recipients"]), "has_secret": row["has_secret"],
        "created_at": row["created_at"],
    }  # fmt: skip


@router.get("/alert-channels", response_model=list[ChannelPublic])
async def list_channels(analyst: Analyst, request: Request) -> list[dict[str, Any]]:
    async with request.app.state.db.pool.acquire() as conn:
        return [channel_public(r) for r in await conn.fetch(LIST_CHANNELS)]


@router.post(
    "/alert-channels",
    status_code=201,
    response_model=ChannelPublic,
    responses=BODY
    | answers(409)
    | _created("channel", DeleteChannel=("/alert-channels/{channel_id}", "delete", "channel_id")),
)
async def create_channel(
    body: ChannelCreate, admin: Admin, access: Access, request: Request
) -> dict[str, Any]:
    """A channel: webhook (url, secret), email (to), slack or teams (their incoming
    webhook's url). The secret and chat webhook URLs are never shown again."""
    url, recipients, secret = "", [], body.secret or ""
    if body.kind == "email":
        if body.url or body.secret:
            raise _refuse("url" if body.url else "secret", "an email channel takes only `to`")
        given = body.to if isinstance(body.to, list) else (body.to or "").split(",")
        recipients = [a.strip() for a in given if a.strip()]
        if not recipients or len(recipients) > 50:
            raise _refuse("to", "1 to 50 email addresses")
        bad = [a for a in recipients if not _EMAIL.match(a)]
        if bad:
            raise _refuse("to", f"{bad[0][:80]!r} is not an email address")
    else:
        if body.to:
            raise _refuse("to", "only email channels take `to`")
        url = _url(body.url, https=body.kind != "webhook")
        if body.kind == "webhook" and len(secret) < MIN_SECRET:
            raise _refuse(
                "secret", f"a webhook is signed: give a secret of {MIN_SECRET}+ characters"
            )
        if body.kind != "webhook" and secret:
            raise _refuse("secret", "only webhooks take a secret (the URL is the credential)")
    try:
        async with request.app.state.db.pool.acquire() as conn:
            row = await conn.fetchrow(
                INSERT_CHANNEL, body.name, body.kind, url, recipients, secret,
                admin.id if admin.kind == "user" else None,
            )  # fmt: skip
    except asyncpg.UniqueViolationError:
        raise HTTPException(409, f"a channel named {body.name!r} exists") from None
    assert row is not None
    await _audit(access, request, admin, "alert_channel_created", "alert_channel", row["id"],
                 {"kind": body.kind})  # fmt: skip
    return channel_public(row)


@router.delete("/alert-channels/{channel_id}", status_code=204, responses=answers(404, 422))
async def delete_channel(
    channel_id: PathId, admin: Admin, access: Access, request: Request
) -> Response:
    """Deletes the channel, its place in rules and its undelivered notifications."""
    async with request.app.state.db.pool.acquire() as conn:
        if await conn.fetchval(DELETE_CHANNEL, channel_id) is None:
            raise HTTPException(404, f"no channel {channel_id}")
    await _audit(access, request, admin, "alert_channel_deleted", "alert_channel", channel_id)
    return Response(status_code=204)


# -- silences ---------------------------------------------------------------------------


class SilenceCreate(Strict):
    rule_id: RowId | None = None
    group: Text | None = Field(default=None, max_length=1000, description="a group key of the rule")
    matchers: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=256)]] = (
        Field(default_factory=dict, description="label: value (* matches any text)")
    )
    starts_at: AwareDatetime | None = Field(default=None, description="default: now")
    ends_at: AwareDatetime
    repeat: Literal["daily", "weekly"] | None = Field(
        default=None, description="a maintenance window: the same hours every day or week"
    )
    repeat_until: AwareDatetime | None = None
    comment: Text = Field(default="", max_length=1000)

    @field_validator("matchers")
    @classmethod
    def _no_nul(cls, value: dict[str, str]) -> dict[str, str]:
        if any("\x00" in k or "\x00" in v for k, v in value.items()):
            raise ValueError("must not contain NUL characters")
        return value


@router.get("/silences")
async def list_silences(analyst: Analyst, request: Request) -> list[dict[str, Any]]:
    async with request.app.state.db.pool.acquire() as conn:
        rows = await conn.fetch(LIST_SILENCES, readable_sources(analyst, None))
    return [dict(r) for r in rows]


@router.post(
    "/silences",
    status_code=201,
    responses=BODY
    | answers(404)
    | _created("silence", DeleteSilence=("/silences/{silence_id}", "delete", "silence_id")),
)
async def create_silence(
    body: SilenceCreate, analyst: Analyst, access: Access, request: Request
) -> dict[str, Any]:
    """Mutes notifications (the states go on) of a rule, one of its groups, or alerts
    whose labels match, from starts_at to ends_at, or in that window every day or week."""
    starts = body.starts_at or datetime.now(UTC)
    if body.ends_at <= starts:
        raise _refuse("ends_at", "is after starts_at")
    if body.repeat and body.ends_at - starts >= (
        timedelta(days=1 if body.repeat == "daily" else 7)
    ):
        raise _refuse("ends_at", f"a {body.repeat} window is shorter than its period")
    if body.rule_id is None and body.group is not None:
        raise _refuse("group", "a group belongs to a rule: give rule_id")
    if body.rule_id is None and not body.matchers:
        raise _refuse("matchers", "give rule_id or matchers")
    readable = readable_sources(analyst, None)
    if body.rule_id is not None:
        if await store.RuleStore(request.app.state.db.pool).get(body.rule_id, readable) is None:
            raise HTTPException(404, f"no alert rule {body.rule_id} on your sources")
    elif readable is not None:
        raise HTTPException(403, "a silence of every rule by labels needs access to every source")
    async with request.app.state.db.pool.acquire() as conn:
        row = await conn.fetchrow(
            INSERT_SILENCE, body.rule_id, body.group, body.matchers, starts, body.ends_at,
            body.repeat, body.repeat_until, body.comment,
            analyst.id if analyst.kind == "user" else None,
        )  # fmt: skip
    assert row is not None
    await _audit(access, request, analyst, "silence_created", "silence", row["id"])
    return dict(row)


@router.delete("/silences/{silence_id}", status_code=204, responses=answers(404, 422))
async def delete_silence(
    silence_id: PathId, analyst: Analyst, access: Access, request: Request
) -> Response:
    readable = readable_sources(analyst, None)
    async with request.app.state.db.pool.acquire() as conn:
        row = await conn.fetchrow(SILENCE_BY_ID, silence_id)
        visible = row is not None and (
            (row["rule_id"] is None and readable is None)
            or (
                row["rule_id"] is not None
                and await store.RuleStore(request.app.state.db.pool).get(row["rule_id"], readable)
                is not None
            )
        )
        if not visible:
            raise HTTPException(404, f"no silence {silence_id} of your rules")
        await conn.execute(DELETE_SILENCE, silence_id)
    await _audit(access, request, analyst, "silence_deleted", "silence", silence_id)
    return Response(status_code=204)
