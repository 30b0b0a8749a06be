"""`logkeep doctor`: check what operators get wrong, and say how to fix each.

`run_checks` looks at the settings, PostgreSQL and Redis and returns one `Check` per
question: ok, warn (worth knowing) or fail (something is wrong). `render` turns them into
text and an exit code, non-zero when any check failed. A store that cannot be reached is
one failure with its cause; the checks that need it are then left out.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from urllib.parse import unquote, urlsplit

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families
from redis.exceptions import AuthenticationError, NoPermissionError, RedisError

from logkeep.cache.client import close_client, is_cluster, make_client
from logkeep.cache.keys import Keys
from logkeep.cache.topology import judge_shard_spread, servers_info, shard_placement
from logkeep.config import MIN_PROD_SECRET_LENGTH, PLACEHOLDER_SECRETS, Environment, Settings
from logkeep.db import migrate
from logkeep.db.compaction import CompactionStatus, compaction_status
from logkeep.db.database import describe_pg_target, describe_redis_target, session_settings
from logkeep.db.partitions import existing_partition_days
from logkeep.db.queries import q
from logkeep.instance import running_instance

# A pool or a server with this share of its connections in use is near saturation.
SATURATION = 0.8
# Redis this close to maxmemory is about to evict (or, with noeviction, refuse writes).
MEMORY_PRESSURE = 0.9
CONNECT_TIMEOUT_S = 5.0
QUERY_TIMEOUT_S = 10.0

# Connections in use on the server, by anyone and by logkeep (application_name), against
# what non-superusers may open. pg_stat_activity shows every session's type to any role.
CONNECTIONS_SQL = """
SELECT current_setting('max_connections')::int
         - current_setting('superuser_reserved_connections')::int AS usable,
       count(*) AS used,
       count(*) FILTER (WHERE application_name = $1) AS ours
