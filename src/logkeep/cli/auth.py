"""`logkeep login` and `logout`: a session for the CLI's API commands, kept in a file
only the user can read (see logkeep.credentials)."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated

import typer
from rich.markup import escape

from logkeep.cli.common import console, err, load_settings
from logkeep.client import ApiError, LogkeepClient
from logkeep.credentials import CredentialsError, forget_token, load_token, save_token


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/red] {escape(message)}", highlight=False)
    return typer.Exit(code)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        # One line; only its line ending is dropped (a password may end with spaces).
        password = sys.stdin.readline().removesuffix("\n").removesuffix("\r")
    else:
        password = getpass.getpass("password: ")
    if not password:
        raise _fail("empty password", 2)
    return password


def login(
    username: Annotated[
        str | None, typer.Option("--username", "-u", help="asked for when not given")
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="read the password from standard input (scripts)"),
    ] = False,
) -> None:
    """Log in to a running logkeep; later commands send the session it opens."""
    settings = load_settings()
    url = settings.resolved_api_url
    if username is None:
        if password_stdin or not sys.stdin.isatty():
            raise _fail("--username is required when the password is not typed in", 2)
        username = typer.prompt("username")
    password = _read_password(password_stdin)
    try:
        with LogkeepClient(url) as client:
            answer = client.login(username, password)
        path = save_token(url, answer["token"], username)
    except ApiError as exc:
        # A refused login needs no advice on how to log in: its first line says it all.
        raise _fail(str(exc).splitlines()[0] if exc.status == 401 else str(exc)) from None
    except CredentialsError as exc:
        raise _fail(str(exc)) from None
    user = answer.get("user", {})
    console.print(
        escape(
            f"logged in to {url} as {user.get('username', username)} "
            f"({user.get('role', '?')}); session saved in {path}"
        ),
        highlight=False,
    )
    if settings.api_token.get_secret_value():
        err.print("note: LOGKEEP_API_TOKEN is set, and is sent instead while it is")


def logout() -> None:
    """End the session `logkeep login` opened, on the server and in the saved file."""
    settings = load_settings()
    url = settings.resolved_api_url
    try:
        token = load_token(url)
    except CredentialsError as exc:
        raise _fail(str(exc)) from None
    if token is None:
        console.print(f"not logged in to {escape(url)}", highlight=False)
        return
    try:
        with LogkeepClient(url, token=token) as client:
            client.logout()
    except ApiError as exc:
        if exc.status != 401:  # 401: the session had already ended; just forget it
            raise _fail(f"{exc}\nthe session is still saved; run `logkeep logout` again") from None
    try:
        forget_token(url)
    except CredentialsError as exc:
        raise _fail(str(exc)) from None
    console.print(f"logged out of {escape(url)}", highlight=False)
