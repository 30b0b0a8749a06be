"""`logkeep sources ...`: operators create and change log sources on the database
directly (no API session needed). Rules are checked before anything is saved; every
change is audited as done by the operator, and drops the cached rules ingest reads."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import asyncpg
import orjson
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from logkeep.cli.errors import plain_errors
from logkeep.cli.users import OPERATOR
from logkeep.config import Settings
from logkeep.db.access import AccessRepository
from logkeep.db.database import Database
from logkeep.db.repositories import SourceRepository
from logkeep.db.stats import StatsRepository
from logkeep.domain.histogram import summary_window
from logkeep.domain.parsers import InvalidRules, compile_parser
from logkeep.domain.sources import DEFAULT_FORMAT_TYPE, DEFAULT_SOURCE_TYPE, is_source_name

T = TypeVar("T")
sources_app = typer.Typer(help="Log sources and their parsing rules.", no_args_is_help=True)
console = Console()

# As the admin API bounds them.
MAX_TYPE_CHARS = 64
MAX_DESCRIPTION_CHARS = 1000
COUNTED_HOURS = 24


# -- pure: options into values -------------------------------------------------------------


def rule_value(text: str) -> Any:
    """A `--rule key=value` value: JSON when it reads as a JSON object, list or string
    (`'metadata_fields=["a","b"]'`), otherwise the text itself (a pattern, a field name)."""
    if text[:1] in ("{", "[", '"'):
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass  # a regex such as [0-9]+ ... is text
    return text


def parse_rules(pairs: list[str], rules_json: str | None) -> dict[str, Any] | None:
    """The rules given on the command line, or None when none were given."""
    if pairs and rules_json is not None:
        raise typer.BadParameter("give --rule or --rules-json, not both", param_hint="--rule")
    if rules_json is not None:
        try:
            rules = orjson.loads(rules_json)
        except orjson.JSONDecodeError as exc:
            raise typer.BadParameter(f"not valid JSON: {exc}", param_hint="--rules-json") from None
        if not isinstance(rules, dict):
            raise typer.BadParameter(
                f"must be a JSON object, got {type(rules).__name__}", param_hint="--rules-json"
            )
        return rules
    if not pairs:
        return None
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key.strip():
            raise typer.BadParameter(f"expected key=value, got {pair[:64]!r}", param_hint="--rule")
        if key.strip() in parsed:
            raise typer.BadParameter(f"{key.strip()!r} given twice", param_hint="--rule")
        parsed[key.strip()] = rule_value(value)
    return parsed


def check_rules(name: str, format_type: str, rules: Mapping[str, Any]) -> None:
    """compile_parser's verdict, as an error naming the source, the format and the rule."""
    try:
        compile_parser(format_type, rules)
    except InvalidRules as exc:
        raise typer.BadParameter(
            f"source {name!r}, format {format_type!r}: {exc}; nothing was saved",
            param_hint="--format/--rule",
        ) from None


def check_label(value: str, option: str, limit: int) -> str:
    text = value.strip()
    if not text.isprintable() or len(text) > limit:
        raise typer.BadParameter(
            f"at most {limit} printable characters, no line breaks", param_hint=option
        )
    return text


# -- the database edge ---------------------------------------------------------------------


class Tools:
    def __init__(self, db: Database) -> None:
        # With Redis, so that changes drop the rules ingest has cached.
        self.sources = SourceRepository(db.pool, db.redis, db.keys)
        self.access = AccessRepository(db.pool)
        self.stats = StatsRepository(db.pool, db.cache)

    async def find(self, ref: str) -> dict[str, Any]:
        found = await self.sources.resolve(ref)
        if found is None:
            raise typer.BadParameter(f"no source named or numbered {ref!r}", param_hint="SOURCE")
        return found

    async def audit(self, action: str, source_id: int, details: Mapping[str, Any]) -> None:
        await self.access.audit(
            action, target_type="source", target_id=source_id, details=OPERATOR | dict(details)
        )


def _run(action: Callable[[Tools], Awaitable[T]]) -> T:
    from logkeep.cli.common import load_settings, run_async, stores

    settings: Settings = load_settings()
    with stores(settings) as (resolved, _):

        async def go() -> T:
            async with Database(resolved) as db:
                return await action(Tools(db))

        return run_async(go())


SourceArg = Annotated[str, typer.Argument(metavar="SOURCE", help="source name or id")]
FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        help="how text lines are parsed: text, json, logfmt, nginx_combined, syslog, regex",
    ),
]
RuleOpt = Annotated[
    list[str],
    typer.Option(
        "--rule",
        help="a parsing rule, key=value (repeat); JSON for lists and objects: "
        '\'level_by_status={"5xx":"ERROR"}\'',
    ),
]
RulesJsonOpt = Annotated[
    str | None, typer.Option("--rules-json", help="every parsing rule, as one JSON object")
]
DescriptionOpt = Annotated[str | None, typer.Option("--description", help="for people")]


# -- commands ------------------------------------------------------------------------------