FROM pg_stat_activity
WHERE backend_type = 'client backend'
"""
# Before the first migration there is nothing to check partitions of.
LOG_TABLE_EXISTS_SQL = "SELECT to_regclass('log_entries') IS NOT NULL"


class Status(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


def ok(name: str, detail: str) -> Check:
    return Check(name, Status.OK, detail)


def warn(name: str, detail: str, fix: str) -> Check:
    return Check(name, Status.WARN, detail, fix)


def fail(name: str, detail: str, fix: str) -> Check:
    return Check(name, Status.FAIL, detail, fix)


async def run_checks(settings: Settings, *, today: date | None = None) -> list[Check]:
    """Every check, in a stable order: secrets, the running `logkeep up`, PostgreSQL, Redis.
    Store URLs are checked as given: the CLI fills unset ones from the running `up`."""
    today = today or datetime.now(UTC).date()
    postgres, redis = await asyncio.gather(postgres_checks(settings, today), redis_checks(settings))
    instance = check_instance(settings)
    return [check_secrets(settings), *([instance] if instance else []), *postgres, *redis]


def render(checks: Sequence[Check]) -> tuple[str, int]:
    """The report as plain text, and the exit code: 1 when any check failed, else 0."""
    width = max((len(c.name) for c in checks), default=0)
    lines: list[str] = []
    for check in checks:
        lines.append(f"{check.status.value:<4}  {check.name:<{width}}  {check.detail}")
        if check.fix and check.status is not Status.OK:
            lines.append(f"{'':<4}  {'':<{width}}  fix: {check.fix}")
    failed = sum(c.status is Status.FAIL for c in checks)
    warned = sum(c.status is Status.WARN for c in checks)
    lines.append(
        f"{failed} problem{'s' * (failed != 1)}, {warned} warning{'s' * (warned != 1)}"
        if failed or warned
        else "everything looks right"
    )
    return "\n".join(lines), 1 if failed else 0


# ---------------------------------------------------------------------------------------
# Secrets


def weak_secret(value: str) -> str | None:
    """Why a secret is unfit for production, or None; the rules of Settings."""
    if value.strip().lower() in PLACEHOLDER_SECRETS:
        return "empty or a placeholder"
    if len(value) < MIN_PROD_SECRET_LENGTH:
        return f"shorter than {MIN_PROD_SECRET_LENGTH} characters"
    return None


def url_password(url: str | None) -> str | None:
    if not url:
        return None
    password = urlsplit(url).password
    return None if password is None else unquote(password)


def check_secrets(settings: Settings) -> Check:
    if settings.env != "prod":
        return ok("secrets", f"not enforced with LOGKEEP_ENV={settings.env}")
    problems = []
    for name in ("secret_key", "admin_password"):
        reason = weak_secret(getattr(settings, name).get_secret_value())
        if reason:
            problems.append(f"LOGKEEP_{name.upper()} is {reason}")
    for name in ("database_url", "redis_url"):
        password = url_password(getattr(settings, name))
        if password is not None and (reason := weak_secret(password)):
            problems.append(f"the password in LOGKEEP_{name.upper()} is {reason}")
    if problems:
        return fail(
            "secrets",
            "; ".join(problems),
            "generate each with `openssl rand -hex 24` and set it in .env (see .env.example, "
            "or deploy/make-env.sh); change a store's password there too",
        )
    return ok("secrets", "no empty, placeholder or short secret")


def unset_store(name: str, variable: str, settings: Settings) -> Check:
    if settings.env == "prod":
        return fail(
            name, f"{variable} is not set", f"set {variable}: prod runs no embedded servers"
        )
    return warn(
        name,
        f"{variable} is not set and no `logkeep up` is running for the data directory "
        f"{settings.resolved_data_dir}: there is no server to check",
        f"start `logkeep up` (doctor then checks its servers), or set {variable}",
    )


def check_instance(settings: Settings) -> Check | None:
    """The running `logkeep up` of the data directory, when there is one."""
    instance = running_instance(settings.resolved_data_dir)
    if instance is None:
        return None
    return ok(
        "instance",
        f"logkeep up (pid {instance.pid}) of {instance.data_dir}, API {instance.api_url}, "
        f"authentication {'on' if instance.auth_required else 'off'}",
    )


# ---------------------------------------------------------------------------------------
# PostgreSQL


# The first matching type decides the advice (subclasses before their parents).
PG_CONNECT_FIXES: tuple[tuple[type[BaseException], str], ...] = (
    (
        asyncpg.InvalidPasswordError,
        "check the password in LOGKEEP_DATABASE_URL; the compose stack sets the role's "
        "password from LOGKEEP_DB_PASSWORD on the first start only (later: ALTER ROLE "
        "logkeep PASSWORD '...')",
    ),
    (
        asyncpg.InvalidAuthorizationSpecificationError,
        "the role does not exist, or pg_hba.conf has no line for this user, database and "
        "address: add one with scram-sha-256 (see deploy/postgres/pg_hba.conf)",
    ),
    (
        asyncpg.InvalidCatalogNameError,
        "the database in LOGKEEP_DATABASE_URL does not exist: create it (CREATE DATABASE "
        "logkeep OWNER logkeep) or correct the name",
    ),
    (
        asyncpg.TooManyConnectionsError,
        "every connection slot is taken: raise max_connections, or lower "
        "LOGKEEP_PG_POOL_MAX_SIZE times the number of logkeep processes",
    ),
    (
        asyncpg.CannotConnectNowError,
        "PostgreSQL is starting up or recovering: run doctor again in a minute",
    ),
    (
        TimeoutError,
        "nothing answered in time: check host and port in LOGKEEP_DATABASE_URL and any "
        "firewall between here and there",
    ),
    (
        OSError,
        "is PostgreSQL running and listening there? Check host and port in "
        "LOGKEEP_DATABASE_URL, listen_addresses, and that this machine or container is on "
        "PostgreSQL's network",
    ),
)
PG_URL_FIX = "LOGKEEP_DATABASE_URL should look like postgresql://user:password@host:5432/logkeep"


def postgres_connect_fix(exc: BaseException) -> str:
    for kind, fix in PG_CONNECT_FIXES:
        if isinstance(exc, kind):
            return fix
    return PG_URL_FIX


async def postgres_checks(settings: Settings, today: date) -> list[Check]:
    if not settings.database_url:
        return [unset_store("postgres", "LOGKEEP_DATABASE_URL", settings)]
    target = describe_pg_target(settings.database_url)
    try:
        conn: asyncpg.Connection = await asyncpg.connect(
            settings.database_url,
            timeout=min(CONNECT_TIMEOUT_S, settings.connect_deadline_s),
            command_timeout=QUERY_TIMEOUT_S,
            server_settings=session_settings(settings, "doctor"),
        )
    except (
        OSError,
        TimeoutError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        ValueError,
    ) as exc:
        return [
            fail(
                "postgres",
                f"cannot connect to {target}: {type(exc).__name__}: {exc}",
                postgres_connect_fix(exc),
            )
        ]
    try:
        version = conn.get_server_version()
        checks = [
            ok("postgres", f"connected to {target} (PostgreSQL {version.major}.{version.minor})")
        ]
        schema = await check_schema(conn)
        checks.append(schema)
        if await conn.fetchval(LOG_TABLE_EXISTS_SQL):
            checks.append(await check_partitions(conn, settings, today))
            checks.append(await check_default_partition(conn, settings))
            if await conn.fetchval("SELECT to_regclass('log_chunks') IS NOT NULL"):
                checks.append(await check_compaction(conn, settings))
        checks.append(await check_connections(conn, settings))
        return checks
    finally:
        await conn.close()


async def check_schema(conn: asyncpg.Connection) -> Check:
    try:
        state = await migrate.status(conn)
    except migrate.MigrationError as exc:
        return fail(
            "schema",
            str(exc),
            "run the logkeep release that matches this database's migrations",
        )
    latest = migrate.load_migrations()[-1].version
    if state.pending:
        pending = ", ".join(m.filename for m in state.pending)
        return fail(
            "schema",
            f"at migration {state.current:04d}, the code expects {latest:04d} (pending: {pending})",
            "run `logkeep db migrate` (the compose `migrate` service does); when upgrading, "
            "migrate before starting the new API and workers",
        )
    return ok("schema", f"at migration {latest:04d}, as the code expects")


def missing_partition_days(existing: set[date], today: date, days_ahead: int) -> list[date]:
    """Today and the days ahead that have no partition."""
    wanted = [today + timedelta(days=n) for n in range(days_ahead + 1)]
    return [day for day in wanted if day not in existing]


async def check_partitions(conn: asyncpg.Connection, settings: Settings, today: date) -> Check:
    existing = set(await existing_partition_days(conn))
    missing = missing_partition_days(existing, today, settings.partition_days_ahead)
    if missing:
        days = ", ".join(day.isoformat() for day in missing)
        return fail(
            "partitions",
            f"no partition for {days}: entries of those days land in the DEFAULT partition",
            "run `logkeep db maintain`; every API process runs it every "
            f"LOGKEEP_MAINTENANCE_INTERVAL_S (here {settings.maintenance_interval_s} s; 0 "
            "turns it off), so check that an API is running with it on",
        )
    return ok(
        "partitions",
        f"today and the next {settings.partition_days_ahead} days have partitions "
        f"({len(existing)} daily partitions in all)",
    )


async def check_default_partition(conn: asyncpg.Connection, settings: Settings) -> Check:
    row = await conn.fetchrow(q("default_partition_rows"))
    assert row is not None  # an aggregate always returns one row
    if row["rows"]:
        return fail(
            "default partition",
            f"holds {row['rows']} rows ({row['oldest']:%Y-%m-%d %H:%M} .. "
            f"{row['newest']:%Y-%m-%d %H:%M} UTC): a partition was missing when they came",
            "run `logkeep db maintain`: it moves rows into their day's partition within "
            f"retention ({settings.retention_days} days). Rows it leaves are outside every "
            "partition: inspect them in log_entries_default, then delete them",
        )
    return ok("default partition", "empty")


def judge_compaction(status: CompactionStatus, settings: Settings) -> Check:
    """Compaction falls behind when a closed slice waits longer than the allowed lag."""
    held = f"{status.chunks:,} chunks hold {status.chunk_events:,} events"
    if status.lag_s > settings.compaction_max_lag_s:
        return warn(
            "compaction",
            f"behind by {status.lag_s:,.0f} s (oldest waiting event "
            f"{status.oldest_waiting:%Y-%m-%d %H:%M} UTC); {held}",
            "check that an API process runs with LOGKEEP_COMPACTION_INTERVAL_S above 0 (here "
            f"{settings.compaction_interval_s}) and look for compaction_failed in its log; "
            "`logkeep db compact` catches up now",
        )
    return ok("compaction", f"caught up (lag {status.lag_s:,.0f} s); {held}")


async def check_compaction(conn: asyncpg.Connection, settings: Settings) -> Check:
    status = await compaction_status(
        conn,
        slice_length=timedelta(seconds=settings.compaction_slice_s),
        grace=timedelta(seconds=settings.compaction_grace_s),
    )
    return judge_compaction(status, settings)


def judge_connections(
    *, usable: int, used: int, ours: int, pool_max: int, api_pool: tuple[int, int] | None
) -> Check:
    """Server slots in use, and the API's own pool (in use, size) when it could be read."""
    detail = f"{used} of {usable} PostgreSQL connections in use ({ours} by logkeep)"
    if api_pool is not None:
        detail += f"; the API's pool has {api_pool[0]} of {api_pool[1]} checked out"
    if used >= SATURATION * usable:
        return fail(
            "connections",
            detail,
            "raise max_connections, or lower LOGKEEP_PG_POOL_MAX_SIZE "
            f"(now {pool_max} per process) or the number of processes; past a few hundred "
            "connections put PgBouncer in front",
        )
    if api_pool is not None and api_pool[1] and api_pool[0] >= SATURATION * api_pool[1]:
        return fail(
            "connections",
            detail,
            "the API waits for connections: raise LOGKEEP_PG_POOL_MAX_SIZE (and "
            "max_connections to match) or add API processes; look for slow queries in "
            "pg_stat_statements",
        )
    if usable - used < pool_max:
        return warn(
            "connections",
            detail,
            f"one more logkeep process could not open its full pool of {pool_max}: raise "
            "max_connections before adding processes",
        )
    return ok("connections", detail)


