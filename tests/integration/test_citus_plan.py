"""Every statement that reads or writes log_entries or log_metrics carries the filter a
Citus shard router needs, as docs/scale.md says it does.

Citus is not packaged for this machine (not in Debian, and the PyPI project of that name
is something else), so the distributed planner cannot run here. What it routes by can be
checked anyway: Citus sends a statement to one shard when the distribution column
(source_id) equals a constant, to the shards of a list when it is `= ANY(constant
array)`, and to every shard otherwise. Each statement is planned by PostgreSQL with
`EXPLAIN (VERBOSE)` and sample parameters, and the conditions on every scan of the two
tables are compared with the routing docs/scale.md's table gives it. A named query that
touches them and is missing from that table fails this test.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from logkeep.db.database import Database
from logkeep.db.explore import match_histogram_statement
from logkeep.db.queries import named_queries
from logkeep.db.repositories import COPY_COLUMNS
from logkeep.db.search import page_statement, stream_statement
from logkeep.db.stats import SUMMARY_SQL, histogram_args
from logkeep.domain.histogram import plan_histogram
from logkeep.domain.search import SearchQuery, parse_search

DOC = Path(__file__).resolve().parents[2] / "docs" / "scale.md"
DISTRIBUTED = re.compile(r"\b(log_entries(_\w+)?|log_metrics)\b|_log_partition\(")
ROW = re.compile(r"^\|\s*`([^`]+)`\s*\|\s*([^|]+?)\s*\|")

ONE = "one shard"
LISTED = "the sources' shards"
EACH = "each source's shard"
EVERY = "every shard"
BY_ROW = "by row"
DDL = "DDL"
COORDINATOR = "coordinator"
ROUTINGS = (ONE, LISTED, EACH, EVERY, BY_ROW, DDL, COORDINATOR)


def documented() -> dict[str, str]:
    """The routing table of docs/scale.md: statement name -> routing."""
    table: dict[str, str] = {}
    in_table = False
    for line in DOC.read_text().splitlines():
        if line.startswith("## "):
            in_table = line.strip() == "## Which statements route to one shard"
        elif in_table and (match := ROW.match(line)):
            name, routing = match.groups()
            assert routing in ROUTINGS, f"docs/scale.md: {name}: unknown routing {routing!r}"
            table[name] = routing
    assert table, "docs/scale.md has no routing table"
    return table


# -- the statements -----------------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    name: str
    sql: str
    args: list[Any] | None  # None: sample values by parameter type


def search(**params: str) -> SearchQuery:
    items = [(k, v) for k, v in params.items() if k != "source"]
    return parse_search(
        items,
        now=datetime.now(UTC),
        default_window=timedelta(hours=24),
        retention=timedelta(days=30),
        max_future=timedelta(hours=1),
    )


def built(one: int, some: list[int]) -> Iterator[Statement]:
    """The statements composed by db/search.py, db/explore.py and db/stats.py."""
    newest, filtered = search(), search(q="error")
    for label, sources in (("all sources", None), ("one source", [one]), ("some sources", some)):
        sql, args = page_statement(newest, sources)
        yield Statement(f"search: newest page, {label}", sql, args)
        sql, args = page_statement(filtered, sources)
        yield Statement(f"search: filtered page, {label}", sql, args)
    for label, sources in (("all sources", None), ("some sources", some)):
        sql, args = stream_statement(filtered, sources, 1000)
        yield Statement(f"export, {label}", sql, args)
        plan = plan_histogram(
            filtered.window, interval=None, levels=[], min_level=None, source_ids=sources
        )
        sql, args = match_histogram_statement(filtered, plan, sources)
        yield Statement(f"match histogram, {label}", sql, args)
        sql, args = histogram_args(plan)
        yield Statement(f"histogram (rollups), {label}", sql, args)
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    yield Statement("summary (rollups)", SUMMARY_SQL, [now - timedelta(hours=24), now])


def sample(type_name: str, one: int, some: list[int]) -> Any:
    """A value of a parameter's type that makes the statement plan as in use."""
    now = datetime.now(UTC)
    samples: dict[str, Any] = {
        "int4": one,
        "int8": 1,
        "int4[]": some,
        "int8[]": [1, 1],
        "text": "x",
        "text[]": ["x", "y"],
        "timestamptz": now,
        "timestamptz[]": [now, now],
        "date": date.today(),
        "log_level": "ERROR",
        "log_level[]": ["ERROR", "WARN"],
        "jsonb": {},
        "bool": True,
    }
    assert type_name in samples, f"no sample value for a parameter of type {type_name}"
    return samples[type_name]


# -- reading plans ------------------------------------------------------------------------


CONDITIONS = ("Index Cond", "Filter", "Recheck Cond", "Join Filter", "Hash Cond")


@dataclass
class Scan:
    relation: str
    conditions: str  # its own conditions and those of the index scans under it


