"""`logkeep query`, `tail` and `stats`: read from a running logkeep through its API."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from itertools import islice
from typing import Annotated, Any

import orjson
import typer
from rich.markup import escape

from logkeep.cli.common import api_client, console, err
from logkeep.cli.errors import plain_errors
from logkeep.client import (
    ApiError,
    entries_table,
    entry_line,
    print_json_lines,
    summary_table,
)
from logkeep.domain.search import METADATA_PREFIX
from logkeep.domain.timerange import InvalidQuery, parse_duration


def meta_params(pairs: list[str]) -> dict[str, list[str]]:
    """`--meta key=value` options as the API's `metadata.<key>=<value>` parameters (the
    API checks keys and reads values: 500 is a number, '"500"' text)."""
    params: dict[str, list[str]] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise typer.BadParameter(f"expected key=value, got {pair[:64]!r}", param_hint="--meta")
        params.setdefault(METADATA_PREFIX + key.strip(), []).append(value)
    return params


def window_bound(value: str | None, now: datetime) -> str | None:
    """--from/--to: RFC 3339 (passed on as the API takes it), or a duration back from
    now (`3h`), turned into RFC 3339 here."""
    if value is None:
        return None
    try:
        ago = parse_duration(value)
    except InvalidQuery:
        return value
    return (now - ago).isoformat(timespec="seconds").replace("+00:00", "Z")


def window_text(since: str | None, start: str | None, end: str | None) -> str:
    """The window a search read, in words, from what was sent."""
    if since:
        return f"the last {since}" if end is None else f"the {since} before {end}"
    if start or end:
        return f"{start or 'the default window start'} to {end or 'now'}"
    return "the last 24 h (the server's default window, set by LOGKEEP_QUERY_DEFAULT_WINDOW_S)"


def empty_hint(since: str | None, start: str | None, end: str | None) -> str:
    """What to say when nothing matched: where we looked, and how to look further."""
    looked = f"no entries in {window_text(since, start, end)}"
    if start or end:
        return f"{looked}; widen --from/--to (RFC 3339, or a duration back from now: 7d)"
    return f"{looked}; search further back with --since 7d, or choose a window with --from/--to"


def _read_params(
    text: str | None,
    source: list[str],
    level: list[str],
    min_level: str | None,
    contains: str | None,
    meta: list[str],
) -> dict[str, Any]:
    params: dict[str, Any] = {"source": source, "level": level}
    for name, value in (("q", text), ("min_level", min_level), ("contains", contains)):
        if value:
            params[name] = value
    return params | meta_params(meta)


def _fail(exc: ApiError) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
    return typer.Exit(1)


SourceOpt = Annotated[list[str], typer.Option("--source", "-s", help="source name or id (repeat)")]
LevelOpt = Annotated[list[str], typer.Option("--level", "-l", help="exact level (repeat)")]
MinLevelOpt = Annotated[str | None, typer.Option(help="this level and more severe")]
ContainsOpt = Annotated[str | None, typer.Option(help="case-insensitive substring")]
TextArg = Annotated[str | None, typer.Argument(help="words that must all appear")]
MetaOpt = Annotated[
    list[str],
    typer.Option(
        "--meta",
        help="metadata key=value (repeat; a.b=1 for nested keys; 500 is a number, '\"500\"' text)",
    ),
]
ShowMetadataOpt = Annotated[
    bool, typer.Option("--metadata", "-m", help="show each entry's metadata")
]


def query(
    text: TextArg = None,
    source: SourceOpt = [],  # noqa: B006 - typer copies defaults
    level: LevelOpt = [],  # noqa: B006
    min_level: MinLevelOpt = None,
    since: Annotated[
        str | None,
        typer.Option(help="window back from now (or from --to): 15m, 2h, 7d; default 24h"),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option("--from", help="window start: RFC 3339, or a duration back from now"),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option("--to", help="window end (exclusive): RFC 3339, or a duration back"),
    ] = None,
    contains: ContainsOpt = None,
    meta: MetaOpt = [],  # noqa: B006
    limit: Annotated[int, typer.Option(min=1, help="at most this many entries")] = 100,
    show_metadata: ShowMetadataOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines, all fields")] = False,
) -> None:
    """Search a running logkeep: newest first, as a table or JSON lines."""
    now = datetime.now(UTC)
    start, end = window_bound(start, now), window_bound(end, now)
    with plain_errors():
        params = _read_params(text, source, level, min_level, contains, meta)
    for name, value in (("since", since), ("from", start), ("to", end)):
        if value:
            params[name] = value  # none given: the API's default window
    more = False
    try:
        with api_client() as client:
            if as_json:
                items = list(islice(client.export(params), limit + 1))
                more = len(items) > limit
                print_json_lines(console, items[:limit])
            else:
                items, more = _pages(client.search, params, limit)
    except ApiError as exc:
        raise _fail(exc) from None
    shown = min(len(items), limit)
    if not items:
        footer = empty_hint(since, start, end)
    elif more:
        newest = "the newest entry" if shown == 1 else f"the newest {shown:,} entries"
        footer = f"showing {newest}; more match (--limit to see more)"
    else:
        footer = f"{shown:,} {'entry' if shown == 1 else 'entries'}"
    if as_json:
        if not items or more:  # stdout stays JSON lines only
            err.print(escape(footer), highlight=False)
        return
    if items:  # nothing found: the footer alone, not an empty table above it
        console.print(entries_table(items, show_metadata))
    console.print(escape(footer), highlight=False)


def _pages(search: Any, params: dict[str, Any], limit: int) -> tuple[list[dict[str, Any]], bool]:
    """Up to `limit` entries, page by page; and whether more match."""
    items: list[dict[str, Any]] = []
    cursor = None
    while len(items) < limit:
        page = search(
            {**params, "limit": min(1000, limit - len(items))}
            | ({"cursor": cursor} if cursor else {})
        )
        items.extend(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            return items, False
    return items, True


def tail(
    text: TextArg = None,
    source: SourceOpt = [],  # noqa: B006
    level: LevelOpt = [],  # noqa: B006
    min_level: MinLevelOpt = None,
    contains: ContainsOpt = None,
    meta: MetaOpt = [],  # noqa: B006
    show_metadata: ShowMetadataOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines, all fields")] = False,
) -> None:
    """Follow new entries as they are committed; rides out server restarts (Ctrl-C stops)."""
    with plain_errors():
        params = _read_params(text, source, level, min_level, contains, meta)

    def lost(reason: str) -> None:
        err.print(f"[dim]connection lost: {escape(reason)}; reconnecting...[/dim]", highlight=False)

    def back() -> None:
        err.print("[dim]reconnected; resuming after the last entry shown[/dim]", highlight=False)

    try:
        with api_client() as client, contextlib.suppress(KeyboardInterrupt):
            for item in client.tail(params, on_lost=lost, on_back=back):
                if as_json:
                    print_json_lines(console, [item])
                else:
                    console.print(entry_line(item, show_metadata), highlight=False)
    except ApiError as exc:
        raise _fail(exc) from None


def stats(
    hours: Annotated[int, typer.Option(min=1, max=8784, help="window in hours")] = 24,
    as_json: Annotated[bool, typer.Option("--json", help="the API's JSON")] = False,
) -> None:
    """Events, errors and error rate per source."""
    try:
        with api_client() as client:
            summary = client.summary(hours)
    except ApiError as exc:
        raise _fail(exc) from None
    if as_json:
        console.out(orjson.dumps(summary).decode(), highlight=False)
    else:
        console.print(summary_table(summary))
