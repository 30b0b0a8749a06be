"""The connection owner: one asyncpg pool and redis-py asyncio clients (one server, a
Redis Cluster or a Sentinel-watched primary: cache/client.py)."""

from __future__ import annotations

import asyncio
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import redis.asyncio as aioredis
import structlog
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, wait_exponential

from logkeep.cache.client import close_client, describe_target, make_client
from logkeep.cache.keys import Keys
from logkeep.cache.query_cache import QueryCache
from logkeep.cache.tail import TailBuffer
from logkeep.config import Settings
from logkeep.db.replicas import CHECK_TIMEOUT_S, ReadPools
from logkeep.domain import exactjson
from logkeep.instance import with_running_instance

log = structlog.get_logger(__name__)

# Connection failures a freshly started server can produce while it comes up.
PG_STARTUP_ERRORS = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InvalidCatalogNameError,
)


INGEST_SCRIPT_TIMEOUT_S = 30.0


# PostgreSQL failures that pass by themselves (a server restarting or out of reach, a pool
# exhausted, a timeout, a connection dropped mid-operation): never about the data.
PG_TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.QueryCanceledError,
    asyncpg.OperatorInterventionError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InternalClientError,
)


class StoreUnavailable(RuntimeError):
    """PostgreSQL or Redis could not be reached before the start-up deadline."""


def describe_pg_target(dsn: str) -> str:
    """host:port/database of a DSN, without credentials, for error messages."""
    parts = urlsplit(dsn)
    query = parse_qs(parts.query)
    host = parts.hostname or query.get("host", ["localhost"])[0]
    port = parts.port or query.get("port", ["5432"])[0]
    return f"{host}:{port}{parts.path or '/'}"


def describe_redis_target(url: str) -> str:
    return describe_target(url)


def _encode_jsonb(value: Any) -> bytes:
    # Binary jsonb is a version byte followed by the JSON text. Pre-encoded bytes (from
    # LogEntry) pass through untouched. Numbers go both ways exactly: jsonb keeps any
    # decimal, and orjson alone would turn 10**30 into 1e+30 (see exactjson).
    return b"\x01" + (value if isinstance(value, bytes) else exactjson.dumps(value))


def _decode_jsonb(data: bytes) -> Any:
    return exactjson.loads(data[1:])


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=_encode_jsonb,
        decoder=_decode_jsonb,
        format="binary",
    )


def session_settings(settings: Settings, role: str = "") -> dict[str, str]:
    """What every logkeep session to PostgreSQL runs with: the pools', and the CLI's and
    the doctor's, which name their `role` after the application's name (so that the
    doctor counts the pools' connections apart from its own)."""
    return {
        "application_name": f"{settings.application_name}-{role}"
        if role
        else settings.application_name,
        "timezone": "UTC",
        # JIT compiles for tens of milliseconds to save microseconds on our short,
        # index-driven queries (measured on search, and on compaction: 15-20 ms for each
        # slice's NEXT_SLICE, whose estimate crosses jit_above_cost).
        "jit": "off",
    }


