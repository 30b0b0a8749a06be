"""`logkeep bench ...`: benchmarks that print figures and ratios."""

from __future__ import annotations

from typing import Annotated

import typer

from logkeep.cli.common import load_settings, run_async, stop_on_signals, stores
from logkeep.embedded import temporary_root
from logkeep.logging import configure_logging

bench_app = typer.Typer(help="Benchmarks that print figures and ratios.", no_args_is_help=True)


@bench_app.command("ingest")
def bench_ingest(
    rows: Annotated[int, typer.Option(min=1000, help="events to ingest")] = 1_000_000,
    protocols: Annotated[
        bool, typer.Option(help="OTLP, Loki and Elasticsearch end to end beside NDJSON instead")
    ] = False,
    workers: Annotated[
        list[int] | None,
        typer.Option(min=1, help="worker processes; repeat to compare (--workers 1 --workers 2)"),
    ] = None,
    api_processes: Annotated[int, typer.Option(min=1, help="API processes, with --workers")] = 1,
) -> None:
    """End-to-end ingest (HTTP, Redis, worker, COPY) against one binary COPY and one
    INSERT per row, on the configured stores or throwaway ones. With --protocols: each
    shipper protocol end to end beside NDJSON, events/s and API CPU per event. With
    --workers N (repeatable) and --api-processes M: that many processes end to end, per N."""
    from logkeep.bench.ingest import run, run_protocols

    settings = load_settings()
    configure_logging("warning")
    with temporary_root("lk-bench-") as root:
        bench_settings = settings.model_copy(update={"data_dir": root, "maintenance_interval_s": 0})
        with stop_on_signals(), stores(bench_settings) as (resolved, _):
            if workers:  # docs/scale.md: events/s and CPU per event by process count
                from logkeep.bench.scale import run as run_scale

                run_async(run_scale(resolved, rows, workers, api_processes))
                return
            run_async((run_protocols if protocols else run)(resolved, rows))


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
                "compaction_interval_s": 0,  # the benchmark compacts before it measures
            }
        )
        with stop_on_signals(), stores(bench_settings) as (resolved, _):
            run_async(run(resolved, rows, runs))


@bench_app.command("storage")
def bench_storage(
    rows: Annotated[int, typer.Option(min=1000, help="events to load")] = 1_000_000,
) -> None:
    """Bytes per event of the hot and compressed tiers against raw NDJSON and zstd -3 of
    it, and compaction's CPU per event, in throwaway servers of its own."""
    from logkeep.bench.storage import run

    settings = load_settings()
    configure_logging("warning")
    with temporary_root("lk-bench-") as root:
        bench_settings = settings.model_copy(
            update={
                "database_url": None,
                "redis_url": None,
                "data_dir": root,
                "maintenance_interval_s": 0,
                "compaction_interval_s": 0,
            }
        )
        with stop_on_signals(), stores(bench_settings) as (resolved, _):
            run_async(run(resolved, rows))
