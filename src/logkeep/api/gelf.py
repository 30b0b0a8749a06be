"""GELF over HTTP: `POST /gelf`, one message, plain, gzip or zlib (told by its first
bytes: clients mislabel their Content-Encoding). 202 once taken, as Graylog answers."""

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
    source_override,
)
from logkeep.cache.ingest_buffer import retry_after_header
from logkeep.config import Settings
from logkeep.domain.auth import Action, Principal
from logkeep.domain.ingest import BodyError
from logkeep.domain.protocols import gelf
from logkeep.domain.protocols.common import setting_keys

router = APIRouter(tags=["shippers"])
PATH = "/gelf"

_TEXT = {"text/plain": {"schema": {"type": "string"}}}
ANSWERS: dict[int | str, dict[str, Any]] = {
    202: {"description": "taken (or a duplicate of a message taken before)"},
    400: {"description": "not a GELF message, or one that cannot be stored; why",
          "content": _TEXT},
    413: {"description": "over the body limit", "content": _TEXT},
    429: {"description": "rate limited; Retry-After", "content": _TEXT},
    503: {"description": "Redis away or the backlog full; Retry-After", "content": _TEXT},
}  # fmt: skip
REQUEST_BODY = {
    "required": True,
    "description": "one GELF 1.1 message, plain, gzip or zlib",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["short_message"],
                "properties": {
                    "version": {"description": '"1.1"; not checked'},
                    "host": {"type": "string"},
                    "short_message": {"type": "string", "minLength": 1},
                    "full_message": {"type": ["string", "null"]},
                    "timestamp": {
                        "description": "epoch seconds, with decimals, also as text; "
                        "absent or null: the time it arrived",
                        "anyOf": [
                            {"type": "number"},
                            {"type": "string", "pattern": gelf.EPOCH_TEXT},
                            {"type": "null"},
                        ],
                    },
                    "level": {
                        "description": "a syslog severity, also as text; absent or null: INFO",
                        "anyOf": [
                            {"type": "integer", "minimum": 0, "maximum": 7},
                            {"type": "string", "pattern": gelf.LEVEL_TEXT},
                            {"type": "null"},
                        ],
                    },
                },
                "additionalProperties": True,
            }
        }
    },
}


@router.post(
    PATH,
    status_code=202,
    response_class=Response,
    responses=protocol_answers(ANSWERS),
    openapi_extra={"requestBody": REQUEST_BODY},
)
async def gelf_message(
    raw: RawBody,
    request: Request,
    principal: Annotated[Principal, Depends(require(Action.INGEST))],
    settings: Annotated[Settings, Depends(get_settings)],
) -> Response:
    """A GELF message. Its source is `_source`, else `host` (LOGKEEP_GELF_SOURCE_FIELDS),
    or `X-Logkeep-Source`."""
    try:
        override = source_override(request)
        try:
            event = gelf.decode(
                raw,
                setting_keys(settings.gelf_source_fields),
                override,
                settings.gelf_source,
                settings.ingest_max_line_bytes,
            )
        except BodyError as exc:
            raise body_error(exc) from None
        outcome = await ingest(request, principal, settings, [event], "gelf")
    except Refused as refused:
        headers = {}
        if refused.retry_after_s is not None:
            headers["Retry-After"] = retry_after_header(refused.retry_after_s)
        return PlainTextResponse(refused.detail + "\n", refused.status, headers)
    if outcome.result.rejected:
        return PlainTextResponse(outcome.result.rejected[0].reason + "\n", 400)
    return Response(status_code=202)
