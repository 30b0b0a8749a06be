"""log_entries spread over PostgreSQL nodes with postgres_fdw, against one node, measured.

Starts three PostgreSQL clusters on loopback ports (a coordinator and two data nodes, each
with logkeep's schema), and on the coordinator a table hash-partitioned by source_id whose
two partitions are postgres_fdw foreign tables: each node's own `log_entries` (daily
partitions and indexes as migrated). Then, on the same rows spread over 12 sources:

  ingest  (a) one binary COPY into the coordinator's own log_entries (one node: baseline)
          (b) COPY into the hash-partitioned table: PostgreSQL routes each row to its node
          (c) INSERT ... SELECT FROM unnest() in 5,000-row statements into the same table
              (postgres_fdw's batch_size 1000 applies to INSERT)
          (d) routed by the writer: rows split by the same hash, one COPY per node at once
  search  the API's filtered page (words) across every source and for one source, and the
          newest page of one source, on one node and through the foreign partitions

Run:  .venv/bin/python bench/fdw.py [--rows 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from logkeep.api.local import free_port
from logkeep.db.database import _init_connection
from logkeep.db.migrate import migrate
from logkeep.db.partitions import ensure_partitions
from logkeep.db.search import page_statement, planner_settings
from logkeep.domain.entry import EntryLimits, LogEntry
from logkeep.domain.samples import SampleGenerator
from logkeep.domain.search import SearchQuery, parse_search
from logkeep.embedded import LoopbackPostgres, temporary_root

Record = tuple[int, int, datetime, str, str, bytes]  # id + LogEntry.copy_record()
COLUMNS = ["id", "source_id", "timestamp", "level", "message", "metadata"]
SOURCES = 12
NODES = 2
BATCH = 5000
RUNS = 7

FDW_SCHEMA = """
CREATE EXTENSION IF NOT EXISTS postgres_fdw;
CREATE TABLE fdw_entries (LIKE log_entries INCLUDING DEFAULTS) PARTITION BY HASH (source_id);
"""
# Identifiers and options come from this script (ports, generated password), never input.
SERVER = """
CREATE SERVER node{n} FOREIGN DATA WRAPPER postgres_fdw OPTIONS (
    host '127.0.0.1', port '{port}', dbname 'logkeep',
    async_capable 'true', batch_size '1000', fetch_size '1000', use_remote_estimate 'false');
CREATE USER MAPPING FOR CURRENT_USER SERVER node{n} OPTIONS (user 'logkeep', password '{pw}');
CREATE FOREIGN TABLE fdw_entries_node{n} PARTITION OF fdw_entries
    FOR VALUES WITH (MODULUS {nodes}, REMAINDER {n}) SERVER node{n}
    OPTIONS (table_name 'log_entries');
"""
INSERT_BATCH = """
INSERT INTO fdw_entries (id, source_id, "timestamp", level, message, metadata)
SELECT * FROM unnest($1::bigint[], $2::integer[], $3::timestamptz[], $4::log_level[],
                     $5::text[], $6::jsonb[])
"""
WHICH_NODE = "SELECT satisfies_hash_partition('fdw_entries'::regclass, $1, $2, $3::integer)"


def make_records(rows: int, source_ids: Sequence[int]) -> list[Record]:
    end = datetime.now(UTC)
    limits = EntryLimits(max_age=timedelta(days=30))
    samples = SampleGenerator(seed=17).generate(rows, end=end, days=0.9)
    return [
        (
            i + 1,
            *LogEntry(
                s.message,
                source_ids[i % len(source_ids)],
                s.level,
                s.metadata,
                s.timestamp,
                limits=limits,
                now=end,
            ).copy_record(),
        )
        for i, s in enumerate(samples)
    ]


async def prepare_node(node: LoopbackPostgres) -> list[int]:
    """logkeep's schema, SOURCES sources (the same ids on every node), and partitions."""
    await asyncio.to_thread(node.psql, "CREATE DATABASE logkeep")
    conn = await asyncpg.connect(node.dsn())
    try:
        await migrate(conn)
        ids = [
            await conn.fetchval(
                "INSERT INTO log_sources (name, source_type, format_type) "
                "VALUES ($1, 'app', 'json') RETURNING id",
                f"svc{n:02d}",
            )
            for n in range(SOURCES)
        ]
        today = datetime.now(UTC).date()
        await ensure_partitions(conn, [today + timedelta(days=d) for d in (-1, 0, 1)])
    finally:
        await conn.close()
    return ids


