"""POST /api/v1/ingest: JSON arrays, NDJSON and plain text lines, optionally gzipped."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal

import structlog
from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from redis.exceptions import RedisError

from logkeep.api.auth import client_address, require
from logkeep.api.deps import get_settings
from logkeep.api.problems import answers, problem
from logkeep.api.shippers import first_use
from logkeep.cache.ingest_buffer import BacklogFull, RateLimited, retry_after_header
from logkeep.config import Settings
from logkeep.domain.auth import Action, Principal
from logkeep.domain.entry import InvalidLogEntry
from logkeep.domain.ingest import (
    BodyError,
    decode_line,
    decompress,
    parse_json_array,
    read_json_lines,
    split_lines,
)
from logkeep.domain.parsers import InvalidRules, compile_parser
from logkeep.ingest.service import Batch, CommitTimeout, IngestService, SourceResolver

log = structlog.get_logger(__name__)
router = APIRouter()

NDJSON_TYPES = frozenset(
    {
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/jsonlines",
        "application/x-jsonlines",
    }
)
JSON_TYPES = frozenset({"application/json"})
TEXT_TYPES = frozenset({"text/plain"})
REDIS_DOWN_RETRY_S = 5


# Dependencies are `async def` (see api/deps.py): a thread hop costs more than a small
# request's events.
async def get_ingest(request: Request) -> IngestService:
    service: IngestService = request.app.state.ingest
    return service


def _unavailable(detail: str, retry_after_s: float) -> Response:
    return problem(503, detail, headers={"Retry-After": retry_after_header(retry_after_s)})


class LineError(BaseModel):
    line: int = Field(description="1-based line (NDJSON, text) or array index + 1 (JSON)")
    reason: str


class IngestResult(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    errors: list[LineError] = Field(description="each rejected line and why (the first ones)")
    committed: bool
    errors_truncated: int | None = Field(default=None, description="rejections not listed")
    replayed: bool | None = Field(default=None, description="a retry of an earlier request")


EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "one event: message, and optionally source, level, timestamp, metadata, "
    "event_id; other fields go to metadata",
    "additionalProperties": True,
}
EVENTS_BODY: dict[str, Any] = {
    "required": True,
    "description": "Events, optionally compressed with `Content-Encoding: gzip` (the size "
    "limits apply before and after decompression; OpenAPI has no field for a body's "
    "content coding)",
    "content": {
        "application/json": {"schema": {"type": "array", "items": EVENT_SCHEMA}},
        "application/x-ndjson": {
            "schema": {"type": "string", "description": "one JSON event per line"}
        },
        "text/plain": {
            "schema": {
                "type": "string",
                "description": "one event per line, parsed by the rules of `?source=`",
            }
        },
    },
}
RESULT = {"application/json": {"schema": {"$ref": "#/components/schemas/IngestResult"}}}
INGEST_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": "Committed (durable mode)", "content": RESULT},
    202: {"description": "Buffered (fast mode): stored within the ingest lag", "content": RESULT},
    **answers(400, 401, 403, 413, 415, 422, 429, 503, s400="body: not valid gzip data"),
}
INGEST_ANSWERS[422] = {
    "description": "Every event was rejected (IngestResult lists each line and why), or the "
    "request itself is invalid (problem)",
    "content": {**RESULT, **INGEST_ANSWERS[422]["content"]},
}


def _too_many_lines(count: int, limit: int) -> HTTPException:
    return HTTPException(
        413, f"lines: the request holds {count} events, over the limit of {limit} per request"
    )


async def _batch_from_body(
    body: bytes,
    media_type: str,
    service: IngestService,
    settings: Settings,
    *,
    source: str | None,
    line_format: str | None,
    parse: bool,
    resolve: SourceResolver,
) -> Batch:
    """The body's events; sources it names for the first time are created, restricted
    or refused by LOGKEEP_SOURCES_ON_FIRST_USE, as on every shipper's way in."""
    max_lines = settings.ingest_max_lines
    if media_type in JSON_TYPES:
        events = parse_json_array(body)
        if len(events) > max_lines:
            raise _too_many_lines(len(events), max_lines)
        return await service.prepare_events(
            enumerate(events, start=1), source, parse_message=parse, allowed=None, resolve=resolve
        )
    lines = list(split_lines(body))
    if len(lines) > max_lines:
        raise _too_many_lines(len(lines), max_lines)
    max_bytes = settings.ingest_max_line_bytes
    if media_type in NDJSON_TYPES:
        numbered = read_json_lines(body, lines, max_bytes)
        return await service.prepare_events(
            numbered, source, parse_message=parse, allowed=None, resolve=resolve
        )
    if source is None:
        raise HTTPException(422, "source: text lines need ?source=NAME")
    try:
        rules = await resolve(source)
        if line_format is not None and line_format != rules.format_type:
            # Another format than the source's: its own rules do not apply.
            rules = dataclasses.replace(rules, parser=compile_parser(line_format, {}))
    except (InvalidLogEntry, InvalidRules) as exc:
        raise HTTPException(422, str(exc)) from None
    texts: list[tuple[int, str | InvalidLogEntry]] = []
    for number, raw in lines:
        try:
            texts.append((number, decode_line(raw, max_bytes)))
        except InvalidLogEntry as exc:
            texts.append((number, exc))
    return service.prepare_lines(texts, rules)


