"""Who is calling: sessions and API keys on every request, and the login routes.

Every route but health, readiness and metrics depends on `require(action)`. Outside dev
a request without valid credentials is 401; a caller without the right is 403. Tokens
travel only in the Authorization header, and are never logged or stored (only their
SHA-256 is)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import RedisError

from logkeep.api import web_session
from logkeep.api.deps import get_settings, resolve_source_ids
from logkeep.api.fields import Text
from logkeep.cache.ingest_buffer import retry_after_header
from logkeep.cache.sessions import LoginLimiter, Session, SessionStore
from logkeep.config import Settings
from logkeep.db.access import AccessRepository
from logkeep.db.repositories import SourceRepository, UserRepository
from logkeep.domain.auth import (
    ANONYMOUS_ADMIN,
    KEY_PREFIX,
    SESSION_PREFIX,
    Action,
    Forbidden,
    Principal,
    bearer_token,
)
from logkeep.domain.protocols.common import shipper_token

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/api/v1/auth")

UNAUTHENTICATED = {"WWW-Authenticate": "Bearer"}
BAD_LOGIN = "invalid username or password"


def get_access(request: Request) -> AccessRepository:
    access: AccessRepository = request.app.state.access
    return access


def get_sessions(request: Request) -> SessionStore:
    sessions: SessionStore = request.app.state.sessions
    return sessions


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers=UNAUTHENTICATED)


async def resolve_principal(request: Request) -> Principal | None:
    """The caller by this request's credentials, looked up now (None: no valid ones).
    Raises 401 for a malformed header or missing credentials where they are required,
    503 when the session store cannot be asked."""
    settings: Settings = request.app.state.settings
    header = request.headers.get("authorization")
    token = bearer_token(header) or shipper_token(header)  # shippers: ApiKey, Basic
    if header is None:  # the browser's session cookie, CSRF-checked for writes (403)
        token = web_session.session_from_cookie(request)
    if token is None:
        if header is not None:
            raise _unauthorized("Authorization: expected `Bearer <token>`")
        if settings.requires_auth:
            raise _unauthorized("credentials required: Authorization: Bearer <token>")
        return ANONYMOUS_ADMIN
    if token.startswith(SESSION_PREFIX):
        try:
            session = await get_sessions(request).get(token)
        except RedisError:
            raise HTTPException(
                503, "session store (Redis) unavailable; retry later", {"Retry-After": "5"}
            ) from None
        if session is None:
            return None
        request.state.session = session
        return await get_access(request).user(session.user_id)
    if token.startswith(KEY_PREFIX):
        return await get_access(request).key(token)
    return None


async def authenticate(request: Request) -> Principal:
    """The caller, once per request (cached on the request)."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    principal = await resolve_principal(request)
    if principal is None:
        raise _unauthorized("invalid, expired or revoked credentials")
    request.state.principal = principal
    return principal


