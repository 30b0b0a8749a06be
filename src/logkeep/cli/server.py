"""The long-running commands: `up`, `serve`, `worker`, `syslog`, and `doctor` beside them."""

from __future__ import annotations

import os
import shlex
import time
from datetime import UTC, datetime
from pathlib import Path
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
from logkeep.db.database import Database, describe_pg_target, describe_redis_target
from logkeep.db.partitions import MaintenanceReport
from logkeep.db.seed import SeedReport
from logkeep.embedded import EmbeddedStack
from logkeep.instance import (
    Instance,
    connect_host,
    remove_record,
    running_instance,
    with_running_instance,
    write_record,
)
from logkeep.logging import configure_logging


async def _serve_async(
    settings: Settings,
    host: str,
    port: int,
    *,
    worker: bool,
    syslog_port: int | None,
    gelf_port: int | None = None,
) -> None:
    from logkeep.api.app import create_app
    from logkeep.api.otlp import serve_with_otlp_port
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
            ssl_certfile=settings.tls_cert_file,
            ssl_keyfile=settings.tls_key_file,
        )
        tasks = IngestTasks()
        try:
            await tasks.start(
                db,
                settings,
                worker=worker,
                syslog_port=syslog_port,
                syslog_optional=True,
                gelf_port=gelf_port,
            )
            await serve_with_otlp_port(uvicorn.Server(config), settings)  # + LOGKEEP_OTLP_PORT
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
    gelf_port: int | None = None,
) -> None:
    run_async(
        _serve_async(
            settings, host, port, worker=worker, syslog_port=syslog_port, gelf_port=gelf_port
        )
    )


def serve(
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port")] = None,
) -> None:
    """Run the HTTP API against the configured stores (or the running `logkeep up`'s)."""
    settings = load_settings()
    configure_logging(settings.log_level)
    settings = require_stores(settings)
    with stop_on_signals():
        _serve(settings, host or settings.http_host, port or settings.http_port)


def up(
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port")] = None,
    seed_rows: Annotated[
        int | None, typer.Option(min=0, help="dev log entries on first start")
    ] = None,
    no_syslog: Annotated[bool, typer.Option("--no-syslog", help="no syslog receiver")] = False,
    no_gelf: Annotated[bool, typer.Option("--no-gelf", help="no GELF receiver")] = False,
) -> None:
    """Start PostgreSQL and Redis (unless configured), migrate and seed, then serve the API,
    an ingest worker and the syslog and GELF receivers."""
    settings = load_settings()
    configure_logging(settings.log_level)
    data_dir = settings.resolved_data_dir
    if (running := running_instance(data_dir)) is not None:
        err.print(
            f"[red]error:[/red] logkeep up is already running for {data_dir} (pid "
            f"{running.pid}, API {running.api_url}); every logkeep command uses it. Stop it "
            "first, or give a second one a data directory of its own (LOGKEEP_DATA_DIR)"
        )
        raise typer.Exit(1)
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
        syslog_port = None if no_syslog else settings.syslog_port
        instance = Instance(
            pid=os.getpid(),
            data_dir=str(data_dir),
            database_url=resolved.database_url or "",
            redis_url=resolved.redis_url or "",
            # The address clients use, in the scheme the API serves.
            api_url=resolved.model_copy(
                update={
                    "api_url": None,
                    "http_host": connect_host(bind_host),
                    "http_port": bind_port,
                }
            ).resolved_api_url,
            auth_required=resolved.requires_auth,
            started_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )
        data_dir.mkdir(parents=True, exist_ok=True)
        record = write_record(data_dir, instance)
        try:
            print_up(settings, instance, stack, record, syslog_port)
            if not no_gelf:
                _line(f"GELF        {settings.gelf_host}:{settings.gelf_port} (UDP, TCP)")
            console.print(f"ready in    {time.monotonic() - started:.1f}s; Ctrl-C stops everything")
            _serve(
                resolved,
                bind_host,
                bind_port,
                worker=True,
                syslog_port=syslog_port,
                gelf_port=None if no_gelf else settings.gelf_port,
            )
        finally:
            remove_record(data_dir, instance.pid)