def scans(node: dict[str, Any]) -> Iterator[Scan]:
    relation = node.get("Relation Name", "")
    if relation and node.get("Node Type") != "ModifyTable":
        conditions = [node.get(key, "") for key in CONDITIONS]
        conditions += [c for child in node.get("Plans", []) for c in _index_conditions(child)]
        yield Scan(relation, " ".join(c for c in conditions if c))
    for child in node.get("Plans", []):
        yield from scans(child)


def _index_conditions(node: dict[str, Any]) -> Iterator[str]:
    if "Relation Name" in node:
        return
    if node.get("Index Cond"):
        yield node["Index Cond"]
    for child in node.get("Plans", []):
        yield from _index_conditions(child)


def is_distributed(relation: str) -> bool:
    return relation == "log_metrics" or relation.startswith("log_entries")


SOURCE_EQUALS = re.compile(r"\bsource_id = (\d+|'\d+'::integer)\)")
SOURCE_IN = re.compile(r"\bsource_id = ANY \('\{[\d,]+\}'::integer\[\]\)")
SOURCE_JOINED = re.compile(r"\bsource_id = s\.id\b|\bs\.id = \w+\.source_id\b")
SOURCES_LISTED = re.compile(r"\bid = ANY \('\{[\d,]+\}'::integer\[\]\)")
INSERT_COLUMNS = re.compile(r"INSERT INTO (log_entries|log_metrics) \(([^)]*)\)", re.IGNORECASE)


def check(statement: Statement, routing: str, plan: dict[str, Any]) -> None:
    name = statement.name
    if routing == DDL:
        assert re.search(r"\b(ensure|drop)_log_partition\(", statement.sql), name
        return
    if routing == BY_ROW:
        assert plan["Node Type"] == "ModifyTable" and plan["Operation"] == "Insert", name
        columns = INSERT_COLUMNS.search(statement.sql)
        assert columns and "source_id" in columns[2], f"{name}: rows without their source_id"
        return
    found = [s for s in scans(plan) if is_distributed(s.relation)]
    if routing == COORDINATOR:
        assert not found, f"{name}: documented as catalog-only, but scans {found}"
        return
    assert found, f"{name}: no scan of log_entries or log_metrics in the plan"
    for scan in found:
        where = f"{name}: {scan.relation} scanned with {scan.conditions or 'no condition'}"
        if routing == ONE:
            assert SOURCE_EQUALS.search(scan.conditions), where
        elif routing == LISTED:
            assert SOURCE_IN.search(scan.conditions), where
        elif routing == EACH:
            assert SOURCE_JOINED.search(scan.conditions), where
        else:  # EVERY: documented as a fan-out, so it must not be narrower than that
            assert not SOURCE_EQUALS.search(scan.conditions), where
            assert not SOURCE_IN.search(scan.conditions), where
    if routing == EACH and "all sources" not in name:
        listed = [s for s in scans(plan) if s.relation == "log_sources"]
        assert any(SOURCES_LISTED.search(s.conditions) for s in listed), (
            f"{name}: the sources walked are not listed: {listed}"
        )


async def test_every_statement_on_the_distributed_tables_routes_as_documented(
    db: Database,
) -> None:
    table = documented()
    async with db.pool.acquire() as conn:
        ids: list[int] = [r["id"] for r in await conn.fetch("SELECT id FROM log_sources")]
    assert len(ids) >= 2, "the test seed has several sources"
    one, some = ids[0], ids[:2]

    now = datetime.now(UTC)
    # Context reads take a position and a bound on either side of it.
    context = {
        "entries_before": [one, now, 1, now - timedelta(days=30), 10],
        "entries_after": [one, now - timedelta(days=1), 1, now, 10],
    }
    statements = [
        Statement(name, sql, context.get(name))
        for name, sql in named_queries().items()
        if DISTRIBUTED.search(sql)
    ]
    statements += list(built(one, some))
    undocumented = [s.name for s in statements if s.name not in table]
    assert not undocumented, (
        "statements on log_entries/log_metrics missing from docs/scale.md's routing "
        f"table: {undocumented}"
    )
    stale = set(table) - {s.name for s in statements} - {"worker COPY"}
    assert not stale, f"docs/scale.md lists statements that no longer exist: {sorted(stale)}"
    # The worker's COPY cannot be explained: Citus routes each row by its source_id column.
    assert table["worker COPY"] == BY_ROW and "source_id" in COPY_COLUMNS

    async with db.pool.acquire() as conn:
        for statement in statements:
            args = statement.args
            if args is None:
                prepared = await conn.prepare(statement.sql)
                args = [sample(p.name, one, some) for p in prepared.get_parameters()]
            explained = await conn.fetchval(
                f"EXPLAIN (FORMAT JSON, VERBOSE) {statement.sql}", *args
            )
            plan = json.loads(explained)[0]["Plan"]
            check(statement, table[statement.name], plan)
