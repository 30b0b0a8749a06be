"""The API's contract: the checked-in OpenAPI document is the served one, and every
error answer is RFC 9457 problem details with a readable `detail`."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from logkeep.api.openapi import render
from logkeep.config import Settings
from logkeep.db.seed import TEST_PASSWORDS
from logkeep.domain.parsers import FORMAT_TYPES
from logkeep.domain.sources import DEFAULT_FORMAT_TYPE, DEFAULT_SOURCE_TYPE
from tests.conftest import running_app

CHECKED_IN = Path(__file__).parents[2] / "docs" / "openapi.json"
REGENERATE = ".venv/bin/python -m logkeep.api.openapi > docs/openapi.json"
PROBLEM = "application/problem+json"
JSON = {"Content-Type": "application/json"}


def assert_problem(
    response: httpx.Response, status: int, detail_part: str, **fields: Any
) -> dict[str, Any]:
    """`response` is a problem+json answer of `status` whose detail names `detail_part`."""
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    assert response.headers["content-type"] == PROBLEM, response.headers
    body: dict[str, Any] = response.json()
    assert body["type"] == "about:blank"
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str), body
    assert detail_part in body["detail"], body
    for name, value in fields.items():
        assert body[name] == value, body
    return body


# -- the document ---------------------------------------------------------------------------


async def test_the_checked_in_document_is_the_served_one(client: httpx.AsyncClient) -> None:
    served = (await client.get("/openapi.json")).json()
    assert CHECKED_IN.exists(), f"missing: regenerate with `{REGENERATE}`"
    checked_in = json.loads(CHECKED_IN.read_text())
    assert served == checked_in, f"docs/openapi.json is stale: regenerate with `{REGENERATE}`"
    assert render(served) == CHECKED_IN.read_bytes(), f"not as rendered: `{REGENERATE}`"


async def test_every_error_answer_is_documented_as_problem_json(
    client: httpx.AsyncClient,
) -> None:
    """Of logkeep's own API; the shippers' protocols (OTLP, Loki, Elasticsearch, GELF)
    answer errors the way their clients expect."""
    document = (await client.get("/openapi.json")).json()
    own = {p: item for p, item in document["paths"].items() if p.startswith("/api/v1/")}
    assert len(own) > 20
    for path, item in own.items():
        for method, operation in item.items():
            for status, answer in operation["responses"].items():
                if int(status) < 400:
                    continue
                assert PROBLEM in answer.get("content", {}), (method, path, status)


async def test_the_document_declares_inputs_and_security(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    paths = document["paths"]
    ingest = paths["/api/v1/ingest"]["post"]
    assert set(ingest["requestBody"]["content"]) == {
        "application/json",
        "application/x-ndjson",
        "text/plain",
    }
    assert {"200", "202", "413", "415", "422", "429", "503"} <= set(ingest["responses"])
    assert "Retry-After" in ingest["responses"]["429"]["headers"]
    source = document["components"]["schemas"]["SourceCreate"]
    assert source["required"] == ["name"]
    assert source["properties"]["source_type"]["default"] == DEFAULT_SOURCE_TYPE
    assert source["properties"]["format_type"]["default"] == DEFAULT_FORMAT_TYPE
    assert source["properties"]["format_type"]["anyOf"][0]["enum"] == sorted(FORMAT_TYPES)
    assert "pattern" in source["properties"]["name"]
    search = {p["name"]: p for p in paths["/api/v1/logs"]["get"]["parameters"]}
    assert search["metadata"]["style"] == "deepObject"
    assert "since or from, not both" in search["since"]["description"]
    assert paths["/metrics"]["get"]["responses"]["200"]["content"].keys() == {"text/plain"}
    assert "text/event-stream" in paths["/api/v1/tail"]["get"]["responses"]["200"]["content"]
    schemes = document["components"]["securitySchemes"]
    assert {name: s["scheme"] for name, s in schemes.items()} == {
        "session": "bearer",
        "apiKey": "bearer",
    }
    assert paths["/api/v1/users"]["post"]["security"] == [{"session": []}]
    assert paths["/api/v1/ingest"]["post"]["security"] == [{"session": []}, {"apiKey": []}]
    for open_path in ("/healthz", "/readyz", "/metrics"):
        assert "security" not in paths[open_path]["get"]


# -- one error format -----------------------------------------------------------------------


async def test_validation_errors_name_each_field(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/users", json={"username": "x y", "email": "a"})
    body = assert_problem(response, 422, "username: ", title="Unprocessable Content")
    fields = {tuple(e["loc"]) for e in body["errors"]}
    assert fields == {("body", "username"), ("body", "email"), ("body", "password")}, body
    assert all(set(e) == {"loc", "msg", "type"} for e in body["errors"])
    assert "x y" not in response.text  # input is never echoed back


async def test_query_errors_name_the_parameter(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/stats/histogram", params={"since": "1x"})
    body = assert_problem(response, 422, "since: ")
    assert body["errors"] == [
        {
            "loc": ["query", "since"],
            "msg": body["detail"].removeprefix("since: "),
            "type": "invalid",
        }
    ]


@pytest.mark.parametrize("path", ["/api/v1/logs", "/api/v1/stats/histogram"])
async def test_empty_window_parameters_are_named(client: httpx.AsyncClient, path: str) -> None:
    both_empty = await client.get(path, params={"from": "", "since": ""})
    assert_problem(both_empty, 422, "since: is empty")
    empty_from = await client.get(path, params={"from": " "})
    assert_problem(empty_from, 422, "from: is empty")
    both = await client.get(path, params={"from": "2026-01-01T00:00:00Z", "since": "1h"})
    assert_problem(both, 422, "give either since or from, not both")


async def test_string_and_list_details_of_routes(client: httpx.AsyncClient) -> None:
    missing = await client.patch("/api/v1/sources/999999", json={"is_active": False})
    assert_problem(missing, 404, "no source 999999", title="Not Found")
    duplicate = await client.post("/api/v1/sources", json={"name": "app_errors"})
    assert_problem(duplicate, 409, "source 'app_errors' already exists", title="Conflict")
    bad_body = await client.post("/api/v1/logs", json={"source": "app_errors"})
    body = assert_problem(bad_body, 422, "message: Field required")
    assert body["errors"][0]["loc"] == ["body", "message"]


async def test_unknown_paths_and_methods(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/api/v1/nothing-here"), 404, "Not Found")
    put = await client.put("/api/v1/users")
    assert_problem(put, 405, "PUT is not allowed here")
    assert put.headers["allow"] == "GET, POST"
    delete = await client.delete("/api/v1/users/1")
    assert delete.headers["allow"] == "PATCH"
    assert_problem(delete, 405, "(allowed: PATCH)")


async def test_bodies_that_are_not_utf8_are_422_naming_the_body(
    client: httpx.AsyncClient,
) -> None:
    not_utf8 = b'{"name": "caf\xe9 \xff"}'
    declared = await client.post("/api/v1/sources", content=not_utf8, headers=JSON)
    body = assert_problem(declared, 422, "body: is not valid UTF-8")
    assert body["errors"] == [
        {"loc": ["body"], "msg": "is not valid UTF-8", "type": "body_invalid"}
    ]
    read_by_route = await client.post("/api/v1/logs", content=not_utf8, headers=JSON)
    assert_problem(read_by_route, 422, "body: ")


async def test_body_limit_is_a_problem_on_every_route(settings: Settings) -> None:
    small = settings.model_copy(update={"max_body_bytes": 1024})
    async with running_app(small) as client:
        declared = await client.post("/api/v1/sources", content=b"{" + b" " * 2000 + b"}")
        assert_problem(declared, 413, "body: over the 1024-byte limit")

        async def streamed() -> Any:
            for _ in range(4):
                yield b" " * 600

        chunked = await client.post("/api/v1/sources", content=streamed(), headers=JSON)
        assert_problem(chunked, 413, "body: over the 1024-byte limit")


async def test_ingest_refusals_are_problems(client: httpx.AsyncClient) -> None:
    wrong_type = await client.post(
        "/api/v1/ingest", content=b"x", headers={"Content-Type": "image/png"}
    )
    assert_problem(wrong_type, 415, "Content-Type 'image/png' is not accepted")
    broken_gzip = await client.post(
        "/api/v1/ingest",
        content=gzip.compress(b'{"message": "x"}\n')[:-4],
        headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
    )
    assert_problem(broken_gzip, 400, "gzip")
    # Per-line reasons stay in ingest's own answer.
    all_bad = await client.post(
        "/api/v1/ingest",
        content=b'{"source": "app_errors"}\n',
        headers={"Content-Type": "application/x-ndjson"},
    )
    assert all_bad.status_code == 422
    assert all_bad.headers["content-type"] == "application/json"
    assert all_bad.json()["errors"][0]["line"] == 1


async def test_credentials_problems_carry_www_authenticate(settings: Settings) -> None:
    secured = settings.model_copy(update={"auth_required": True})
    async with running_app(secured) as client:
        response = await client.get("/api/v1/logs/recent")
        assert_problem(response, 401, "credentials required")
        assert response.headers["www-authenticate"] == "Bearer"
        assert (await client.get("/openapi.json")).status_code == 404


async def test_sources_default_their_type_and_format(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/v1/sources", json={"name": "defaults_only"})
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["source_type"] == DEFAULT_SOURCE_TYPE
    assert created["format_type"] == DEFAULT_FORMAT_TYPE


async def test_stored_json_is_refused_with_the_reason(client: httpx.AsyncClient) -> None:
    nul = await client.post(
        "/api/v1/sources", json={"name": "with_nul", "configuration": {"a": {"b": "x\u0000y"}}}
    )
    body = assert_problem(nul, 422, "configuration: ")
    assert "a.b: contains a NUL character" in body["detail"], body
    big = await client.post(
        "/api/v1/sources",
        content=b'{"name": "with_big", "configuration": {"n": 100000000000000000000000000000}}',
        headers=JSON,
    )
    assert_problem(big, 422, "n: an integer beyond 64 bits (send it as text)")


async def test_preferences_name_why_they_cannot_be_kept(settings: Settings) -> None:
    secured = settings.model_copy(update={"auth_required": True})
    async with running_app(secured) as client:
        login = await client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": TEST_PASSWORDS["admin"]}
        )
        assert login.status_code == 200, login.text
        auth = {"Authorization": f"Bearer {login.json()['token']}", **JSON}
        big = await client.put(
            "/api/v1/auth/me/preferences", content=b'{"page": {"size": 1e999}}', headers=auth
        )
        assert_problem(big, 422, "preferences.page.size: a number out of range")
        huge = await client.put(
            "/api/v1/auth/me/preferences", content=b'{"n": 18446744073709551616}', headers=auth
        )
        assert_problem(huge, 422, "preferences.n: an integer beyond 64 bits")
        kept = await client.put("/api/v1/auth/me/preferences", json={"n": 2**64 - 1}, headers=auth)
        assert kept.status_code == 200 and kept.json() == {"n": 2**64 - 1}, kept.text


async def test_integral_numbers_are_integers(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/v1/alert-rules",
        json={"name": "whole", "threshold": 5.0, "window_seconds": 60.0, "source": 1.0},
    )
    assert response.status_code == 201, response.text
    assert response.json()["threshold"] == 5
    fraction = await client.post(
        "/api/v1/alert-rules", json={"name": "half", "threshold": 5.5, "window_seconds": 60}
    )
    assert_problem(fraction, 422, "threshold: ")


async def test_metadata_filters_as_the_document_writes_them(client: httpx.AsyncClient) -> None:
    """`metadata[http.status]=500` (deepObject, what generated clients send) finds what
    `metadata.http.status=500` finds."""
    for status in (500, 200):
        created = await client.post(
            "/api/v1/logs",
            json={
                "source": "app_errors",
                "message": "deep",
                "metadata": {"http": {"status": status}},
            },
        )
        assert created.status_code == 201, created.text
    deep = await client.get("/api/v1/logs", params={"metadata[http.status]": "500", "q": "deep"})
    dotted = await client.get("/api/v1/logs", params={"metadata.http.status": "500", "q": "deep"})
    assert deep.status_code == dotted.status_code == 200, deep.text
    assert [e["metadata"] for e in deep.json()["items"]] == [{"http": {"status": 500}}]
    assert deep.json()["items"] == dotted.json()["items"]
    wrong = await client.get("/api/v1/logs", params={"metadata[a b]": "1"})
    assert_problem(wrong, 422, "metadata keys are 1 to 64 of A-Z a-z 0-9 _ -")
    # A name is read whole (`$` also matches before a final newline).
    deep_newline = await client.get("/api/v1/logs", params={"metadata[http.status]\n": "500"})
    assert_problem(deep_newline, 422, "unknown parameter")
    dotted_newline = await client.get("/api/v1/logs", params={"metadata.http.status\n": "500"})
    assert_problem(dotted_newline, 422, "metadata keys are 1 to 64 of A-Z a-z 0-9 _ -")