def _line(text: str) -> None:
    """One line as it is: no markup, no wrapping (it is meant to be copied)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def print_up(
    settings: Settings,
    instance: Instance,
    stack: EmbeddedStack | None,
    record: Path,
    syslog_port: int | None,
) -> None:
    """Where everything is, and the settings that reach it from elsewhere."""
    console.rule("logkeep is up")
    _line(f"data        {instance.data_dir}")
    embedded_pg = stack is not None and not settings.database_url
    embedded_redis = stack is not None and not settings.redis_url
    if stack is not None and embedded_pg:
        if stack.postgres.relocated:
            _line(
                f"            PostgreSQL's files: {stack.postgres.home}, linked as "
                f"{stack.postgres.root} (the account PostgreSQL runs as cannot enter the "
                "data directory)"
            )
        _line(f"PostgreSQL  {stack.postgres.psql_hint()}")
    else:
        _line(f"PostgreSQL  {describe_pg_target(instance.database_url)} (LOGKEEP_DATABASE_URL)")
    if stack is not None and embedded_redis:
        _line(f"Redis       {stack.redis.cli_hint()}")
    else:
        _line(f"Redis       {describe_redis_target(instance.redis_url)} (LOGKEEP_REDIS_URL)")
    _line(
        f"API         {instance.api_url}  (/readyz, /metrics, /api/v1/ingest, /api/v1/logs, /docs)"
    )
    if instance.auth_required:
        _line(
            "auth        on: every endpoint but /healthz, /readyz and /metrics needs "
            "`Authorization: Bearer <token>` (the CLI sends LOGKEEP_API_TOKEN)"
        )
    else:
        _line(
            f"auth        off (LOGKEEP_ENV={settings.env}): the API answers anyone on this "
            "machine as an admin; LOGKEEP_AUTH_REQUIRED=true turns it on"
        )
    if syslog_port is not None:
        _line(f"syslog      {settings.syslog_host}:{syslog_port} (TCP and UDP)")
    _line("worker      in this process (`logkeep worker` adds more)")
    _line(f"Every logkeep command finds this instance through {record} while it runs.")
    if embedded_pg or embedded_redis:
        _line("From another environment (a shell, a .env file), these reach its stores:")
    if embedded_pg:
        _line(f"LOGKEEP_DATABASE_URL={shlex.quote(instance.database_url)}")
    if embedded_redis:
        _line(f"LOGKEEP_REDIS_URL={shlex.quote(instance.redis_url)}")
    legacy = Path.cwd() / ".logkeep"
    if (legacy / "postgres").exists() and legacy.resolve() != Path(instance.data_dir):
        _line(
            f"note: {legacy} holds the data of an older logkeep, which kept it in the current "
            f"directory; to go on with it, set LOGKEEP_DATA_DIR={legacy}"
        )


def doctor() -> None:
    """Check the configuration, PostgreSQL and Redis; print a fix for each problem."""
    from logkeep.doctor import render, run_checks

    try:
        # Not load_settings(): in prod it refuses default secrets, which doctor reports.
        settings = with_running_instance(Settings())
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
    settings = require_stores(settings)
    run_async(run_ingest_tasks(settings, worker=True, syslog_port=None))


def syslog(
    port: Annotated[int | None, typer.Option(help="TCP and UDP port")] = None,
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
) -> None:
    """Receive syslog (RFC 5424 and 3164, TCP and UDP) into the ingest stream."""
    from logkeep.ingest.runner import run_ingest_tasks

    settings = load_settings()
    configure_logging(settings.log_level)
    settings = require_stores(settings)
    if host is not None:
        settings = settings.model_copy(update={"syslog_host": host})
    chosen = settings.syslog_port if port is None else port
    run_async(run_ingest_tasks(settings, worker=False, syslog_port=chosen))


def gelf(
    port: Annotated[int | None, typer.Option(help="UDP and TCP port")] = None,
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
) -> None:
    """Receive GELF (UDP, chunked and compressed, and TCP) into the ingest stream."""
    from logkeep.ingest.runner import run_ingest_tasks

    settings = load_settings()
    configure_logging(settings.log_level)
    settings = require_stores(settings)
    if host is not None:
        settings = settings.model_copy(update={"gelf_host": host})
    chosen = settings.gelf_port if port is None else port
    run_async(run_ingest_tasks(settings, worker=False, syslog_port=None, gelf_port=chosen))
