"""The OpenAPI document: FastAPI's, plus what FastAPI cannot infer from the routes.

Routes declare their own answers (`responses=answers(...)` from logkeep.api.problems)
and their security (the `require` dependency of logkeep.api.auth); this module adds the
shared schemas those refer to and tidies what FastAPI writes for optional query
parameters. The document is checked into the repository as docs/openapi.json:

    .venv/bin/python -m logkeep.api.openapi > docs/openapi.json
"""

from __future__ import annotations

import re
import sys
import warnings
from collections import Counter
from collections.abc import Iterator
from typing import Any

import orjson
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from fastapi.security.base import SecurityBase

from logkeep.api.auth import RIGHTS_CHECKS
from logkeep.api.problems import FieldError, Problem, answers
from logkeep.api.schemas import component_schemas

DESCRIPTION = """\
A self-hosted log store on PostgreSQL and Redis.

Every 4xx and 5xx answer is `application/problem+json` (RFC 9457): `detail` says what was
wrong in one sentence; `errors`, where a field or line is at fault, lists each one.
Ingest's per-line reasons are in its own answer instead (`errors: [{line, reason}]`).

Credentials travel as `Authorization: Bearer <token>`: a session token from
`POST /api/v1/auth/login` (`lks_...`) or an API key (`lkk_...`, scopes `ingest` and
`read`). A server started with `LOGKEEP_AUTH_REQUIRED=false` (dev) serves callers
without credentials as the admin.
"""


METHOD_ORDER = ("get", "head", "post", "put", "patch", "delete", "options", "trace", "query")


def _without_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`anyOf: [X, {type: null}]` as X: a query parameter is absent or a string, never
    null, so the null branch only misleads generated clients."""
    branches = schema.get("anyOf")
    if not isinstance(branches, list):
        return schema
    kept = [b for b in branches if b != {"type": "null"}]
    if len(kept) != 1 or len(kept) == len(branches):
        return schema
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    return {**kept[0], **rest}


def _tidy_parameters(operation: dict[str, Any]) -> None:
    for parameter in operation.get("parameters", []):
        if parameter.get("in") in ("query", "header", "path"):
            schema = _without_null(parameter.get("schema", {}))
            schema.pop("title", None)
            parameter["schema"] = schema


def _problem_for_validation_errors(operation: dict[str, Any]) -> None:
    """FastAPI documents its own 422 shape where a route did not declare 422."""
    responses = operation.get("responses", {})
    unprocessable = responses.get("422", {})
    if "HTTPValidationError" in orjson.dumps(unprocessable).decode():
        responses["422"] = answers(422)[422]


def _calls(dependant: Dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def derived_answers(route: RouteContext) -> list[int]:
    """The errors every route of its kind can answer, whether or not it says so:
    credentials (401, and 503 when the session store is down), rights (403), any
    parameter or body (422), a body (413, over the limit), a path parameter (404: a
    value the path's pattern does not take matches no route), any /api/ route (503 when
    a store is down). A route declares the others itself with `answers(...)`."""
    dependant = route.dependant
    calls = set(_calls(dependant))
    statuses = []
    if _has_security(dependant):
        statuses += [401, 503]
    if calls & RIGHTS_CHECKS:
        statuses.append(403)
    has_body = dependant.body_params or "requestBody" in (route.openapi_extra or {})
    has_params = _all_params(dependant) or "parameters" in (route.openapi_extra or {}) or has_body
    if has_params:
        statuses.append(422)
    if has_body:
        statuses.append(413)
    if "{" in (route.path_format or ""):
        statuses.append(404)
    if (route.path or "").startswith("/api/"):
        statuses.append(503)
    return statuses


def _has_security(dependant: Dependant) -> bool:
    return any(isinstance(call, SecurityBase) for call in _calls(dependant))


def _all_params(dependant: Dependant) -> bool:
    own = (
        dependant.path_params
        or dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
    )
    return bool(own) or any(_all_params(sub) for sub in dependant.dependencies)


def _unique_operation_ids(document: dict[str, Any]) -> None:
    """FastAPI names every method of a multi-method route alike (`bulk__bulk_put` for
    POST and PUT); generated clients need one name per operation."""
    operations = [op for item in document.get("paths", {}).values() for op in item.items()]
    counts = Counter(op.get("operationId") for _, op in operations)
    for method, operation in operations:
        operation_id = operation.get("operationId")
        if operation_id is not None and counts[operation_id] > 1:
            base = re.sub(r"_(get|put|post|delete|patch|head|options)$", "", operation_id)
            operation["operationId"] = f"{base}_{method}"


def openapi_document(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is not None:
        return app.openapi_schema
    with warnings.catch_warnings():
        # A route with several methods gets one id for all of them; made unique below.
        warnings.filterwarnings("ignore", "Duplicate Operation ID", UserWarning)
        document = get_openapi(
            title=app.title,
            version=app.version,
            description=DESCRIPTION,
            routes=app.routes,
        )
    _unique_operation_ids(document)
    for path_item in document.get("paths", {}).values():
        for operation in path_item.values():
            _tidy_parameters(operation)
            _problem_for_validation_errors(operation)
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        for method in route.methods or ():
            operation = document["paths"].get(route.path_format, {}).get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for status, answer in answers(*derived_answers(route)).items():
                responses.setdefault(str(status), answer)
            operation["responses"] = dict(sorted(responses.items()))
    # Paths by name and a route's methods (a set) in one order: the document is the same
    # in every process and whatever order the routers are included in.
    document["paths"] = {
        path: dict(sorted(item.items(), key=lambda kv: METHOD_ORDER.index(kv[0])))
        for path, item in sorted(document.get("paths", {}).items())
    }
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    problem = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(problem.pop("$defs", {}))
    schemas["Problem"] = problem
    schemas["FieldError"] = FieldError.model_json_schema()
    schemas.update(component_schemas())
    app.openapi_schema = document
    return document


def render(document: dict[str, Any]) -> bytes:
    """The document as checked in: indented, keys in FastAPI's order, a final newline."""
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


def build() -> dict[str, Any]:
    """The document of an app with default settings (it does not depend on them)."""
    from logkeep.api.app import create_app
    from logkeep.config import Settings

    return create_app(Settings(_env_file=None, env="dev")).openapi()


def main() -> None:
    sys.stdout.buffer.write(render(build()))


if __name__ == "__main__":
    main()