async def api_pool_use(api_url: str) -> tuple[int, int] | None:
    """(in use, pool size) from a running API's /metrics, or None when it cannot be read."""
    try:
        async with httpx.AsyncClient(timeout=2.0) as http:
            response = await http.get(f"{api_url.rstrip('/')}/metrics")
            response.raise_for_status()
        values = {
            sample.name: sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
        }
    except (httpx.HTTPError, ValueError):
        return None
    in_use = values.get("logkeep_pg_pool_in_use")
    size = values.get("logkeep_pg_pool_max_size")
    if in_use is None or size is None:
        return None
    return int(in_use), int(size)


async def check_connections(conn: asyncpg.Connection, settings: Settings) -> Check:
    row = await conn.fetchrow(CONNECTIONS_SQL, settings.application_name)
    assert row is not None  # an aggregate always returns one row
    return judge_connections(
        usable=row["usable"],
        used=row["used"],
        ours=row["ours"],
        pool_max=settings.pg_pool_max_size,
        api_pool=await api_pool_use(settings.resolved_api_url),
    )


# ---------------------------------------------------------------------------------------
# Redis


def redis_connect_fix(exc: BaseException) -> str:
    if isinstance(exc, AuthenticationError):
        return (
            "check the user and password in LOGKEEP_REDIS_URL "
            "(redis://logkeep:PASSWORD@host:6379/0; the compose stack's user is logkeep, "
            "with LOGKEEP_REDIS_PASSWORD)"
        )
    if isinstance(exc, NoPermissionError):
        return "the user may not run PING: give it the ACL of deploy/redis/entrypoint.sh"
    return (
        "is Redis running and listening there? Check host and port in LOGKEEP_REDIS_URL, "
        "`bind` in redis.conf, and that this machine or container is on Redis's network"
    )


