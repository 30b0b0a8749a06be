"""The `logkeep` command."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from itertools import islice
from types import FrameType
from typing import Annotated, Any, TypeVar

import asyncpg
import httpx
import orjson
import typer
import uvicorn
import uvloop
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from logkeep import __version__
from logkeep.client import (
    ApiError,
    LogkeepClient,
    entries_table,
    entry_line,
    print_json_lines,
    summary_table,
)
from logkeep.config import Environment, Settings, SettingsError
from logkeep.db import migrate as migrations
from logkeep.db.database import Database, StoreUnavailable, describe_pg_target
from logkeep.db.partitions import MaintenanceReport, maintain
from logkeep.db.schema_dump import describe_schema
from logkeep.db.seed import SeedReport, seed
from logkeep.db.types import Conn
from logkeep.embedded import EmbeddedError, EmbeddedStack, temporary_root
from logkeep.logging import configure_logging
from logkeep.users_cli import users_app

T = TypeVar("T")

app = typer.Typer(help="logkeep: a log store on PostgreSQL and Redis.", no_args_is_help=True)
db_app = typer.Typer(help="Schema, partitions and seed data.", no_args_is_help=True)
app.add_typer(db_app, name="db")
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
    """Settings pointing at real stores: the configured ones, else embedded servers."""
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


async def _connect(settings: Settings) -> asyncpg.Connection:
    assert settings.database_url is not None
    try:
        conn: asyncpg.Connection = await asyncpg.connect(
            settings.database_url, timeout=settings.connect_deadline_s
        )
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise StoreUnavailable(
            f"PostgreSQL at {describe_pg_target(settings.database_url)}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return conn


async def with_connection(settings: Settings, action: Callable[[Conn], Awaitable[T]]) -> T:
    """Run `action` on one fresh connection, closed afterwards."""
    conn = await _connect(settings)
    try:
        return await action(conn)
    finally:
        await conn.close()


async def _migrate(settings: Settings) -> list[migrations.Migration]:
    return await with_connection(settings, migrations.migrate)


async def _maintain(settings: Settings) -> MaintenanceReport:
    return await with_connection(
        settings,
        lambda conn: maintain(
            conn,
            retention_days=settings.retention_days,
            days_ahead=settings.partition_days_ahead,
            max_entry_age_days=settings.entry_max_age_days,
        ),
    )


async def _seed(settings: Settings, env: Environment, rows: int | None) -> SeedReport:
    async with Database(settings) as db:
        return await seed(db.pool, settings, env, rows=rows, cache=db.cache)


def print_migrations(applied: list[migrations.Migration]) -> None:
    if not applied:
        console.print("schema is up to date")
    for migration in applied:
        console.print(f"applied {migration.filename}")


def print_maintenance(report: MaintenanceReport) -> None:
    console.print(
        f"partitions: created {len(report.created)}, dropped {len(report.dropped)}"
        + (f" ({', '.join(report.dropped)})" if report.dropped else "")
    )
    if report.moved_from_default:
        console.print(f"moved {report.moved_from_default} rows from the DEFAULT partition")
    if report.default_rows:
        console.print(
            f"[yellow]DEFAULT partition holds {report.default_rows} rows "
            f"({report.default_oldest} .. {report.default_newest}): their timestamps are "
            "outside every daily partition[/yellow]"
        )
    else:
        console.print("DEFAULT partition is empty")


def print_seed(report: SeedReport) -> None:
    console.print(
        f"seed ({report.env}): {report.sources_created} sources created, "
        f"users created: {', '.join(report.users_created) or 'none'}"
    )
    if report.entries_loaded:
        console.print(f"loaded {report.entries_loaded} log entries")
    elif report.entries_already_loaded:
        console.print("log entries were already loaded")
    if report.generated_passwords:
        table = Table(title="generated passwords (shown once; store them now)")
        table.add_column("user")
        table.add_column("password")
        for user, password in report.generated_passwords.items():
            table.add_row(user, password)
        console.print(table)


@app.command()
def version() -> None:
    """Print the logkeep version."""
    console.print(__version__)


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending schema migrations (safe to run twice, or twice at once)."""
    settings = load_settings()
    with stores(settings) as (resolved, _):
        print_migrations(run_async(_migrate(resolved)))


