"""Elasticsearch's bulk API and the handshake shippers make before it, at the root
(`/_bulk`, `/{index}/_bulk`, `/_license`, ...) and under `/es` (where `GET /` is the
handshake; at the root it is the explorer's page). Every answer has Elasticsearch's shape
and `X-Elastic-Product: Elasticsearch`; template and ILM set-up calls are acknowledged
without effect (docs/shippers.md lists what is not emulated)."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

import orjson
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
from logkeep.domain.ingest import BodyError, decompress
from logkeep.domain.protocols import elastic

PREFIX = "/es"
PRODUCT = {"X-Elastic-Product": "Elasticsearch"}
BULK_TYPES = frozenset(
    {
        "application/x-ndjson",
        "application/json",
        "application/vnd.elasticsearch+x-ndjson",
        "application/vnd.elasticsearch+json",
        "",  # curl --data-binary without a type; Elasticsearch refuses, we need not
    }
)
CLUSTER_UUID = str(uuid.uuid5(uuid.NAMESPACE_DNS, "logkeep"))
Ingester = Annotated[Principal, Depends(require(Action.INGEST))]

_JSON = {"application/json": {"schema": {"type": "object"}}}
BULK_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"description": "an item per action, each with its status; `errors` when any "
          "failed", "content": _JSON},
    400: {"description": "a malformed action line: the request can never succeed",
          "content": _JSON},
    413: {"description": "over the body or documents limit", "content": _JSON},
    415: {"description": "another Content-Type", "content": _JSON},
    429: {"description": "rate limited; Retry-After", "content": _JSON},
    503: {"description": "Redis away or the backlog full; Retry-After", "content": _JSON},
}  # fmt: skip
BULK_BODY = {
    "required": True,
    "description": "NDJSON: an action line (`index` or `create`) then its document",
    "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
}


def _media_type(request: Request) -> str:
    """JSON, or the compatible-with type the client asked for (elasticsearch-py 8+)."""
    accept = request.headers.get("accept", "")
    if "vnd.elasticsearch+json" in accept:
        return accept.split(",")[0].strip()
    return "application/json"


def _answer(request: Request, body: bytes, status: int = 200, **headers: str) -> Response:
    return Response(body, status, {**PRODUCT, **headers}, media_type=_media_type(request))


def _json(request: Request, document: Any) -> Response:
    return _answer(request, orjson.dumps(document))


def _refused(request: Request, refused: Refused) -> Response:
    kind = {
        429: "es_rejected_execution_exception",
        503: "unavailable_shards_exception",
        413: "content_too_long_exception",
        415: "media_type_header_exception",
    }.get(refused.status, "illegal_argument_exception")
    headers = {}
    if refused.retry_after_s is not None:
        headers["Retry-After"] = retry_after_header(refused.retry_after_s)
    return _answer(
        request, elastic.error_body(refused.status, kind, refused.detail), refused.status, **headers
    )


async def _bulk(
    raw: bytes, request: Request, principal: Principal, settings: Settings, index: str | None
) -> Response:
    started = time.monotonic()
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        if media_type not in BULK_TYPES:
            raise Refused(415, f"Content-Type header [{media_type[:64]}] is not supported")
        override = source_override(request)
        try:
            body = decompress(
                raw,
                request.headers.get("content-encoding"),
                settings.ingest_max_body_bytes,
            )
            items = elastic.parse_bulk(body, index, override, settings.ingest_max_line_bytes)
        except BodyError as exc:
            raise body_error(exc) from None
        if not items:  # as Elasticsearch answers an empty bulk request
            raise Refused(400, "request body is required: one or more actions")
        outcome = await ingest(
            request, principal, settings, [item.event for item in items], "elasticsearch"
        )
    except Refused as refused:
        return _refused(request, refused)
    rejected = {r.line: r.reason for r in outcome.result.rejected}
    results = elastic.outcomes(len(items), rejected, outcome.result.duplicate_positions)
    took = int((time.monotonic() - started) * 1000)
    return _answer(request, elastic.bulk_response(items, results, took))


def _routes(router: APIRouter, *, root: bool) -> None:
    """The same routes at the root and under /es (GET / only there)."""

    @router.api_route(
        "/_bulk",
        methods=["POST", "PUT"],
        responses=protocol_answers(BULK_ANSWERS),
        openapi_extra={"requestBody": BULK_BODY},
        include_in_schema=root,
    )
    async def bulk(
        raw: RawBody,
        request: Request,
        principal: Ingester,
        settings: Annotated[Settings, Depends(get_settings)],
    ) -> Response:
        """Elasticsearch bulk: the source of a document is its index, or
        `X-Logkeep-Source`."""
        return await _bulk(raw, request, principal, settings, None)

    @router.api_route(
        "/{index}/_bulk",
        methods=["POST", "PUT"],
        responses=protocol_answers(BULK_ANSWERS),
        openapi_extra={"requestBody": BULK_BODY},
        include_in_schema=root,
    )
    async def index_bulk(
        raw: RawBody,
        index: str,
        request: Request,
        principal: Ingester,
        settings: Annotated[Settings, Depends(get_settings)],
    ) -> Response:
        """Elasticsearch bulk into `index` (unless an action names another)."""
        return await _bulk(raw, request, principal, settings, index)

    @router.get("/_license", include_in_schema=root)
    async def license_(request: Request, _: Ingester) -> Response:
        return _json(request, elastic.license_info())

    @router.get("/_cluster/health", include_in_schema=root)
    async def health(request: Request, _: Ingester) -> Response:
        return _json(request, elastic.cluster_health())

    @router.api_route(
        "/_cat/health",
        methods=["GET", "HEAD"],
        include_in_schema=root,
        response_class=PlainTextResponse,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def cat_health(request: Request, _: Ingester) -> Response:
        return PlainTextResponse(f"{int(time.time())} logkeep green 1 1\n", 200, PRODUCT)

    for kind in (
        "_index_template",
        "_template",
        "_component_template",
        "_ilm/policy",
        "_ingest/pipeline",
        "_data_stream",
    ):

        @router.api_route(
            f"/{kind}/{{name}}",
            methods=["GET", "HEAD", "PUT", "POST", "DELETE"],
            include_in_schema=False,
        )
        async def set_up(request: Request, name: str, _: Ingester) -> Response:
            """Acknowledged without effect: logkeep has no mappings, templates or ILM."""
            if request.method in ("GET", "HEAD"):
                return _json(request, {})
            return _json(request, {"acknowledged": True})


def _info_routes(router: APIRouter) -> None:
    @router.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def info(request: Request, _: Ingester) -> Response:
        """The handshake: an 8.x version, so shippers speak the 8.x bulk protocol."""
        return _json(request, elastic.info(CLUSTER_UUID))


router = APIRouter(tags=["shippers"])
_routes(router, root=True)
prefixed = APIRouter(prefix=PREFIX, tags=["shippers"])
_info_routes(prefixed)
_routes(prefixed, root=False)