@sources_app.command("list")
def list_sources(
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines, every field")] = False,
) -> None:
    """Every source, active or not, with its entries in the last 24 hours."""

    async def action(t: Tools) -> tuple[list[dict[str, Any]], dict[int, int]]:
        sources = await t.sources.list(active_only=False)
        window = summary_window(datetime.now(UTC), COUNTED_HOURS)
        summary = await t.stats.summary(window, COUNTED_HOURS)  # rollups: no scan
        return sources, {row["source_id"]: row["events"] for row in summary["sources"]}

    sources, counts = _run(action)
    if as_json:
        for source in sources:
            row = source | {"entries_24h": counts.get(source["id"], 0)}
            console.out(orjson.dumps(row, default=str).decode(), highlight=False)
        return
    table = Table(header_style="bold")
    for column in ("id", "name", "type", "format", "active"):
        table.add_column(column, no_wrap=True, justify="right" if column == "id" else "left")
    table.add_column("entries (24 h)", no_wrap=True, justify="right")
    table.add_column("description", overflow="fold")  # the column that gives way
    for source in sorted(sources, key=lambda s: s["id"]):
        table.add_row(
            str(source["id"]),
            Text(source["name"]),
            Text(source["source_type"]),
            Text(source["format_type"]),
            "yes" if source["is_active"] else "no",
            f"{counts.get(source['id'], 0):,}",
            Text(source["description"]),
        )
    console.print(table)


@sources_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="lower-case letters, digits, _ . -")],
    format_type: FormatOpt = None,
    source_type: Annotated[
        str | None,
        typer.Option(
            "--type", help=f"a label for people: web, database... ({DEFAULT_SOURCE_TYPE})"
        ),
    ] = None,
    description: DescriptionOpt = None,
    rule: RuleOpt = [],  # noqa: B006 - typer copies defaults
    rules_json: RulesJsonOpt = None,
) -> None:
    """Create a source (format text unless told otherwise, which keeps every line whole)."""
    with plain_errors():
        if not is_source_name(name):
            raise typer.BadParameter(
                f"{name[:80]!r}: lower-case letters, digits, '_', '.' and '-', starting with a "
                "letter or digit, at most 63 characters, not all digits",
                param_hint="NAME",
            )
        format_type = (format_type or DEFAULT_FORMAT_TYPE).strip().lower()
        kind = check_label(source_type or DEFAULT_SOURCE_TYPE, "--type", MAX_TYPE_CHARS)
        if not kind:
            raise typer.BadParameter("must not be empty", param_hint="--type")
        text = check_label(description or "", "--description", MAX_DESCRIPTION_CHARS)
        rules = parse_rules(rule, rules_json) or {}
        check_rules(name, format_type, rules)  # before anything is saved

        async def action(t: Tools) -> dict[str, Any]:
            try:
                source = await t.sources.create(
                    name,
                    source_type=kind,
                    format_type=format_type,
                    description=text,
                    parsing_rules=rules,
                )
            except asyncpg.UniqueViolationError:
                raise typer.BadParameter(
                    f"source {name!r} already exists", param_hint="NAME"
                ) from None
            await t.audit(
                "source_created",
                source["id"],
                {
                    "name": name,
                    "source_type": kind,
                    "format_type": format_type,
                    "parsing_rules": rules,
                },
            )
            return source

        source = _run(action)
    console.print(
        Text(
            f"created source {source['name']} (id {source['id']}, type {source['source_type']}, "
            f"format {source['format_type']})"
        )
    )


@sources_app.command("update")
def update(
    source: SourceArg,
    format_type: FormatOpt = None,
    rule: Annotated[
        list[str],
        typer.Option(
            "--rule",
            help="set one parsing rule, key=value (repeat); the others stay; "
            "JSON for lists and objects",
        ),
    ] = [],  # noqa: B006
    rules_json: Annotated[
        str | None,
        typer.Option("--rules-json", help="replace every parsing rule with this JSON object"),
    ] = None,
    description: DescriptionOpt = None,
) -> None:
    """Change a source's format, parsing rules or description (rules checked first).
    Ingest uses the new rules within a second."""
    with plain_errors():
        given = parse_rules(rule, rules_json)
        text = (
            None
            if description is None
            else check_label(description, "--description", MAX_DESCRIPTION_CHARS)
        )
        wanted_format = None if format_type is None else format_type.strip().lower()
        if given is None and wanted_format is None and text is None:
            raise typer.BadParameter("nothing to change: give --format, --rule, --rules-json "
                                     "or --description")  # fmt: skip

        async def action(t: Tools) -> dict[str, Any]:
            current = await t.find(source)
            changes: dict[str, Any] = {}
            if given is not None or wanted_format is not None:
                new_format = wanted_format or current["format_type"]
                # --rules-json replaces the rules; --rule sets some and keeps the others.
                rules = dict(current["parsing_rules"]) if rules_json is None else {}
                rules |= given or {}
                check_rules(current["name"], new_format, rules)
                # Both, always: what is stored is exactly the pair that was checked.
                changes |= {"format_type": new_format, "parsing_rules": rules}
            if text is not None:
                changes["description"] = text
            updated = await t.sources.update(current["id"], **changes)
            if updated is None:
                raise typer.BadParameter(f"source {source!r} was deleted meanwhile")
            await t.audit("source_updated", current["id"], changes)
            return updated

        updated = _run(action)
    console.print(
        Text(
            f"updated source {updated['name']} (format {updated['format_type']}, "
            f"rules {orjson.dumps(updated['parsing_rules']).decode()})"
        )
    )


def _set_active(source: str, active: bool) -> None:
    async def action(t: Tools) -> dict[str, Any]:
        current = await t.find(source)
        updated = await t.sources.set_active(current["id"], active)
        assert updated is not None  # sources are never deleted
        await t.audit("source_updated", current["id"], {"is_active": active})
        return updated

    with plain_errors():
        updated = _run(action)
    state = "enabled" if active else "disabled: its entries stay searchable; new ones are refused"
    console.print(Text(f"source {updated['name']} {state}"))


@sources_app.command("disable")
def disable(source: SourceArg) -> None:
    """Stop accepting entries for a source (its stored entries stay searchable)."""
    _set_active(source, False)


@sources_app.command("enable")
def enable(source: SourceArg) -> None:
    """Accept entries for a source again."""
    _set_active(source, True)