@db_app.command("status")
def db_status() -> None:
    """Show applied and pending migrations."""
    settings = load_settings()
    with stores(settings) as (resolved, _):
        state = run_async(with_connection(resolved, migrations.status))
    console.print(f"current migration: {state.current:04d}")
    for pending in state.pending:
        console.print(f"pending: {pending.filename}")


@db_app.command("schema")
def db_schema() -> None:
    """Print the canonical schema (what db/schema.sql holds)."""
    settings = load_settings()
    with stores(settings) as (resolved, _):
        text = run_async(with_connection(resolved, describe_schema))
    print(text, end="")


@db_app.command("maintain")
def db_maintain() -> None:
    """Create partitions ahead, drop expired ones, report DEFAULT-partition rows."""
    settings = load_settings()
    with stores(settings) as (resolved, _):
        print_maintenance(run_async(_maintain(resolved)))


@db_app.command("roles")
def db_roles(
    app_role: Annotated[str, typer.Option(help="the role the application connects as")] = (
        "logkeep_app"
    ),
    readonly_role: Annotated[str, typer.Option(help="read-only role for analysts' SQL")] = (
        "logkeep_readonly"
    ),
) -> None:
    """Create the application and read-only roles and grant them least privilege."""
    from logkeep.db.roles import grant_roles

    settings = load_settings()
    with stores(settings) as (resolved, _):
        try:
            run_async(with_connection(resolved, lambda c: grant_roles(c, app_role, readonly_role)))
        except ValueError as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
    console.print(
        f"{app_role}: the DML logkeep uses; {readonly_role}: SELECT on log data. "
        f"Set passwords with ALTER ROLE ... PASSWORD, then point LOGKEEP_DATABASE_URL "
        f"at {app_role}."
    )


@db_app.command("seed")
def db_seed(
    env: Annotated[
        Environment | None, typer.Option(help="data set; defaults to LOGKEEP_ENV")
    ] = None,
    rows: Annotated[int | None, typer.Option(min=0, help="dev log entries to generate")] = None,
) -> None:
    """Load the environment's seed data; a second run adds nothing."""
    settings = load_settings()
    with stores(settings) as (resolved, _):
        print_seed(run_async(_seed(resolved, env or settings.env, rows)))


class ShutdownRequested(BaseException):
    """Raised by our SIGINT/SIGTERM handler once uvicorn has finished its graceful stop."""


def _request_shutdown(signum: int, frame: FrameType | None) -> None:
    raise ShutdownRequested(signum)


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


@app.command()
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


@app.command()
def up(
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port")] = None,
    seed_rows: Annotated[
        int | None, typer.Option(min=0, help="dev log entries on first start")
    ] = None,
    no_syslog: Annotated[bool, typer.Option("--no-syslog", help="no syslog receiver")] = False,
) -> None:
    """Start everything: PostgreSQL and Redis (unless configured), migrate, seed, then the
    API, an ingest worker and the syslog receiver."""
    settings = load_settings()
    configure_logging(settings.log_level)
    started = time.monotonic()
    with stop_on_signals(), stores(settings) as (resolved, stack):

        async def prepare() -> tuple[list[migrations.Migration], MaintenanceReport, SeedReport]:
            applied = await _migrate(resolved)
            report = await _maintain(resolved)
            seeded = await _seed(resolved, resolved.env, seed_rows)
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


@app.command()
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


def _require_stores(settings: Settings) -> None:
    if not (settings.database_url and settings.redis_url):
        err.print(
            "[red]error:[/red] set LOGKEEP_DATABASE_URL and LOGKEEP_REDIS_URL "
            "(`logkeep up` runs everything against embedded servers)"
        )
        raise typer.Exit(2)


@app.command()
def worker() -> None:
    """Write the ingest stream into PostgreSQL (run as many as you like)."""
    from logkeep.ingest.runner import run_ingest_tasks

    settings = load_settings()
    configure_logging(settings.log_level)
    _require_stores(settings)
    run_async(run_ingest_tasks(settings, worker=True, syslog_port=None))


