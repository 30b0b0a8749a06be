"""Access control against real PostgreSQL and Redis: sessions, API keys, roles, source
grants (search, aggregates, tail and the cache), audit, brute force, and what a dump holds.

Threat model: a caller with no, forged, expired or revoked credentials; a logged-in user
or key reaching past its role or its sources, directly or through a cached answer; a
password guesser; an attacker holding a copy of the database or of Redis."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import bcrypt
import httpx
import orjson
import pytest
from pydantic import SecretStr

from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.db.seed import TEST_PASSWORDS
from logkeep.ingest.worker import Worker
from tests.conftest import running_app, served

NDJSON = {"Content-Type": "application/x-ndjson"}


@pytest.fixture
def secured(settings: Settings) -> Settings:
    return settings.model_copy(update={"auth_required": True})


@pytest.fixture
async def api(secured: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(secured) as http:
        yield http


async def login(api: httpx.AsyncClient, username: str, password: str | None = None) -> str:
    response = await api.post(
        "/api/v1/auth/login",
        json={"username": username, "password": password or TEST_PASSWORDS[username]},
    )
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def source_ids(db: Database) -> dict[str, int]:
    async with db.pool.acquire() as conn:
        return {r["name"]: r["id"] for r in await conn.fetch("SELECT id, name FROM log_sources")}


async def user_id(db: Database, username: str) -> int:
    async with db.pool.acquire() as conn:
        found: int = await conn.fetchval("SELECT id FROM users WHERE username = $1", username)
    return found


async def create_key(
    api: httpx.AsyncClient, admin: str, scopes: list[str], **extra: Any
) -> dict[str, Any]:
    response = await api.post(
        "/api/v1/api-keys",
        json={"name": f"k-{uuid.uuid4().hex[:6]}", "scopes": scopes, **extra},
        headers=bearer(admin),
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


# -- the matrix -----------------------------------------------------------------------

READ_CALLS = [
    ("GET", "/api/v1/logs", None),
    ("GET", "/api/v1/logs/recent", None),
    ("GET", "/api/v1/stats/histogram", None),
    ("GET", "/api/v1/stats/summary", None),
]
INGEST_CALLS = [
    ("POST", "/api/v1/ingest", b'{"source": "app_errors", "message": "matrix"}'),
    ("POST", "/api/v1/logs", b'{"source": "app_errors", "message": "matrix"}'),
]
ANALYST_CALLS = [
    ("GET", "/api/v1/saved-searches", None),
    ("POST", "/api/v1/saved-searches", b'{"name": "NAME", "params": {"q": "x"}}'),
    ("GET", "/api/v1/alert-rules", None),
    (
        "POST",
        "/api/v1/alert-rules",
        b'{"name": "NAME", "source": SOURCE, "threshold": 5, "window_seconds": 60}',
    ),
]
ADMIN_CALLS = [
    ("GET", "/api/v1/users", None),
    ("GET", "/api/v1/api-keys", None),
    ("GET", "/api/v1/sources", None),
    ("PATCH", "/api/v1/sources/1", b'{"is_active": true}'),
]
ALL_CALLS = READ_CALLS + INGEST_CALLS + ANALYST_CALLS + ADMIN_CALLS

ALLOWED = {
    "admin": {*map(str, ALL_CALLS)},
    "analyst": {*map(str, READ_CALLS + ANALYST_CALLS)},
    "viewer": {*map(str, READ_CALLS)},
    "ingest-key": {*map(str, INGEST_CALLS)},
    "read-key": {*map(str, READ_CALLS)},
    "nobody": set(),
}


async def call(
    api: httpx.AsyncClient,
    method: str,
    path: str,
    body: bytes | None,
    token: str | None,
    source_id: int = 0,
) -> httpx.Response:
    headers = {"Content-Type": "application/json", **(bearer(token) if token else {})}
    if body is not None:
        body = body.replace(b"NAME", uuid.uuid4().hex[:8].encode())
        body = body.replace(b"SOURCE", str(source_id).encode())
    return await api.request(method, path, content=body, headers=headers)


async def test_every_role_and_key_scope_against_every_endpoint(
    api: httpx.AsyncClient, db: Database
) -> None:
    admin = await login(api, "admin")
    ids = await source_ids(db)
    for user in ("analyst", "viewer"):
        granted = await api.post(
            f"/api/v1/users/{await user_id(db, user)}/grants",
            json={"sources": [ids["app_errors"]]},
            headers=bearer(admin),
        )
        assert granted.status_code == 204
    tokens: dict[str, str | None] = {
        "admin": admin,
        "analyst": await login(api, "analyst"),
        "viewer": await login(api, "viewer"),
        "ingest-key": (await create_key(api, admin, ["ingest"], all_sources=True))["key"],
        "read-key": (await create_key(api, admin, ["read"], sources=[ids["app_errors"]]))["key"],
        "nobody": None,
    }
    failures = []
    for caller, token in tokens.items():
        for method, path, body in ALL_CALLS:
            response = await call(api, method, path, body, token, ids["app_errors"])
            allowed = str((method, path, body)) in ALLOWED[caller]
            expected = "allowed" if allowed else ("401" if token is None else "403")
            got = "allowed" if response.status_code < 400 else str(response.status_code)
            if got != expected:
                failures.append(
                    f"{caller} {method} {path}: {response.status_code} {response.text[:120]}"
                )
    assert not failures, "\n".join(failures)


async def test_without_credentials_only_health_and_metrics_answer(settings: Settings) -> None:
    prod = settings.model_copy(update={"env": "prod", "auth_required": None})
    assert prod.requires_auth
    async with running_app(prod) as api:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await api.get(path)).status_code == 200
        for method, path, body in [*ALL_CALLS, ("GET", "/api/v1/auth/me", None)]:
            response = await call(api, method, path, body, None)
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["WWW-Authenticate"] == "Bearer"


# -- sources a caller may read ----------------------------------------------------------


async def test_a_viewer_sees_only_granted_sources_everywhere(
    api: httpx.AsyncClient, db: Database
) -> None:
    ids = await source_ids(db)
    admin = await login(api, "admin")
    # The admin's answers go into the cache first: the viewer must never get them.
    everything = await api.get("/api/v1/logs", params={"since": "7d"}, headers=bearer(admin))
    assert {i["source"] for i in everything.json()["items"]} == set(ids)
    await api.get("/api/v1/stats/summary", headers=bearer(admin))
    await api.post(
        f"/api/v1/users/{await user_id(db, 'viewer')}/grants",
        json={"sources": [ids["nginx_access"]]},
        headers=bearer(admin),
    )
    viewer = bearer(await login(api, "viewer"))

    page = await api.get("/api/v1/logs", params={"since": "7d"}, headers=viewer)
    assert page.status_code == 200
    assert {i["source"] for i in page.json()["items"]} == {"nginx_access"}
    export = await api.get(
        "/api/v1/logs",
        params={"since": "7d"},
        headers={**viewer, "Accept": "application/x-ndjson"},
    )
    assert {orjson.loads(line)["source"] for line in export.text.splitlines()} == {"nginx_access"}
    recent = await api.get("/api/v1/logs/recent", headers=viewer)
    assert {i["source"] for i in recent.json()["items"]} == {"nginx_access"}
    summary = (await api.get("/api/v1/stats/summary", headers=viewer)).json()
    assert {s["source"] for s in summary["sources"]} == {"nginx_access"}
    hist_all = await api.get(
        "/api/v1/stats/histogram", params={"since": "7d"}, headers=bearer(admin)
    )
    hist_viewer = await api.get("/api/v1/stats/histogram", params={"since": "7d"}, headers=viewer)
    assert hist_viewer.json()["total"] < hist_all.json()["total"]

    for path in ("/api/v1/logs", "/api/v1/stats/histogram", "/api/v1/logs/recent"):
        refused = await api.get(path, params={"source": "app_errors"}, headers=viewer)
        assert refused.status_code == 403, path
        # A source that does not exist gets the same answer: no probing for names.
        missing = await api.get(path, params={"source": "no-such-source"}, headers=viewer)
        assert missing.status_code == 403, path
        assert refused.json()["detail"].replace("app_errors", "X") == missing.json()[
            "detail"
        ].replace("no-such-source", "X")


async def test_a_grant_takes_effect_on_the_next_request_cache_included(
    api: httpx.AsyncClient, db: Database
) -> None:
    ids = await source_ids(db)
    admin = bearer(await login(api, "admin"))
    viewer_id = await user_id(db, "viewer")
    grants = f"/api/v1/users/{viewer_id}/grants"
    await api.post(grants, json={"sources": [ids["app_errors"]]}, headers=admin)
    viewer = bearer(await login(api, "viewer"))
    params = {"since": "7d"}
    before = await api.get("/api/v1/logs", params=params, headers=viewer)
    assert {i["source"] for i in before.json()["items"]} == {"app_errors"}
    await api.post(grants, json={"sources": [ids["db_slow_queries"]]}, headers=admin)
    after = await api.get("/api/v1/logs", params=params, headers=viewer)
    assert {i["source"] for i in after.json()["items"]} == {"app_errors", "db_slow_queries"}
    await api.request("DELETE", grants, json={"sources": [ids["app_errors"]]}, headers=admin)
    revoked = await api.get("/api/v1/logs", params=params, headers=viewer)
    assert {i["source"] for i in revoked.json()["items"]} == {"db_slow_queries"}


async def test_tail_sends_only_granted_sources(secured: Settings, db: Database) -> None:
    ids = await source_ids(db)
    async with served(secured) as base_url, httpx.AsyncClient(base_url=base_url) as api:
        admin = bearer(await login(api, "admin"))
        await api.post(
            f"/api/v1/users/{await user_id(db, 'viewer')}/grants",
            json={"sources": [ids["app_errors"]]},
            headers=admin,
        )
        viewer = bearer(await login(api, "viewer"))
        refused = await api.get("/api/v1/tail", params={"source": "nginx_access"}, headers=viewer)
        assert refused.status_code == 403
        seen: list[str] = []

        async def read_tail() -> None:
            async with api.stream("GET", "/api/v1/tail", headers=viewer, timeout=10) as stream:
                async for line in stream.aiter_lines():
                    if line.startswith("data: {"):
                        seen.append(orjson.loads(line[6:])["message"])
                        if "granted" in seen[-1]:
                            return

        reader = asyncio.create_task(read_tail())
        await asyncio.sleep(0.5)
        tag = uuid.uuid4().hex
        for source, text in (("nginx_access", "hidden"), ("app_errors", "granted")):
            response = await api.post(
                "/api/v1/logs",
                json={"source": source, "message": f"{text} {tag}"},
                headers=admin,
            )
            assert response.status_code == 201
        await asyncio.wait_for(reader, 10)
    assert seen == [f"granted {tag}"]


# -- credentials ------------------------------------------------------------------------


async def test_login_failures_look_the_same_and_are_audited(
    api: httpx.AsyncClient, db: Database
) -> None:
    wrong = await api.post("/api/v1/auth/login", json={"username": "viewer", "password": "nope"})
    unknown = await api.post("/api/v1/auth/login", json={"username": "ghost", "password": "nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert (
        wrong.json()
        == unknown.json()
        == {
            "type": "about:blank",
            "title": "Unauthorized",
            "status": 401,
            "detail": "invalid username or password",
        }
    )
    assert wrong.headers["www-authenticate"] == unknown.headers["www-authenticate"] == "Bearer"
    await login(api, "viewer")
    async with db.pool.acquire() as conn:
        actions = [
            r["action"] for r in await conn.fetch("SELECT action FROM audit_log ORDER BY id")
        ]
    assert actions == ["login_failed", "login_failed", "login"]


async def test_forged_expired_revoked_and_logged_out_tokens_are_refused(
    api: httpx.AsyncClient, db: Database
) -> None:
    for forged in ("lks_" + "A" * 43, "lkk_" + "A" * 43, "garbage", "' OR 1=1 --"):
        response = await api.get("/api/v1/auth/me", headers=bearer(forged))
        assert response.status_code == 401, forged
    assert (
        await api.get("/api/v1/auth/me", headers={"Authorization": "Basic x"})
    ).status_code == 401

    token = await login(api, "viewer")
    assert (await api.get("/api/v1/auth/me", headers=bearer(token))).status_code == 200
    assert (await api.post("/api/v1/auth/logout", headers=bearer(token))).status_code == 204
    assert (await api.get("/api/v1/auth/me", headers=bearer(token))).status_code == 401

    expiring = await login(api, "viewer")
    keys = [k async for k in db.redis.scan_iter(match=f"{db.keys.prefix}session:*")]
    for key in keys:
        await db.redis.pexpire(key, 1)
    await asyncio.sleep(0.05)
    assert (await api.get("/api/v1/auth/me", headers=bearer(expiring))).status_code == 401

    admin = await login(api, "admin")
    key = await create_key(api, admin, ["read"], all_sources=True)
    assert (await api.get("/api/v1/logs", headers=bearer(key["key"]))).status_code == 200
    revoked = await api.delete(f"/api/v1/api-keys/{key['id']}", headers=bearer(admin))
    assert revoked.status_code == 204
    assert (await api.get("/api/v1/logs", headers=bearer(key["key"]))).status_code == 401


async def test_disabling_a_user_or_changing_a_password_ends_live_sessions(
    api: httpx.AsyncClient, db: Database
) -> None:
    admin = bearer(await login(api, "admin"))
    viewer = bearer(await login(api, "viewer"))
    analyst = bearer(await login(api, "analyst"))
    viewer_id, analyst_id = await user_id(db, "viewer"), await user_id(db, "analyst")
    await api.patch(f"/api/v1/users/{viewer_id}", json={"is_active": False}, headers=admin)
    assert (await api.get("/api/v1/auth/me", headers=viewer)).status_code == 401
    refused = await api.post(
        "/api/v1/auth/login", json={"username": "viewer", "password": TEST_PASSWORDS["viewer"]}
    )
    assert refused.status_code == 401

    new_password = "a-new-long-password"
    changed = await api.patch(
        f"/api/v1/users/{analyst_id}", json={"password": new_password}, headers=admin
    )
    assert changed.status_code == 200
    assert (await api.get("/api/v1/auth/me", headers=analyst)).status_code == 401
    await login(api, "analyst", new_password)


async def test_brute_force_is_limited_per_user(secured: Settings) -> None:
    strict = secured.model_copy(update={"login_max_failures_per_user": 3})
    async with running_app(strict) as api:
        for _ in range(3):
            bad = await api.post(
                "/api/v1/auth/login", json={"username": "admin", "password": "guess"}
            )
            assert bad.status_code == 401
        blocked = await api.post(
            "/api/v1/auth/login", json={"username": "admin", "password": TEST_PASSWORDS["admin"]}
        )
        assert blocked.status_code == 429
        assert 1 <= int(blocked.headers["Retry-After"]) <= strict.login_failure_window_s
        # Another user from the same address is not locked out by the first one's limit.
        await login(api, "viewer")


@pytest.mark.parametrize(
    "username",
    ["admin' OR '1'='1", "admin\x00", "a" * 65, "ädmin", "admin; DROP TABLE users; --"],
)
async def test_injection_strings_in_credentials_are_just_wrong(
    api: httpx.AsyncClient, username: str
) -> None:
    response = await api.post(
        "/api/v1/auth/login", json={"username": username, "password": "' OR 1=1 --"}
    )
    assert response.status_code in (401, 422)


async def test_ingest_needs_a_key_limited_to_its_sources(
    api: httpx.AsyncClient, db: Database, secured: Settings
) -> None:
    ids = await source_ids(db)
    admin = await login(api, "admin")
    body = b'{"source": "app_errors", "message": "k"}\n{"source": "nginx_access", "message": "k"}'
    assert (await api.post("/api/v1/ingest", content=body, headers=NDJSON)).status_code == 401
    key = await create_key(api, admin, ["ingest"], sources=[ids["app_errors"]])
    response = await api.post(
        "/api/v1/ingest", content=body, headers={**NDJSON, **bearer(key["key"])}
    )
    assert response.status_code == 202
    assert response.json()["accepted"] == 1
    assert "not granted" in response.json()["errors"][0]["reason"]
    text = await api.post(
        "/api/v1/ingest",
        params={"source": "nginx_access"},
        content=b"line",
        headers={"Content-Type": "text/plain", **bearer(key["key"])},
    )
    assert text.status_code == 422
    assert (await Worker(db, secured, name="auth").drain()) == 1


async def test_a_dump_holds_no_usable_secret(api: httpx.AsyncClient, db: Database) -> None:
    admin = await login(api, "admin")
    key = await create_key(api, admin, ["read"], all_sources=True)
    listed = await api.get("/api/v1/api-keys", headers=bearer(admin))
    assert key["key"] not in listed.text
    rows = []
    async with db.pool.acquire() as conn:
        for table in ("users", "api_keys", "audit_log"):
            rows += await conn.fetch(f"SELECT * FROM {table}")
    dump = " ".join(str(row) for row in rows)
    for secret in (*TEST_PASSWORDS.values(), admin, key["key"], key["key"][12:]):
        assert secret not in dump
    redis_dump = [
        (k, await db.redis.get(k))
        async for k in db.redis.scan_iter(match=f"{db.keys.prefix}session:*")
    ]
    assert redis_dump
    assert all(admin.encode() not in k and admin.encode() not in (v or b"") for k, v in redis_dump)


async def test_bcrypt_hashes_verify_and_are_upgraded(api: httpx.AsyncClient, db: Database) -> None:
    legacy = bcrypt.hashpw(b"legacy-password-1", bcrypt.gensalt(rounds=4)).decode()
    async with db.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO users (username, email, password_hash, role) "
            "VALUES ('legacy', 'legacy@x', $1, 'viewer')",
            legacy,
        )
    await login(api, "legacy", "legacy-password-1")
    async with db.pool.acquire() as conn:
        stored = await conn.fetchval("SELECT password_hash FROM users WHERE username = 'legacy'")
    assert stored.startswith("$argon2id$")


async def test_me_preferences_and_security_headers(api: httpx.AsyncClient) -> None:
    token = bearer(await login(api, "viewer"))
    me = await api.get("/api/v1/auth/me", headers=token)
    assert me.json()["name"] == "viewer"
    assert me.json()["actions"] == ["read"]
    saved = await api.put("/api/v1/auth/me/preferences", json={"theme": "dark"}, headers=token)
    assert saved.status_code == 200
    assert (await api.get("/api/v1/auth/me", headers=token)).json()["preferences"] == {
        "theme": "dark"
    }
    assert me.headers["X-Content-Type-Options"] == "nosniff"
    assert me.headers["X-Frame-Options"] == "DENY"
    assert "default-src 'none'" in me.headers["Content-Security-Policy"]


async def test_sessions_survive_an_api_restart(secured: Settings) -> None:
    async with running_app(secured) as api:
        token = await login(api, "viewer")
    async with running_app(secured) as api:
        assert (await api.get("/api/v1/auth/me", headers=bearer(token))).status_code == 200


async def test_admin_actions_are_audited(api: httpx.AsyncClient, db: Database) -> None:
    admin = bearer(await login(api, "admin"))
    created = await api.post(
        "/api/v1/users",
        json={
            "username": "newbie",
            "email": "n@x.io",
            "password": "long-enough-pw",
            "role": "viewer",
        },
        headers=admin,
    )
    assert created.status_code == 201
    source = await api.post(
        "/api/v1/sources",
        json={"name": "edge-proxy", "source_type": "web", "format_type": "nginx_combined"},
        headers=admin,
    )
    assert source.status_code == 201
    bad_rules = await api.post(
        "/api/v1/sources",
        json={"name": "bad", "source_type": "x", "format_type": "regex", "parsing_rules": {}},
        headers=admin,
    )
    assert bad_rules.status_code == 422
    async with db.pool.acquire() as conn:
        actions = {r["action"] for r in await conn.fetch("SELECT action FROM audit_log")}
    assert {"login", "user_created", "source_created"} <= actions


async def test_login_with_redis_down_is_503(secured: Settings, short_tmp: Any) -> None:
    from logkeep.embedded import EmbeddedRedis

    redis_server = EmbeddedRedis(short_tmp / "redis", ephemeral=True)
    redis_server.start()
    try:
        own = secured.model_copy(update={"redis_url": redis_server.url()})
        async with running_app(own) as api:
            token = await login(api, "viewer")
            redis_server.stop()
            down = await api.post(
                "/api/v1/auth/login",
                json={"username": "viewer", "password": TEST_PASSWORDS["viewer"]},
            )
            assert down.status_code == 503
            assert "Redis" in down.json()["detail"]
            assert down.headers["Retry-After"]
            session = await api.get("/api/v1/auth/me", headers=bearer(token))
            assert session.status_code == 503
    finally:
        redis_server.stop()


async def test_readiness_tells_anonymous_callers_no_paths(
    secured: Settings, short_tmp: Any
) -> None:
    from logkeep.embedded import EmbeddedRedis

    redis_server = EmbeddedRedis(short_tmp / "redis", ephemeral=True)
    redis_server.start()
    try:
        own = secured.model_copy(update={"redis_url": redis_server.url()})
        async with running_app(own) as api:
            redis_server.stop()
            response = await api.get("/readyz")
    finally:
        redis_server.stop()
    assert response.status_code == 503
    assert response.json()["problems"]["redis"] in {"ConnectionError", "TimeoutError"}
    assert str(short_tmp) not in response.text


async def test_alert_rules_stay_within_the_analysts_sources(
    api: httpx.AsyncClient, db: Database
) -> None:
    ids = await source_ids(db)
    admin = bearer(await login(api, "admin"))
    await api.post(
        f"/api/v1/users/{await user_id(db, 'analyst')}/grants",
        json={"sources": [ids["app_errors"]]},
        headers=admin,
    )
    analyst = bearer(await login(api, "analyst"))
    rule = {"threshold": 10, "window_seconds": 300, "min_level": "ERROR"}
    mine = await api.post(
        "/api/v1/alert-rules",
        json={"name": "errors", "source": ids["app_errors"], **rule},
        headers=analyst,
    )
    assert mine.status_code == 201, mine.text
    other = await api.post(
        "/api/v1/alert-rules",
        json={"name": "nginx", "source": ids["nginx_access"], **rule},
        headers=admin,
    )
    assert other.status_code == 201
    for body in ({"name": "x", "source": ids["nginx_access"], **rule}, {"name": "y", **rule}):
        refused = await api.post("/api/v1/alert-rules", json=body, headers=analyst)
        assert refused.status_code == 403
    listed = await api.get("/api/v1/alert-rules", headers=analyst)
    assert [r["name"] for r in listed.json()] == ["errors"]
    gone = await api.delete(f"/api/v1/alert-rules/{other.json()['id']}", headers=analyst)
    assert gone.status_code == 404
    assert (
        await api.delete(f"/api/v1/alert-rules/{mine.json()['id']}", headers=analyst)
    ).status_code == 204


async def test_a_caller_with_no_grants_sees_nothing_even_live(
    secured: Settings, db: Database
) -> None:
    async with served(secured) as base_url, httpx.AsyncClient(base_url=base_url) as api:
        admin = bearer(await login(api, "admin"))
        viewer = bearer(await login(api, "viewer"))  # no grants at all
        for path in ("/api/v1/logs", "/api/v1/logs/recent"):
            page = await api.get(
                path, params={"since": "7d"} if path.endswith("logs") else {}, headers=viewer
            )
            assert page.json()["items"] == [], path
        summary = await api.get("/api/v1/stats/summary", headers=viewer)
        assert summary.json()["sources"] == []
        seen: list[str] = []

        async def read_tail() -> None:
            async with api.stream("GET", "/api/v1/tail", headers=viewer, timeout=10) as stream:
                async for line in stream.aiter_lines():
                    if line.startswith("data: {"):
                        seen.append(line)

        reader = asyncio.create_task(read_tail())
        await asyncio.sleep(0.5)
        await api.post(
            "/api/v1/logs", json={"source": "app_errors", "message": "secret"}, headers=admin
        )
        await asyncio.sleep(1.5)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
    assert seen == []


async def test_an_open_tail_ends_when_its_key_is_revoked(secured: Settings, db: Database) -> None:
    async with served(secured) as base_url, httpx.AsyncClient(base_url=base_url) as api:
        admin = await login(api, "admin")
        key = await create_key(api, admin, ["read"], all_sources=True)

        async def read_tail() -> int:
            lines = 0
            async with api.stream(
                "GET", "/api/v1/tail", headers=bearer(key["key"]), timeout=30
            ) as stream:
                async for _ in stream.aiter_lines():
                    lines += 1
            return lines

        reader = asyncio.create_task(read_tail())
        await asyncio.sleep(0.5)
        await api.delete(f"/api/v1/api-keys/{key['id']}", headers=bearer(admin))
        # The stream checks its credentials every few seconds and ends.
        await asyncio.wait_for(reader, 15)


async def test_json_array_ingest_honours_the_keys_sources(
    api: httpx.AsyncClient, db: Database
) -> None:
    ids = await source_ids(db)
    admin = await login(api, "admin")
    key = await create_key(api, admin, ["ingest"], sources=[ids["nginx_access"]])
    response = await api.post(
        "/api/v1/ingest",
        json=[{"source": "app_errors", "message": "forged"}],
        headers=bearer(key["key"]),
    )
    assert response.status_code == 422
    assert "not granted" in response.json()["errors"][0]["reason"]


async def test_parallel_guesses_cannot_outrun_the_throttle(secured: Settings) -> None:
    strict = secured.model_copy(update={"login_max_failures_per_user": 3})
    async with running_app(strict) as api:
        answers = await asyncio.gather(
            *(
                api.post("/api/v1/auth/login", json={"username": "viewer", "password": "guess"})
                for _ in range(12)
            )
        )
    codes = sorted(a.status_code for a in answers)
    assert codes.count(401) == 3, codes
    assert codes.count(429) == 9, codes


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/auth/login", b'{"username": "admin", "password": "pw\\ud800"}'),
        ("POST", "/api/v1/saved-searches", b'{"name": "a\\u0000b", "params": {}}'),
        # A key of params is stored as given: jsonb refused NUL with a 500.
        ("POST", "/api/v1/saved-searches", b'{"name": "k", "params": {"q\\u0000": "x"}}'),
        ("POST", "/api/v1/saved-searches", b'{"name": "k", "params": {"pw\\ud800": "x"}}'),
        ("DELETE", "/api/v1/saved-searches/1099511627776", None),
        ("DELETE", "/api/v1/alert-rules/1099511627776", None),
        ("PUT", "/api/v1/auth/me/preferences", b'{"x": "\\ud800"}'),
        ("POST", "/api/v1/users/1/grants", b'{"sources": [99999999999]}'),
        (
            "POST",
            "/api/v1/users",
            b'{"username": "u", "email": "a\\u0000@x", "password": "long-enough-pw"}',
        ),
    ],
)
async def test_hostile_input_is_422_and_never_echoed(
    api: httpx.AsyncClient, method: str, path: str, body: bytes | None
) -> None:
    admin = await login(api, "admin")
    response = await api.request(
        method, path, content=body,
        headers={"Content-Type": "application/json", **bearer(admin)},
    )  # fmt: skip
    assert response.status_code in (401, 404, 422), response.text
    assert "ud800" not in response.text and "pw" not in response.text.replace("password", "")


async def test_bodies_are_limited_on_every_route(secured: Settings) -> None:
    small = secured.model_copy(update={"max_body_bytes": 2048})
    async with running_app(small) as api:
        big = b'{"username": "admin", "password": "' + b"x" * 5000 + b'"}'
        response = await api.post(
            "/api/v1/auth/login", content=big, headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 413
    assert "2048-byte limit" in response.json()["detail"]


async def test_prod_refuses_to_run_without_authentication(settings: Settings) -> None:
    from logkeep.config import SettingsError

    prod = settings.model_copy(
        update={
            "env": "prod",
            "auth_required": False,
            "secret_key": SecretStr("a-real-secret-key"),
            "admin_password": SecretStr("a-real-admin-pw"),
        }
    )
    with pytest.raises(SettingsError, match="LOGKEEP_AUTH_REQUIRED=false"):
        prod.check_for_startup()
