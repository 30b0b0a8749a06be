"""Operating the storage tiers: `logkeep db compact`, `logkeep stats storage`, /metrics
and `logkeep doctor`, run as an operator runs them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson

from logkeep.config import Settings
from logkeep.db.compaction import CompactionStatus, compact_in_background
from logkeep.db.database import Database
from logkeep.db.partitions import ensure_partitions
from logkeep.db.repositories import LogRepository
from logkeep.doctor import Status, judge_compaction
from tests.integration.test_cli import clean_env, run_cli


def cli_env(settings: Settings) -> dict[str, str]:
    assert settings.database_url and settings.redis_url
    return clean_env(
        LOGKEEP_ENV="test",
        LOGKEEP_DATABASE_URL=settings.database_url,
        LOGKEEP_REDIS_URL=settings.redis_url,
    )


async def old_rows(db: Database, log_repo: LogRepository, count: int = 300) -> None:
    now = datetime.now(UTC)
    async with db.pool.acquire() as conn:
        await ensure_partitions(conn, {(now + timedelta(days=d)).date() for d in (-1, 0, 1)})
    await log_repo.save_many(
        {
            "source_id": 1 + n % 3,
            "message": f"GET /old/{n}",
            "timestamp": now - timedelta(hours=3, seconds=n),
        }
        for n in range(count)
    )


async def test_db_compact_and_stats_storage_from_the_command_line(
    settings: Settings, db: Database, log_repo: LogRepository, tmp_path: Path
) -> None:
    await old_rows(db, log_repo)
    env = cli_env(settings)
    compacted = await run_cli("db", "compact", env=env, cwd=tmp_path)
    assert compacted.returncode == 0, compacted
    moved = int(compacted.stdout.split()[1].replace(",", ""))
    assert moved >= 300  # the old rows, and the test seed's rows in closed slices
    again = await run_cli("db", "compact", env=env, cwd=tmp_path)
    assert "compacted 0 events" in again.stdout
    report = await run_cli("stats", "storage", "--json", env=env, cwd=tmp_path)
    assert report.returncode == 0, report
    body = orjson.loads(report.stdout)
    tiers = {(r["tier"], r["source"]): r for r in body["tiers"]}
    assert tiers[("compressed", "(all)")]["events"] == moved
    assert tiers[("compressed", "(all)")]["bytes_per_event"] > 0
    assert tiers[("hot", "(all)")]["events"] == 360 - moved  # with the seed's 60
    assert body["compaction_lag_s"] == 0
    table = await run_cli("stats", "storage", env=env, cwd=tmp_path)
    assert "compressed" in table.stdout and "nginx_access" in table.stdout


async def test_metrics_show_compaction_lag_and_chunks(
    client: httpx.AsyncClient, db: Database, log_repo: LogRepository
) -> None:
    await old_rows(db, log_repo)
    async with db.pool.acquire() as conn:
        report = await compact_in_background(
            conn, slice_length=timedelta(minutes=15), grace=timedelta(minutes=2), budget_s=30
        )
    assert report.events >= 300
    text = (await client.get("/metrics")).text
    assert "logkeep_compaction_lag_seconds 0.0" in text
    assert f"logkeep_chunk_events {float(report.events)}" in text
    chunks = next(line for line in text.splitlines() if line.startswith("logkeep_chunks "))
    assert float(chunks.split()[1]) >= 3


def test_doctor_warns_when_compaction_falls_behind(settings: Settings) -> None:
    waiting = datetime(2026, 1, 1, tzinfo=UTC)
    behind = judge_compaction(CompactionStatus(7200.0, waiting, 5, 5000), settings)
    assert behind.status is Status.WARN
    assert "behind by 7,200 s" in behind.detail and behind.fix and "db compact" in behind.fix
    fine = judge_compaction(CompactionStatus(0.0, None, 5, 5000), settings)
    assert fine.status is Status.OK


async def test_an_admin_sets_a_source_retention_and_reads_storage(
    client: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    too_long = await client.put(
        "/api/v1/sources/2/retention", json={"days": settings.retention_days}
    )
    assert too_long.status_code == 422
    assert "fewer than the global retention" in too_long.json()["detail"]
    assert (await client.put("/api/v1/sources/999/retention", json={"days": 3})).status_code == 404
    done = await client.put("/api/v1/sources/2/retention", json={"days": 3})
    assert done.status_code == 200, done.text
    assert done.json() == {"source_id": 2, "source": "app_errors", "retention_days": 3}
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT retention_days FROM log_sources WHERE id = 2") == 3
        assert (
            await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'source_retention'")
            == 1
        )
    cleared = await client.put("/api/v1/sources/2/retention", json={"days": None})
    assert cleared.json()["retention_days"] is None
    body = (await client.get("/api/v1/storage")).json()
    assert {r["tier"] for r in body["tiers"]} == {"hot", "compressed"}
    assert body["compaction_lag_s"] >= 0
