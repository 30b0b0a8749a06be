"""`logkeep ingest`: send a file's lines to a running logkeep."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import httpx
import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

from logkeep.cli.common import console, err, load_settings
from logkeep.ingest.file_sender import SendError, SendSummary, chunks, send_chunks


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
