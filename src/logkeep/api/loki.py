"""Loki push: `POST /loki/api/v1/push` (JSON, optionally gzip or deflate; protobuf with
raw snappy, whether or not Content-Encoding says so), and `GET /ready` for shippers'
health checks. 204 when every entry was taken; 400 naming the entries that were not
(the others are stored, as Loki does); 429 and 503 with Retry-After."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import PlainTextResponse

from logkeep.api.auth import require
from logkeep.api.deps import get_settings
from logkeep.api.shippers import (
    RawBody,
    Refused,
    body_error,
    ingest,
    protocol_answers,
    rejection_summary,
    source_override,
)
from logkeep.cache.ingest_buffer import retry_after_header
from logkeep.config import Settings
from logkeep.domain.auth import Action, Principal
from logkeep.domain.ingest import BodyError
from logkeep.domain.protocols import loki
from logkeep.domain.protocols.common import setting_keys
from logkeep.domain.protocols.compression import decode_content, snappy_raw

router = APIRouter(tags=["shippers"])
PATH = "/loki/api/v1/push"
PROTOBUF = "application/x-protobuf"

_TEXT = {"text/plain": {"schema": {"type": "string"}}}
ANSWERS: dict[int | str, dict[str, Any]] = {
    204: {"description": "every entry taken"},
    400: {"description": "bad data: the entries named were rejected, the rest stored",
          "content": _TEXT},
    413: {"description": "over the body or entries limit", "content": _TEXT},
    415: {"description": "another Content-Type", "content": _TEXT},
    429: {"description": "rate limited; Retry-After", "content": _TEXT},
    503: {"description": "Redis away or the backlog full; Retry-After", "content": _TEXT},
}  # fmt: skip
REQUEST_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["streams"],
                "properties": {
                    "streams": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["values"],
                            "properties": {
                                "stream": {
                                    "type": "object",
                                    "additionalProperties": {"type": "string"},
                                    "description": "the stream's labels; absent: none",
                                },
                                "values": {
                                    "type": "array",
                                    "items": {
                                        "type": "array",
                                        "minItems": 2,
                                        "maxItems": 3,
                                        "prefixItems": [
                                            {
                                                "anyOf": [
                                                    {"type": "string", "pattern": "^[0-9]{1,20}$"},
                                                    {"type": "integer", "minimum": 0},
                                                ]
                                            },
                                            {"type": "string"},
                                            {
                                                "type": "object",
                                                "additionalProperties": {"type": "string"},
                                            },
                                        ],
                                        "description": "[epoch nanoseconds as text (or "
                                        "a number), line, {structured metadata}?]",
                                    },
                                },
                            },
                        },
                    }
                },
            }
        },
        PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
    },
}


def _text(refused: Refused) -> Response:
    headers = {}
    if refused.retry_after_s is not None:
        headers["Retry-After"] = retry_after_header(refused.retry_after_s)
    return PlainTextResponse(refused.detail + "\n", refused.status, headers)


@router.post(
    PATH,
    status_code=204,
    responses=protocol_answers(ANSWERS),
    openapi_extra={"requestBody": REQUEST_BODY},
)
async def push(
    raw: RawBody,
    request: Request,
    principal: Annotated[Principal, Depends(require(Action.INGEST))],
    settings: Annotated[Settings, Depends(get_settings)],
) -> Response:
    """Loki's push API. The source of a stream is its first label among
    LOGKEEP_LOKI_SOURCE_LABELS (`source`, `service_name`, `app`, `job`), or
    `X-Logkeep-Source`."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    limit = settings.ingest_max_body_bytes
    keys = setting_keys(settings.loki_source_labels)
    try:
        override = source_override(request)
        try:
            if media_type == PROTOBUF:
                events = loki.decode_protobuf(snappy_raw(raw, limit), keys, override)
            elif media_type in ("application/json", ""):
                body = decode_content(raw, request.headers.get("content-encoding"), limit)
                events = loki.decode_json(body, keys, override)
            else:
                raise Refused(415, f"Content-Type {media_type[:64]!r}: send JSON or protobuf")
        except BodyError as exc:
            raise body_error(exc) from None
        outcome = await ingest(request, principal, settings, events, "loki")
    except Refused as refused:
        return _text(refused)
    if outcome.result.rejected:
        return PlainTextResponse(rejection_summary(outcome.result, "entry") + "\n", 400)
    return Response(status_code=204)


@router.get("/ready", response_class=PlainTextResponse)
async def ready() -> str:
    """Loki's readiness probe, which shippers call before pushing."""
    return "ready\n"
