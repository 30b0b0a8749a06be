"""One error format for every 4xx and 5xx: RFC 9457 problem details.

Every error answer is `application/problem+json`:

    {"type": "about:blank", "title": "Unprocessable Content", "status": 422,
     "detail": "since: '1x' is not a duration like 15m, 2h or 7d",
     "errors": [{"loc": ["query", "since"], "msg": "...", "type": "invalid"}]}

`detail` is always one human-readable sentence (clients print it); `errors`, when a field
is at fault, names each one for programs. Input is never echoed back: it may be a
password, or text that cannot even be encoded.

Routes raise `HTTPException(status, "field: reason")` (or a list of error dicts), or
InvalidQuery; the handlers installed by `install_problem_handlers` turn every one of
them, FastAPI's validation errors, unknown paths and methods, and stores that are down
into this shape. A route declares the errors it can answer with `answers(...)`.
"""

from __future__ import annotations

import http
from collections.abc import Iterable, Sequence
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from logkeep.domain.timerange import InvalidQuery

log = structlog.get_logger("logkeep.api")

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_S = 5
# What FastAPI says when it cannot read a declared JSON body (not UTF-8, or the body
# limit hit while reading): we answer those ourselves, by the cause.
FASTAPI_BODY_ERROR = "There was an error parsing the body"
HEADER_PARAMS = frozenset({"Last-Event-ID"})  # InvalidQuery params that are headers
MAX_LISTED = 20  # errors listed in one answer


class BodyTooLarge(Exception):
    """Raised inside the app (by BodyLimit) when a streamed body passes the limit."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body: over the {limit}-byte limit")
        self.limit = limit


class FieldError(BaseModel):
    """One field at fault: where (`loc`), why (`msg`), and a stable kind (`type`)."""

    loc: list[str | int] = Field(
        description='where: ["body", "message"], ["query", "since"], ["header", "Last-Event-ID"]'
    )
    msg: str = Field(description="why, in words")
    type: str = Field(description="a stable name for the kind of error, for programs")


class Problem(BaseModel):
    """RFC 9457 problem details: the body of every 4xx and 5xx answer."""

    model_config = ConfigDict(
        json_schema_extra={"additionalProperties": True}  # RFC 9457 extension members
    )

    type: str = Field(default="about:blank", description="about:blank: see `title`")
    title: str = Field(description="the HTTP status phrase")
    status: int = Field(ge=400, le=599)
    detail: str = Field(description="what was wrong, naming the field, in one sentence")
    errors: list[FieldError] | None = Field(
        default=None, description="each field at fault, when a field is at fault"
    )


# RFC 9110's names where older Pythons still say "Request Entity Too Large" and
# "Unprocessable Entity": the same title on every Python.
TITLES = {413: "Content Too Large", 422: "Unprocessable Content"}


def title(status: int) -> str:
    return TITLES.get(status) or http.HTTPStatus(status).phrase


def problem_document(
    status: int,
    detail: str,
    errors: Sequence[dict[str, Any]] | None = None,
    **extensions: Any,
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "type": "about:blank",
        "title": title(status),
        "status": status,
        "detail": detail,
    }
    if errors:
        document["errors"] = list(errors)[:MAX_LISTED]
    document.update(extensions)
    return document


def problem_bytes(
    status: int, detail: str, errors: Sequence[dict[str, Any]] | None = None
) -> bytes:
    """The body of a problem answer, for ASGI middleware that writes its own response."""
    return orjson.dumps(problem_document(status, detail, errors))


def problem(
    status: int,
    detail: str,
    errors: Sequence[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    **extensions: Any,
) -> Response:
    return Response(
        orjson.dumps(problem_document(status, detail, errors, **extensions)),
        status_code=status,
        headers=headers,
        media_type=PROBLEM_JSON,
    )


def field_error(loc: Iterable[str | int], msg: str, kind: str) -> dict[str, Any]:
    return {"loc": [part if isinstance(part, int) else str(part) for part in loc], "msg": msg,
            "type": kind}  # fmt: skip


def summary(errors: Sequence[dict[str, Any]]) -> str:
    """The errors as one sentence: `field: reason; other: reason`. The location kind
    (body, query, path, header) is left out where a name follows it."""
    parts = []
    for error in errors[:MAX_LISTED]:
        loc = [str(p) for p in error.get("loc", ())]
        where = ".".join(loc[1:] if len(loc) > 1 else loc) or "request"
        parts.append(f"{where}: {error.get('msg', '')}")
    return "; ".join(parts) or "the request is invalid"


# -- handlers ------------------------------------------------------------------------------


def allowed_methods(request: Request) -> list[str]:
    """Every method the request's path answers: Starlette names only the first route
    that matched the path, so a path with GET and POST routes said `Allow: GET`."""
    path = request.scope.get("path", "")
    methods: set[str] = set()
    for route in iter_route_contexts(request.app.router.routes):
        regex = getattr(route, "path_regex", None)
        if regex is not None and regex.match(path):
            methods.update(route.methods or ())
    return sorted(methods)


async def http_problem(request: Request, exc: Exception) -> Response:
    """HTTPException (ours, FastAPI's and Starlette's: 404, 405...) as a problem."""
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    status = exc.status_code
    if status == 400 and exc.detail == FASTAPI_BODY_ERROR:
        return body_unreadable(exc)
    if status == 405:
        headers["Allow"] = ", ".join(allowed_methods(request))
        return problem(
            405, f"{request.method[:16]} is not allowed here (allowed: {headers['Allow']})",
            headers=headers,
        )  # fmt: skip
    if isinstance(exc.detail, list):
        errors = [field_error(e.get("loc", ()), str(e.get("msg", "")), str(e.get("type", "")))
                  for e in exc.detail]  # fmt: skip
        return problem(status, summary(errors), errors, headers)
    detail = exc.detail if isinstance(exc.detail, str) else title(status)
    return problem(status, detail, headers=headers)


def body_unreadable(exc: StarletteHTTPException) -> Response:
    """FastAPI could not read a declared JSON body: over the size limit while streaming
    (413, as BodyLimit answers a declared length), or not UTF-8 (422 naming the body,
    as every route that reads its body itself answers)."""
    cause = exc.__cause__
    if isinstance(cause, BodyTooLarge):
        return problem(413, f"body: over the {cause.limit}-byte limit")
    if isinstance(cause, UnicodeDecodeError):
        reason = "is not valid UTF-8"
    else:
        reason = "could not be read as JSON"
    return problem(422, f"body: {reason}", [field_error(["body"], reason, "body_invalid")])


async def validation_problem(request: Request, exc: Exception) -> Response:
    """FastAPI's 422: each field and what is wrong with it, never the input."""
    assert isinstance(exc, RequestValidationError)
    errors = [
        field_error(e.get("loc", ()), str(e.get("msg", "")), str(e.get("type", "")))
        for e in exc.errors()
    ]
    return problem(422, summary(errors), errors)


