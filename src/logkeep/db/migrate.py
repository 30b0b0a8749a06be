"""Versioned SQL migrations: applied in order, recorded, locked, checksummed.

A small runner rather than alembic or yoyo: logkeep speaks to PostgreSQL only through
asyncpg, and neither tool detects a migration file edited after it was applied (alembic
records revision ids, yoyo a hash of the migration id). Here each applied file's SHA-256
is recorded and compared on every run, a session advisory lock serialises concurrent
runners, and each migration commits together with its record or not at all.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources

import asyncpg

from logkeep.db.types import Conn

# Key of the advisory lock held while migrating (an arbitrary constant: "logkeep" in hex).
MIGRATION_LOCK_KEY = 0x6C6F676B656570
FILE_PATTERN = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")

CREATE_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


class MigrationError(RuntimeError):
    """The migration files or the database's record of them are inconsistent."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@cache
def load_migrations() -> tuple[Migration, ...]:
    """The migration files shipped in the package, in version order; read once per process
    (readiness checks compare against them on every probe)."""
    migrations: dict[int, Migration] = {}
    for entry in resources.files("logkeep.db.migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = FILE_PATTERN.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file {entry.name} does not match NNNN_name.sql")
        version = int(match["version"])
        if version in migrations:
            raise MigrationError(f"two migration files share version {version:04d}")
        migrations[version] = Migration(version, match["name"], entry.read_text("utf-8"))
    return tuple(migrations[v] for v in sorted(migrations))


@dataclass(frozen=True)
class MigrationStatus:
    applied: list[int]
    pending: list[Migration]

    @property
    def current(self) -> int:
        return max(self.applied, default=0)


async def _applied(conn: Conn) -> dict[int, str]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, checksum FROM schema_migrations")
    return {row["version"]: row["checksum"] for row in rows}


def _verify(applied: dict[int, str], migrations: Sequence[Migration]) -> list[Migration]:
    """Return the pending migrations; raise if the record and the files disagree."""
    by_version = {m.version: m for m in migrations}
    for version, checksum in sorted(applied.items()):
        migration = by_version.get(version)
        if migration is None:
            raise MigrationError(
                f"the database has migration {version:04d} applied but no such file ships "
                "with this logkeep; it was made by a newer release"
            )
        if migration.checksum != checksum:
            raise MigrationError(
                f"migration {migration.filename} was edited after it was applied "
                f"(recorded sha256 {checksum[:12]}, file now {migration.checksum[:12]}); "
                "restore the file and put the change in a new migration"
            )
    return [m for m in migrations if m.version not in applied]


async def status(conn: Conn) -> MigrationStatus:
    applied = await _applied(conn)
    pending = _verify(applied, load_migrations())
    return MigrationStatus(sorted(applied), pending)


async def migrate(conn: Conn) -> list[Migration]:
    """Apply pending migrations; safe to run twice and from two processes at once."""
    migrations = load_migrations()
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(CREATE_LEDGER)
        pending = _verify(await _applied(conn), migrations)
        for migration in pending:
            async with conn.transaction():
                try:
                    await conn.execute(migration.sql)
                except asyncpg.PostgresError as exc:
                    raise MigrationError(f"migration {migration.filename} failed: {exc}") from exc
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
        return pending
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