@app.command()
def syslog(
    port: Annotated[int | None, typer.Option(help="TCP and UDP port")] = None,
    host: Annotated[str | None, typer.Option(help="bind address")] = None,
) -> None:
    """Receive syslog (RFC 5424 and 3164, TCP and UDP) into the ingest stream."""
    from logkeep.ingest.runner import run_ingest_tasks

    settings = load_settings()
    configure_logging(settings.log_level)
    _require_stores(settings)
    if host is not None:
        settings = settings.model_copy(update={"syslog_host": host})
    chosen = settings.syslog_port if port is None else port
    run_async(run_ingest_tasks(settings, worker=False, syslog_port=chosen))


@app.command()
def ingest(
    file: Annotated[str, typer.Argument(help="file to send, or - for standard input")],
    source: Annotated[str, typer.Option(help="source name or id")],
    line_format: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="how to parse the lines: json, logfmt, nginx_combined, syslog, text... "
            "(default: the source's format); `events` for logkeep's own NDJSON events",
        ),
    ] = None,
    durable: Annotated[bool, typer.Option(help="wait for each batch's commit")] = False,
    batch_lines: Annotated[int, typer.Option(min=1, help="lines per request")] = 5000,
) -> None:
    """Send a log file's lines to a running logkeep, with progress and a summary."""
    import os
    import sys

    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    from logkeep.ingest.file_sender import SendError, SendSummary, chunks, send_chunks

    settings = load_settings()
    summary = SendSummary()
    stream = sys.stdin.buffer if file == "-" else None
    try:
        handle = stream or open(file, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot read {file}: {exc.strerror}")
        raise typer.Exit(2) from None
    total = None if stream else os.fstat(handle.fileno()).st_size
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    )
    too_long: list[tuple[int, int]] = []
    try:
        token = settings.api_token.get_secret_value()
        auth = {"Authorization": f"Bearer {token}"} if token else {}
        with (
            progress,
            httpx.Client(base_url=settings.resolved_api_url, timeout=120, headers=auth) as http,
        ):
            task = progress.add_task(f"sending {file}", total=total)
            batches = chunks(
                handle,
                max_lines=min(batch_lines, settings.ingest_max_lines),
                max_bytes=min(4 * 1024 * 1024, settings.ingest_max_body_bytes),
                max_line_bytes=settings.ingest_max_line_bytes,
                on_too_long=lambda number, size: too_long.append((number, size)),
            )
            summary = send_chunks(
                http,
                batches,
                source=source,
                json_lines=line_format == "events",
                line_format=line_format,
                durable=durable,
                on_progress=lambda n: progress.advance(task, n),
            )
    except SendError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    finally:
        if stream is None:
            handle.close()
    for number, size in too_long:
        summary.add_error(
            number, f"line: is {size} bytes, over the {settings.ingest_max_line_bytes}-byte limit"
        )
    console.print(
        f"{summary.lines + len(too_long):,} lines in {summary.seconds:.1f}s "
        f"({summary.lines_per_second:,.0f} lines/s): {summary.accepted:,} accepted, "
        f"{summary.duplicates:,} duplicates, {summary.rejected:,} rejected"
    )
    for number, reason in summary.errors:
        console.print(f"  line {number}: {reason}", highlight=False)
    if summary.rejected and not summary.accepted:
        raise typer.Exit(1)


def _read_params(
    text: str | None,
    source: list[str],
    level: list[str],
    min_level: str | None,
    since: str | None,
    contains: str | None,
) -> dict[str, Any]:
    params: dict[str, Any] = {"source": source, "level": level}
    for name, value in (
        ("q", text),
        ("min_level", min_level),
        ("since", since),
        ("contains", contains),
    ):
        if value:
            params[name] = value
    return params


SourceOpt = Annotated[list[str], typer.Option("--source", "-s", help="source name or id (repeat)")]
LevelOpt = Annotated[list[str], typer.Option("--level", "-l", help="exact level (repeat)")]
MinLevelOpt = Annotated[str | None, typer.Option(help="this level and more severe")]
ContainsOpt = Annotated[str | None, typer.Option(help="case-insensitive substring")]
TextArg = Annotated[str | None, typer.Argument(help="words that must all appear")]