def judge_eviction(policy: str, maxmemory: int, used_memory: int, env: Environment) -> Check:
    if policy.startswith("allkeys-"):
        return fail(
            "redis eviction",
            f"maxmemory-policy {policy} can evict any key, the ingest stream included: "
            "events acknowledged in fast mode would vanish before a worker commits them",
            "CONFIG SET maxmemory-policy noeviction, and set it in redis.conf too "
            "(deploy/redis/prod.conf explains the choice)",
        )
    if policy.startswith("volatile-"):
        return warn(
            "redis eviction",
            f"maxmemory-policy {policy} cannot evict the stream (it has no TTL), but can "
            "evict sessions (users logged out), dedup buckets and idempotency records (a "
            "retried request stored twice)",
            "CONFIG SET maxmemory-policy noeviction, and set it in redis.conf too; a full "
            "Redis then answers ingest with 503 instead",
        )
    if maxmemory and used_memory >= MEMORY_PRESSURE * maxmemory:
        return warn(
            "redis eviction",
            f"{used_memory / maxmemory:.0%} of maxmemory in use: when full, writes are "
            "refused and ingest answers 503",
            "raise maxmemory, or check that workers keep up (logkeep_ingest_backlog_bytes)",
        )
    if not maxmemory and env == "prod":
        return warn(
            "redis eviction",
            "maxmemory is 0: Redis grows until the machine runs out of memory",
            "set maxmemory (deploy/redis/prod.conf has 1gb) with maxmemory-policy noeviction",
        )
    return ok("redis eviction", f"{policy}: nothing is evicted (when full, ingest answers 503)")


