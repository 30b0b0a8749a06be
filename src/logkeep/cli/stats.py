"""`logkeep stats`: events and errors per source through the API (the default), and
`logkeep stats storage`: bytes per event per storage tier and per source, read from
PostgreSQL directly (an operator's question, like `logkeep db`)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

import orjson
import typer
from rich.table import Table

from logkeep.cli import read
from logkeep.cli.common import console, load_settings, run_async, stores, with_connection
from logkeep.config import Settings
from logkeep.db.compaction import CompactionStatus, compaction_status
from logkeep.db.stats import storage_report
from logkeep.db.types import Conn

stats_app = typer.Typer(help="Events and errors per source; storage per tier.")


@stats_app.callback(invoke_without_command=True)
def stats(
    ctx: typer.Context,
    hours: Annotated[int, typer.Option(min=1, max=8784, help="window in hours")] = 24,
    as_json: Annotated[bool, typer.Option("--json", help="the API's JSON")] = False,
) -> None:
    """Events, errors and error rate per source (`stats storage`: bytes per tier)."""
    if ctx.invoked_subcommand is None:
        read.stats(hours=hours, as_json=as_json)


async def _storage(settings: Settings) -> tuple[list[dict[str, object]], CompactionStatus]:
    async def read_all(conn: Conn) -> tuple[list[dict[str, object]], CompactionStatus]:
        status = await compaction_status(
            conn,
            slice_length=timedelta(seconds=settings.compaction_slice_s),
            grace=timedelta(seconds=settings.compaction_grace_s),
        )
        return await storage_report(conn), status

    return await with_connection(settings, read_all)


@stats_app.command("storage")
def storage(
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """Bytes per event of each storage tier and each source, and compaction's lag."""
    settings = load_settings()
    with stores(settings) as (resolved, _):
        rows, status = run_async(_storage(resolved))
    if as_json:
        body = {"tiers": rows, "compaction_lag_s": status.lag_s, "chunks": status.chunks}
        console.out(orjson.dumps(body).decode(), highlight=False)
        return
    table = Table(title="storage per tier (tables, TOAST and indexes)")
    for column in ("tier", "source", "events", "chunks", "bytes", "bytes/event"):
        table.add_column(column, justify="left" if column in ("tier", "source") else "right")
    for row in rows:
        per_event = row["bytes_per_event"]
        table.add_row(
            str(row["tier"]),
            str(row["source"]),
            f"{row['events']:,}",
            f"{row['chunks']:,}" if row["tier"] == "compressed" else "",
            f"{row['bytes']:,}",
            "" if per_event is None else f"{per_event:,.1f}",
        )
    console.print(table)
    lag = "caught up" if not status.lag_s else f"{status.lag_s:,.0f} s behind"
    console.print(
        f"compaction: {lag}; {status.chunks:,} chunks hold {status.chunk_events:,} events"
    )
