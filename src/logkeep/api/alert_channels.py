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
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    RootModel,
    StrictStr,
)
from pydantic.config import JsonDict
from pydantic_core import PydanticCustomError

from logkeep.alerting import store
from logkeep.api.admin import Access, Admin, Analyst, _audit, _created
from logkeep.api.auth import readable_sources
from logkeep.api.fields import Instant, PathId, RowId, Text, TextMap, by_field
from logkeep.api.problems import answers

router = APIRouter(prefix="/api/v1", tags=["alerts"], responses=answers(401, 403, 503))
BODY = answers(413, 422)
MIN_SECRET = 16
MAX_RECIPIENTS = 50
# The patterns are the checks (fullmatch here, the same text in the document), written
# without \s, \w or \d, which mean other things in other regular expression engines.
_ADDRESS = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[A-Za-z0-9.-]{1,253}"
ADDRESS_PATTERN = f"^{_ADDRESS}$"
ADDRESSES_PATTERN = f"^ *{_ADDRESS} *(?:, *{_ADDRESS} *){{0,{MAX_RECIPIENTS - 1}}}$"
_H16 = "[0-9A-Fa-f]{1,4}"
_OCTET = "(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
_LS32 = rf"(?:{_H16}:{_H16}|{_OCTET}(?:\.{_OCTET}){{3}})"


def _before(groups: int) -> str:
    """Up to `groups` groups before `::`."""
    return rf"(?:(?:{_H16}:){{0,{groups - 1}}}{_H16})?"


# RFC 3986's IPv6address, which urlsplit (through ipaddress) takes and nothing else: a
# looser [hex:.] let "[0b.0]" in, and urlsplit raised on it when the channel was shown.
_IPV6 = "|".join([
    rf"(?:{_H16}:){{6}}{_LS32}", rf"::(?:{_H16}:){{5}}{_LS32}",
    rf"{_before(1)}::(?:{_H16}:){{4}}{_LS32}", rf"{_before(2)}::(?:{_H16}:){{3}}{_LS32}",
    rf"{_before(3)}::(?:{_H16}:){{2}}{_LS32}", rf"{_before(4)}::{_H16}:{_LS32}",
    rf"{_before(5)}::{_LS32}", rf"{_before(6)}::{_H16}", rf"{_before(7)}::",
])  # fmt: skip
_HOST = rf"(?:[A-Za-z0-9_](?:[A-Za-z0-9_.-]{{0,251}}[A-Za-z0-9_])?|\[(?:{_IPV6})\])"
_PORT = (  # 1 to 65535
    r"(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}"
    r"|[1-9][0-9]{0,3}))?"
)
_USER = r"(?:[A-Za-z0-9._~%!$&'()*+,;=:-]*@)?"
_URL = "://" + _USER + _HOST + _PORT + r"(?:[/?#][^\x00-\x20\x7f]*)?$"
HTTP_URL_PATTERN = "^https?" + _URL
HTTPS_URL_PATTERN = "^https" + _URL

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


def _fullmatch(pattern: str, reason: str) -> AfterValidator:
    """Text that matches `pattern` whole (declared beside it); `reason` when it does not."""
    compiled = re.compile(pattern)

    def check(text: str) -> str:
        if not compiled.fullmatch(text):
            raise PydanticCustomError("string_pattern_mismatch", reason)
        return text

    return AfterValidator(check)


def _recipients(value: Any) -> list[str]:
    """A list of addresses, or one text of them separated by commas."""
    if isinstance(value, str) and re.fullmatch(ADDRESSES_PATTERN, value):
        return [address.strip(" ") for address in value.split(",")]
    if not isinstance(value, list):
        raise PydanticCustomError(
            "addresses", f"1 to {MAX_RECIPIENTS} email addresses, separated by commas"
        )
    if not 1 <= len(value) <= MAX_RECIPIENTS:
        raise PydanticCustomError("addresses", f"1 to {MAX_RECIPIENTS} email addresses")
    for number, address in enumerate(value, 1):
        if not isinstance(address, str) or not re.fullmatch(ADDRESS_PATTERN, address):
            raise PydanticCustomError("address", f"item {number} is not an email address")
    return value


def _empty(reason: str) -> AfterValidator:
    """A field another kind takes: tolerated when empty, as a form may send every field."""

    def check(value: Any) -> None:
        if value not in (None, "", []) or isinstance(value, bool):
            raise PydanticCustomError("not_taken", reason)

    return AfterValidator(check)


Recipients = Annotated[
    Any,
    AfterValidator(_recipients),
    Field(
        description="the addresses: a list, or one text separated by commas",
        json_schema_extra={
            "anyOf": [
                {
                    "type": "array",
                    "items": {"type": "string", "pattern": ADDRESS_PATTERN},
                    "minItems": 1,
                    "maxItems": MAX_RECIPIENTS,
                },
                {"type": "string", "pattern": ADDRESSES_PATTERN},
            ]
        },
    ),
]
WebhookUrl = Annotated[
    StrictStr,
    Field(max_length=2048, json_schema_extra={"pattern": HTTP_URL_PATTERN}),
    _fullmatch(HTTP_URL_PATTERN, "is an absolute http or https URL"),
]
ChatUrl = Annotated[
    StrictStr,
    Field(max_length=2048, json_schema_extra={"pattern": HTTPS_URL_PATTERN}),
    _fullmatch(HTTPS_URL_PATTERN, "is an absolute https URL"),
]
_EMPTY: dict[str, Any] = {"anyOf": [{"type": "null"}, {"type": "string", "maxLength": 0}]}
NoText = Field(json_schema_extra=_EMPTY)
NoTo = Annotated[
    Any,
    _empty("only email channels take `to`"),
    Field(json_schema_extra={"anyOf": [*_EMPTY["anyOf"], {"type": "array", "maxItems": 0}]}),
]
ONLY_TO = _empty("an email channel takes only `to`")