async def connect(node: LoopbackPostgres) -> asyncpg.Connection:
    conn = await asyncpg.connect(node.dsn())
    await _init_connection(conn)
    return conn


async def count(conn: asyncpg.Connection, table: str) -> int:
    n: int = await conn.fetchval(f"SELECT count(*) FROM {table}")
    return n


async def truncate(nodes: Sequence[LoopbackPostgres]) -> None:
    for node in nodes:
        conn = await connect(node)
        try:
            await conn.execute("TRUNCATE log_entries")
        finally:
            await conn.close()


async def timed_copy(conn: asyncpg.Connection, table: str, records: list[Record]) -> float:
    started = time.perf_counter()
    for offset in range(0, len(records), BATCH):
        async with conn.transaction():
            await conn.copy_records_to_table(
                table, records=records[offset : offset + BATCH], columns=COLUMNS
            )
    return time.perf_counter() - started


async def timed_insert(conn: asyncpg.Connection, records: list[Record]) -> float:
    started = time.perf_counter()
    for offset in range(0, len(records), BATCH):
        chunk = records[offset : offset + BATCH]
        columns = [list(column) for column in zip(*chunk, strict=True)]
        columns[5] = [m.decode() for m in columns[5]]  # jsonb[] from text
        await conn.execute(INSERT_BATCH, *columns)
    return time.perf_counter() - started


async def timed_routed(
    coordinator: asyncpg.Connection, nodes: Sequence[LoopbackPostgres], records: list[Record]
) -> float:
    """The writer routes: each source's node asked of the coordinator once, then one COPY
    stream per node, all at once."""
    started = time.perf_counter()
    node_of: dict[int, int] = {}
    for source_id in sorted({r[1] for r in records}):
        for n in range(len(nodes)):
            if await coordinator.fetchval(WHICH_NODE, len(nodes), n, source_id):
                node_of[source_id] = n
    shares: list[list[Record]] = [[] for _ in nodes]
    for record in records:
        shares[node_of[record[1]]].append(record)
    conns = [await connect(node) for node in nodes]
    try:
        await asyncio.gather(
            *(timed_copy(c, "log_entries", share) for c, share in zip(conns, shares, strict=True))
        )
    finally:
        for conn in conns:
            await conn.close()
    return time.perf_counter() - started


def search(**params: str) -> SearchQuery:
    return parse_search(
        list(params.items()),
        now=datetime.now(UTC),
        default_window=timedelta(hours=24),
        retention=timedelta(days=30),
        max_future=timedelta(hours=1),
    )


async def timed_search(
    conn: asyncpg.Connection, query: SearchQuery, sources: list[int] | None, table: str
) -> tuple[float, int]:
    """Median milliseconds of RUNS runs of the API's page statement, and its rows."""
    sql, args = page_statement(query, sources)
    sql = sql.replace("FROM log_entries le", f"FROM {table} le")
    times = []
    rows: list[Any] = []
    for _ in range(RUNS):
        started = time.perf_counter()
        async with conn.transaction(readonly=True):
            await conn.execute(planner_settings(query))
            rows = await conn.fetch(sql, *args)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), len(rows)