async def query_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InvalidQuery)
    where = "header" if exc.param in HEADER_PARAMS else "query"
    return problem(422, str(exc), [field_error([where, exc.param], exc.reason, "invalid")])


async def store_unavailable(request: Request, exc: Exception) -> Response:
    """PostgreSQL or Redis down, slow or out of connections: 503 with Retry-After, so
    shippers retry rather than drop (they drop on most 4xx)."""
    log.warning("store_unavailable", path=request.url.path, error=f"{type(exc).__name__}: {exc}")
    return problem(
        503,
        "storage temporarily unavailable; retry later",
        headers={"Retry-After": str(RETRY_AFTER_S)},
    )


async def server_error(request: Request, exc: Exception) -> Response:
    """A bug: the answer says so in the common format; Starlette still logs the
    traceback and re-raises, so nothing is hidden."""
    return problem(500, "internal error; the server log has the details")


def install_problem_handlers(
    app: FastAPI, transient_errors: Iterable[type[Exception]] = ()
) -> None:
    app.add_exception_handler(StarletteHTTPException, http_problem)
    app.add_exception_handler(RequestValidationError, validation_problem)
    app.add_exception_handler(InvalidQuery, query_problem)
    for error in transient_errors:
        app.add_exception_handler(error, store_unavailable)
    app.add_exception_handler(Exception, server_error)


# -- the document --------------------------------------------------------------------------

PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
RETRY_AFTER = {
    "Retry-After": {
        "description": "seconds to wait before retrying",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }
}
MEANINGS: dict[int, tuple[str, dict[str, Any]]] = {
    400: ("The request cannot be honoured as sent (see detail)", {}),
    401: (
        "No valid credentials: send `Authorization: Bearer <token>`",
        {
            "WWW-Authenticate": {
                "description": "Bearer",
                "required": True,
                "schema": {"type": "string"},
            }
        },
    ),
    403: ("The caller may not do this, or not on this source", {}),
    404: ("No such resource", {}),
    409: ("It already exists", {}),
    413: ("The body (or a count of its events) is over the limit named in detail", {}),
    415: ("This Content-Type is not accepted", {}),
    422: ("Invalid input: detail names the field and the reason, errors lists each", {}),
    429: ("Too many requests: retry after Retry-After seconds", RETRY_AFTER),
    503: ("A store is down or behind: retry after Retry-After seconds", RETRY_AFTER),
}


def answers(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses a route can answer, all problem+json.
    `descriptions` overrides the standard text: `answers(404, s404="no such user")`."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description, headers = MEANINGS[status]
        entry: dict[str, Any] = {
            "description": descriptions.get(f"s{status}", description),
            "content": {PROBLEM_JSON: {"schema": PROBLEM_REF}},
        }
        if headers:
            entry["headers"] = headers
        responses[status] = entry
    return responses
