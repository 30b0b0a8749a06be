"""Least privilege in PostgreSQL: the role that runs migrations owns the schema; the
application connects as a role with only the DML it uses; analysts' own SQL runs as a
read-only role that sees log data but no users, keys or audit trail.

Roles belong to the cluster, privileges to this database: `logkeep db roles` creates
the roles when missing and grants on the current database, and is safe to run again
(after each migration, for new tables)."""

from __future__ import annotations

import re

from logkeep.db.types import Conn

ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

# What the application does to each table, and nothing more: entries, rollups and the
# audit trail are never updated by it (retention drops partitions through a SECURITY
# DEFINER function), and it never runs DDL. Compaction deletes the hot rows it moved into
# chunks, and per-source retention deletes a source's old rows and chunks.
APP_PRIVILEGES: dict[str, str] = {
    "log_entries": "SELECT, INSERT, DELETE",
    "log_chunks": "SELECT, INSERT, DELETE",
    "log_metrics": "SELECT, INSERT, UPDATE, DELETE",  # rollups past retention
    "log_sources": "SELECT, INSERT, UPDATE",
    "users": "SELECT, INSERT, UPDATE",
    "user_source_grants": "SELECT, INSERT, DELETE",
    "api_keys": "SELECT, INSERT, UPDATE",
    "api_key_sources": "SELECT, INSERT",
    "saved_searches": "SELECT, INSERT, DELETE",
    "alert_rules": "SELECT, INSERT, UPDATE, DELETE",
    "alert_channels": "SELECT, INSERT, UPDATE, DELETE",
    "alert_rule_channels": "SELECT, INSERT, DELETE",
    "alert_rule_status": "SELECT, INSERT, UPDATE",
    "alert_states": "SELECT, INSERT, UPDATE, DELETE",
    "alert_events": "SELECT, INSERT, DELETE",  # history past retention
    "alert_notifications": "SELECT, INSERT, UPDATE, DELETE",  # the outbox, pruned
    "alert_silences": "SELECT, INSERT, DELETE",
    "audit_log": "SELECT, INSERT",
    "ingest_ledger": "SELECT, INSERT, DELETE",
    "ingest_dead_letters": "SELECT, INSERT",
    "seed_runs": "SELECT, INSERT",
    "schema_migrations": "SELECT",
    # Maintenance counts stray rows here; it moves them through ensure_log_partition.
    "log_entries_default": "SELECT",
}
READONLY_TABLES = ("log_entries", "log_chunks", "log_sources", "log_metrics", "alert_rules")
DEFINER_FUNCTIONS = ("ensure_log_partition(date)", "drop_log_partition(date)")
DAY_PARTITIONS_SQL = """
SELECT quote_ident(c.relname) AS name
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent IN ('log_entries'::regclass, 'log_chunks'::regclass)
  AND c.relname <> 'log_entries_default'
"""


def quoted(name: str) -> str:
    if not ROLE_NAME.fullmatch(name):
        raise ValueError(f"role name {name!r}: lower-case letters, digits and _, at most 63")
    return f'"{name}"'


async def grant_roles(conn: Conn, app_role: str, readonly_role: str) -> None:
    """Create the roles if missing (LOGIN, no password: set one with ALTER ROLE, or use
    your platform's IAM) and grant exactly the privileges above on this database."""
    app, readonly = quoted(app_role), quoted(readonly_role)
    database = await conn.fetchval("SELECT quote_ident(current_database())")
    async with conn.transaction():
        for role in (app_role, readonly_role):
            exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
            if not exists:
                await conn.execute(f"CREATE ROLE {quoted(role)} LOGIN")
        await conn.execute(f"GRANT CONNECT ON DATABASE {database} TO {app}, {readonly}")
        await conn.execute(f"GRANT USAGE ON SCHEMA public TO {app}, {readonly}")
        for table, privileges in APP_PRIVILEGES.items():
            await conn.execute(f"REVOKE ALL ON {table} FROM {app}")
            await conn.execute(f"GRANT {privileges} ON {table} TO {app}")
        # Day partitions take their rows through log_entries; default privileges (or
        # an earlier grant) must not let the roles write to one directly.
        for partition in await conn.fetch(DAY_PARTITIONS_SQL):
            await conn.execute(f"REVOKE ALL ON {partition['name']} FROM {app}, {readonly}")
        await conn.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {app}")
        for function in DEFINER_FUNCTIONS:
            # Functions are executable by everyone by default; these run as the owner.
            await conn.execute(f"REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC")
            await conn.execute(f"GRANT EXECUTE ON FUNCTION {function} TO {app}")
        await conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {readonly}")
        for table in READONLY_TABLES:
            await conn.execute(f"GRANT SELECT ON {table} TO {readonly}")
