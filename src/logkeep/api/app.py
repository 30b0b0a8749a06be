"""FastAPI application: health, readiness, metrics and the first log endpoints."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from redis.exceptions import RedisError, ResponseError

from logkeep import metrics
from logkeep.api import (
    admin,
    alert_channels,
    alerts,
    auth,
    explore,
    ingest,
    protocols,
    search,
    stats,
    storage,
    tail,
    web,
)
from logkeep.api.access_log import AccessLog
from logkeep.api.auth import Reader, readable_sources, requested_sources, require
from logkeep.api.deps import get_db, get_logs, get_sources
from logkeep.api.fields import LevelQuery, SourceQuery
from logkeep.api.openapi import openapi_document
from logkeep.api.problems import PROBLEM_JSON, answers, install_problem_handlers, problem
from logkeep.api.responses import ExactJSONResponse
from logkeep.api.schemas import (
    NOT_READY_SCHEMA,
    Health,
    LogEntryCreate,
    LogEntryCreated,
    RecentLogsPublic,
)
from logkeep.api.security import BodyLimit, SecurityHeaders
from logkeep.cache.sessions import LoginLimiter, SessionStore
from logkeep.config import Settings
from logkeep.db import migrate
from logkeep.db.access import AccessRepository
from logkeep.db.database import PG_TRANSIENT_ERRORS, Database, StoreUnavailable
from logkeep.db.partitions import maintain
from logkeep.db.repositories import (
    LogRepository,
    SourceRepository,
    UnknownSource,
    UserRepository,
)
from logkeep.domain import exactjson
from logkeep.domain.auth import Action, Principal
from logkeep.domain.entry import InvalidLogEntry, Level
from logkeep.ingest.service import entry_limits, ingest_service

log = structlog.get_logger("logkeep.api")


async def maintenance_loop(db: Database, settings: Settings) -> None:
    """Keep partitions ahead of time while the API runs (serialised across processes)."""
    while True:
        try:
            async with db.pool.acquire() as conn:
                report = await maintain(
                    conn,
                    retention_days=settings.retention_days,
                    days_ahead=settings.partition_days_ahead,
                    max_entry_age_days=settings.entry_max_age_days,
                )
            log.info(
                "partition_maintenance",
                created=report.created,
                dropped=report.dropped,
                moved_from_default=report.moved_from_default,
                default_rows=report.default_rows,
            )
            if report.default_rows:
                log.warning("default_partition_not_empty", rows=report.default_rows)
        except Exception as exc:  # noqa: BLE001 - the loop must outlive any one failure
            log.error("partition_maintenance_failed", error=f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(settings.maintenance_interval_s)


async def compaction_loop(db: Database, settings: Settings) -> None:
    """Compact closed slices into chunks while the API runs (one process at a time)."""
    from logkeep.db.compaction import compact_in_background

    while True:
        try:
            async with db.pool.acquire() as conn:
                report = await compact_in_background(
                    conn,
                    slice_length=timedelta(seconds=settings.compaction_slice_s),
                    grace=timedelta(seconds=settings.compaction_grace_s),
                    budget_s=max(1.0, settings.compaction_interval_s / 2),
                )
            if report.expired_sources:  # cached answers holding removed events go stale
                await db.cache.invalidate_sources(report.expired_sources)
            if report.events or report.expired_events:
                log.info(
                    "compaction",
                    slices=report.slices,
                    events=report.events,
                    chunks=report.chunks,
                    seconds=round(report.seconds, 3),
                    expired_events=report.expired_events,
                )
        except Exception as exc:  # noqa: BLE001 - the loop must outlive any one failure
            log.error("compaction_failed", error=f"{type(exc).__name__}: {exc}")
        await asyncio.sleep(settings.compaction_interval_s)


async def observe_ingest_stream(db: Database) -> None:
    """Stream length, pending entries and backlog bytes of every ingest shard, summed,
    read at scrape time."""
    shards = list(db.keys.shards.all)
    async with db.redis.pipeline(transaction=False) as pipe:
        for shard in shards:
            pipe.xlen(db.keys.ingest_stream(shard))
            pipe.get(db.keys.ingest_backlog_bytes(shard))
            pipe.xinfo_groups(db.keys.ingest_stream(shard))
        replies = await pipe.execute(raise_on_error=False)
    length = backlog = pending = 0
    for i in range(len(shards)):
        shard_length, shard_backlog, groups = replies[3 * i : 3 * i + 3]
        if isinstance(groups, ResponseError):  # no stream yet: nothing ingested there
            continue
        for reply in (shard_length, shard_backlog, groups):
            if isinstance(reply, Exception):
                raise reply
        length += shard_length
        backlog += int(shard_backlog or 0)
        pending += sum(g["pending"] for g in groups)
    metrics.INGEST_STREAM_LENGTH.set(length)
    metrics.INGEST_BACKLOG_BYTES.set(backlog)
    metrics.INGEST_STREAM_PENDING.set(pending)


# Failures that go away by themselves: a store restarting, a pool exhausted, a timeout.
# Shippers retry on 503 and drop on most 4xx, so these must never surface as 4xx or 500.
TRANSIENT_STORE_ERRORS: tuple[type[Exception], ...] = (*PG_TRANSIENT_ERRORS, StoreUnavailable)


def parse_body(raw: bytes) -> LogEntryCreate:
    """Validate a JSON body ourselves, so that undecodable bytes get the same 422 with
    field-level reasons as any other invalid body (FastAPI answers those with a bare 400)."""
    try:
        body = LogEntryCreate.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        raise HTTPException(
            422,
            [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in errors],
        ) from None
    if body.metadata:
        # pydantic reads fractions as doubles (0.12345678901234567 rounded, 1e-400 as 0.0):
        # the metadata once more, exactly, as ingest reads it (see exactjson).
        body.metadata = exactjson.loads(raw)["metadata"]
    return body


def describe_failure(exc: Exception, settings: Settings) -> str:
    """What /readyz says about a failed store. Anonymous callers outside dev learn the
    kind of failure, not hosts or socket paths; the log has the whole message."""
    if not settings.requires_auth:
        return f"{type(exc).__name__}: {exc}"
    log.warning("readiness_failed", error=f"{type(exc).__name__}: {exc}")
    return type(exc).__name__


def create_app(settings: Settings, database: Database | None = None) -> FastAPI:
    """The API; it owns `database` unless one is passed in already initialised."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = database or Database(settings)
        owned = database is None
        if owned:
            await db.initialize()
        app.state.db = db
        app.state.settings = settings
        app.state.tail_slots = asyncio.Semaphore(settings.tail_max_clients)
        app.state.logs = LogRepository(
            db.pool,
            db.redis_client,
            cache=db.cache,
            tail=db.tail,
            limits=entry_limits(settings),
            ttl_recent_s=settings.cache_ttl_recent_s,
            ttl_summary_s=settings.cache_ttl_summary_s,
            reads=db.reads,
        )
        app.state.sources = SourceRepository(db.pool, db.redis_client, db.keys)
        app.state.ingest = ingest_service(db, settings)
        app.state.access = AccessRepository(db.pool)
        app.state.users = UserRepository(db.pool)
        app.state.sessions = SessionStore(
            db.redis,
            db.keys,
            idle_s=settings.session_idle_s,
            lifetime_s=settings.session_lifetime_s,
        )
        app.state.login_limiter = LoginLimiter(
            db.redis,
            db.keys,
            per_user=settings.login_max_failures_per_user,
            per_address=settings.login_max_failures_per_address,
            window_s=settings.login_failure_window_s,
        )
        alerting = None
        if settings.alerts_enabled:  # one evaluator per rule across processes (leases)
            from logkeep.alerting.service import AlertingService

            alerting = app.state.alerting = AlertingService(db, settings)
            alerting.start()
        maintenance = None
        if settings.maintenance_interval_s:
            maintenance = asyncio.create_task(maintenance_loop(db, settings))
        compaction = None
        if settings.compaction_interval_s:
            compaction = asyncio.create_task(compaction_loop(db, settings))
        try:
            yield
        finally:
            if alerting is not None:
                await alerting.close()
            await app.state.ingest.close()
            for task in (maintenance, compaction):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if owned:
                await db.close()

    # Outside dev nothing but health, readiness and metrics answers without credentials:
    # the interactive docs and the schema neither.
    docs = not settings.requires_auth
    app = FastAPI(
        title="logkeep",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    install_problem_handlers(app, TRANSIENT_STORE_ERRORS)
    app.openapi = lambda: openapi_document(app)  # type: ignore[method-assign]
    app.include_router(auth.router)
    app.include_router(admin.router)
    app.include_router(alerts.router)
    app.include_router(alert_channels.router)
    app.include_router(ingest.router)
    app.include_router(search.router)
    app.include_router(stats.router)
    app.include_router(tail.router)
    app.include_router(explore.router)
    app.include_router(storage.router)
    app.include_router(web.session_router)
    app.include_router(web.router)  # the explorer's page at / and its assets
    for protocol_router in protocols.ROUTERS:  # OTLP, Loki, Elasticsearch, GELF
        app.include_router(protocol_router)

    app.add_middleware(
        BodyLimit,
        limit=settings.max_body_bytes,
        per_path=protocols.IngestLimits(settings.ingest_max_body_bytes),
    )
    app.add_middleware(SecurityHeaders)
    app.add_middleware(AccessLog)

    @app.get("/healthz", tags=["health"])
    async def healthz() -> Health:
        """The process is alive."""
        return Health(status="ok")

    @app.get(
        "/readyz",
        tags=["health"],
        responses={
            503: {
                "description": "Not ready: `problems` names each store that is not",
                "content": {PROBLEM_JSON: {"schema": NOT_READY_SCHEMA}},
            }
        },
    )
    async def readyz(db: Annotated[Database, Depends(get_db)]) -> Response:
        """PostgreSQL and Redis answer and the schema is current."""
        problems: dict[str, str] = {}
        try:
            async with db.pool.acquire(timeout=2) as conn:
                state = await conn.fetchval("SELECT 1") and await migrate.status(conn)
                if state and state.pending:
                    problems["schema"] = (
                        f"at migration {state.current:04d}, "
                        f"{len(state.pending)} pending (run `logkeep db migrate`)"
                    )
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"; reported
            problems["postgres"] = describe_failure(exc, settings)
        try:
            started = time.perf_counter()
            await db.redis.ping()
            metrics.REDIS_RTT_SECONDS.set(time.perf_counter() - started)
        except (RedisError, OSError) as exc:
            problems["redis"] = describe_failure(exc, settings)
        # Read replicas out of rotation do not make the API unready: the primary answers.
        replicas = [r.public(detailed=not settings.requires_auth) for r in db.reads.replicas]
        shown: dict[str, Any] = {"replicas": replicas} if replicas else {}
        if problems:
            detail = "not ready: " + "; ".join(f"{k}: {v}" for k, v in problems.items())
            return problem(503, detail, problems=problems, **shown)
        return JSONResponse({"status": "ready", **shown})

    @app.get(
        "/metrics",
        tags=["health"],
        response_class=PlainTextResponse,
        responses={
            200: {
                "description": "Prometheus text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    )
    async def prometheus_metrics(db: Annotated[Database, Depends(get_db)]) -> Response:
        pool = db.pg_pool
        if pool is not None:
            metrics.PG_POOL_SIZE.set(pool.get_size())
            metrics.PG_POOL_IN_USE.set(pool.get_size() - pool.get_idle_size())
            metrics.PG_POOL_MAX.set(pool.get_max_size())
        try:
            started = time.perf_counter()
            await db.redis.ping()
            metrics.REDIS_RTT_SECONDS.set(time.perf_counter() - started)
            await observe_ingest_stream(db)
        except (RedisError, OSError):
            metrics.REDIS_RTT_SECONDS.set(float("nan"))
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.post(
        "/api/v1/logs",
        status_code=201,
        tags=["logs"],
        responses=answers(401, 403, 413, 422, 503),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/LogEntryCreate"}}
                },
            }
        },
    )
    async def create_log(
        request: Request,
        principal: Annotated[Principal, Depends(require(Action.INGEST))],
        logs: Annotated[LogRepository, Depends(get_logs)],
        sources: Annotated[SourceRepository, Depends(get_sources)],
    ) -> LogEntryCreated:
        body = parse_body(await request.body())  # size-limited by BodyLimit
        source = await sources.resolve(body.source)
        if source is None or not source["is_active"]:
            raise HTTPException(422, f"source: no active source named or numbered {body.source!r}")
        readable_sources(principal, [source["id"]])
        entry: dict[str, Any] = {
            "message": body.message,
            "source_id": source["id"],
            "level": body.level,
            "metadata": body.metadata,
            "timestamp": body.timestamp,
        }
        try:
            entry_id = await logs.save_log_entry(entry)
        except (InvalidLogEntry, UnknownSource) as exc:
            raise HTTPException(422, str(exc)) from None
        return LogEntryCreated(id=entry_id, source_id=source["id"])

    @app.get(
        "/api/v1/logs/recent",
        tags=["logs"],
        response_model=RecentLogsPublic,
        responses=answers(401, 403, 422, 503),
    )
    async def recent_logs(
        principal: Reader,
        logs: Annotated[LogRepository, Depends(get_logs)],
        sources: Annotated[SourceRepository, Depends(get_sources)],
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        source: SourceQuery = None,
        level: LevelQuery = None,
    ) -> Response:
        """The newest entries, newest first."""
        requested = await requested_sources(principal, sources, [] if source is None else [source])
        try:
            parsed_level = None if level is None else Level.parse(level)
        except InvalidLogEntry as exc:
            raise HTTPException(422, str(exc)) from None
        items = await logs.get_recent_logs(
            limit=limit,
            level=parsed_level,
            source_ids=readable_sources(principal, requested),
        )
        # The model picks the public fields; the answer is written with exact numbers.
        return ExactJSONResponse(RecentLogsPublic.model_validate({"items": items}).model_dump())

    return app