def _client() -> LogkeepClient:
    settings = load_settings()
    return LogkeepClient(settings.resolved_api_url, token=settings.api_token.get_secret_value())


@app.command()
def query(
    text: TextArg = None,
    source: SourceOpt = [],  # noqa: B006 - typer copies defaults
    level: LevelOpt = [],  # noqa: B006
    min_level: MinLevelOpt = None,
    since: Annotated[str, typer.Option(help="window back from now: 15m, 2h, 7d")] = "1h",
    contains: ContainsOpt = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many entries")] = 100,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines, all fields")] = False,
) -> None:
    """Search a running logkeep: newest first, as a table or JSON lines."""
    params = _read_params(text, source, level, min_level, since, contains)
    try:
        with _client() as client:
            if as_json:
                print_json_lines(console, islice(client.export(params), limit))
                return
            items: list[dict[str, Any]] = []
            cursor = None
            while len(items) < limit:
                page = client.search(
                    {**params, "limit": min(1000, limit - len(items))}
                    | ({"cursor": cursor} if cursor else {})
                )
                items.extend(page["items"])
                cursor = page.get("next_cursor")
                if not cursor:
                    break
    except ApiError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(entries_table(items))
    console.print(f"{len(items)} entries")


@app.command()
def tail(
    text: TextArg = None,
    source: SourceOpt = [],  # noqa: B006
    level: LevelOpt = [],  # noqa: B006
    min_level: MinLevelOpt = None,
    contains: ContainsOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines, all fields")] = False,
) -> None:
    """Follow new entries as they are committed (Ctrl-C stops)."""
    params = _read_params(text, source, level, min_level, None, contains)
    try:
        with _client() as client, contextlib.suppress(KeyboardInterrupt):
            for item in client.tail(params):
                if as_json:
                    print_json_lines(console, [item])
                else:
                    console.print(entry_line(item), highlight=False)
    except ApiError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


@app.command()
def stats(
    hours: Annotated[int, typer.Option(min=1, max=8784, help="window in hours")] = 24,
    as_json: Annotated[bool, typer.Option("--json", help="the API's JSON")] = False,
) -> None:
    """Events, errors and error rate per source."""
    try:
        with _client() as client:
            summary = client.summary(hours)
    except ApiError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    if as_json:
        console.out(orjson.dumps(summary).decode(), highlight=False)
    else:
        console.print(summary_table(summary))


bench_app = typer.Typer(help="Benchmarks that print figures and ratios.", no_args_is_help=True)
app.add_typer(bench_app, name="bench")


@bench_app.command("ingest")
def bench_ingest(
    rows: Annotated[int, typer.Option(min=1000, help="events to ingest")] = 1_000_000,
) -> None:
    """End-to-end ingest (HTTP, Redis, worker, COPY) against one binary COPY and one
    INSERT per row, on the configured stores or throwaway ones."""
    from logkeep.bench.ingest import run

    settings = load_settings()
    configure_logging("warning")
    with temporary_root("lk-bench-") as root:
        bench_settings = settings.model_copy(update={"data_dir": root, "maintenance_interval_s": 0})
        with stop_on_signals(), stores(bench_settings) as (resolved, _):
            run_async(run(resolved, rows))


app.add_typer(users_app, name="users")


@bench_app.command("query")
def bench_query(
    rows: Annotated[int, typer.Option(min=1000, help="rows to load")] = 10_000_000,
    runs: Annotated[int, typer.Option(min=5, help="runs per query")] = 50,
) -> None:
    """Query latency at the API over ROWS entries, in throwaway servers of its own."""
    from logkeep.bench.query import run

    settings = load_settings()
    configure_logging("warning")  # one log line per request would be measured too
    with temporary_root("lk-bench-") as root:
        bench_settings = settings.model_copy(
            update={
                "database_url": None,
                "redis_url": None,
                "data_dir": root,
                "maintenance_interval_s": 0,
            }
        )
        with stop_on_signals(), stores(bench_settings) as (resolved, _):
            run_async(run(resolved, rows, runs))


def main() -> None:
    app()