class ChannelFields(Strict):
    name: Text = Field(min_length=1, max_length=100)


class WebhookChannel(ChannelFields):
    """A signed JSON POST to `url` (the signature: docs/alerting.md)."""

    kind: Literal["webhook"]
    url: WebhookUrl
    secret: Text = Field(
        min_length=MIN_SECRET, max_length=256, description="the HMAC-SHA256 key that signs"
    )
    to: NoTo = None


class EmailChannel(ChannelFields):
    kind: Literal["email"]
    to: Recipients
    url: Annotated[Any, ONLY_TO, NoText] = None
    secret: Annotated[Any, ONLY_TO, NoText] = None


class ChatChannel(ChannelFields):
    """Slack or Teams: their incoming webhook, whose URL is itself the credential."""

    kind: Literal["slack", "teams"]
    url: ChatUrl
    secret: Annotated[
        Any, _empty("only webhooks take a secret (the URL is the credential)"), NoText
    ] = None
    to: NoTo = None


class ChannelCreate(
    RootModel[
        Annotated[
            WebhookChannel | EmailChannel | ChatChannel,
            Field(discriminator="kind"),
            by_field("kind"),
        ]
    ]
):
    """What each kind takes is its own schema, so the document states it."""


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


def _host_only(url: str) -> str:
    """A chat webhook's URL without its secret part. A URL saved before the pattern above
    was whole may not split: it is then hidden whole, rather than failing the list."""
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname}/…"
    except ValueError:
        return "…"


def channel_public(row: Any) -> dict[str, Any]:
    url = row["url"]
    if row["kind"] in ("slack", "teams") and url:
        url = _host_only(url)
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
    channel = body.root
    url, recipients, secret = "", [], ""
    if isinstance(channel, EmailChannel):
        recipients = channel.to
    else:
        url = channel.url
        secret = channel.secret if isinstance(channel, WebhookChannel) else ""
    try:
        async with request.app.state.db.pool.acquire() as conn:
            row = await conn.fetchrow(
                INSERT_CHANNEL, channel.name, channel.kind, url, recipients, secret,
                admin.id if admin.kind == "user" else None,
            )  # fmt: skip
    except asyncpg.UniqueViolationError:
        raise HTTPException(409, f"a channel named {channel.name!r} exists") from None
    assert row is not None
    await _audit(access, request, admin, "alert_channel_created", "alert_channel", row["id"],
                 {"kind": channel.kind})  # fmt: skip
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


_A_RULE: JsonDict = {"required": ["rule_id"], "properties": {"rule_id": {"type": "integer"}}}
# Rules between fields, as the route checks them (ends_at after starts_at, and a repeating
# window shorter than its period, depend on the clock and on two instants: not stated).
SILENCE_RULES: list[JsonValue] = [
    {  # what it mutes: a rule, or every alert whose labels match
        "anyOf": [
            _A_RULE,
            {"required": ["matchers"], "properties": {"matchers": {"minProperties": 1}}},
        ]
    },
    {"anyOf": [{"properties": {"group": {"type": "null"}}}, _A_RULE]},  # a group of a rule
    {  # repeat_until ends a repeating window
        "anyOf": [
            {"properties": {"repeat_until": {"type": "null"}}},
            {"required": ["repeat"], "properties": {"repeat": {"type": "string"}}},
        ]
    },
]


class SilenceCreate(Strict):
    """Give rule_id, matchers or both; a group needs its rule_id; repeat_until needs
    repeat. Instants are RFC 3339 text with an offset (numbers are refused)."""

    model_config = ConfigDict(json_schema_extra={"allOf": SILENCE_RULES})

    rule_id: RowId | None = None
    group: Text | None = Field(
        default=None, max_length=1000, description="a group key of the rule (needs rule_id)"
    )
    matchers: Annotated[dict[str, Any], TextMap(max_key=64, max_value=256)] = Field(
        default_factory=dict, description="label: value (* matches any text)"
    )
    starts_at: Instant | None = Field(default=None, description="default: now")
    ends_at: Instant = Field(description="after starts_at")
    repeat: Literal["daily", "weekly"] | None = Field(
        default=None, description="a maintenance window: the same hours every day or week"
    )
    repeat_until: Instant | None = Field(
        default=None, description="a repeating window's last day (needs repeat); default: none"
    )
    comment: Text = Field(default="", max_length=1000)


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
    if body.repeat_until is not None and body.repeat is None:
        raise _refuse("repeat_until", "ends a repeating window: give repeat")
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
