"""`logkeep db ...`: schema, partitions, roles and seed data."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import typer
from asyncpg import Record
from rich.table import Table

from logkeep.cli.common import console, err, load_settings, run_async, stores, with_connection
from logkeep.config import Environment, Settings
from logkeep.db import migrate as migrations
from logkeep.db.compaction import CompactionReport, compact, expire_sources
from logkeep.db.database import Database, describe_pg_target
from logkeep.db.partitions import MaintenanceReport, maintain
from logkeep.db.schema_dump import describe_schema
from logkeep.db.seed import SeedReport, seed
from logkeep.db.types import Conn

db_app = typer.Typer(help="Schema, partitions and seed data.", no_args_is_help=True)


async def migrate_schema(settings: Settings) -> list[migrations.Migration]:
    return await with_connection(settings, migrations.migrate)


async def run_maintenance(settings: Settings) -> MaintenanceReport:
    return await with_connection(
        settings,
        lambda conn: maintain(
            conn,
            retention_days=settings.retention_days,
            days_ahead=settings.partition_days_ahead,
            max_entry_age_days=settings.entry_max_age_days,
        ),
    )


async def run_seed(settings: Settings, env: Environment, rows: int | None) -> SeedReport:
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


async def run_compaction(settings: Settings, until_now: bool) -> CompactionReport:
    async def compact_all(conn: Conn) -> CompactionReport:
        report = await compact(
            conn,
            slice_length=timedelta(seconds=settings.compaction_slice_s),
            # --all: every slice that has begun, the one in progress included.
            grace=timedelta(
                seconds=-settings.compaction_slice_s if until_now else settings.compaction_grace_s
            ),
        )
        if not report.busy:
            expired = await expire_sources(conn)
            report.expired_events = sum(expired.values())
            report.expired_sources = sorted(expired)
        return report

    return await with_connection(settings, compact_all)


async def forget_cached(settings: Settings, source_ids: list[int]) -> None:
    async with Database(settings) as db:
        await db.cache.invalidate_sources(source_ids)


@db_app.command("compact")
def db_compact(
    every_slice: Annotated[
        bool,
        typer.Option("--all", help="also the slice in progress (rows arriving meanwhile stay hot)"),
    ] = False,
) -> None:
    """Compact closed time slices into compressed chunks now, and apply per-source
    retention (API processes do both in the background)."""
    settings = load_settings()
    with stores(settings) as (resolved, _):
        report = run_async(run_compaction(resolved, every_slice))
        if report.expired_sources:  # cached answers holding removed events go stale
            run_async(forget_cached(resolved, report.expired_sources))
    if report.busy:
        console.print("another process is compacting; nothing done")
        return
    rate = report.events / report.seconds if report.seconds else 0
    console.print(
        f"compacted {report.events:,} events of {report.slices:,} slices into "
        f"{report.chunks:,} chunks in {report.seconds:.1f} s ({rate:,.0f} events/s)"
    )
    if report.expired_events:
        console.print(f"per-source retention removed {report.expired_events:,} events")


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply pending schema migrations (safe to run twice, or twice at once)."""
    settings = load_settings()
    with stores(settings) as (resolved, _):
        print_migrations(run_async(migrate_schema(resolved)))


# When each recorded migration was applied (after migrations.status checked the record).
APPLIED_SQL = "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"


async def migration_report(conn: Conn) -> tuple[migrations.MigrationStatus, list[Record]]:
    state = await migrations.status(conn)
    applied = await conn.fetch(APPLIED_SQL) if state.applied else []
    return state, applied


@db_app.command("status")
def db_status() -> None:
    """List applied migrations (and when) and pending ones."""
    settings = load_settings()
    with stores(settings) as (resolved, _):
        state, applied = run_async(with_connection(resolved, migration_report))
        target = describe_pg_target(resolved.database_url or "")
    console.print(f"database {target}", markup=False, highlight=False, soft_wrap=True)
    for row in applied:
        filename = f"{row['version']:04d}_{row['name']}.sql"
        console.print(f"applied  {filename:<24} {row['applied_at']:%Y-%m-%d %H:%M:%S %Z}")
    for pending in state.pending:
        console.print(f"pending  {pending.filename}")
    console.print(
        f"current migration: {state.current:04d}; "
        + (
            f"{len(state.pending)} pending (`logkeep db migrate` applies them)"
            if state.pending
            else "up to date"
        )
    )


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
        print_maintenance(run_async(run_maintenance(resolved)))


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
        print_seed(run_async(run_seed(resolved, env or settings.env, rows)))
