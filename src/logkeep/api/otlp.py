"""OTLP/HTTP logs: `POST /v1/logs`, protobuf or JSON, optionally gzip, answered with an
ExportLogsServiceResponse in the request's encoding (partial_success counts what was
rejected); errors are a google.rpc.Status, 429 and 503 with Retry-After."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, cast

import structlog
import uvicorn
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import PlainTextResponse
from google.protobuf import json_format
from google.rpc.status_pb2 import Status
from starlette.types import ASGIApp, Receive, Scope, Send

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
from logkeep.domain.ingest import BodyError, decompress
from logkeep.domain.protocols import otlp
from logkeep.domain.protocols.common import setting_keys

log = structlog.get_logger(__name__)
router = APIRouter(tags=["shippers"])
PATH = "/v1/logs"
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# gRPC codes for the Status body (what OTLP/HTTP clients log).
_CODES = {400: 3, 413: 3, 415: 3, 429: 8, 503: 14}

_MESSAGE = {"schema": {"type": "string", "format": "binary"}}
_BOTH = {PROTOBUF: _MESSAGE, JSON: {"schema": {"type": "object"}}}
ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": "ExportLogsServiceResponse; partial_success counts rejected "
          "records and says why", "content": _BOTH},
    400: {"description": "not an ExportLogsServiceRequest (google.rpc.Status)", "content": _BOTH},
    413: {"description": "over the body or records limit (google.rpc.Status)", "content": _BOTH},
    415: {"description": "another Content-Type or Content-Encoding", "content": _BOTH},
    429: {"description": "rate limited; Retry-After", "content": _BOTH},
    503: {"description": "Redis away or the backlog full; Retry-After", "content": _BOTH},
}  # fmt: skip
REQUEST_BODY = {
    "required": True,
    "description": "ExportLogsServiceRequest; `Content-Encoding: gzip` welcome",
    "content": _BOTH,
}


def _status(refused: Refused, as_json: bool) -> Response:
    status = Status(code=_CODES.get(refused.status, 2), message=refused.detail)
    headers = {}
    if refused.retry_after_s is not None:
        headers["Retry-After"] = retry_after_header(refused.retry_after_s)
    if as_json:
        body = json_format.MessageToJson(status, indent=None).encode()
        return Response(body, refused.status, headers, media_type=JSON)
    return Response(status.SerializeToString(), refused.status, headers, media_type=PROTOBUF)


async def export_logs(
    raw: bytes, request: Request, principal: Principal, settings: Settings
) -> Response:
    """The handler, shared by the API's port and LOGKEEP_OTLP_PORT."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    as_json = media_type == JSON
    try:
        if media_type not in (PROTOBUF, JSON):
            raise Refused(415, f"Content-Type {media_type[:64]!r}: send {PROTOBUF} or {JSON}")
        override = source_override(request)
        if not raw:
            raise Refused(400, "body: empty; send an ExportLogsServiceRequest")
        try:
            body = decompress(
                raw,
                request.headers.get("content-encoding"),
                settings.ingest_max_body_bytes,
            )
            parsed = otlp.parse_json(body) if as_json else otlp.parse_protobuf(body)
        except BodyError as exc:
            raise body_error(exc) from None
        events = otlp.decode(parsed, setting_keys(settings.otlp_source_attributes), override)
        outcome = await ingest(request, principal, settings, events, "otlp")
    except Refused as refused:
        return _status(refused, as_json)
    result = outcome.result
    message = rejection_summary(result, "record") if result.rejected else ""
    body, content_type = otlp.response(len(result.rejected), message, as_json=as_json)
    return Response(body, 200, media_type=content_type)


@router.post(PATH, responses=protocol_answers(ANSWERS), openapi_extra={"requestBody": REQUEST_BODY})
async def otlp_logs(
    raw: RawBody,
    request: Request,
    principal: Annotated[Principal, Depends(require(Action.INGEST))],
    settings: Annotated[Settings, Depends(get_settings)],
) -> Response:
    """OpenTelemetry logs (OTLP/HTTP). The source of a record is its resource's
    `service.name` (LOGKEEP_OTLP_SOURCE_ATTRIBUTES), or `X-Logkeep-Source`."""
    return await export_logs(raw, request, principal, settings)


def otlp_only(app: ASGIApp) -> ASGIApp:
    """`app` answering only OTLP's path (and 404 elsewhere): what LOGKEEP_OTLP_PORT serves."""

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") != PATH:
            await PlainTextResponse(f"only {PATH} is served here\n", 404)(scope, receive, send)
            return
        await app(scope, receive, send)

    return serve


async def serve_with_otlp_port(server: uvicorn.Server, settings: Settings) -> None:
    """Run the API `server`; with LOGKEEP_OTLP_PORT (4318 by OTLP's convention), serve
    /v1/logs alone on that port too, from the moment the API has started (its lifespan
    made the app's state) until the API stops."""
    if not settings.otlp_port:
        await server.serve()
        return
    api = asyncio.create_task(server.serve())
    while not server.started:
        if api.done():
            await api  # it could not start: its error, or its clean exit
            return
        await asyncio.sleep(0.02)
    config = server.config
    side = uvicorn.Server(
        uvicorn.Config(
            otlp_only(cast(ASGIApp, config.app)),  # the app object serve() was given
            host=config.host,
            port=settings.otlp_port,
            lifespan="off",
            log_config=None,
            access_log=False,
            ssl_certfile=config.ssl_certfile,
            ssl_keyfile=config.ssl_keyfile,
        )
    )
    side_task = asyncio.create_task(side.serve())
    log.info("otlp_listening", host=config.host, port=settings.otlp_port, path=PATH)
    try:
        await api
    finally:
        side.should_exit = True
        await side_task
