"""Admin routes (users, grants, API keys, sources) and analysts' saved searches (alert
rules: api/alerts.py).
Every change writes an audit_log row naming who did it, to what, from where."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictBool, field_validator

from logkeep.api.auth import (
    client_address,
    get_access,
    get_sessions,
    require,
)
from logkeep.api.deps import get_sources
from logkeep.api.fields import (
    FORMAT_TYPE_SCHEMA,
    NO_NUL,
    SOURCE_NAME_DESCRIPTION,
    SOURCE_NAME_PATTERN,
    JsonObject,
    PathId,
    RowId,
    StorableText,
    Text,
    unstorable,
)
from logkeep.api.problems import answers
from logkeep.db.access import AccessRepository
from logkeep.db.queries import q
from logkeep.db.repositories import SourceRepository, UserRepository
from logkeep.domain.auth import Action, Principal
from logkeep.domain.parsers import InvalidRules, compile_parser
from logkeep.domain.sources import DEFAULT_FORMAT_TYPE, DEFAULT_SOURCE_TYPE, is_source_name

# Every route here needs credentials and a right; a path id out of range is 422.
router = APIRouter(prefix="/api/v1", responses=answers(401, 403, 503))
BODY = answers(413, 422)
Admin = Annotated[Principal, Depends(require(Action.ADMIN))]
Analyst = Annotated[Principal, Depends(require(Action.SAVED_SEARCHES))]
Access = Annotated[AccessRepository, Depends(get_access)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserCreate(Strict):
    username: Text = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    email: Text = Field(min_length=3, max_length=254)
    password: Text = Field(min_length=12, max_length=1024)
    role: Literal["admin", "analyst", "viewer"] = "viewer"


class UserUpdate(Strict):
    role: Literal["admin", "analyst", "viewer"] | None = None
    is_active: StrictBool | None = None
    password: Text | None = Field(default=None, min_length=12, max_length=1024)


class SourceList(Strict):
    sources: list[RowId] = Field(min_length=1, max_length=1000)


class KeyCreate(Strict):
    name: Text = Field(min_length=1, max_length=100)
    scopes: list[Literal["ingest", "read"]] = Field(min_length=1)
    sources: list[RowId] = Field(default_factory=list, max_length=1000)
    all_sources: StrictBool = False


class SourceCreate(Strict):
    name: StorableText = Field(
        min_length=1,
        max_length=63,
        description=SOURCE_NAME_DESCRIPTION,
        json_schema_extra={"pattern": SOURCE_NAME_PATTERN},
    )
    source_type: Text = Field(
        default=DEFAULT_SOURCE_TYPE,
        min_length=1,
        max_length=64,
        description="a free label for people (web, database...); nothing depends on it",
    )
    format_type: StorableText = Field(
        default=DEFAULT_FORMAT_TYPE,
        min_length=1,
        max_length=32,
        json_schema_extra=FORMAT_TYPE_SCHEMA,
    )
    description: Text = Field(default="", max_length=1000)
    parsing_rules: JsonObject = Field(default_factory=dict)
    configuration: JsonObject = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _name_rule(cls, name: str) -> str:
        if not is_source_name(name):
            raise ValueError(
                "lower-case letters, digits, '_', '.' and '-', at most 63, not all digits"
            )
        return name


class SourceUpdate(Strict):
    format_type: StorableText | None = Field(
        default=None,
        min_length=1,
        max_length=32,
        json_schema_extra={"anyOf": [FORMAT_TYPE_SCHEMA, {"type": "null"}]},
    )
    parsing_rules: JsonObject | None = None
    is_active: StrictBool | None = None


def _storable_keys(params: dict[str, Any]) -> dict[str, Any]:
    """The values are Text; a key is stored as given too (jsonb refuses NUL: a 500)."""
    for key in params:
        if (reason := unstorable(key, "a key")) is not None:
            raise ValueError(reason)  # never the key itself, which may not encode
    return params


class SavedSearchCreate(Strict):
    name: Text = Field(min_length=1, max_length=100)
    params: Annotated[dict[str, Text | list[Text]], AfterValidator(_storable_keys)] = Field(
        json_schema_extra={"propertyNames": {"pattern": NO_NUL}}
    )


# -- answers ----------------------------------------------------------------------------
# Open models (extra fields pass through): they name what clients rely on, and the
# stateful fuzzer follows `id` from a 201 to the routes that take it (see LINKS).


class Public(BaseModel):
    model_config = ConfigDict(extra="allow")


class UserPublic(Public):
    id: int
    username: str
    email: str
    role: Literal["admin", "analyst", "viewer"]
    is_active: bool
    created_at: datetime
    last_login: datetime | None = None


class KeyPublic(Public):
    id: int
    name: str
    prefix: str
    scopes: list[Literal["ingest", "read"]]
    all_sources: bool
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyPublic):
    key: str = Field(description="the key itself, in this answer only")


class SourcePublic(Public):
    id: int
    name: str
    source_type: str
    format_type: str
    description: str
    parsing_rules: dict[str, Any]
    configuration: dict[str, Any]
    is_active: bool


class SavedSearchPublic(Public):
    id: int
    name: str
    params: dict[str, Any]
    created_at: datetime


def _created(what: str, **links: tuple[str, str, str]) -> dict[int | str, dict[str, Any]]:
    """The 201 answer of a create route, with an OpenAPI link per route taking the new
    id: `name=(path, method, parameter)`."""
    return {
        201: {
            "description": f"{what} created",
            "links": {
                name: {
                    "operationRef": "#/paths/"
                    + ("/api/v1" + path).replace("~", "~0").replace("/", "~1")
                    + f"/{method}",
                    "parameters": {parameter: "$response.body#/id"},
                }
                for name, (path, method, parameter) in links.items()
            },
        }
    }


def _users(request: Request) -> UserRepository:
    users: UserRepository = request.app.state.users
    return users


async def _audit(
    access: AccessRepository,
    request: Request,
    admin: Principal,
    action: str,
    target_type: str,
    target_id: object,
    details: dict[str, Any] | None = None,
) -> None:
    await access.audit(
        action,
        actor_id=admin.id if admin.kind == "user" else None,
        target_type=target_type,
        target_id=str(target_id),
        client_addr=client_address(request),
        details={"by": f"{admin.kind}:{admin.name}", **(details or {})},
    )


def _check_rules(format_type: str, rules: dict[str, Any]) -> None:
    try:
        compile_parser(format_type, rules)
    except InvalidRules as exc:
        raise HTTPException(422, str(exc)) from None


# -- users ----------------------------------------------------------------------------


@router.get("/users", response_model=list[UserPublic])
async def list_users(admin: Admin, request: Request) -> list[dict[str, Any]]:
    return await _users(request).list()


@router.post(
    "/users",
    status_code=201,
    response_model=UserPublic,
    responses=BODY
    | answers(409)
    | _created(
        "user",
        UpdateUser=("/users/{user_id}", "patch", "user_id"),
        GrantSources=("/users/{user_id}/grants", "post", "user_id"),
        RevokeSources=("/users/{user_id}/grants", "delete", "user_id"),
    ),
)
async def create_user(
    body: UserCreate, admin: Admin, access: Access, request: Request
) -> dict[str, Any]:
    try:
        user = await _users(request).create(body.username, body.email, body.password, body.role)
    except asyncpg.UniqueViolationError:
        raise HTTPException(409, "username or email already exists") from None
    await _audit(access, request, admin, "user_created", "user", user["id"], {"role": body.role})
    return user


@router.patch("/users/{user_id}", response_model=UserPublic, responses=BODY | answers(404))
async def update_user(
    user_id: PathId, body: UserUpdate, admin: Admin, access: Access, request: Request
) -> dict[str, Any]:
    users = _users(request)
    if await users.get(user_id) is None:
        raise HTTPException(404, f"no user {user_id}")
    changes: dict[str, Any] = {}
    if body.role is not None:
        await access.set_role(user_id, body.role)
        changes["role"] = body.role
    if body.is_active is not None:
        await access.set_active(user_id, body.is_active)
        changes["is_active"] = body.is_active
    if body.password is not None:
        await users.set_password(user_id, body.password)
        changes["password_changed"] = True  # never the password itself
    if body.password is not None or body.is_active is False:
        # A new password or a disabled account ends every session of the user.
        changes["sessions_revoked"] = await get_sessions(request).revoke_user(user_id)
    await _audit(access, request, admin, "user_updated", "user", user_id, changes)
    found = await users.get(user_id)
    assert found is not None
    return found


@router.post("/users/{user_id}/grants", status_code=204, responses=BODY | answers(404))
async def grant(
    user_id: PathId, body: SourceList, admin: Admin, access: Access, request: Request
) -> Response:
    try:
        await access.grant(user_id, body.sources, admin.id if admin.kind == "user" else None)
    except asyncpg.ForeignKeyViolationError:
        raise HTTPException(404, "no such user or source") from None
    await _audit(access, request, admin, "grant", "user", user_id, {"sources": body.sources})
    return Response(status_code=204)


@router.delete("/users/{user_id}/grants", status_code=204, responses=BODY)
async def revoke(
    user_id: PathId, body: SourceList, admin: Admin, access: Access, request: Request
) -> Response:
    await access.revoke(user_id, body.sources)
    await _audit(access, request, admin, "revoke", "user", user_id, {"sources": body.sources})
    return Response(status_code=204)


# -- API keys -------------------------------------------------------------------------


@router.get("/api-keys", response_model=list[KeyPublic])
async def list_keys(admin: Admin, access: Access) -> list[dict[str, Any]]:
    return await access.list_keys()


@router.post(
    "/api-keys",
    status_code=201,
    response_model=KeyCreated,
    responses=BODY | _created("API key", RevokeKey=("/api-keys/{key_id}", "delete", "key_id")),
)
async def create_key(
    body: KeyCreate, admin: Admin, access: Access, request: Request
) -> dict[str, Any]:
    """The key is in this answer only; logkeep keeps its SHA-256."""
    if not body.all_sources and not body.sources and "read" in body.scopes:
        raise HTTPException(422, "sources: a read key needs sources, or all_sources: true")
    try:
        created = await access.create_key(
            body.name,
            body.scopes,
            source_ids=body.sources,
            all_sources=body.all_sources,
            created_by=admin.id if admin.kind == "user" else None,
        )
    except asyncpg.ForeignKeyViolationError:
        raise HTTPException(422, "sources: no such source") from None
    await _audit(
        access, request, admin, "key_created", "api_key", created.record["id"],
        {"scopes": body.scopes, "sources": body.sources, "all_sources": body.all_sources},
    )  # fmt: skip
    return {**created.record, "key": created.token}


@router.delete("/api-keys/{key_id}", status_code=204, responses=answers(404, 422))
async def revoke_key(key_id: PathId, admin: Admin, access: Access, request: Request) -> Response:
    if not await access.revoke_key(key_id):
        raise HTTPException(404, f"no live key {key_id}")
    await _audit(access, request, admin, "key_revoked", "api_key", key_id)
    return Response(status_code=204)


# -- sources --------------------------------------------------------------------------


@router.get("/sources", response_model=list[SourcePublic])
async def list_sources(
    admin: Admin, sources: Annotated[SourceRepository, Depends(get_sources)]
) -> list[dict[str, Any]]:
    return await sources.list(active_only=False)


@router.post(
    "/sources",
    status_code=201,
    response_model=SourcePublic,
    responses=BODY
    | answers(409)
    | _created("source", UpdateSource=("/sources/{source_id}", "patch", "source_id")),
)
async def create_source(
    body: SourceCreate,
    admin: Admin,
    access: Access,
    request: Request,
    sources: Annotated[SourceRepository, Depends(get_sources)],
) -> dict[str, Any]:
    _check_rules(body.format_type, body.parsing_rules)
    try:
        source = await sources.create(
            body.name,
            source_type=body.source_type,
            format_type=body.format_type,
            description=body.description,
            parsing_rules=body.parsing_rules,
            configuration=body.configuration,
        )
    except asyncpg.UniqueViolationError:
        raise HTTPException(409, f"source {body.name!r} already exists") from None
    await _audit(access, request, admin, "source_created", "source", source["id"])
    return source


@router.patch("/sources/{source_id}", response_model=SourcePublic, responses=BODY | answers(404))
async def update_source(
    source_id: PathId,
    body: SourceUpdate,
    admin: Admin,
    access: Access,
    request: Request,
    sources: Annotated[SourceRepository, Depends(get_sources)],
) -> dict[str, Any]:
    current = await sources.get(source_id)
    if current is None:
        raise HTTPException(404, f"no source {source_id}")
    if body.parsing_rules is not None or body.format_type is not None:
        rules = current["parsing_rules"] if body.parsing_rules is None else body.parsing_rules
        _check_rules(body.format_type or current["format_type"], rules)
        current = await sources.update_rules(source_id, rules, body.format_type)
    if body.is_active is not None:
        current = await sources.set_active(source_id, body.is_active)
    await _audit(
        access, request, admin, "source_updated", "source", source_id,
        body.model_dump(exclude_none=True),
    )  # fmt: skip
    assert current is not None
    return current


# -- saved searches (analysts and admins) ----------------------------------------------


@router.get("/saved-searches", response_model=list[SavedSearchPublic])
async def list_saved(analyst: Analyst, request: Request) -> list[dict[str, Any]]:
    async with request.app.state.db.pool.acquire() as conn:
        rows = await conn.fetch(q("list_saved_searches"), _owner(analyst))
    return [dict(r) for r in rows]


@router.post(
    "/saved-searches",
    status_code=201,
    response_model=SavedSearchPublic,
    responses=BODY
    | answers(409)
    | _created(
        "saved search", DeleteSavedSearch=("/saved-searches/{search_id}", "delete", "search_id")
    ),
)
async def save_search(
    body: SavedSearchCreate, analyst: Analyst, request: Request
) -> dict[str, Any]:
    try:
        async with request.app.state.db.pool.acquire() as conn:
            row = await conn.fetchrow(
                q("insert_saved_search"), _owner(analyst), body.name, body.params
            )
    except asyncpg.UniqueViolationError:
        raise HTTPException(409, f"a saved search named {body.name!r} exists") from None
    assert row is not None
    return dict(row)


@router.delete("/saved-searches/{search_id}", status_code=204, responses=answers(404, 422))
async def delete_saved(search_id: PathId, analyst: Analyst, request: Request) -> Response:
    async with request.app.state.db.pool.acquire() as conn:
        deleted = await conn.fetchval(q("delete_saved_search"), search_id, _owner(analyst))
    if deleted is None:
        raise HTTPException(404, f"no saved search {search_id} of yours")
    return Response(status_code=204)


def _owner(principal: Principal) -> int:
    if principal.kind != "user":
        raise HTTPException(403, "saved searches belong to users, not API keys")
    return principal.id
