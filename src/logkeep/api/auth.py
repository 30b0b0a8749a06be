"""Who is calling: sessions and API keys on every request, and the login routes.

Every route but health, readiness and metrics depends on `require(action)`. Outside dev
a request without valid credentials is 401; a caller without the right is 403. Tokens
travel in the Authorization header, or for the web explorer in an HttpOnly session cookie
(api/web_session.py: CSRF-checked on writes), and are never logged or stored (only their
SHA-256 is)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request, Response, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import RedisError

from logkeep.api import web_session
from logkeep.api.deps import get_settings, resolve_source_ids
from logkeep.api.fields import Text, unstorable
from logkeep.api.problems import answers
from logkeep.cache.ingest_buffer import retry_after_header
from logkeep.cache.sessions import LoginLimiter, Session, SessionStore
from logkeep.config import Settings
from logkeep.db.access import AccessRepository
from logkeep.db.repositories import SourceRepository, UserRepository
from logkeep.domain.auth import (
    ANONYMOUS_ADMIN,
    KEY_PREFIX,
    KEY_SCOPES,
    SESSION_PREFIX,
    Action,
    Forbidden,
    Principal,
    bearer_token,
)
from logkeep.domain.protocols.common import shipper_token

log = structlog.get_logger(__name__)
router = APIRouter(prefix="/api/v1/auth", tags=["auth"])

# The two kinds of credentials, as the OpenAPI document declares them. Both are read by
# `resolve_principal` from the same header; these only declare them (auto_error off).
SESSION_AUTH = HTTPBearer(
    scheme_name="session",
    bearerFormat="lks_...",
    description="a session token from POST /api/v1/auth/login",
    auto_error=False,
)
API_KEY_AUTH = HTTPBearer(
    scheme_name="apiKey",
    bearerFormat="lkk_...",
    description="an API key (scopes ingest and read), sent as a bearer token",
    auto_error=False,
)
Session_ = Annotated[HTTPAuthorizationCredentials | None, Security(SESSION_AUTH)]
ApiKey_ = Annotated[HTTPAuthorizationCredentials | None, Security(API_KEY_AUTH)]

UNAUTHENTICATED = {"WWW-Authenticate": "Bearer"}
BAD_LOGIN = "invalid username or password"


async def get_access(request: Request) -> AccessRepository:
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
        return await (await get_access(request)).user(session.user_id)
    if token.startswith(KEY_PREFIX):
        return await (await get_access(request)).key(token)
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


# The dependencies `require` makes: the OpenAPI document adds 403 to every route that
# has one (logkeep.api.openapi), and 401 to every route that declares credentials.
RIGHTS_CHECKS: set[Callable[..., Awaitable[Principal]]] = set()


def _allowed(principal: Principal, action: Action) -> Principal:
    try:
        principal.require(action)
    except Forbidden as exc:
        raise HTTPException(403, str(exc)) from None
    return principal


def require(action: Action) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, who must be allowed `action` (403 otherwise). It also
    declares the credentials that can carry `action`: a session always, an API key
    only for its scopes (ingest, read)."""
    if action in KEY_SCOPES:

        async def session_or_key(
            principal: Annotated[Principal, Depends(authenticate)], _s: Session_, _k: ApiKey_
        ) -> Principal:
            return _allowed(principal, action)

        RIGHTS_CHECKS.add(session_or_key)
        return session_or_key

    async def session_only(
        principal: Annotated[Principal, Depends(authenticate)], _s: Session_
    ) -> Principal:
        return _allowed(principal, action)

    RIGHTS_CHECKS.add(session_only)
    return session_only


async def any_credentials(
    principal: Annotated[Principal, Depends(authenticate)], _s: Session_, _k: ApiKey_
) -> Principal:
    """A dependency: any known caller (a session or an API key)."""
    return principal


Caller = Annotated[Principal, Depends(any_credentials)]


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


class LoginUser(BaseModel):
    id: int
    username: str
    role: Literal["admin", "analyst", "viewer"]


class LoginAnswer(BaseModel):
    token: str = Field(description="send as `Authorization: Bearer <token>`; shown once")
    token_type: Literal["bearer"]
    expires_in: int = Field(description="seconds of idleness before the session ends")
    user: LoginUser


class Me(BaseModel):
    kind: Literal["user", "key", "anonymous"]
    id: int
    name: str
    actions: list[str]
    sources: list[int] | None = Field(description="readable source ids; null: every source")
    preferences: dict[str, Any]


@router.post("/login", response_model=LoginAnswer, responses=answers(401, 413, 422, 429, 503))
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


@router.post("/logout", status_code=204, responses=answers(401, 503))
async def logout(request: Request, principal: Caller) -> Response:
    token = bearer_token(request.headers.get("authorization"))
    if token is not None and token.startswith(SESSION_PREFIX):
        await get_sessions(request).revoke(token)
        await (await get_access(request)).audit(
            "logout", actor_id=principal.id, target_type="user", target_id=principal.id,
            client_addr=client_address(request),
        )  # fmt: skip
    return Response(status_code=204)


@router.get("/me", responses=answers(401, 503))
async def me(request: Request, principal: Caller) -> Me:
    session: Session | None = getattr(request.state, "session", None)
    return Me(
        kind=principal.kind,
        id=principal.id,
        name=principal.name,
        actions=sorted(a.value for a in principal.actions),
        sources=None if principal.sources is None else sorted(principal.sources),
        preferences=session.preferences if session else {},
    )


@router.put(
    "/me/preferences",
    responses=answers(
        401, 403, 413, 422, 503, s403="preferences belong to a login session (not a key)"
    ),
)
async def set_preferences(body: Preferences, request: Request, principal: Caller) -> dict[str, Any]:
    """Replace the caller's preferences (any JSON object, kept with the session)."""
    session: Session | None = getattr(request.state, "session", None)
    if session is None:
        raise HTTPException(403, "preferences belong to a login session, not an API key")
    preferences = body.model_dump()
    reason = unstorable(preferences, "preferences", nul=True)  # kept in Redis: NUL is fine
    if reason is not None:
        raise HTTPException(422, reason)
    try:
        await get_sessions(request).set_preferences(session, preferences)
    except ValueError as exc:
        raise HTTPException(413, str(exc)) from None
    return preferences