class Database:
    """Owns the PostgreSQL pool and the Redis client; `async with Database(...)`.

    Without settings it reads them as every command does: LOGKEEP_* variables and `.env`,
    then the running `logkeep up` for whichever store URL is unset."""

    def __init__(self, settings: Settings | None = None) -> None:
        if settings is None:
            settings = with_running_instance(Settings())
        if not settings.database_url or not settings.redis_url:
            raise StoreUnavailable(
                "set LOGKEEP_DATABASE_URL and LOGKEEP_REDIS_URL, or start `logkeep up` "
                f"(none is running for the data directory {settings.resolved_data_dir})"
            )
        self.settings = settings
        self.database_url: str = settings.database_url
        self.redis_url: str = settings.redis_url
        self.pg_pool: asyncpg.Pool | None = None
        self.read_pools: ReadPools | None = None  # replicas, else the primary (db/replicas.py)
        self.redis_client: aioredis.Redis | None = None
        # Blocking reads (live tail) get a pool of their own, so that waiting clients can
        # never take the connections the cache and the writers need.
        self.tail_redis: aioredis.Redis | None = None
        # The ingest script is not idempotent: a client that re-sent it after a timeout
        # could buffer a request twice. This client never retries, and waits long enough
        # for the largest request's script.
        self.ingest_redis: aioredis.Redis | None = None
        self.keys = Keys(settings.redis_key_prefix, settings.resolved_ingest_shards)
        self.cache: QueryCache = QueryCache(None, self.keys)
        self.tail: TailBuffer = TailBuffer(None, self.keys, settings.tail_buffer_entries)

    async def __aenter__(self) -> Database:
        await self.initialize()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def initialize(self) -> None:
        try:
            self.pg_pool = await self._connect_postgres()
            self.read_pools = ReadPools(
                self.pg_pool, max_lag_s=self.settings.read_replica_max_lag_ms / 1000
            )
            await self.read_pools.start(
                self.settings.read_urls, self._replica_pool, describe_pg_target
            )
            self.redis_client = await self._connect_redis()
            self.tail_redis = make_client(
                self.redis_url,
                max_connections=self.settings.tail_max_clients,
                socket_connect_timeout=self.settings.redis_socket_timeout_s,
                # A blocked XREAD waits up to a heartbeat; the socket must wait longer.
                socket_timeout=self.settings.tail_heartbeat_s + 10,
            )
            self.ingest_redis = make_client(
                self.redis_url,
                max_connections=self.settings.redis_max_connections,
                socket_connect_timeout=self.settings.redis_socket_timeout_s,
                socket_timeout=INGEST_SCRIPT_TIMEOUT_S,
                retry=Retry(NoBackoff(), 0),
            )
            # A Redis Cluster client learns the cluster on its first command, and a
            # fresh redis-py RedisCluster given several first commands at once fails
            # some of them (redis-py 8.1): one command each before anyone uses them.
            for client in (self.tail_redis, self.ingest_redis):
                await self._answers(client)
        except BaseException:
            await self.close()
            raise
        self.cache = QueryCache(
            self.redis_client,
            self.keys,
            enabled=self.settings.cache_enabled,
            backoff_s=self.settings.redis_backoff_s,
        )
        self.tail = TailBuffer(self.redis_client, self.keys, self.settings.tail_buffer_entries)

    def _retrying(self, retry_on: tuple[type[BaseException], ...], event: str) -> AsyncRetrying:
        """Retry a start-up connection with backoff until the configured deadline."""
        return AsyncRetrying(
            stop=stop_after_delay(self.settings.connect_deadline_s),
            wait=wait_exponential(multiplier=0.1, max=2.0),
            retry=retry_if_exception_type(retry_on),
            before_sleep=lambda state: log.info(
                event,
                attempt=state.attempt_number,
                error=str(state.outcome and state.outcome.exception()),
            ),
            reraise=True,
        )

    def _server_settings(self) -> dict[str, str]:
        s = self.settings
        return {
            **session_settings(s),
            "statement_timeout": str(s.statement_timeout_ms),
        }

    async def _replica_pool(self, dsn: str) -> asyncpg.Pool:
        """A replica's pool, connecting on first use: a replica that is down at start-up
        is only out of rotation until it answers."""
        pool: asyncpg.Pool = await asyncpg.create_pool(
            dsn,
            min_size=0,
            max_size=self.settings.pg_pool_max_size,
            init=_init_connection,
            timeout=CHECK_TIMEOUT_S,
            server_settings=self._server_settings(),
        )
        return pool

    async def _connect_postgres(self) -> asyncpg.Pool:
        s = self.settings
        target = describe_pg_target(self.database_url)
        try:
            async for attempt in self._retrying(PG_STARTUP_ERRORS, "postgres_connect_retry"):
                with attempt:
                    pool: asyncpg.Pool = await asyncpg.create_pool(
                        self.database_url,
                        min_size=s.pg_pool_min_size,
                        max_size=s.pg_pool_max_size,
                        init=_init_connection,
                        timeout=min(10.0, s.connect_deadline_s),
                        server_settings=self._server_settings(),
                    )
        except PG_STARTUP_ERRORS as exc:
            raise StoreUnavailable(
                f"PostgreSQL at {target} did not accept connections within "
                f"{s.connect_deadline_s:.0f}s: {type(exc).__name__}: {exc}"
            ) from exc
        except (asyncpg.InterfaceError, ValueError) as exc:
            raise StoreUnavailable(
                f"LOGKEEP_DATABASE_URL is not usable: {type(exc).__name__}: {exc}"
            ) from exc
        except asyncpg.PostgresError as exc:
            raise StoreUnavailable(
                f"PostgreSQL at {target} refused the connection: {type(exc).__name__}: {exc}"
            ) from exc
        return pool

    async def _connect_redis(self) -> aioredis.Redis:
        s = self.settings
        try:
            client: aioredis.Redis = make_client(
                self.redis_url,
                max_connections=s.redis_max_connections,
                socket_timeout=s.redis_socket_timeout_s,
                socket_connect_timeout=s.redis_socket_timeout_s,
                health_check_interval=s.redis_health_check_interval_s,
                retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=2),
                retry_on_error=[RedisConnectionError, RedisTimeoutError],
            )
        except ValueError as exc:
            raise StoreUnavailable(f"LOGKEEP_REDIS_URL is not usable: {exc}") from exc
        try:
            async for attempt in self._retrying((RedisError,), "redis_connect_retry"):
                with attempt:
                    await client.ping()
        except RedisError as exc:
            await close_client(client)
            raise StoreUnavailable(
                f"Redis at {describe_redis_target(self.redis_url)} did not answer within "
                f"{s.connect_deadline_s:.0f}s: {type(exc).__name__}: {exc}"
            ) from exc
        return client

    async def _answers(self, client: aioredis.Redis) -> None:
        try:
            async for attempt in self._retrying((RedisError,), "redis_connect_retry"):
                with attempt:
                    await client.ping()
        except RedisError as exc:
            raise StoreUnavailable(
                f"Redis at {describe_redis_target(self.redis_url)} did not answer within "
                f"{self.settings.connect_deadline_s:.0f}s: {type(exc).__name__}: {exc}"
            ) from exc

    async def close(self) -> None:
        if self.ingest_redis is not None:
            await close_client(self.ingest_redis)
            self.ingest_redis = None
        if self.tail_redis is not None:
            await close_client(self.tail_redis)
            self.tail_redis = None
        if self.redis_client is not None:
            await close_client(self.redis_client)
            self.redis_client = None
        if self.read_pools is not None:
            await self.read_pools.close()
            self.read_pools = None
        if self.pg_pool is not None:
            await self.pg_pool.close()
            self.pg_pool = None

    @property
    def pool(self) -> asyncpg.Pool:
        if self.pg_pool is None:
            raise StoreUnavailable("Database.initialize() has not been called")
        return self.pg_pool

    @property
    def reads(self) -> ReadPools:
        """Where searches, exports and aggregates read: replicas when configured."""
        if self.read_pools is None:
            raise StoreUnavailable("Database.initialize() has not been called")
        return self.read_pools

    @property
    def ingest_client(self) -> aioredis.Redis:
        if self.ingest_redis is None:
            raise StoreUnavailable("Database.initialize() has not been called")
        return self.ingest_redis

    @property
    def redis(self) -> aioredis.Redis:
        if self.redis_client is None:
            raise StoreUnavailable("Database.initialize() has not been called")
        return self.redis_client