def require(action: Action) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency: the caller, who must be allowed `action` (403 otherwise)."""

    async def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        try:
            principal.require(action)
        except Forbidden as exc:
            raise HTTPException(403, str(exc)) from None
        return principal

    return check


Reader = Annotated[Principal, Depends(require(Action.READ))]


def readable_sources(principal: Principal, requested: list[int] | None) -> list[int] | None:
    """The sources a read covers, or 403 naming a source the caller may not read."""
    try:
        return principal.readable(requested)
    except Forbidden as exc:
        raise HTTPException(403, str(exc)) from None


async def requested_sources(
    principal: Principal, sources: SourceRepository, refs: list[str]
) -> list[int] | None:
    """The ids of the sources a read names (None: it names none). A caller limited to
    some sources gets the same 403 for a source that does not exist as for one it may
    not read, so it cannot probe which sources exist; others get the 422 naming it."""
    if principal.sources is None:
        return await resolve_source_ids(sources, refs)
    ids: list[int] = []
    for ref in refs:
        found = await sources.resolve(ref)
        if found is None or found["id"] not in principal.sources:
            raise HTTPException(403, f"source {ref[:64]!r}: not readable by {principal.name!r}")
        ids.append(found["id"])
    return sorted(set(ids)) if refs else None


# -- routes ----------------------------------------------------------------------------


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: Text = Field(min_length=1, max_length=64)
    password: Text = Field(min_length=1, max_length=1024)


class Preferences(BaseModel):
    model_config = ConfigDict(extra="allow")


@router.post("/login")
async def login(
    body: LoginRequest,
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    access: Annotated[AccessRepository, Depends(get_access)],
) -> dict[str, Any]:
    """A session token for a username and password (shown once; send it as
    `Authorization: Bearer <token>`). The same answer for an unknown user and a wrong
    password; too many failures per user or per address are 429 with Retry-After."""
    address = client_address(request)
    limiter: LoginLimiter = request.app.state.login_limiter
    sessions = get_sessions(request)
    users: UserRepository = request.app.state.users
    try:
        wait = await limiter.attempt(body.username, address)
        if wait is not None:
            await access.audit(
                "login_throttled", target_type="user", target_id=body.username[:64],
                client_addr=address,
            )  # fmt: skip
            raise HTTPException(
                429,
                "too many failed logins; retry later",
                {"Retry-After": retry_after_header(wait)},
            )
        user = await users.authenticate(body.username, body.password)
        if user is None:
            await access.audit(
                "login_failed", target_type="user", target_id=body.username[:64],
                client_addr=address,
            )  # fmt: skip
            raise _unauthorized(BAD_LOGIN)
        await limiter.succeeded(body.username, address)
        token = await sessions.create(user["id"])
    except RedisError:
        raise HTTPException(
            503, "session store (Redis) unavailable; login is not possible right now",
            {"Retry-After": "5"},
        ) from None  # fmt: skip
    await access.audit(
        "login", actor_id=user["id"], target_type="user", target_id=user["id"],
        client_addr=address,
    )  # fmt: skip
    return {
        "token": token,
        "token_type": "bearer",
        "expires_in": settings.session_idle_s,
        "user": {"id": user["id"], "username": user["username"], "role": str(user["role"])},
    }


@router.post("/logout", status_code=204)
async def logout(
    request: Request, principal: Annotated[Principal, Depends(authenticate)]
) -> Response:
    token = bearer_token(request.headers.get("authorization"))
    if token is not None and token.startswith(SESSION_PREFIX):
        await get_sessions(request).revoke(token)
        await get_access(request).audit(
            "logout", actor_id=principal.id, target_type="user", target_id=principal.id,
            client_addr=client_address(request),
        )  # fmt: skip
    return Response(status_code=204)


@router.get("/me")
async def me(
    request: Request, principal: Annotated[Principal, Depends(authenticate)]
) -> dict[str, Any]:
    session: Session | None = getattr(request.state, "session", None)
    return {
        "kind": principal.kind,
        "id": principal.id,
        "name": principal.name,
        "actions": sorted(a.value for a in principal.actions),
        "sources": None if principal.sources is None else sorted(principal.sources),
        "preferences": session.preferences if session else {},
    }


@router.put("/me/preferences")
async def set_preferences(
    body: Preferences,
    request: Request,
    principal: Annotated[Principal, Depends(authenticate)],
) -> dict[str, Any]:
    session: Session | None = getattr(request.state, "session", None)
    if session is None:
        raise HTTPException(400, "preferences belong to a login session, not an API key")
    preferences = body.model_dump()
    try:
        await get_sessions(request).set_preferences(session, preferences)
    except TypeError:  # orjson: text that is not valid UTF-8 (a lone surrogate)
        raise HTTPException(422, "preferences: not valid UTF-8 text") from None
    except ValueError as exc:
        raise HTTPException(413, str(exc)) from None
    return preferences
