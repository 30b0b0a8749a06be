"""What each index on log_entries costs at ingest, measured in one run.

Loads the same realistic rows with binary COPY (5,000-row batches, one transaction each)
into variants of the log_entries table, one partitioned table per variant with one daily
partition per day of data, and prints rows/s, the ratio to the bare table, and bytes per row
on disk. Run with a PostgreSQL to use, or let it start an embedded one:

    .venv/bin/python bench/index_costs.py [--rows 200000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from datetime import UTC, date, datetime, timedelta

import asyncpg

from logkeep.db.database import _init_connection
from logkeep.domain.entry import EntryLimits, LogEntry
from logkeep.domain.samples import SampleGenerator
from logkeep.embedded import EmbeddedPostgres, temporary_root

# The row-level full-text index of migration 0002 (dropped by 0006: the compressed tier
# has a chunk index instead), measured here as it was.
FULLTEXT_DOCUMENT = "to_tsvector('simple'::regconfig, left(message, 131072))"

Record = tuple[int, datetime, str, str, bytes]  # LogEntry.copy_record()

TABLE = """
CREATE TABLE {t} (
    id bigint NOT NULL DEFAULT nextval('bench_seq'), source_id integer NOT NULL,
    "timestamp" timestamptz NOT NULL, level text NOT NULL, message text NOT NULL,
    metadata jsonb NOT NULL DEFAULT '{{}}', ingested_at timestamptz NOT NULL DEFAULT now()
    {extra_columns}
) PARTITION BY RANGE ("timestamp")
"""
# name -> (extra DDL after the table exists, extra column clause)
VARIANTS: dict[str, tuple[list[str], str]] = {
    "bare (no index)": ([], ""),
    "pk (source, ts, id)": (['ALTER TABLE {t} ADD PRIMARY KEY (source_id, "timestamp", id)'], ""),
    "brin ts": (['CREATE INDEX ON {t} USING brin ("timestamp") WITH (pages_per_range=32)'], ""),
    "gin metadata path_ops": (["CREATE INDEX ON {t} USING gin (metadata jsonb_path_ops)"], ""),
    "gin metadata jsonb_ops": (["CREATE INDEX ON {t} USING gin (metadata)"], ""),
    "gin path_ops fastupdate off": (
        ["CREATE INDEX ON {t} USING gin (metadata jsonb_path_ops) WITH (fastupdate = off)"],
        "",
    ),
    "gin path_ops pending 32MB": (
        [
            "CREATE INDEX ON {t} USING gin (metadata jsonb_path_ops) "
            "WITH (gin_pending_list_limit = 32768)"
        ],
        "",
    ),
    # Full-text (0002_search.sql): the expression is the one the search query uses.
    "gin tsvector": ([f"CREATE INDEX ON {{t}} USING gin ({FULLTEXT_DOCUMENT})"], ""),
    "gin tsvector pending 32MB": (
        [
            f"CREATE INDEX ON {{t}} USING gin ({FULLTEXT_DOCUMENT}) "
            "WITH (gin_pending_list_limit = 32768)"
        ],
        "",
    ),
    "gin tsvector fastupdate off": (
        [f"CREATE INDEX ON {{t}} USING gin ({FULLTEXT_DOCUMENT}) WITH (fastupdate = off)"],
        "",
    ),
    "fk source_id": (["ALTER TABLE {t} ADD FOREIGN KEY (source_id) REFERENCES bench_sources"], ""),
    "logkeep (pk+brin+gin path_ops)": (
        [
            'ALTER TABLE {t} ADD PRIMARY KEY (source_id, "timestamp", id)',
            'CREATE INDEX ON {t} USING brin ("timestamp") WITH (pages_per_range=32)',
            "CREATE INDEX ON {t} USING gin (metadata jsonb_path_ops)",
        ],
        "",
    ),
    "logkeep 0001 (as migrated)": (
        [
            'ALTER TABLE {t} ADD PRIMARY KEY (source_id, "timestamp", id)',
            'CREATE INDEX ON {t} USING brin ("timestamp") WITH (pages_per_range=32)',
            "CREATE INDEX ON {t} USING gin (metadata jsonb_path_ops) "
            "WITH (gin_pending_list_limit = 32768)",
        ],
        "",
    ),
    "logkeep 0001+0002 (as migrated)": (
        [
            'ALTER TABLE {t} ADD PRIMARY KEY (source_id, "timestamp", id)',
            'CREATE INDEX ON {t} USING brin ("timestamp") WITH (pages_per_range=32)',
            "CREATE INDEX ON {t} USING gin (metadata jsonb_path_ops) "
            "WITH (gin_pending_list_limit = 32768)",
            f"CREATE INDEX ON {{t}} USING gin ({FULLTEXT_DOCUMENT}) "
            "WITH (gin_pending_list_limit = 4096)",
        ],
        "",
    ),
    "logkeep 0001+0002, tsvector 32MB": (
        [
            'ALTER TABLE {t} ADD PRIMARY KEY (source_id, "timestamp", id)',
            'CREATE INDEX ON {t} USING brin ("timestamp") WITH (pages_per_range=32)',
            "CREATE INDEX ON {t} USING gin (metadata jsonb_path_ops) "
            "WITH (gin_pending_list_limit = 32768)",
            f"CREATE INDEX ON {{t}} USING gin ({FULLTEXT_DOCUMENT}) "
            "WITH (gin_pending_list_limit = 32768)",
        ],
        "",
    ),
    "brief-like (uuid pk + 4 btrees)": (
        [
            'ALTER TABLE {t} ADD PRIMARY KEY (uid, "timestamp")',
            'CREATE INDEX ON {t} ("timestamp")',
            "CREATE INDEX ON {t} (source_id)",
            "CREATE INDEX ON {t} (level)",
            'CREATE INDEX ON {t} (source_id, "timestamp")',
        ],
        ", uid uuid NOT NULL DEFAULT gen_random_uuid()",
    ),
}


def make_records(rows: int) -> list[Record]:
    end = datetime.now(UTC)
    limits = EntryLimits(max_age=timedelta(days=30))
    ids = {"nginx_access": 1, "app_errors": 2, "db_slow_queries": 3}
    return [
        LogEntry(
            s.message, ids[s.source], s.level, s.metadata, s.timestamp, limits=limits, now=end
        ).copy_record()
        for s in SampleGenerator(seed=11).generate(rows, end=end, days=3)
    ]


async def load(conn: asyncpg.Connection, table: str, records: list[Record]) -> float:
    """Seconds to COPY `records` into `table` in 5,000-row transactions."""
    started = time.perf_counter()
    for offset in range(0, len(records), 5000):
        async with conn.transaction():
            await conn.copy_records_to_table(
                table,
                records=records[offset : offset + 5000],
                columns=["source_id", "timestamp", "level", "message", "metadata"],
                schema_name="bench",
            )
    return time.perf_counter() - started


async def create_variant(
    conn: asyncpg.Connection, table: str, ddl: list[str], extra_columns: str, days: list[date]
) -> None:
    await conn.execute(f"DROP TABLE IF EXISTS {table}")
    await conn.execute(TABLE.format(t=table, extra_columns=extra_columns))
    for day in days:
        low = datetime(day.year, day.month, day.day, tzinfo=UTC)
        await conn.execute(
            f"CREATE TABLE {table}_{day:%Y%m%d} PARTITION OF {table} "
            f"FOR VALUES FROM ('{low.isoformat()}') TO "
            f"('{(low + timedelta(days=1)).isoformat()}')"
        )
    for statement in ddl:
        await conn.execute(statement.format(t=table))


async def run(url: str, rows: int, rounds: int) -> None:
    records = make_records(rows)
    days = sorted({r[1].date() for r in records})
    conn = await asyncpg.connect(url)
    await _init_connection(conn)
    await conn.execute("DROP SCHEMA IF EXISTS bench CASCADE; CREATE SCHEMA bench")
    await conn.execute("SET search_path = bench, public")
    await conn.execute("CREATE SEQUENCE bench_seq")
    await conn.execute("CREATE TABLE bench_sources (id integer PRIMARY KEY)")
    await conn.execute("INSERT INTO bench_sources VALUES (1), (2), (3)")
    raw_bytes = sum(len(r[3]) + len(r[4]) for r in records)
    print(f"{rows} rows, {raw_bytes / rows:.0f} bytes of message+metadata per row")
    print(f"{rounds} rounds over all variants; each figure is the best round")
    print(f"{'variant':34} {'rows/s':>9} {'vs bare':>8} {'bytes/row':>10}")
    best: dict[str, float] = {}
    sizes: dict[str, int] = {}
    for _ in range(rounds):
        for n, (name, (ddl, extra_columns)) in enumerate(VARIANTS.items()):
            table = f"v{n}"
            await create_variant(conn, table, ddl, extra_columns, days)
            elapsed = await load(conn, table, records)
            best[name] = max(best.get(name, 0.0), rows / elapsed)
            sizes[name] = await conn.fetchval(
                "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_inherits i "
                "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = $1::regclass",
                f"bench.{table}",
            )
            await conn.execute(f"DROP TABLE {table}")
    baseline = best["bare (no index)"]
    for name, rate in best.items():
        print(f"{name:34} {rate:9.0f} {rate / baseline:8.2f} {sizes[name] / rows:10.0f}")
    await conn.execute("DROP SCHEMA bench CASCADE")
    await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    if args.database_url:
        asyncio.run(run(args.database_url, args.rows, args.rounds))
        return
    with temporary_root("lk-bench-") as root:
        server = EmbeddedPostgres(root / "pg")
        try:
            server.start()
            asyncio.run(run(server.dsn(), args.rows, args.rounds))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
