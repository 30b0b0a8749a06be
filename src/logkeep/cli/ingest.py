"""`logkeep ingest`: send a file's lines (once, or following it) or standard input to a
running logkeep."""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Annotated

import httpx
import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

from logkeep.cli.common import api_token, console, err, load_settings
from logkeep.config import Settings
from logkeep.ingest.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointStore,
    Keeper,
    default_path,
)
from logkeep.ingest.file_sender import (
    POLL_S,
    Poster,
    SendError,
    SendOptions,
    SendSummary,
    Shipper,
    Stopped,
)
from logkeep.ingest.follow import FileFeed, StreamFeed, resume
from logkeep.ingest.multiline import Joiner, SingleLines, make_joiner


def _say(message: str) -> None:
    err.print(message, markup=False, highlight=False)


def _fail(message: str, code: int) -> typer.Exit:
    err.print(f"[red]error:[/red] {message}", highlight=False)
    return typer.Exit(code)


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """The first SIGINT or SIGTERM asks for a clean stop (the batch in hand is sent and
    checkpointed); a second one interrupts at once (the checkpoint is consistent at
    every moment, so nothing is lost or doubled either way)."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _open_following(path: Path, follow: bool, stop: threading.Event) -> int | None:
    """`path` opened for reading; when following, waits for it to appear (None: stopped)."""
    told = False
    while True:
        try:
            return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            if not follow:
                raise
            if not told:
                _say(f"waiting for {path} to appear")
                told = True
            if stop.wait(POLL_S):
                return None


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
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="keep sending what is appended, across rotation (rename or copytruncate), "
            "until Ctrl-C or SIGTERM",
        ),
    ] = False,
    flush_interval: Annotated[
        float,
        typer.Option(min=0.05, help="send a batch at most this many seconds after its first line"),
    ] = 1.0,
    multiline: Annotated[
        str | None,
        typer.Option(
            help="join lines into entries: `auto` (Python and Java stack traces, indented "
            "lines) or a regular expression matching the lines that start an entry",
        ),
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            help="checkpoint file (default: one per file and source under "
            "$XDG_STATE_HOME/logkeep/checkpoints/)",
        ),
    ] = None,
    from_start: Annotated[
        bool,
        typer.Option(help="send the whole file again, even what its checkpoint says was sent"),
    ] = False,
) -> None:
    """Send a log file's lines to a running logkeep, with progress and a summary.

    A file's checkpoint remembers what logkeep acknowledged, so running again (or
    following after a restart) sends only what is new: nothing twice, nothing skipped."""
    settings = load_settings()
    json_lines = line_format == "events"
    if json_lines and multiline:
        raise _fail("--multiline joins raw lines; `--format events` lines are whole events", 2)
    if multiline and line_format not in (None, "text"):
        raise _fail(
            "--multiline: the first line of each entry is parsed by the source's own rules; "
            "--format can only be `text` with it (each entry whole as its message)",
            2,
        )
    try:
        # Joined entries travel JSON-escaped: keep room under the server's line limit.
        joiner = make_joiner(multiline, settings.ingest_max_line_bytes // 2)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    options = SendOptions(
        source=source,
        json_lines=json_lines,
        line_format=line_format,
        durable=durable,
        max_lines=min(batch_lines, settings.ingest_max_lines),
        max_bytes=min(4 * 1024 * 1024, settings.ingest_max_body_bytes),
        flush_interval=flush_interval,
        joined=multiline is not None,
        fail_fast=not follow,
        patient=follow or file == "-",
    )
    too_long: list[tuple[int, int]] = []

    def on_too_long(number: int, size: int) -> None:
        too_long.append((number, size))
        if follow:
            limit = settings.ingest_max_line_bytes
            _say(f"line {number}: is {size} bytes, over the {limit}-byte limit")

    def on_error(number: int, reason: str) -> None:
        if follow:
            _say(f"line {number}: {reason}")

    stop = threading.Event()
    with _stop_on_signals(stop):
        try:
            summary, where = _run(
                settings, file, options, joiner, stop,
                follow=follow, checkpoint=checkpoint, from_start=from_start,
                on_too_long=on_too_long, on_error=on_error,
            )  # fmt: skip
        except KeyboardInterrupt:
            _say("interrupted; the checkpoint holds what logkeep acknowledged")
            raise typer.Exit(130) from None
    for number, size in too_long:
        summary.add_error(
            number, f"line: is {size} bytes, over the {settings.ingest_max_line_bytes}-byte limit"
        )
    console.print(
        f"{summary.lines + len(too_long):,} lines in {summary.seconds:.1f}s "
        f"({summary.lines_per_second:,.0f} lines/s): {summary.accepted:,} accepted, "
        f"{summary.duplicates:,} duplicates, {summary.rejected:,} rejected{where}",
        highlight=False,
    )
    if not follow:
        for number, reason in summary.errors:
            console.print(f"  line {number}: {reason}", highlight=False)
    if summary.rejected and not summary.accepted and not summary.duplicates:
        raise typer.Exit(1)


def _run(
    settings: Settings,
    file: str,
    options: SendOptions,
    joiner: SingleLines | Joiner,
    stop: threading.Event,
    *,
    follow: bool,
    checkpoint: Path | None,
    from_start: bool,
    on_too_long: Callable[[int, int], None],
    on_error: Callable[[int, str], None],
) -> tuple[SendSummary, str]:
    """Send, and say where the checkpoint stands (empty for a stream)."""
    token = api_token(settings)
    auth = {"Authorization": f"Bearer {token}"} if token else {}
    keeper: Keeper | None = None
    feed: FileFeed | StreamFeed
    start_offset, cut_at, total = 0, None, None
    if file == "-":
        fd = sys.stdin.fileno()
    else:
        try:
            opened = _open_following(Path(file), follow, stop)
        except OSError as exc:
            raise _fail(f"cannot read {file}: {exc.strerror}", 2) from None
        if opened is None:
            return SendSummary(), ""
        fd = opened
    mode = os.fstat(fd).st_mode
    if stat.S_ISDIR(mode):
        raise _fail(f"{file} is a directory", 2)
    if not stat.S_ISREG(mode):  # standard input, a pipe, a FIFO, a terminal: read once
        if checkpoint is not None or from_start:
            raise _fail("--checkpoint and --from-start are for files, not streams", 2)
        feed = StreamFeed(fd, settings.ingest_max_line_bytes, on_too_long)
    else:
        path = Path(file)
        store = CheckpointStore(checkpoint or default_path(path, options.source))
        try:
            saved = store.load()
        except CheckpointError as exc:
            raise _fail(str(exc), 2) from None
        if saved is not None and saved.source != options.source:
            raise _fail(
                f"the checkpoint {store.path} is for source {saved.source!r}, not "
                f"{options.source!r}; give another --checkpoint",
                2,
            )
        start = resume(path, fd, None if from_start else saved, _say)
        generation = 0 if saved is None else saved.generation + (1 if from_start else 0)
        keeper = Keeper(
            store,
            Checkpoint(
                path=str(path.resolve()),
                source=options.source,
                file=start.identity,
                offset=start.offset,
                line=start.line,
                generation=generation,
                in_flight=start.in_flight,
            ),
        )
        keeper.store.save(keeper.checkpoint)
        if start.offset:
            _say(f"resuming {file} after line {start.line:,} (byte {start.offset:,}), "
                 f"from the checkpoint {store.path}")  # fmt: skip
        if follow:
            _say(f"following {file}; Ctrl-C stops")
        feed = FileFeed(
            path, start.fd, start.identity, start.offset, start.line,
            follow=follow, max_line_bytes=settings.ingest_max_line_bytes,
            on_too_long=on_too_long, notice=_say, wait=stop.wait, finished=start.finished,
        )  # fmt: skip
        start_offset = start.offset
        cut_at = start.in_flight[1] if start.in_flight else None
        total = None if follow else os.fstat(start.fd).st_size
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=follow or file == "-",
    )
    try:
        with (
            progress,
            httpx.Client(base_url=settings.resolved_api_url, timeout=120, headers=auth) as http,
        ):
            task = progress.add_task(f"sending {file}", total=total, completed=start_offset)
            shipper = Shipper(
                feed, joiner, Poster(http, options, stop, _say), options, stop,
                keeper=keeper, start_offset=start_offset, cut_at=cut_at,
                on_progress=lambda n: progress.advance(task, n), on_error=on_error,
            )  # fmt: skip
            summary = shipper.run()
    except SendError as exc:
        raise _fail(str(exc), 1) from None
    except Stopped as exc:
        kept = "the checkpoint keeps it for the next run" if keeper else "its lines were not sent"
        raise _fail(f"stopped before logkeep took the batch in hand ({exc}); {kept}", 1) from None
    finally:
        if isinstance(feed, FileFeed):
            feed.close()
    if keeper is None:
        return summary, ""
    cp = keeper.checkpoint
    return summary, f"; checkpoint at line {cp.line:,} (byte {cp.offset:,}) in {keeper.store.path}"
