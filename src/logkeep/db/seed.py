"""Seed data per environment; every step is idempotent."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
import structlog

from logkeep.cache.query_cache import QueryCache
from logkeep.config import Environment, Settings
from logkeep.db.partitions import ensure_partitions
from logkeep.db.queries import q
from logkeep.db.repositories import UserRepository, copy_entries
from logkeep.db.types import Conn
from logkeep.domain.entry import EntryLimits, LogEntry
from logkeep.domain.samples import SOURCES, SampleEntry, SampleGenerator, fixed_test_entries

log = structlog.get_logger(__name__)

TEST_PASSWORDS = {
    "admin": "test-admin-pw",
    "analyst": "test-analyst-pw",
    "viewer": "test-viewer-pw",
}
SEED_BATCH = 10_000


@dataclass
class SeedReport:
    env: str
    sources_created: int = 0
    users_created: list[str] = field(default_factory=list)
    generated_passwords: dict[str, str] = field(default_factory=dict)
    entries_loaded: int = 0
    entries_already_loaded: bool = False


async def seed_sources(conn: Conn) -> tuple[int, dict[str, int]]:
    """The brief's sources, created unless present: (how many were created, ids by name)."""
    created = 0
    for spec in SOURCES:
        status = await conn.execute(
            q("upsert_source"),
            spec.name,
            spec.description,
            spec.source_type,
            spec.format_type,
            spec.parsing_rules,
            {"seeded": True},
        )
        created += int(status.split()[-1])
    rows = await conn.fetch(q("list_sources"), False)
    return created, {row["name"]: row["id"] for row in rows}


async def _seed_user(
    users: UserRepository,
    report: SeedReport,
    username: str,
    email: str,
    role: str,
    password: str | None,
) -> None:
    generated = not password
    secret = password or secrets.token_urlsafe(12)
    if await users.create_if_missing(username, email, secret, role) is None:
        return
    report.users_created.append(username)
    if generated:
        report.generated_passwords[username] = secret


async def _load_entries(
    pool: asyncpg.Pool,
    run_name: str,
    samples: list[SampleEntry],
    source_ids: dict[str, int],
    limits: EntryLimits,
    now: datetime,
    report: SeedReport,
) -> None:
    async with pool.acquire() as conn:
        if await conn.fetchval(q("seed_run_exists"), run_name) is not None:
            report.entries_already_loaded = True
            return
        await ensure_partitions(conn, {s.timestamp.date() for s in samples})
        entries = [
            LogEntry(
                s.message,
                source_ids[s.source],
                s.level,
                s.metadata,
                s.timestamp,
                limits=limits,
                now=now,
            )
            for s in samples
        ]
        try:
            async with conn.transaction():
                # Recording the run in the same transaction as the COPY makes a concurrent
                # second seed fail on the key and roll back: never two copies.
                await conn.execute(q("record_seed_run"), run_name, len(entries))
                for offset in range(0, len(entries), SEED_BATCH):
                    await copy_entries(conn, entries[offset : offset + SEED_BATCH])
        except asyncpg.UniqueViolationError:
            report.entries_already_loaded = True
            return
    report.entries_loaded = len(entries)


async def seed(
    pool: asyncpg.Pool,
    settings: Settings,
    env: Environment,
    *,
    rows: int | None = None,
    cache: QueryCache | None = None,
    now: datetime | None = None,
) -> SeedReport:
    now = now or datetime.now(UTC)
    report = SeedReport(env=env)
    users = UserRepository(pool)
    limits = EntryLimits()
    if env == "prod":
        admin_password = settings.admin_password.get_secret_value()
        if not admin_password:
            raise ValueError("LOGKEEP_ADMIN_PASSWORD must be set to seed prod")
        await _seed_user(
            users, report, settings.admin_username, settings.admin_email, "admin", admin_password
        )
        return report

    async with pool.acquire() as conn:
        report.sources_created, source_ids = await seed_sources(conn)
    for role in ("admin", "analyst", "viewer"):
        configured: str = getattr(settings, f"{role}_password").get_secret_value()
        password: str | None = configured or (TEST_PASSWORDS[role] if env == "test" else None)
        username = settings.admin_username if role == "admin" else role
        email = settings.admin_email if role == "admin" else f"{role}@logkeep.local"
        await _seed_user(users, report, username, email, role, password)

    run_name = "test-entries" if env == "test" else "dev-entries"
    async with pool.acquire() as conn:
        # Checked before generating: a second start should not build 100,000 entries to
        # throw them away. The load below checks again, in its transaction.
        report.entries_already_loaded = (
            await conn.fetchval(q("seed_run_exists"), run_name) is not None
        )
    if not report.entries_already_loaded:
        if env == "test":
            samples = fixed_test_entries(now)
        else:
            count = settings.seed_rows if rows is None else rows
            samples = SampleGenerator().generate(count, end=now)
        if samples:
            await _load_entries(pool, run_name, samples, source_ids, limits, now, report)
    if report.entries_loaded:
        async with pool.acquire() as conn:
            # Fresh statistics, so the first queries get good plans (autovacuum's
            # thresholds never analyse a table of three sources).
            await conn.execute("ANALYZE log_sources, log_entries, log_metrics")
    if cache is not None and report.entries_loaded:
        await cache.invalidate_sources(sorted(source_ids.values()))
    log.info("seeded", env=env, entries=report.entries_loaded, users=report.users_created)
    return report