def judge_persistence(aof_enabled: bool, last_write_ok: bool, env: Environment) -> Check:
    if aof_enabled and not last_write_ok:
        return fail(
            "redis persistence",
            "the last write to the append-only file failed",
            "free disk space under Redis's `dir` (or fix its permissions): Redis refuses "
            "writes until it can append again",
        )
    if aof_enabled:
        return ok("redis persistence", "append-only file on")
    if env == "prod":
        return fail(
            "redis persistence",
            "AOF is off: a Redis restart loses the ingest stream (events acknowledged in fast "
            "mode and not yet committed) and the cache generation counters",
            "set `appendonly yes` and `appendfsync everysec` in redis.conf "
            "(deploy/redis/prod.conf); CONFIG SET appendonly yes turns it on in a running server",
        )
    return ok("redis persistence", f"AOF off (acceptable with LOGKEEP_ENV={env})")


async def redis_checks(settings: Settings) -> list[Check]:
    if not settings.redis_url:
        return [unset_store("redis", "LOGKEEP_REDIS_URL", settings)]
    target = describe_redis_target(settings.redis_url)
    try:
        client = make_client(
            settings.redis_url,
            socket_timeout=CONNECT_TIMEOUT_S,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
        )
    except ValueError as exc:
        return [
            fail(
                "redis",
                f"LOGKEEP_REDIS_URL is not usable: {exc}",
                "it should look like redis://user:password@host:6379/0, "
                "redis+cluster://host:port,host:port or redis+sentinel://host:port/service",
            )
        ]
    try:
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            return [
                fail(
                    "redis",
                    f"cannot connect to {target}: {type(exc).__name__}: {exc}",
                    redis_connect_fix(exc),
                )
            ]
        try:
            infos = await servers_info(client)
            keys = Keys(settings.redis_key_prefix, settings.resolved_ingest_shards)
            placement = shard_placement(client, keys) if is_cluster(client) else None
        except NoPermissionError:
            return [
                ok("redis", f"connected to {target}"),
                warn(
                    "redis settings",
                    "this user may not run INFO: eviction policy and persistence not checked",
                    "allow it: ACL SETUSER <user> +info (deploy/redis/entrypoint.sh does)",
                ),
            ]
    finally:
        await close_client(client)
    versions = sorted({str(i.get("redis_version", "?")) for i in infos.values()})
    servers = f"{len(infos)} primaries, " if len(infos) > 1 else ""
    checks = [
        ok("redis", f"connected to {target} ({servers}Redis {', '.join(versions)})"),
        worst(
            [
                judge_eviction(
                    str(info.get("maxmemory_policy", "")),
                    int(info.get("maxmemory", 0)),
                    int(info.get("used_memory", 0)),
                    settings.env,
                )
                for info in infos.values()
            ],
            list(infos),
        ),
        worst(
            [
                judge_persistence(
                    bool(info.get("aof_enabled")),
                    str(info.get("aof_last_write_status", "ok")) == "ok",
                    settings.env,
                )
                for info in infos.values()
            ],
            list(infos),
        ),
    ]
    if placement is not None:
        even, detail = judge_shard_spread(placement)
        checks.append(
            ok("redis ingest shards", detail)
            if even
            else warn(
                "redis ingest shards",
                f"{detail}: ingest piles onto the busiest primary",
                "move slots with redis-cli --cluster reshard so each primary serves its "
                "share of the shards, or set LOGKEEP_INGEST_SHARDS to a multiple of the "
                "primaries (docs/scale.md says how to change it)",
            )
        )
    return checks


def worst(checks: list[Check], servers: list[str]) -> Check:
    """One check for several servers (a cluster's primaries): the worst, naming it."""
    order = [Status.OK, Status.WARN, Status.FAIL]
    at = max(range(len(checks)), key=lambda i: order.index(checks[i].status))
    chosen = checks[at]
    if len(checks) == 1 or chosen.status == Status.OK:
        return chosen
    return Check(chosen.name, chosen.status, f"{servers[at]}: {chosen.detail}", chosen.fix)
