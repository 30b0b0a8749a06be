"""The `logkeep` command: one module per group of subcommands, assembled here."""

from __future__ import annotations

import typer

from logkeep import __version__
from logkeep.cli import auth, read, server
from logkeep.cli.alerts import alerts
from logkeep.cli.bench import bench_app
from logkeep.cli.common import console
from logkeep.cli.db import db_app
from logkeep.cli.ingest import ingest
from logkeep.cli.sources import sources_app
from logkeep.cli.stats import stats_app
from logkeep.cli.users import users_app

app = typer.Typer(help="logkeep: a log store on PostgreSQL and Redis.", no_args_is_help=True)


@app.command()
def version() -> None:
    """Print the logkeep version."""
    console.print(__version__)


for command in (server.up, server.serve, server.worker, server.syslog, server.gelf, server.doctor):
    app.command()(command)
app.command()(ingest)
app.command()(alerts)
for command in (read.query, read.tail, auth.login, auth.logout):
    app.command()(command)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(sources_app, name="sources")
app.add_typer(bench_app, name="bench")
app.add_typer(stats_app, name="stats")


def main() -> None:
    app()
