"""`logkeep query`, `tail` and `stats`: read from a running logkeep through its API."""

from __future__ import annotations

import contextlib
from itertools import islice
from typing import Annotated, Any

import orjson
import typer

from logkeep.cli.common import api_client, console, err
from logkeep.client import ApiError, entries_table, entry_line, print_json_lines, summary_table


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
        with api_client() as client:
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
        with api_client() as client, contextlib.suppress(KeyboardInterrupt):
            for item in client.tail(params):
                if as_json:
                    print_json_lines(console, [item])
                else:
                    console.print(entry_line(item), highlight=False)
    except ApiError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None


def stats(
    hours: Annotated[int, typer.Option(min=1, max=8784, help="window in hours")] = 24,
    as_json: Annotated[bool, typer.Option("--json", help="the API's JSON")] = False,
) -> None:
    """Events, errors and error rate per source."""
    try:
        with api_client() as client:
            summary = client.summary(hours)
    except ApiError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    if as_json:
        console.out(orjson.dumps(summary).decode(), highlight=False)
    else:
        console.print(summary_table(summary))
