"""The explorer's server side against real PostgreSQL and Redis: the page and its assets,
the browser's sign-in and its CSRF checks, and the endpoints the page adds (context,
facets, match histogram, export link, rule preview, grants) with the not.metadata filter."""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from logkeep.api.web_session import csrf_token
from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.db.repositories import LogRepository
from logkeep.db.seed import TEST_PASSWORDS
from tests.conftest import running_app


@pytest.fixture
def secured(settings: Settings) -> Settings:
    return settings.model_copy(update={"auth_required": True})


@pytest.fixture
async def api(secured: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(secured) as http:
        yield http


@pytest.fixture
def logs(db: Database) -> LogRepository:
    return LogRepository(db.pool, db.redis_client, cache=db.cache, tail=db.tail)


SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


async def web_login(api: httpx.AsyncClient, username: str) -> dict[str, Any]:
    response = await api.post(
        "/api/v1/auth/web/login",
        json={"username": username, "password": TEST_PASSWORDS[username]},
        headers=SAME_ORIGIN,
    )
    assert response.status_code == 200, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def bearer(api: httpx.AsyncClient, username: str) -> dict[str, str]:
    response = await api.post(
        "/api/v1/auth/login", json={"username": username, "password": TEST_PASSWORDS[username]}
    )
    return {"Authorization": f"Bearer {response.json()['token']}"}


# -- the page ---------------------------------------------------------------------------


async def test_page_and_assets(client: httpx.AsyncClient) -> None:
    page = await client.get("/", headers={"Accept-Encoding": "identity"})
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache"
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe" not in csp and "frame-ancestors 'none'" in csp
    assets = re.findall(r'(?:src|href)="(/static/[0-9a-f]{12}/[^"]+)"', page.text)
    assert any(a.endswith("/app.js") for a in assets) and any(
        a.endswith("uplot-1.6.32.min.css") for a in assets
    )
    for path in assets:
        plain = await client.get(path, headers={"Accept-Encoding": "identity"})
        assert plain.status_code == 200, path
        assert plain.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert "content-encoding" not in plain.headers
    script = assets[[a.endswith("/app.js") for a in assets].index(True)]
    zipped = await client.get(script, headers={"Accept-Encoding": "gzip"})
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["content-type"] == "text/javascript; charset=utf-8"
    assert zipped.headers["vary"] == "Accept-Encoding"
    # httpx decodes: the body is the same script.
    assert (
        zipped.content
        == (await client.get(script, headers={"Accept-Encoding": "identity"})).content
    )
    # An earlier build's URL leads to the current asset; an unknown asset is a 404.
    old = await client.get("/static/000000000000/app.js")
    assert old.status_code == 307 and old.headers["location"] == script
    assert (await client.get(script.replace("app.js", "nope.js"))).status_code == 404
    escape = script.rsplit("/", 1)[0] + "/..%2F..%2Fpyproject.toml"
    assert (await client.get(escape)).status_code == 404


async def test_the_vendored_chart_is_the_pinned_one() -> None:
    from importlib import resources

    vendor = resources.files("logkeep").joinpath("web/vendor")
    names = sorted(p.name for p in vendor.iterdir())
    assert names == ["uplot-1.6.32.LICENSE", "uplot-1.6.32.esm.js", "uplot-1.6.32.min.css"]
    assert (
        "MIT" in vendor.joinpath("uplot-1.6.32.LICENSE").read_text()
        or "Permission is hereby granted" in vendor.joinpath("uplot-1.6.32.LICENSE").read_text()
    )
    assert gzip.compress(vendor.joinpath("uplot-1.6.32.esm.js").read_bytes())  # readable


# -- signing in from the browser --------------------------------------------------------


async def test_web_login_sets_an_httponly_strict_cookie(api: httpx.AsyncClient) -> None:
    answer = await web_login(api, "analyst")
    assert "token" not in answer
    cookie = api.cookies.jar._cookies  # type: ignore[attr-defined]
    raw = next(iter(next(iter(cookie.values())).values()))["logkeep_session"]
    assert raw.value.startswith("lks_")
    assert raw.has_nonstandard_attr("HttpOnly")
    assert raw.get_nonstandard_attr("SameSite") == "strict"
    assert not raw.secure
    assert answer["csrf_token"] == csrf_token(raw.value)
    session = (await api.get("/api/v1/auth/web/session")).json()
    assert session["signed_in"] is True and session["name"] == "analyst"
    assert session["csrf_token"] == answer["csrf_token"]


async def test_over_https_the_cookie_is_secure_and_host_only(secured: Settings) -> None:
    async with running_app(secured) as plain:
        transport = plain._transport  # the same app, reached as https
        async with httpx.AsyncClient(transport=transport, base_url="https://logkeep.test") as api:
            response = await api.post(
                "/api/v1/auth/web/login",
                json={"username": "viewer", "password": TEST_PASSWORDS["viewer"]},
                headers=SAME_ORIGIN,
            )
            header = response.headers["set-cookie"]
            assert header.startswith("__Host-logkeep_session=")
            assert "Secure" in header and "HttpOnly" in header and "SameSite=strict" in header
            assert "Domain" not in header and "Path=/" in header
            assert (await api.get("/api/v1/auth/me")).json()["name"] == "viewer"


async def test_web_login_refuses_forms_and_other_sites(api: httpx.AsyncClient) -> None:
    body = {"username": "admin", "password": TEST_PASSWORDS["admin"]}
    form = await api.post("/api/v1/auth/web/login", data=body, headers=SAME_ORIGIN)
    assert form.status_code in (415, 422)
    cross = await api.post(
        "/api/v1/auth/web/login", json=body, headers={"Sec-Fetch-Site": "cross-site"}
    )
    assert cross.status_code == 403
    other = await api.post(
        "/api/v1/auth/web/login", json=body, headers={"Origin": "https://evil.example"}
    )
    assert other.status_code == 403
    assert "set-cookie" not in other.headers
    wrong = await api.post(
        "/api/v1/auth/web/login", json={**body, "password": "nope"}, headers=SAME_ORIGIN
    )
    assert wrong.status_code == 401


async def test_writes_with_the_cookie_need_the_csrf_token(api: httpx.AsyncClient) -> None:
    answer = await web_login(api, "analyst")
    search = {"name": "mine", "params": {"q": "x"}}
    assert (await api.get("/api/v1/saved-searches")).status_code == 200  # reads need none
    missing = await api.post("/api/v1/saved-searches", json=search, headers=SAME_ORIGIN)
    assert missing.status_code == 403 and "CSRF" in missing.text
    wrong = await api.post(
        "/api/v1/saved-searches", json=search, headers={**SAME_ORIGIN, "X-CSRF-Token": "0" * 64}
    )
    assert wrong.status_code == 403
    token = {"X-CSRF-Token": answer["csrf_token"]}
    cross = await api.post(
        "/api/v1/saved-searches", json=search, headers={"Sec-Fetch-Site": "cross-site", **token}
    )
    assert cross.status_code == 403
    origin = await api.post(
        "/api/v1/saved-searches", json=search, headers={"Origin": "http://evil.test", **token}
    )
    assert origin.status_code == 403
    assert (await api.get("/api/v1/saved-searches")).json() == []
    ok = await api.post(
        "/api/v1/saved-searches",
        json=search,
        headers={"Origin": "http://logkeep.test", **token},
    )
    assert ok.status_code == 201, ok.text
    # Another session's token does not fit this session.
    other = await web_login(api, "admin")
    assert other["csrf_token"] != answer["csrf_token"]


async def test_bearer_callers_need_no_csrf_token_and_ignore_cookies(
    api: httpx.AsyncClient,
) -> None:
    await web_login(api, "viewer")  # a viewer's cookie in the jar
    headers = await bearer(api, "analyst")
    created = await api.post(
        "/api/v1/saved-searches", json={"name": "b", "params": {}}, headers=headers
    )
    assert created.status_code == 201  # the header wins: the analyst, no CSRF needed


async def test_web_logout_ends_the_session(api: httpx.AsyncClient) -> None:
    answer = await web_login(api, "analyst")
    assert (await api.post("/api/v1/auth/web/logout", headers=SAME_ORIGIN)).status_code == 403
    out = await api.post(
        "/api/v1/auth/web/logout", headers={**SAME_ORIGIN, "X-CSRF-Token": answer["csrf_token"]}
    )
    assert out.status_code == 204
    assert 'logkeep_session=""' in out.headers["set-cookie"]
    assert (await api.get("/api/v1/auth/web/session")).json() == {"signed_in": False}


# -- context ------------------------------------------------------------------------------


async def write_run(
    logs: LogRepository, source_id: int, texts: list[str], at: datetime
) -> list[int]:
    ids = []
    for n, text in enumerate(texts):
        ids.append(
            await logs.save_log_entry(
                {
                    "source_id": source_id,
                    "message": text,
                    "timestamp": at + timedelta(seconds=n // 2),
                }
            )
        )
    return ids


async def test_context_walks_one_source_by_lines(
    client: httpx.AsyncClient, logs: LogRepository
) -> None:
    # Newer than the seeded entries (a minute and more before the template was made).
    at = datetime.now(UTC) - timedelta(seconds=50)
    # Two entries per second (ties broken by id), and another source in the same seconds.
    ids = await write_run(logs, 3, [f"line {n}" for n in range(30)], at)
    await write_run(logs, 2, [f"noise {n}" for n in range(30)], at)
    anchor = (
        await client.get(
            f"/api/v1/logs/{ids[10]}",
            params={"source": "db_slow_queries", "at": (at + timedelta(seconds=5)).isoformat()},
        )
    ).json()
    assert anchor["message"] == "line 10"
    params = {"source": "3", "at": anchor["timestamp"], "before": 4, "after": 5}
    ctx = (await client.get(f"/api/v1/logs/{ids[10]}/context", params=params)).json()
    assert [e["message"] for e in ctx["before"]] == [f"line {n}" for n in range(6, 10)]
    assert [e["message"] for e in ctx["after"]] == [f"line {n}" for n in range(11, 16)]
    assert ctx["more_before"] is True and ctx["more_after"] is True
    # From the last entry: nothing after it, and the earlier ones in order.
    last = ctx["after"][-1]
    tail = (
        await client.get(
            f"/api/v1/logs/{ids[29]}/context",
            params={
                "source": "3",
                "at": (at + timedelta(seconds=14)).isoformat(),
                "before": 3,
                "after": 10,
            },
        )
    ).json()
    assert tail["after"] == [] and tail["more_after"] is False
    assert [e["id"] for e in tail["before"]] == ids[26:29]
    assert last["id"] == ids[15]
    # Everything before the first line of the run is the seeded entries of that source.
    head = (
        await client.get(
            f"/api/v1/logs/{ids[0]}/context",
            params={"source": "3", "at": at.isoformat(), "before": 500, "after": 0},
        )
    ).json()
    assert all(e["source"] == "db_slow_queries" for e in head["before"])
    assert head["more_before"] is False


async def test_context_and_entry_are_refused_clearly(
    api: httpx.AsyncClient, logs: LogRepository, db: Database
) -> None:
    at = datetime.now(UTC) - timedelta(minutes=5)
    entry_id = await logs.save_log_entry({"source_id": 1, "message": "edge", "timestamp": at})
    admin = await bearer(api, "admin")
    viewer = await bearer(api, "viewer")  # granted nothing in the test seed
    params = {"source": "nginx_access", "at": at.isoformat()}
    assert (
        await api.get(f"/api/v1/logs/{entry_id}", params=params, headers=viewer)
    ).status_code == 403
    assert (
        await api.get(f"/api/v1/logs/{entry_id}/context", params=params, headers=viewer)
    ).status_code == 403
    assert (
        await api.get(f"/api/v1/logs/{entry_id}", params=params, headers=admin)
    ).status_code == 200
    missing = await api.get(f"/api/v1/logs/{entry_id + 1000}", params=params, headers=admin)
    assert missing.status_code == 404
    bad_at = await api.get(
        f"/api/v1/logs/{entry_id}", params={**params, "at": "yesterday"}, headers=admin
    )
    assert bad_at.status_code == 422 and "at" in bad_at.text
    unknown = await api.get(
        f"/api/v1/logs/{entry_id}", params={**params, "source": "nope"}, headers=admin
    )
    assert unknown.status_code == 422
    too_many = await api.get(
        f"/api/v1/logs/{entry_id}/context", params={**params, "before": 501}, headers=admin
    )
    assert too_many.status_code == 422
    assert (await api.get(f"/api/v1/logs/{entry_id}", params=params)).status_code == 401
    # /api/v1/logs/recent is still its own route.
    assert (await api.get("/api/v1/logs/recent", headers=admin)).status_code == 200


# -- facets, histogram, exclusion, export ------------------------------------------------


async def test_facets_histogram_exclusion_and_export(
    client: httpx.AsyncClient, logs: LogRepository
) -> None:
    at = datetime.now(UTC) - timedelta(minutes=30)
    word = "facetword"
    entries = [
        {
            "source_id": 2,
            "level": "ERROR",
            "message": f"{word} a",
            "metadata": {"status": 503, "code": "503", "host": "a"},
        },
        {
            "source_id": 2,
            "level": "ERROR",
            "message": f"{word} b",
            "metadata": {"status": 503, "host": "b"},
        },
        {
            "source_id": 1,
            "level": "WARN",
            "message": f"{word} c",
            "metadata": {"status": 404, "host": "a", "tags": ["x"]},
        },
    ]
    for n, e in enumerate(entries):
        await logs.save_log_entry({**e, "timestamp": at + timedelta(seconds=n)})
    facets = (await client.get("/api/v1/logs/facets", params={"q": word, "since": "1h"})).json()
    assert facets["sample"] == 3 and facets["complete"] is True
    fields = {f["field"]: f for f in facets["fields"]}
    assert {v["value"]: v["count"] for v in fields["source"]["values"]} == {
        "app_errors": 2,
        "nginx_access": 1,
    }
    assert {v["value"]: v["count"] for v in fields["level"]["values"]} == {"ERROR": 2, "WARN": 1}
    status = {v["filter"]: v["count"] for v in fields["status"]["values"]}
    assert status == {"503": 2, "404": 1}
    assert fields["code"]["values"] == [{"value": "503", "filter": '"503"', "count": 1}]
    assert "tags" not in fields  # arrays cannot be filtered by value
    # Each facet's filter finds exactly what it counted.
    for field in ("status", "code", "host"):
        for value in fields[field]["values"]:
            found = (
                await client.get(
                    "/api/v1/logs",
                    params={"q": word, "since": "1h", f"metadata.{field}": value["filter"]},
                )
            ).json()["items"]
            assert len(found) == value["count"], (field, value)
    # Leaving out host a: only b.
    left = (
        await client.get(
            "/api/v1/logs", params={"q": word, "since": "1h", "not.metadata.host": "a"}
        )
    ).json()
    assert [e["message"] for e in left["items"]] == [f"{word} b"]
    # The match histogram counts the same entries, by level.
    hist = (await client.get("/api/v1/logs/histogram", params={"q": word, "since": "1h"})).json()
    assert hist["total"] == 3
    assert sum(b["counts"]["ERROR"] for b in hist["buckets"]) == 2
    excluded = (
        await client.get(
            "/api/v1/logs/histogram",
            params={"q": word, "since": "1h", "not.metadata.status": "503"},
        )
    ).json()
    assert excluded["total"] == 1
    assert (await client.get("/api/v1/logs/histogram", params={"q": "!!!"})).status_code == 422
    # The export link: every match, as an attachment.
    export = await client.get(
        "/api/v1/logs/export", params={"q": word, "since": "1h", "format": "csv"}
    )
    assert export.headers["content-disposition"] == 'attachment; filename="logs.csv"'
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [r["message"] for r in rows] == [f"{word} c", f"{word} b", f"{word} a"]
    ndjson = await client.get(
        "/api/v1/logs/export", params={"q": word, "since": "1h", "format": "ndjson"}
    )
    assert len(ndjson.text.splitlines()) == 3
    assert (await client.get("/api/v1/logs/export", params={"format": "xml"})).status_code == 422


# -- administration ------------------------------------------------------------------------


async def test_rule_preview(api: httpx.AsyncClient) -> None:
    admin = await bearer(api, "admin")
    rules = {
        "pattern": r"took (?P<ms>[0-9]+) ms",
        "level_by_ms": {"500": "WARN", "default": "INFO"},
    }
    parsed = await api.post(
        "/api/v1/sources/preview",
        json={"format_type": "regex", "parsing_rules": rules, "line": "took 900 ms"},
        headers=admin,
    )
    assert parsed.status_code == 200, parsed.text
    answer = parsed.json()
    assert answer["accepted"] and answer["parsed"]
    assert answer["entry"]["level"] == "WARN" and answer["entry"]["metadata"] == {"ms": 900}
    unfit = (
        await api.post(
            "/api/v1/sources/preview",
            json={"format_type": "regex", "parsing_rules": rules, "line": "nothing here"},
            headers=admin,
        )
    ).json()
    assert unfit["accepted"] and not unfit["parsed"] and unfit["reason"]
    assert unfit["entry"]["message"] == "nothing here"
    old = (
        await api.post(
            "/api/v1/sources/preview",
            json={
                "format_type": "json",
                "line": '{"message": "x", "timestamp": "1990-01-01T00:00:00Z"}',
            },
            headers=admin,
        )
    ).json()
    assert old["accepted"] is False and "timestamp" in old["reason"]
    bad = await api.post(
        "/api/v1/sources/preview",
        json={"format_type": "regex", "parsing_rules": {"pattern": "(open"}, "line": "x"},
        headers=admin,
    )
    assert bad.status_code == 422 and "pattern" in bad.text
    unknown = await api.post(
        "/api/v1/sources/preview", json={"format_type": "yaml", "line": "x"}, headers=admin
    )
    assert unknown.status_code == 422
    analyst = await bearer(api, "analyst")
    refused = await api.post(
        "/api/v1/sources/preview", json={"format_type": "text", "line": "x"}, headers=analyst
    )
    assert refused.status_code == 403


async def test_user_grants(api: httpx.AsyncClient, db: Database) -> None:
    admin = await bearer(api, "admin")
    async with db.pool.acquire() as conn:
        viewer_id = await conn.fetchval("SELECT id FROM users WHERE username = 'viewer'")
    assert (await api.get(f"/api/v1/users/{viewer_id}/grants", headers=admin)).json()[
        "sources"
    ] == []
    await api.post(f"/api/v1/users/{viewer_id}/grants", json={"sources": [3, 1]}, headers=admin)
    assert (await api.get(f"/api/v1/users/{viewer_id}/grants", headers=admin)).json()[
        "sources"
    ] == [1, 3]
    viewer = await bearer(api, "viewer")
    assert (await api.get(f"/api/v1/users/{viewer_id}/grants", headers=viewer)).status_code == 403
