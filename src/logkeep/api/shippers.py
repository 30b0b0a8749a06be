"""What the shippers' protocol routes share: the body, the request's source override,
and one call into the ingest path (`/api/v1/ingest`'s: first-use sources, limits,
dedup, rate limits, fast or durable). Each route answers in its protocol's own format,
so trouble comes back as `Refused` for the route to render."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from fastapi import Depends, Request
from redis.exceptions import RedisError

from logkeep.api.auth import client_address
from logkeep.api.problems import answers
from logkeep.cache.ingest_buffer import BacklogFull, RateLimited
from logkeep.config import Settings
from logkeep.domain.auth import Principal
from logkeep.domain.ingest import BodyError
from logkeep.domain.protocols.common import Decoded, source_name
from logkeep.ingest.first_use import SourcesOnFirstUse
from logkeep.ingest.service import Batch, CommitTimeout, IngestResult, IngestService

log = structlog.get_logger(__name__)

SOURCE_HEADER = "x-logkeep-source"
MODE_HEADER = "x-logkeep-mode"
RETRY_AFTER_S = 5.0
MAX_REASONS = 10  # rejected records named in a protocol's one-line error message


@dataclass(frozen=True)
class Refused(Exception):
    """The whole request is refused: `status` and the reason; 429 and 503 carry when to
    retry. Routes render it in their protocol's format."""

    status: int
    detail: str
    retry_after_s: float | None = None


@dataclass(frozen=True)
class Outcome:
    result: IngestResult
    batch: Batch
    total: int  # events decoded


async def raw_body(request: Request) -> bytes:
    """The body, read before anything else of the request is done. Some shippers
    (pygelf over HTTP) close the connection right after sending, without waiting for
    the answer; the server keeps a body only if the handler asked for it before it
    saw the connection close, so every protocol route takes this as its first
    dependency (an async one, which runs without yielding to the event loop). Its
    size is bounded by BodyLimit."""
    return await request.body()


RawBody = Annotated[bytes, Depends(raw_body)]


def protocol_answers(own: dict[int | str, dict[str, Any]]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` of a protocol route: its own answers in its own media types,
    plus problem+json where logkeep answers before the protocol does (413 from the body
    limit, 503 from a store away; 401 and 403 are derived from the credentials)."""
    shared = answers(413, 503)
    merged = dict(own)
    for status, entry in shared.items():
        mine = merged.get(status, {})
        merged[status] = {
            **entry,
            **{k: v for k, v in mine.items() if k != "content"},
            "content": {**mine.get("content", {}), **entry["content"]},
        }
    return merged


def ingest_service(request: Request) -> IngestService:
    service: IngestService = request.app.state.ingest
    return service


def first_use(request: Request) -> SourcesOnFirstUse:
    """The app's first-use policy, made on first need from its settings."""
    state = request.app.state
    existing: SourcesOnFirstUse | None = getattr(state, "first_use", None)
    if existing is None:
        settings: Settings = state.settings
        existing = SourcesOnFirstUse(ingest_service(request), state.db.pool, settings.first_use)
        state.first_use = existing
    return existing


def source_override(request: Request) -> str | None:
    """The source the shipper's configuration names for every event of the request
    (`X-Logkeep-Source` or `?source=`), winning over each protocol's own mapping."""
    raw = request.headers.get(SOURCE_HEADER) or request.query_params.get("source")
    if raw is None:
        return None
    name = source_name(raw)
    if name is None:
        raise Refused(400, f"X-Logkeep-Source: {raw[:64]!r} is not a source name")
    return name


def body_error(exc: BodyError) -> Refused:
    return Refused(exc.status, str(exc))


async def ingest(
    request: Request,
    principal: Principal,
    settings: Settings,
    events: Sequence[Decoded],
    protocol: str,
) -> Outcome:
    """The decoded events through the one ingest path; Refused for what stops the
    whole request (too many events, rate limits, a full backlog, Redis away)."""
    limit = settings.ingest_max_lines
    if len(events) > limit:
        raise Refused(413, f"the request holds {len(events)} events, over the limit of {limit}")
    service = ingest_service(request)
    resolve = first_use(request).resolver(principal, protocol)
    batch = await service.prepare_events(
        enumerate(events, start=1), None, allowed=principal.sources, resolve=resolve
    )
    mode = request.headers.get(MODE_HEADER) or request.query_params.get("mode")
    durable = (mode or settings.ingest_mode) == "durable"
    client = f"key:{principal.id}" if principal.kind == "key" else client_address(request)
    try:
        result = await service.submit(batch, client=client, durable=durable)
    except RateLimited as exc:
        raise Refused(429, str(exc), exc.retry_after_s) from None
    except BacklogFull:
        raise Refused(
            503, "ingest backlog is full (PostgreSQL is behind or away)", RETRY_AFTER_S
        ) from None
    except CommitTimeout:
        raise Refused(
            503, "events are buffered but were not committed within the durable timeout; "
            "a retry of the same events is deduplicated", RETRY_AFTER_S,
        ) from None  # fmt: skip
    except RedisError as exc:
        log.warning("ingest_redis_unavailable", protocol=protocol, error=str(exc))
        raise Refused(503, "ingest buffer (Redis) unavailable", RETRY_AFTER_S) from None
    return Outcome(result, batch, len(events))


def rejection_summary(result: IngestResult, noun: str) -> str:
    """`2 record(s) rejected: record 4: timestamp: ...; record 9: ...`"""
    shown = "; ".join(f"{noun} {r.line}: {r.reason}" for r in result.rejected[:MAX_REASONS])
    more = len(result.rejected) - MAX_REASONS
    return f"{len(result.rejected)} {noun}(s) rejected: {shown}" + (
        f"; and {more} more" if more > 0 else ""
    )
