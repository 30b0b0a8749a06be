"""Full-text search over 24 hours, with and without the tsvector GIN index, in one run.

Loads realistic rows (default 1,000,000, all in the last 24 hours) into the migrated schema
with binary COPY, plants a rare word in a few rows, then times the search API's page query
(db/search.py: newest 100 of all sources, `since=24h`) for words of different frequency:
first with the index of 0002_search.sql, then with it dropped. `contains` (ILIKE) is timed
too, for comparison. Prints p50 per case and the ratios. Uses a PostgreSQL you name, or
starts an embedded one:

    .venv/bin/python bench/fulltext.py [--rows 1000000] [--runs 5] [--pending-list-kb N]
                                       [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import orjson

from logkeep.db.database import _init_connection
from logkeep.db.migrate import migrate
from logkeep.db.partitions import ensure_partitions
from logkeep.db.search import page_statement, planner_settings
from logkeep.db.seed import seed_sources
from logkeep.domain.entry import EntryLimits, Level, LogEntry
from logkeep.domain.samples import SampleGenerator
from logkeep.domain.search import SearchQuery, parse_search
from logkeep.embedded import EmbeddedPostgres, temporary_root

DATABASE = "lk_bench_fulltext"
INDEX = "log_entries_message_fulltext"
NEEDLE = "zebracorn"  # planted in NEEDLE_ROWS rows: a rare word
NEEDLE_ROWS = 20


INDEX_SIZE = """
SELECT sum(pg_relation_size(i.indexrelid)) FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
WHERE c.relname LIKE 'log_entries_p%' AND pg_get_indexdef(i.indexrelid) LIKE '%to_tsvector%'
"""


@dataclass(frozen=True)
class Case:
    name: str
    params: list[tuple[str, str]]
    source: str | None = None


@dataclass(frozen=True)
class Phase:
    name: str
    sql: str  # run before the phase's measurements


PHASES = [
    # COPY leaves up to gin_pending_list_limit of entries unsorted in each partition's
    # index; searches read that list in full until VACUUM (or the next flush) empties it.
    Phase("index, pending list as COPY left it", "ANALYZE log_entries"),
    Phase("index, after VACUUM (pending list empty)", "VACUUM log_entries"),
    Phase("no full-text index", f"DROP INDEX {INDEX}"),
]

CASES = [
    Case(f"q={NEEDLE} (rare: {NEEDLE_ROWS} rows)", [("q", NEEDLE)]),
    Case("q=nosuchword (no match)", [("q", "nosuchword")]),
    Case("q=card declined (~2% of rows)", [("q", "card declined")]),
    Case("q=get (~half of rows)", [("q", "get")]),
    Case("q=declined, nginx_access (none there)", [("q", "declined")], "nginx_access"),
    Case("q=get, nginx_access (3/4 of its rows)", [("q", "get")], "nginx_access"),
    Case(f"contains={NEEDLE} (ILIKE)", [("contains", NEEDLE)]),
]


async def load(conn: asyncpg.Connection, rows: int, now: datetime) -> None:
    _, ids = await seed_sources(conn)
    limits = EntryLimits(max_age=timedelta(days=2))
    samples = SampleGenerator(seed=11).generate(rows, end=now, days=1)
    created, _ = await ensure_partitions(conn, {(now - timedelta(days=d)).date() for d in range(2)})
    for name in created:  # autovacuum would empty the pending lists at a random moment
        await conn.execute(f"ALTER TABLE {name} SET (autovacuum_enabled = off)")
    records = [
        LogEntry(
            s.message, ids[s.source], s.level, s.metadata, s.timestamp, limits=limits, now=now
        ).copy_record()
        for s in samples
    ]
    step = max(1, rows // NEEDLE_ROWS)
    for n in range(NEEDLE_ROWS):  # spread over the day
        at = now - timedelta(hours=24) * (n + 0.5) / NEEDLE_ROWS
        records[min(n * step, rows - 1)] = (
            ids["app_errors"],
            at,
            Level.ERROR.value,
            f"ValueError: {NEEDLE} rejected the order",
            orjson.dumps({"planted": True}),
        )
    started = time.perf_counter()
    for offset in range(0, len(records), 10_000):
        async with conn.transaction():
            await conn.copy_records_to_table(
                "log_entries",
                records=records[offset : offset + 10_000],
                columns=["source_id", "timestamp", "level", "message", "metadata"],
            )
    elapsed = time.perf_counter() - started
    print(f"loaded {rows} rows in {elapsed:.1f}s ({rows / elapsed:,.0f} rows/s, all indexes)")


def query_for(case: Case, now: datetime) -> SearchQuery:
    return parse_search(
        [("since", "24h"), *case.params],
        now=now,
        default_window=timedelta(hours=24),
        retention=timedelta(days=30),
        max_future=timedelta(hours=1),
    )


async def page(conn: asyncpg.Connection, query: SearchQuery, sql: str, args: list[Any]) -> Any:
    """As LogSearch.page runs it: its own transaction with the planner settings."""
    async with conn.transaction(readonly=True):
        await conn.execute(planner_settings(query))
        return await conn.fetch(sql, *args)


async def time_case(
    conn: asyncpg.Connection, case: Case, now: datetime, runs: int, ids: dict[str, int]
) -> tuple[float, int, bool]:
    """(p50 ms, rows returned, whether the plan reads the full-text index)."""
    query = query_for(case, now)
    sql, args = page_statement(query, None if case.source is None else [ids[case.source]])
    plan = "\n".join(r[0] for r in await page(conn, query, f"EXPLAIN {sql}", args))
    rows = await page(conn, query, sql, args)  # warm-up
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        await page(conn, query, sql, args)
        times.append((time.perf_counter() - started) * 1000)
    uses_index = re.search(r"Bitmap Index Scan on \S*to_tsvector", plan) is not None
    return statistics.median(times), min(len(rows), query.limit), uses_index


async def set_pending_list(conn: asyncpg.Connection, kilobytes: int) -> None:
    """Rebuild the (still empty) full-text index with another pending-list limit."""
    definition = await conn.fetchval("SELECT pg_get_indexdef($1::regclass)", INDEX)
    await conn.execute(f"DROP INDEX {INDEX}")
    base = definition.split(" WITH (")[0]
    await conn.execute(f"{base} WITH (gin_pending_list_limit = {int(kilobytes)})")


async def run(admin_url: str, rows: int, runs: int, pending_kb: int | None) -> None:
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
    await admin.execute(f"CREATE DATABASE {DATABASE}")
    url = urlunsplit(urlsplit(admin_url)._replace(path=f"/{DATABASE}"))
    conn = await asyncpg.connect(url, server_settings={"timezone": "UTC"})
    try:
        await _init_connection(conn)
        await migrate(conn)
        if pending_kb is not None:
            await set_pending_list(conn, pending_kb)
        limit = await conn.fetchval(
            "SELECT coalesce((SELECT option_value FROM pg_options_to_table(reloptions) "
            "WHERE option_name = 'gin_pending_list_limit'), 'default (4096)') "
            "FROM pg_class WHERE relname = $1",
            INDEX,
        )
        print(f"full-text index gin_pending_list_limit: {limit} kB")
        now = datetime.now(UTC)
        await load(conn, rows, now)
        ids = {r["name"]: r["id"] for r in await conn.fetch("SELECT name, id FROM log_sources")}
        results: dict[str, list[tuple[float, int, bool]]] = {c.name: [] for c in CASES}
        for phase in PHASES:
            if phase.sql:
                await conn.execute(phase.sql)
            for case in CASES:
                results[case.name].append(await time_case(conn, case, now, runs, ids))
            if phase is PHASES[1]:
                size = await conn.fetchval(INDEX_SIZE)
                print(
                    f"full-text index after VACUUM: {size / 2**20:.0f} MB, {size / rows:.0f} B/row"
                )
        print(f"search page (newest 100, all sources, last 24 h), p50 ms of {runs} runs:")
        for n, phase in enumerate(PHASES):
            print(f"  [{n}] {phase.name}")
        heads = "".join(f"{f'[{n}] ms':>9}" for n in range(len(PHASES)))
        print(f"{'case':38}{heads} {'[2]/[1]':>8} {'rows':>5}  gin [0] [1]")
        for name, timings in results.items():
            figures = "".join(f"{ms:9.1f}" for ms, _, _ in timings)
            ratio = timings[2][0] / timings[1][0]
            plans = " ".join("yes" if used else "no" for _, _, used in timings[:2])
            print(f"{name:38}{figures} {ratio:7.1f}x {timings[0][1]:5}  {plans}")
    finally:
        await conn.close()
        await admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--pending-list-kb", type=int, help="gin_pending_list_limit instead of the migration's"
    )
    parser.add_argument(
        "--database-url", help="a database of a server where we may CREATE DATABASE"
    )
    args = parser.parse_args()
    if args.database_url:
        asyncio.run(run(args.database_url, args.rows, args.runs, args.pending_list_kb))
        return
    with temporary_root("lk-bench-") as root:
        server = EmbeddedPostgres(root / "pg")
        try:
            server.start()
            asyncio.run(run(server.dsn(), args.rows, args.runs, args.pending_list_kb))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
