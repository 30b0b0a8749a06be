"""The cost of alerting: 200 rules evaluated once a minute over a large data set.

Loads N rows over 7 days as `logkeep bench query` does (closed slices compacted, the last
15 minutes in the hot tier), makes 200 rules
of every kind the data allows (thresholds on sources and levels, some grouped by source;
full-text words; groupings by a metadata key; error ratios with a minimum volume; hosts
going quiet), then evaluates all of them at each of the last few minutes' ticks, four at
a time as the scheduler does. Prints, per round of 200 evaluations, the wall time and the
CPU seconds of this process (the evaluator) and of PostgreSQL's processes, and the share
of one core that a round every minute takes. The baseline, in the same run, is the same
rules with the rollups disabled (every count from log_entries).

    .venv/bin/python bench/alerts.py [--rows 2000000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from logkeep.alerting import counts
from logkeep.alerting.evaluator import Evaluator
from logkeep.alerting.service import evaluator_config
from logkeep.alerting.store import RuleStore
from logkeep.api.alert_models import AlertRuleCreate, stored_values
from logkeep.bench.query import load_as_live
from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.domain.alert_rules import tick_floor
from logkeep.embedded import EmbeddedStack, temporary_root

RULES = 200
MINUTE = timedelta(minutes=1)
CLOCK = os.sysconf("SC_CLK_TCK")


def rule_bodies(sources: dict[str, int]) -> list[dict[str, Any]]:
    """200 rules, cycling through the kinds and queries a team would write."""
    nginx, app, slow = sources["nginx_access"], sources["app_errors"], sources["db_slow_queries"]
    words = ["timeout", "declined", "refused", "deadlock", "payment", "inventory", "cart"]
    shapes: list[dict[str, Any]] = [
        {"sources": [app], "min_level": "ERROR", "threshold": 50},
        {"sources": [nginx, app, slow], "min_level": "WARN", "group_by": "source",
         "threshold": 100},
        {"sources": [nginx], "level": ["ERROR"], "threshold": 10, "window_seconds": 900},
        {"sources": [app], "query": words[0], "threshold": 5},
        {"sources": [nginx], "metadata": {"status": "503"}, "threshold": 3},
        {"sources": [app], "group_by": "metadata.host", "threshold": 20},
        {"kind": "ratio", "sources": [nginx], "threshold": 0.05, "min_volume": 100},
        {"kind": "absence", "sources": [app], "min_level": "DEBUG", "group_by": "metadata.host",
         "seen_lookback_seconds": 3600, "threshold": 1},
    ]  # fmt: skip
    bodies = []
    for i in range(RULES):
        body = {"window_seconds": 300, "interval_seconds": 60, **shapes[i % len(shapes)]}
        if "query" in body:
            body["query"] = words[i % len(words)]
        bodies.append({"name": f"rule {i:03d}", **body})
    return bodies


def postgres_cpu_s(data_dir: Path) -> float:
    """CPU seconds used so far by every PostgreSQL process of this benchmark's server."""
    total = 0
    marker = str(data_dir).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            if b"postgres" not in cmdline and b"postmaster" not in cmdline:
                continue
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            root_cmd = Path(f"/proc/{parent}/cmdline").read_bytes()
            if marker not in cmdline and marker not in root_cmd:
                continue
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, ValueError, IndexError):
            continue
    return total / CLOCK


async def evaluate_round(evaluator: Evaluator, rule_ids: list[int], tick: datetime) -> None:
    slots = asyncio.Semaphore(4)

    async def one(rule_id: int) -> None:
        async with slots:
            assert await evaluator.run_tick(rule_id, tick)

    await asyncio.gather(*(one(r) for r in rule_ids))


async def measure(
    db: Database, settings: Settings, rule_ids: list[int], ticks: list[datetime], root: Path
) -> tuple[float, float, float]:
    evaluator = Evaluator(db.pool, evaluator_config(settings, "bench"))
    wall = python = postgres = 0.0
    for tick in ticks:
        started, cpu, pg = time.perf_counter(), time.process_time(), postgres_cpu_s(root)
        await evaluate_round(evaluator, rule_ids, tick)
        wall += time.perf_counter() - started
        python += time.process_time() - cpu
        postgres += postgres_cpu_s(root) - pg
    n = len(ticks)
    return wall / n, python / n, postgres / n


async def run(settings: Settings, rows: int, rounds: int, root: Path) -> None:
    async with Database(settings) as db:
        await load_as_live(db, settings, rows)
        async with db.pool.acquire() as conn:
            sources = {
                r["name"]: r["id"] for r in await conn.fetch("SELECT id, name FROM log_sources")
            }
        store = RuleStore(db.pool)
        rule_ids = []
        for body in rule_bodies(sources):
            checked = AlertRuleCreate.model_validate({**body})
            values, channels = stored_values(checked, checked.name, None, timedelta(days=30))
            rule_ids.append(await store.create(values, channels))
        now = tick_floor(datetime.now(UTC), MINUTE)
        all_ticks = [now - (2 * rounds - i) * MINUTE for i in range(2 * rounds)]
        results = {}
        eligible = counts.rollup_eligible
        counts.rollup_eligible = lambda query, group_by: False
        results["without rollups"] = await measure(db, settings, rule_ids, all_ticks[:rounds], root)
        counts.rollup_eligible = eligible
        results["logkeep"] = await measure(db, settings, rule_ids, all_ticks[rounds:], root)
    print(f"{RULES} rules, one round per minute; per round (mean of {rounds}):")
    print(f"{'':<18}{'wall s':>9}{'evaluator CPU s':>17}{'PostgreSQL CPU s':>18}{'core share':>12}")
    for name, (wall, python, pg) in results.items():
        print(f"{name:<18}{wall:>9.2f}{python:>17.2f}{pg:>18.2f}{(python + pg) / 60:>12.1%}")
    base, ours = results["without rollups"], results["logkeep"]
    ratio = (ours[1] + ours[2]) / (base[1] + base[2])
    print(f"CPU per round, logkeep / without rollups: {ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with temporary_root("lk-bench-alerts-") as root:
        stack = EmbeddedStack(root, ephemeral=True)
        stack.start()
        try:
            settings = Settings(
                _env_file=None,
                env="test",
                database_url=stack.postgres.dsn("postgres"),
                redis_url=stack.redis.url(),
                maintenance_interval_s=0,
                alerts_enabled=False,
                pg_pool_max_size=8,
            )
            asyncio.run(run(settings, args.rows, args.rounds, root))
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
