"""`logkeep users ...`: operators manage users, grants and API keys on the database
directly (no API session needed). Every change is audited as done by the operator."""

from __future__ import annotations

import getpass
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import asyncpg
import typer
from rich.console import Console
from rich.table import Table

from logkeep.cache.sessions import LoginLimiter, SessionStore
from logkeep.config import Settings
from logkeep.db.access import AccessRepository
from logkeep.db.database import Database
from logkeep.db.repositories import SourceRepository, UserRepository

T = TypeVar("T")
users_app = typer.Typer(help="Users, source grants and API keys.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)
OPERATOR = {"by": "operator:cli"}


class Tools:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.users = UserRepository(db.pool)
        self.access = AccessRepository(db.pool)
        self.sources = SourceRepository(db.pool)
        self.sessions = SessionStore(
            db.redis,
            db.keys,
            idle_s=settings.session_idle_s,
            lifetime_s=settings.session_lifetime_s,
        )
        self.limiter = LoginLimiter(
            db.redis,
            db.keys,
            per_user=settings.login_max_failures_per_user,
            per_address=settings.login_max_failures_per_address,
            window_s=settings.login_failure_window_s,
        )

    async def user_id(self, username: str) -> int:
        found = await self.users.get_by_username(username)
        if found is None:
            raise typer.BadParameter(f"no user named {username!r}")
        user_id: int = found["id"]
        return user_id

    async def source_ids(self, names: list[str]) -> list[int]:
        ids = []
        for name in names:
            found = await self.sources.resolve(name)
            if found is None:
                raise typer.BadParameter(f"no source named or numbered {name!r}")
            ids.append(found["id"])
        return ids


def _run(action: Callable[[Tools], Awaitable[T]]) -> T:
    from logkeep.cli.common import load_settings, run_async, stores

    settings = load_settings()
    with stores(settings) as (resolved, _):

        async def go() -> T:
            async with Database(resolved) as db:
                return await action(Tools(db, resolved))

        return run_async(go())


def _password(given: str | None) -> str:
    if given:
        return given
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise typer.BadParameter("the passwords differ")
    return first


@users_app.command("create")
def create(
    username: str,
    email: Annotated[str, typer.Option(help="e-mail address")],
    role: Annotated[str, typer.Option(help="admin, analyst or viewer")] = "viewer",
    password: Annotated[
        str | None, typer.Option(help="asked for when not given (keeps it out of history)")
    ] = None,
) -> None:
    """Create a user."""
    secret = _password(password)

    async def action(t: Tools) -> dict[str, Any]:
        try:
            user = await t.users.create(username, email, secret, role)
        except (asyncpg.UniqueViolationError, asyncpg.CheckViolationError) as exc:
            raise typer.BadParameter(str(exc)) from None
        await t.access.audit("user_created", target_type="user", target_id=user["id"],
                             details=OPERATOR | {"role": role})  # fmt: skip
        return user

    user = _run(action)
    console.print(f"created {user['username']} ({user['role']}), id {user['id']}")


@users_app.command("list")
def list_users() -> None:
    """Users, their roles and their grants."""

    async def action(t: Tools) -> list[tuple[dict[str, Any], list[int] | None]]:
        rows = []
        for user in await t.users.list():
            principal = await t.access.user(user["id"])
            grants = (
                None
                if principal is None or principal.sources is None
                else sorted(principal.sources)
            )
            rows.append((user, grants))
        return rows

    table = Table("id", "username", "role", "active", "sources", "last login")
    for user, grants in _run(action):
        table.add_row(
            str(user["id"]),
            user["username"],
            str(user["role"]),
            "yes" if user["is_active"] else "no",
            "all" if user["role"] == "admin" else ", ".join(map(str, grants or [])) or "-",
            str(user["last_login"] or "-"),
        )
    console.print(table)


@users_app.command("set-password")
def set_password(username: str, password: Annotated[str | None, typer.Option()] = None) -> None:
    """Set a user's password; ends every session of the user."""
    secret = _password(password)

    async def action(t: Tools) -> int:
        user_id = await t.user_id(username)
        await t.users.set_password(user_id, secret)
        ended = await t.sessions.revoke_user(user_id)
        await t.limiter.clear(username)  # a locked-out admin can log in again
        await t.access.audit("password_set", target_type="user", target_id=user_id,
                             details=OPERATOR | {"sessions_revoked": ended})  # fmt: skip
        return ended

    console.print(f"password set; {_run(action)} session(s) ended")


@users_app.command("disable")
def disable(username: str) -> None:
    """Disable a user; ends every session of the user."""

    async def action(t: Tools) -> int:
        user_id = await t.user_id(username)
        await t.access.set_active(user_id, False)
        ended = await t.sessions.revoke_user(user_id)
        await t.access.audit("user_disabled", target_type="user", target_id=user_id,
                             details=OPERATOR | {"sessions_revoked": ended})  # fmt: skip
        return ended

    console.print(f"{username} disabled; {_run(action)} session(s) ended")


@users_app.command("grant")
def grant(username: str, sources: list[str]) -> None:
    """Let a user read these sources (names or ids)."""

    async def action(t: Tools) -> None:
        user_id = await t.user_id(username)
        ids = await t.source_ids(sources)
        await t.access.grant(user_id, ids, None)
        await t.access.audit("grant", target_type="user", target_id=user_id,
                             details=OPERATOR | {"sources": ids})  # fmt: skip

    _run(action)
    console.print(f"{username} may read {', '.join(sources)}")


@users_app.command("revoke")
def revoke(username: str, sources: list[str]) -> None:
    """Take back a user's right to read these sources."""

    async def action(t: Tools) -> None:
        user_id = await t.user_id(username)
        ids = await t.source_ids(sources)
        await t.access.revoke(user_id, ids)
        await t.access.audit("revoke", target_type="user", target_id=user_id,
                             details=OPERATOR | {"sources": ids})  # fmt: skip

    _run(action)
    console.print(f"{username} may no longer read {', '.join(sources)}")


@users_app.command("create-key")
def create_key(
    name: str,
    scope: Annotated[list[str], typer.Option(help="ingest and/or read")],
    source: Annotated[list[str], typer.Option(help="sources (names or ids)")] = [],  # noqa: B006
    all_sources: Annotated[bool, typer.Option(help="every source")] = False,
) -> None:
    """Create an API key for a shipper or a script; it is printed once, never again."""
    if not set(scope) <= {"ingest", "read"}:
        raise typer.BadParameter("scopes are ingest and read")

    async def action(t: Tools) -> str:
        ids = await t.source_ids(source)
        created = await t.access.create_key(name, scope, source_ids=ids, all_sources=all_sources)
        await t.access.audit("key_created", target_type="api_key",
                             target_id=created.record["id"],
                             details=OPERATOR | {"scopes": scope, "sources": ids,
                                                 "all_sources": all_sources})  # fmt: skip
        return created.token

    token = _run(action)
    console.print("API key (shown once; send as `Authorization: Bearer <key>`):")
    console.out(token, highlight=False)
