"""Bad input as one plain line on stderr and exit code 2, instead of click's framed box,
which wraps long reasons (a rule name, a path) across lines and borders."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.console import Console
from rich.markup import escape

err = Console(stderr=True)


@contextlib.contextmanager
def plain_errors() -> Iterator[None]:
    """typer.BadParameter raised inside becomes `error: <option>: <reason>`, exit 2."""
    try:
        yield
    except typer.BadParameter as exc:
        where = f"{exc.param_hint}: " if isinstance(exc.param_hint, str) else ""
        err.print(f"[red]error:[/red] {escape(where + exc.message)}", highlight=False)
        raise typer.Exit(2) from None