async def main(rows: int) -> None:
    password = secrets.token_urlsafe(18)
    with temporary_root("lk-fdw-") as root:
        servers = [LoopbackPostgres(root / f"pg{n}", free_port(), password) for n in range(3)]
        try:
            for server in servers:
                await asyncio.to_thread(server.init)
                await asyncio.to_thread(server.start)
            coordinator_node, *nodes = servers
            ids = [await prepare_node(server) for server in servers]
            assert all(i == ids[0] for i in ids), "sources have the same ids on every node"
            await run(coordinator_node, nodes, password, ids[0], rows)
        finally:
            for server in servers:
                await asyncio.to_thread(server.stop)


async def run(
    coordinator_node: LoopbackPostgres,
    nodes: list[LoopbackPostgres],
    password: str,
    source_ids: list[int],
    rows: int,
) -> None:
    coordinator = await connect(coordinator_node)
    try:
        await coordinator.execute(FDW_SCHEMA)
        for n, node in enumerate(nodes):
            await coordinator.execute(
                SERVER.format(n=n, port=node.port, pw=password, nodes=len(nodes))
            )
        records = make_records(rows, source_ids)
        version = await coordinator.fetchval("SHOW server_version")
        print(
            f"postgres_fdw bench: {rows:,} rows over {SOURCES} sources, a coordinator and "
            f"{len(nodes)} nodes on one machine (PostgreSQL {version}, loopback TCP)"
        )

        local = await timed_copy(coordinator, "log_entries", records)
        print(f"(a) COPY, one node               {rows / local:>9,.0f} rows/s  (baseline)")
        fdw_copy = await timed_copy(coordinator, "fdw_entries", records)
        assert await count(coordinator, "fdw_entries") == rows
        print(
            f"(b) COPY through foreign parts   {rows / fdw_copy:>9,.0f} rows/s  "
            f"{local / fdw_copy:.2f}x the baseline"
        )
        await truncate(nodes)
        fdw_insert = await timed_insert(coordinator, records)
        assert await count(coordinator, "fdw_entries") == rows
        print(
            f"(c) INSERT..unnest, batch 1000   {rows / fdw_insert:>9,.0f} rows/s  "
            f"{local / fdw_insert:.2f}x the baseline"
        )
        await truncate(nodes)
        routed = await timed_routed(coordinator, nodes, records)
        on_nodes = []
        for node in nodes:
            c = await connect(node)
            try:
                on_nodes.append(await count(c, "log_entries"))
            finally:
                await c.close()
        assert sum(on_nodes) == rows, on_nodes
        print(
            f"(d) COPY routed by the writer    {rows / routed:>9,.0f} rows/s  "
            f"{local / routed:.2f}x the baseline  (rows per node: {on_nodes})"
        )
        await coordinator.execute("ANALYZE log_entries")
        for node in nodes:
            c = await connect(node)
            try:
                await c.execute("ANALYZE log_entries")
            finally:
                await c.close()

        print(f"search (median of {RUNS}, ms)      one node   across nodes  ratio  rows")
        cases = [
            ("words, every source", search(q="killed"), None),
            ("words, one source", search(q="killed"), source_ids[:1]),
            ("newest page, one source", search(), source_ids[:1]),
            ("newest page, every source", search(), None),
        ]
        for label, query, sources in cases:
            one, found = await timed_search(coordinator, query, sources, "log_entries")
            spread, found_fdw = await timed_search(coordinator, query, sources, "fdw_entries")
            assert found == found_fdw, (label, found, found_fdw)
            print(f"  {label:<28} {one:>9.1f} {spread:>13.1f} {spread / one:>6.1f}  {found:>4}")
        sql, args = page_statement(search(q="killed"), source_ids[:1])
        plan = await coordinator.fetch(
            "EXPLAIN (VERBOSE) " + sql.replace("FROM log_entries le", "FROM fdw_entries le"),
            *args,
        )
        remote = [r[0].strip() for r in plan if "Remote SQL" in r[0] or "Foreign Scan" in r[0]]
        print("one source through the foreign partitions:", *remote[:4], sep="\n  ")
    finally:
        await coordinator.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    asyncio.run(main(parser.parse_args().rows))