@router.post(
    "/api/v1/ingest",
    status_code=202,
    tags=["ingest"],
    response_model=IngestResult,
    responses=INGEST_ANSWERS,
    openapi_extra={
        "requestBody": EVENTS_BODY,
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "a retry with the same key is answered without storing twice",
                "schema": {"type": "string"},
            },
        ],
    },
)
async def ingest(
    request: Request,
    principal: Annotated[Principal, Depends(require(Action.INGEST))],
    service: Annotated[IngestService, Depends(get_ingest)],
    settings: Annotated[Settings, Depends(get_settings)],
    source: Annotated[
        str | None, Query(max_length=64, description="source of events that name none")
    ] = None,
    mode: Annotated[
        Literal["fast", "durable"] | None,
        Query(description="fast: answer once buffered; durable: once committed"),
    ] = None,
    line_format: Annotated[
        str | None,
        Query(alias="format", max_length=32, description="parse text lines as this format"),
    ] = None,
    parse: Annotated[
        bool, Query(description="parse each JSON event's message by its source's rules")
    ] = False,
) -> Response:
    """Events as a JSON array, NDJSON (`application/x-ndjson`) or text lines
    (`text/plain` with `?source=`), optionally `Content-Encoding: gzip`.

    The answer counts accepted, duplicate and rejected events and names each rejected
    line with its reason; the valid lines of the request are stored. 202 once buffered
    (fast mode), 200 once committed (durable mode)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in JSON_TYPES | NDJSON_TYPES | TEXT_TYPES:
        raise HTTPException(
            415,
            f"Content-Type {media_type[:64]!r} is not accepted: send application/json, "
            "application/x-ndjson or text/plain",
        )
    limit = settings.ingest_max_body_bytes
    try:
        # The compressed size is limited by BodyLimit, the decompressed one here.
        body = decompress(await request.body(), request.headers.get("content-encoding"), limit)
    except BodyError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    try:
        batch = await _batch_from_body(
            body,
            media_type,
            service,
            settings,
            source=source,
            line_format=line_format,
            parse=parse,
            resolve=first_use(request).resolver(principal, "ingest"),
        )
    except BodyError as exc:
        raise HTTPException(exc.status, str(exc)) from None
    durable = (mode or settings.ingest_mode) == "durable"
    # Rate limits per API key; callers without one (dev) are told apart by address.
    client = f"key:{principal.id}" if principal.kind == "key" else client_address(request)
    try:
        result = await service.submit(
            batch,
            client=client,
            idempotency_key=request.headers.get("idempotency-key"),
            durable=durable,
        )
    except RateLimited as exc:
        return problem(
            429, str(exc), headers={"Retry-After": retry_after_header(exc.retry_after_s)}
        )
    except BacklogFull:
        return _unavailable("ingest backlog is full (PostgreSQL is behind or away); retry later", 5)
    except CommitTimeout:
        return _unavailable(
            "events are buffered and will be committed, but not within the durable "
            "timeout; a retry with the same Idempotency-Key (or of events that carry an "
            "event_id or a timestamp) waits for them without storing them twice",
            5,
        )
    except RedisError as exc:
        # Redis down: answer 503 rather than write around the buffer (see docs/ingest.md).
        log.warning("ingest_redis_unavailable", error=str(exc))
        return _unavailable("ingest buffer (Redis) unavailable; retry later", REDIS_DOWN_RETRY_S)
    body_json = result.as_json()
    if result.accepted == 0 and result.duplicates == 0 and result.rejected:
        return JSONResponse(body_json, status_code=422)
    return JSONResponse(body_json, status_code=200 if durable and result.committed else 202)
