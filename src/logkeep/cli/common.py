"""What every command group shares: settings, stores, the event loop, signals, the API client."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from types import FrameType
from typing import Any, TypeVar

import asyncpg
import typer
import uvloop
from pydantic import ValidationError
from rich.console import Console

from logkeep.client import LogkeepClient
from logkeep.config import Settings, SettingsError
from logkeep.db import migrate as migrations
from logkeep.db.database import StoreUnavailable, describe_pg_target, session_settings
from logkeep.db.types import Conn
from logkeep.embedded import EmbeddedError, EmbeddedStack
from logkeep.instance import with_running_instance

T = TypeVar("T")

console = Console()
err = Console(stderr=True)


def load_settings() -> Settings:
    try:
        settings = Settings()
        settings.check_for_startup()
    except (ValidationError, SettingsError) as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None
    return settings


@contextlib.contextmanager
def stores(settings: Settings) -> Iterator[tuple[Settings, EmbeddedStack | None]]:
    """Settings pointing at real stores: the configured ones, else the running `logkeep
    up`'s, else embedded servers in the data directory for the duration."""
    settings = with_running_instance(settings)
    if settings.database_url and settings.redis_url:
        yield settings, None
        return
    stack = EmbeddedStack(settings.resolved_data_dir)
    try:
        stack.start(postgres=not settings.database_url, redis=not settings.redis_url)
    except (EmbeddedError, OSError) as exc:
        err.print(f"[red]could not start embedded servers:[/red] {exc}")
        raise typer.Exit(1) from None
    update = {
        "database_url": settings.database_url or stack.postgres.dsn(),
        "redis_url": settings.redis_url or stack.redis.url(),
    }
    try:
        yield settings.model_copy(update=update), stack
    finally:
        stack.stop()


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine, turning store failures into one clear line and exit code 1."""
    from logkeep.ingest.runner import SyslogUnavailable

    try:
        return uvloop.run(coro)
    except (
        StoreUnavailable,
        migrations.MigrationError,
        EmbeddedError,
        SyslogUnavailable,
    ) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    except asyncpg.PostgresError as exc:
        err.print(f"[red]PostgreSQL error:[/red] {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from None


async def connect(settings: Settings) -> asyncpg.Connection:
    assert settings.database_url is not None
    try:
        conn: asyncpg.Connection = await asyncpg.connect(
            settings.database_url,
            timeout=settings.connect_deadline_s,
            server_settings=session_settings(settings, "cli"),
        )
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise StoreUnavailable(
            f"PostgreSQL at {describe_pg_target(settings.database_url)}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return conn


async def with_connection(settings: Settings, action: Callable[[Conn], Awaitable[T]]) -> T:
    """Run `action` on one fresh connection, closed afterwards."""
    conn = await connect(settings)
    try:
        return await action(conn)
    finally:
        await conn.close()


class ShutdownRequested(SystemExit):
    """Raised by our SIGINT/SIGTERM handler once uvicorn has finished its graceful stop.

    A SystemExit because the event loop lets only that and KeyboardInterrupt through: a
    signal handled while a task runs (migrating, seeding) raised any other BaseException
    into uvloop's callback, which logged it and went on seeding."""


def _request_shutdown(signum: int, frame: FrameType | None) -> None:
    raise ShutdownRequested(signum)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGINT, SIGTERM and SIGHUP into an orderly exit through `finally` blocks.

    uvicorn stops gracefully on SIGINT/SIGTERM, then re-raises the signal against the
    handler it found; with the default SIGTERM (or SIGHUP) handler that would kill us
    before the embedded servers are stopped. Installed before anything starts, so a
    signal during migration or seeding stops everything too.
    """
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, _request_shutdown) for sig in signals}
    try:
        yield
    except ShutdownRequested:
        console.print("stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def require_stores(settings: Settings) -> Settings:
    """Settings pointing at the configured stores, else the running `logkeep up`'s; exit 2
    saying how to get either."""
    settings = with_running_instance(settings)
    if not (settings.database_url and settings.redis_url):
        err.print(
            "[red]error:[/red] no `logkeep up` is running for the data directory "
            f"{settings.resolved_data_dir}, and LOGKEEP_DATABASE_URL and LOGKEEP_REDIS_URL "
            "are not both set: start `logkeep up` (with the same LOGKEEP_DATA_DIR, if you "
            "set one), or set both"
        )
        raise typer.Exit(2)
    return settings


def api_token(settings: Settings) -> str:
    """What the CLI sends as `Authorization: Bearer`: LOGKEEP_API_TOKEN when set, else the
    session `logkeep login` stored for this API URL, else nothing ("")."""
    from logkeep.credentials import CredentialsError, load_token

    token = settings.api_token.get_secret_value()
    if token:
        return token
    try:
        return load_token(settings.resolved_api_url) or ""
    except CredentialsError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def api_client() -> LogkeepClient:
    settings = load_settings()
    return LogkeepClient(settings.resolved_api_url, token=api_token(settings))
