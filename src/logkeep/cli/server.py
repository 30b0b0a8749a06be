"""The long-running commands: `up`, `serve`, `worker`, `syslog`, and `doctor` beside them."""

from __future__ import annotations

import time
from typing import Annotated

import typer
import uvicorn
import uvloop
from pydantic import ValidationError

from logkeep.cli.common import (
    console,
    err,
    load_settings,
    require_stores,
    run_async,
    stop_on_signals,
    stores,
)
from logkeep.cli.db import (
    migrate_schema,
    print_maintenance,
    print_migrations,
    print_seed,
    run_maintenance,
    run_seed,
)
from logkeep.config import Settings
from logkeep.db import migrate as migrations
from logkeep.db.database import Database, describe_pg_target
from logkeep.db.partitions import MaintenanceReport
from logkeep.db.seed import SeedReport
from logkeep.logging import configure_logging


async def _serve_async(
    settings: Settings, host: str, port: int, *, worker: bool, syslog_port: int | None
) -> None:
    from logkeep.api.app import create_app
    from logkeep.ingest.runner import IngestTasks

    # Connect before serving, so an unreachable store is one clear line, not a traceback.
    async with Database(settings) as db:
        config = uvicorn.Config(
            create_app(settings, database=db),
            host=host,
            port=port,
            log_config=None,
            access_log=False,
            lifespan="on",
            proxy_headers=bool(settings.trusted_proxies),
            forwarded_allow_ips=settings.trusted_proxies or None,
        )
        tasks = IngestTasks()
        try:
            await tasks.start(
                db, settings, worker=worker, syslog_port=syslog_port, syslog_optional=True
            )
            await uvicorn.Server(config).serve()
        finally:
            # After the API stopped: the worker finishes its batch, syslog flushes.
            await tasks.close()


def _serve(
    settings: Settings,
    host: str,
    port: int,
    *,
    worker: bool = False,
    syslog_port: int | None = None,
) -> None:
    run_async(_serve_async(settings, host, port, worker=worker, syslog_port=syslog_port))


def serve(
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port")] = None,
) -> None:
    """Run the HTTP API against the configured stores."""
    settings = load_settings()
    configure_logging(settings.log_level)
    if not (settings.database_url and settings.redis_url):
        err.print(
            "[red]error:[/red] set LOGKEEP_DATABASE_URL and LOGKEEP_REDIS_URL, "
            "or use `logkeep up` to start embedded servers"
        )
        raise typer.Exit(2)
    with stop_on_signals():
        _serve(settings, host or settings.http_host, port or settings.http_port)


def up(
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port")] = None,
    seed_rows: Annotated[
        int | None, typer.Option(min=0, help="dev log entries on first start")
    ] = None,
    no_syslog: Annotated[bool, typer.Option("--no-syslog", help="no syslog receiver")] = False,
) -> None:
    """Start PostgreSQL and Redis (unless configured), migrate and seed, then serve the API,
    an ingest worker and the syslog receiver."""
    settings = load_settings()
    configure_logging(settings.log_level)
    started = time.monotonic()
    with stop_on_signals(), stores(settings) as (resolved, stack):

        async def prepare() -> tuple[list[migrations.Migration], MaintenanceReport, SeedReport]:
            applied = await migrate_schema(resolved)
            report = await run_maintenance(resolved)
            seeded = await run_seed(resolved, resolved.env, seed_rows)
            return applied, report, seeded

        applied, maintenance, seeded = run_async(prepare())
        print_migrations(applied)
        print_maintenance(maintenance)
        print_seed(seeded)
        bind_host = host or settings.http_host
        bind_port = port or settings.http_port
        console.rule("logkeep is up")
        if stack is not None and not settings.database_url:
            console.print(
                f"PostgreSQL  {stack.postgres.psql_hint()}"
                + ("  (already running)" if stack.postgres.reused else "")
            )
        else:
            console.print(f"PostgreSQL  {describe_pg_target(resolved.database_url or '')}")
        if stack is not None and not settings.redis_url:
            console.print(
                f"Redis       {stack.redis.cli_hint()}"
                + ("  (already running)" if stack.redis.reused else "")
            )
        console.print(f"data        {settings.resolved_data_dir}")
        console.print(
            f"API         http://{bind_host}:{bind_port}  (/readyz, /metrics, "
            "/api/v1/ingest, /api/v1/logs, /docs)"
        )
        syslog_port = None if no_syslog else settings.syslog_port
        if syslog_port is not None:
            console.print(f"syslog      {settings.syslog_host}:{syslog_port} (TCP and UDP)")
        console.print("worker      in this process (`logkeep worker` adds more)")
        console.print(f"ready in    {time.monotonic() - started:.1f}s; Ctrl-C stops everything")
        _serve(resolved, bind_host, bind_port, worker=True, syslog_port=syslog_port)


def doctor() -> None:
    """Check the configuration, PostgreSQL and Redis; print a fix for each problem."""
    from logkeep.doctor import render, run_checks

    try:
        # Not load_settings(): in prod it refuses default secrets, which doctor reports.
        settings = Settings()
    except ValidationError as exc:
        err.print(f"[red]configuration error:[/red] {exc}")
        raise typer.Exit(2) from None
    text, code = render(uvloop.run(run_checks(settings)))
    console.print(text, markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def worker() -> None:
    """Write the ingest stream into PostgreSQL (run as many as you like)."""
    from logkeep.ingest.runner import run_ingest_tasks

    settings = load_settings()
    configure_logging(settings.log_level)
    require_stores(settings)
    run_async(run_ingest_tasks(settings, worker=True, syslog_port=None))


def syslog(
    port: Annotated[int | None, typer.Option(help="TCP and UDP port")] = None,
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
) -> None:
    """Receive syslog (RFC 5424 and 3164, TCP and UDP) into the ingest stream."""
    from logkeep.ingest.runner import run_ingest_tasks

    settings = load_settings()
    configure_logging(settings.log_level)
    require_stores(settings)
    if host is not None:
        settings = settings.model_copy(update={"syslog_host": host})
    chosen = settings.syslog_port if port is None else port
    run_async(run_ingest_tasks(settings, worker=False, syslog_port=chosen))
