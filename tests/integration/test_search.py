"""GET /api/v1/logs against real PostgreSQL and Redis: filters, pages, cache, exports, plans."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from fastapi import FastAPI
from starlette.types import Message, Scope

from logkeep.api.app import create_app
from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.db.partitions import ensure_partitions
from logkeep.db.repositories import LogRepository
from logkeep.db.search import page_statement, planner_settings
from logkeep.domain.partitions import partition_name
from logkeep.domain.search import parse_search
from tests.integration.test_api import metric_samples, sample

INJECTION = "'; DROP TABLE log_entries; --"
SEED_ENTRIES = 60
Params = Sequence[tuple[str, str | int]]


async def search(
    client: httpx.AsyncClient, params: Params, accept: str | None = None
) -> httpx.Response:
    headers = {"Accept": accept} if accept else {}
    return await client.get("/api/v1/logs", params=list(params), headers=headers)


async def all_pages(
    client: httpx.AsyncClient, params: Params, cursor: str | None = None
) -> list[dict[str, Any]]:
    """Every item, following next_cursor (from `cursor` when given) to the last page."""
    items: list[dict[str, Any]] = []
    while True:
        response = await search(client, [*params, *([("cursor", cursor)] if cursor else [])])
        assert response.status_code == 200, response.text
        body = response.json()
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items


async def ids_where(db: Database, where: str = "true", *args: Any) -> list[int]:
    """Straightforward SQL: ids matching `where` in the last 24 hours, newest first."""
    async with db.pool.acquire() as conn:
        rows = await conn.fetch(
            f"""SELECT id FROM log_entries
                WHERE "timestamp" >= now() - interval '24 hours' AND ({where})
                ORDER BY "timestamp" DESC, id DESC""",
            *args,
        )
    return [row["id"] for row in rows]


async def entry_count(db: Database) -> int:
    async with db.pool.acquire() as conn:
        count: int = await conn.fetchval("SELECT count(*) FROM log_entries")
    return count


async def source_ids(db: Database) -> dict[str, int]:
    async with db.pool.acquire() as conn:
        rows = await conn.fetch("SELECT name, id FROM log_sources")
    return {row["name"]: row["id"] for row in rows}


# Rows added to the 60 seed entries: words, substrings with LIKE wildcards, nested and
# typed metadata, CSV-hostile text and an injection string, all stored as data.
CORPUS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("app_errors", "ERROR", "Payment failed: card declined for ORD-1", {"http": {"status": 500}}),
    ("app_errors", "FATAL", "payment FAILED again, giving up", {"http": {"status": 502}}),
    ("app_errors", "WARN", "payment retried", {"http": {"status": 500, "retry": True}}),
    ("db_slow_queries", "WARN", "disk 100% full on db-1", {"host": "db-1", "ok": False}),
    ("db_slow_queries", "INFO", "disk_full_warning on db_2", {"host": "db_2", "ok": True}),
    ("db_slow_queries", "INFO", "diskXfull is a pattern match only", {"trace": None}),
    ("nginx_access", "ERROR", "GET /api/v1/orders HTTP/1.1 500", {"status": 500, "method": "GET"}),
    ("nginx_access", "INFO", "status as text", {"status": "500", "method": "POST"}),
    ("nginx_access", "WARN", 'multi\nline, "quoted", =cmd()', {"csv": 'a,b\n"c"'}),
    ("app_errors", "ERROR", INJECTION, {"note": INJECTION}),
]


@pytest.fixture
async def corpus(log_repo: LogRepository, db: Database) -> list[int]:
    """The corpus, a few seconds apart within the last minute, plus one row 2 days old."""
    ids = await source_ids(db)
    now = datetime.now(UTC)
    entries: list[dict[str, Any]] = [
        {
            "source_id": ids[source],
            "level": level,
            "message": message,
            "metadata": metadata,
            "timestamp": now - timedelta(seconds=50 - 5 * n, microseconds=n),
        }
        for n, (source, level, message, metadata) in enumerate(CORPUS)
    ]
    entries.append(
        {
            "source_id": ids["app_errors"],
            "level": "ERROR",
            "message": "payment failed long ago",
            "timestamp": now - timedelta(days=2),
        }
    )
    await log_repo.save_many(entries)
    async with db.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT id FROM log_entries ORDER BY id DESC LIMIT $1", len(entries)
        )
    return sorted(row["id"] for row in rows)


# ---------------------------------------------------------------------------------------
# Results


async def test_default_window_newest_first_in_the_recent_item_shape(
    client: httpx.AsyncClient, db: Database
) -> None:
    response = await search(client, [("limit", 1000)])
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["next_cursor"] is None
    assert [item["id"] for item in body["items"]] == await ids_where(db)
    assert len(body["items"]) == SEED_ENTRIES

    recent = (await client.get("/api/v1/logs/recent", params={"limit": 1})).json()["items"][0]
    assert body["items"][0] == recent  # same keys, same values, same text for timestamps


FILTER_CASES: list[tuple[str, Params, str, list[Any]]] = [
    ("source-name", [("source", "app_errors")], "source_id = $1", ["@app_errors"]),
    (
        "sources-name-and-id",
        [("source", "app_errors"), ("source", "#nginx_access")],
        "source_id = ANY($1::integer[])",
        [["@app_errors", "@nginx_access"]],
    ),
    ("level", [("level", "error")], "level = 'ERROR'", []),
    ("levels", [("level", "ERROR"), ("level", "fatal")], "level IN ('ERROR', 'FATAL')", []),
    ("min-level", [("min_level", "error")], "level IN ('ERROR', 'FATAL')", []),
    ("min-level-alias", [("min_level", "warning")], "level IN ('WARN', 'ERROR', 'FATAL')", []),
    (
        "words",
        [("q", "payment FAILED")],
        "to_tsvector('simple', message) @@ plainto_tsquery('simple', $1)",
        ["payment failed"],
    ),
    ("word-in-path", [("q", "GET")], "message LIKE 'GET %'", []),
    ("words-none", [("q", "payment nosuchword")], "false", []),
    ("contains", [("contains", "DISK 100% ")], "strpos(lower(message), $1) > 0", ["disk 100% "]),
    ("contains-underscore", [("contains", "k_f")], "strpos(message, 'k_f') > 0", []),
    ("contains-percent", [("contains", "%")], "strpos(message, '%') > 0", []),
    ("contains-quote", [("contains", '"quoted"')], "strpos(message, '\"quoted\"') > 0", []),
    (
        "metadata-nested-number",
        [("metadata.http.status", "500")],
        "metadata #> '{http,status}' = '500'::jsonb",
        [],
    ),
    (
        "metadata-two-filters",
        [("metadata.http.status", "500"), ("metadata.http.retry", "true")],
        "metadata #> '{http,retry}' = 'true'::jsonb",
        [],
    ),
    ("metadata-number", [("metadata.status", "500")], "metadata -> 'status' = '500'::jsonb", []),
    (
        "metadata-quoted-string",
        [("metadata.status", '"500"')],
        "metadata -> 'status' = '\"500\"'::jsonb",
        [],
    ),
    ("metadata-false", [("metadata.ok", "false")], "metadata -> 'ok' = 'false'::jsonb", []),
    ("metadata-null", [("metadata.trace", "null")], "metadata -> 'trace' = 'null'::jsonb", []),
    ("metadata-seed", [("metadata.seq", "3")], "metadata -> 'seq' = '3'::jsonb", []),
    (
        "combined",
        [
            ("source", "app_errors"),
            ("min_level", "warn"),
            ("q", "payment"),
            ("metadata.http.status", "500"),
        ],
        "source_id = $1 AND level >= 'WARN' AND message ILIKE '%payment%' "
        "AND metadata #> '{http,status}' = '500'::jsonb",
        ["@app_errors"],
    ),
    (
        "injection-as-data",
        [("contains", INJECTION), ("q", "drop table"), ("metadata.note", INJECTION)],
        "message = $1",
        [INJECTION],
    ),
]


@pytest.mark.parametrize(
    ("params", "where", "args"),
    [case[1:] for case in FILTER_CASES],
    ids=[case[0] for case in FILTER_CASES],
)
async def test_filters_match_straightforward_sql(
    client: httpx.AsyncClient,
    db: Database,
    corpus: list[int],
    params: Params,
    where: str,
    args: list[Any],
) -> None:
    ids = await source_ids(db)

    def resolve(value: Any) -> Any:
        # "@name" stands for a source id in SQL arguments, "#name" for its digits as a
        # request parameter.
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if isinstance(value, str) and value[:1] == "@":
            return ids[value[1:]]
        return value

    request = [
        (k, str(ids[v[1:]]) if isinstance(v, str) and v[:1] == "#" else v) for k, v in params
    ]
    expected = await ids_where(db, where, *resolve(args))
    items = await all_pages(client, [*request, ("limit", 3)])
    assert [item["id"] for item in items] == expected
    if where != "false":
        assert expected, "a filter case that matches nothing proves little"


async def test_time_windows(client: httpx.AsyncClient, db: Database, corpus: list[int]) -> None:
    old = corpus[-1]  # the entry of two days ago
    assert old not in [i["id"] for i in await all_pages(client, [("limit", 1000)])]
    three_days = [i["id"] for i in await all_pages(client, [("since", "3d"), ("limit", 1000)])]
    assert old in three_days
    assert len(three_days) == SEED_ENTRIES + len(CORPUS) + 1

    async with db.pool.acquire() as conn:
        bounds = await conn.fetchrow(
            'SELECT min("timestamp"), max("timestamp") FROM log_entries WHERE id = ANY($1)',
            corpus[:-1],
        )
        assert bounds is not None
        low, high = bounds[0], bounds[1]
        expected = [
            r["id"]
            for r in await conn.fetch(
                'SELECT id FROM log_entries WHERE "timestamp" >= $1 AND "timestamp" < $2 '
                'ORDER BY "timestamp" DESC, id DESC',
                low,
                high,
            )
        ]
    window = [("from", low.isoformat()), ("to", high.isoformat()), ("limit", 1000)]
    assert [i["id"] for i in await all_pages(client, window)] == expected
    assert len(expected) == len(CORPUS) - 1  # `to` is exclusive


# ---------------------------------------------------------------------------------------
# Pagination


@pytest.mark.parametrize(
    "params",
    [[], [("min_level", "warn")], [("contains", "entry")], [("source", "app_errors")]],
    ids=["per-source-shape", "levels", "filtered-shape", "one-source"],
)
async def test_pages_neither_skip_nor_repeat_while_rows_arrive(
    client: httpx.AsyncClient, db: Database, params: Params
) -> None:
    # Seed rows of the three sources share timestamps, so page boundaries fall inside
    # groups of equal timestamps: the id must break the tie.
    snapshot = [i["id"] for i in (await search(client, [*params, ("limit", 1000)])).json()["items"]]
    assert len(snapshot) > 8
    seen: list[int] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = (
            await search(client, [*params, ("limit", 4), *([("cursor", cursor)] if cursor else [])])
        ).json()
        seen.extend(item["id"] for item in page["items"])
        pages += 1
        for source in ("app_errors", "nginx_access"):  # newer rows land between pages
            written = await client.post(
                "/api/v1/logs",
                json={"source": source, "message": f"new entry {pages}", "level": "error"},
            )
            assert written.status_code == 201, written.text
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == snapshot
    assert pages == -(-len(snapshot) // 4)


async def test_a_relative_window_keeps_its_start_across_pages(
    client: httpx.AsyncClient, log_repo: LogRepository, db: Database
) -> None:
    ids = await source_ids(db)
    # Just inside the hour when the first page is read, outside it 2.5 seconds later.
    edge = datetime.now(UTC) - timedelta(hours=1) + timedelta(seconds=1.8)
    await log_repo.save_log_entry(
        {"source_id": ids["app_errors"], "message": "edge of the window", "timestamp": edge}
    )
    params: list[tuple[str, str | int]] = [("since", "1h"), ("limit", 25)]
    first = (await search(client, params)).json()
    assert first["next_cursor"]
    await asyncio.sleep(2.5)
    items = first["items"] + await all_pages(client, params, first["next_cursor"])
    assert items[-1]["message"] == "edge of the window"
    assert len(items) == SEED_ENTRIES + 1


# ---------------------------------------------------------------------------------------
# Cache


async def search_metrics(client: httpx.AsyncClient) -> tuple[float, float]:
    samples = metric_samples((await client.get("/metrics")).text)
    return (
        sample(samples, "logkeep_cache_hits_total", kind="search"),
        sample(samples, "logkeep_cache_misses_total", kind="search"),
    )


async def test_a_cached_search_sees_the_next_write(
    client: httpx.AsyncClient, log_repo: LogRepository, db: Database
) -> None:
    ids = await source_ids(db)
    now = datetime.now(UTC)
    params = [
        ("from", (now - timedelta(hours=2)).isoformat()),
        ("to", (now + timedelta(minutes=30)).isoformat()),
        ("q", "invoice"),
    ]
    hits, misses = await search_metrics(client)
    assert (await search(client, params)).json()["items"] == []
    assert (await search(client, params)).json()["items"] == []
    assert await search_metrics(client) == (hits + 1, misses + 1)

    # Through the API...
    created = await client.post(
        "/api/v1/logs", json={"source": "app_errors", "message": "invoice 7 sent"}
    )
    assert created.status_code == 201
    items = (await search(client, params)).json()["items"]
    assert [i["id"] for i in items] == [created.json()["id"]]

    # ...and through the repository, from another process's point of view.
    second = await log_repo.save_log_entry(
        {"source_id": ids["db_slow_queries"], "message": "invoice 8 sent"}
    )
    items = (await search(client, params)).json()["items"]
    assert [i["id"] for i in items] == [second, created.json()["id"]]


async def test_a_write_to_another_source_keeps_a_scoped_search_cached(
    client: httpx.AsyncClient,
) -> None:
    now = datetime.now(UTC)
    params = [
        ("from", (now - timedelta(hours=1)).isoformat()),
        ("to", (now + timedelta(minutes=30)).isoformat()),
        ("source", "nginx_access"),
    ]
    first = (await search(client, params)).json()
    hits, _ = await search_metrics(client)
    written = await client.post("/api/v1/logs", json={"source": "app_errors", "message": "x"})
    assert written.status_code == 201
    assert (await search(client, params)).json() == first
    assert (await search_metrics(client))[0] == hits + 1


# ---------------------------------------------------------------------------------------
# Exports


async def test_ndjson_streams_every_matching_row_ignoring_limit_and_cursor(
    client: httpx.AsyncClient, db: Database, corpus: list[int]
) -> None:
    page = (await search(client, [("limit", 2)])).json()
    params = [("limit", 2), ("cursor", page["next_cursor"])]
    response = await search(client, params, accept="application/x-ndjson")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    items = [orjson.loads(line) for line in response.text.splitlines()]
    assert [i["id"] for i in items] == await ids_where(db)
    assert len(items) == SEED_ENTRIES + len(CORPUS)
    json_items = {i["id"]: i for i in await all_pages(client, [("limit", 1000)])}
    assert all(json_items[i["id"]] == i for i in items)  # the same item shape

    filtered = await search(client, [("q", "payment")], accept="application/x-ndjson")
    expected = await ids_where(db, "message ILIKE '%payment%'")
    assert [orjson.loads(line)["id"] for line in filtered.text.splitlines()] == expected


async def test_csv_export_parses_back(
    client: httpx.AsyncClient, db: Database, corpus: list[int]
) -> None:
    response = await search(client, [("source", "nginx_access")], accept="text/csv")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    async with db.pool.acquire() as conn:
        expected = await conn.fetch(
            """SELECT e.id, e.message, e.metadata, e.level FROM log_entries e
               JOIN log_sources s ON s.id = e.source_id
               WHERE s.name = 'nginx_access' AND e."timestamp" >= now() - interval '24 hours'
               ORDER BY e."timestamp" DESC, e.id DESC"""
        )
    assert [int(r["id"]) for r in rows] == [r["id"] for r in expected]
    for row, want in zip(rows, expected, strict=True):
        assert row["message"] == want["message"]
        assert json.loads(row["metadata"]) == want["metadata"]
        assert row["level"] == want["level"]
        assert row["source"] == "nginx_access"
        assert row["timestamp"].endswith("Z")
    assert any("\n" in r["message"] and '"quoted"' in r["message"] for r in rows)

    empty = await search(client, [("q", "nosuchword")], accept="text/csv")
    assert empty.text.strip() == "id,timestamp,source,level,message,metadata"


async def asgi_get(app: FastAPI, query: str, accept: str) -> list[Message]:
    """The ASGI messages the app sends for one GET, as a server would see them
    (httpx's ASGI transport joins the body chunks into one)."""
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/api/v1/logs",
        "raw_path": b"/api/v1/logs",
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"logkeep.test"), (b"accept", accept.encode())],
        "client": ("127.0.0.1", 1),
        "server": ("logkeep.test", 80),
        "state": {},
    }
    sent: list[Message] = []
    requested = False

    async def receive() -> Message:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays connected
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_exports_stop_at_the_row_limit_and_arrive_in_chunks(
    settings: Settings, log_repo: LogRepository, db: Database
) -> None:
    ids = await source_ids(db)
    now = datetime.now(UTC)
    await log_repo.save_many(
        {
            "source_id": ids["nginx_access"],
            "message": f"bulk {n}",
            "timestamp": now - timedelta(milliseconds=n),
        }
        for n in range(2500)
    )
    app = create_app(settings.model_copy(update={"stream_max_rows": 2200}))
    async with app.router.lifespan_context(app):
        messages = await asgi_get(app, "limit=5", "application/x-ndjson")
        start = messages[0]
        assert start["type"] == "http.response.start" and start["status"] == 200
        assert (b"x-logkeep-row-limit", b"2200") in start["headers"]
        bodies = [m["body"] for m in messages[1:] if m["body"]]
        # Sent as batches of rows while they are read, never as one body.
        assert len(bodies) >= 3
        lines = b"".join(bodies).splitlines()
        assert [orjson.loads(line)["id"] for line in lines] == (await ids_where(db))[:2200]
        # Every export gave its connection back: more exports than the pool has.
        for _ in range(6):
            again = await asgi_get(app, "q=nosuchword", "text/csv")
            assert again[0]["status"] == 200
            assert b"".join(m.get("body", b"") for m in again[1:]).startswith(b"id,timestamp")


# ---------------------------------------------------------------------------------------
# Bad input


async def truncated_cursor(client: httpx.AsyncClient) -> str:
    cursor: str = (await search(client, [("limit", 2)])).json()["next_cursor"]
    return cursor[:-4]


BAD_REQUESTS: list[tuple[str, Params, str]] = [
    ("reversed", [("from", "2030-01-02T00:00:00Z"), ("to", "2030-01-01T00:00:00Z")], "from"),
    ("too-long", [("from", "2000-01-01T00:00:00Z")], "from"),
    ("absurd-past", [("from", "1970-01-01T00:00:00Z"), ("to", "1970-01-02T00:00:00Z")], "to"),
    ("absurd-future", [("from", "2999-01-01T00:00:00Z"), ("to", "2999-01-02T00:00:00Z")], "from"),
    ("year-99999", [("to", "99999-01-01T00:00:00Z")], "to"),
    ("since-huge", [("since", "999999d")], "since"),
    ("to-first-instant", [("to", "0001-01-01T00:00:00Z")], "to"),
    ("since-garbage", [("since", "a while")], "since"),
    ("since-and-from", [("since", "1h"), ("from", "2030-01-01T00:00:00Z")], "since"),
    ("limit-0", [("limit", 0)], "limit"),
    ("limit-billion", [("limit", 10**9)], "limit"),
    ("limit-negative", [("limit", -1)], "limit"),
    ("limit-text", [("limit", "ten")], "limit"),
    ("limit-twice", [("limit", 5), ("limit", 6)], "limit"),
    ("cursor-garbage", [("cursor", "not a cursor")], "cursor"),
    ("cursor-base64-junk", [("cursor", "eyJ2IjoxfQ")], "cursor"),
    ("source-unknown", [("source", "no_such_source")], "source"),
    ("source-id-unknown", [("source", "9999")], "source"),
    ("unknown-parameter", [("sort", "asc")], "sort"),
    ("unknown-parameters", [("sort", "asc"), ("colour", "red")], "colour"),
    ("level-and-min-level", [("level", "error"), ("min_level", "warn")], "min_level"),
    ("level-bogus", [("level", "LOUD")], "level"),
    ("too-many-metadata", [(f"metadata.k{n}", 1) for n in range(9)], "metadata"),
    ("metadata-bad-key", [("metadata.a b", 1)], "metadata.a b"),
    ("metadata-empty-key", [("metadata.", 1)], "metadata."),
    ("metadata-conflict", [("metadata.a", 1), ("metadata.a.b", 2)], "metadata.a.b"),
    ("metadata-out-of-range", [("metadata.a", "1e999")], "metadata.a"),  # 10**30 is kept
    ("q-empty", [("q", "")], "q"),
    ("q-punctuation", [("q", "-- ;")], "q"),
    ("contains-empty", [("contains", "")], "contains"),
    ("nul", [("q", "a\x00b")], "q"),
]


@pytest.mark.parametrize(
    ("params", "param"), [c[1:] for c in BAD_REQUESTS], ids=[c[0] for c in BAD_REQUESTS]
)
async def test_bad_input_is_422_naming_the_parameter(
    client: httpx.AsyncClient, db: Database, params: Params, param: str
) -> None:
    for accept in (None, "application/x-ndjson"):
        response = await search(client, params, accept=accept)
        assert response.status_code == 422, f"{response.status_code}: {response.text}"
        detail = response.json()["detail"]
        assert isinstance(detail, str) and param in detail, detail
    assert await entry_count(db) == SEED_ENTRIES


async def test_truncated_and_foreign_cursors_are_422(
    client: httpx.AsyncClient, db: Database
) -> None:
    response = await search(client, [("cursor", await truncated_cursor(client))])
    assert response.status_code == 422, response.text
    assert "cursor" in response.json()["detail"]

    cursor = (await search(client, [("limit", 2), ("q", "entry")])).json()["next_cursor"]
    assert (await search(client, [("q", "entry"), ("cursor", cursor)])).status_code == 200
    other = await search(client, [("q", "other"), ("cursor", cursor)])
    assert other.status_code == 422, other.text
    assert "cursor" in other.json()["detail"] and "different filters" in other.json()["detail"]


INJECTABLE = [
    "from",
    "to",
    "since",
    "source",
    "level",
    "min_level",
    "q",
    "contains",
    "limit",
    "cursor",
    "metadata.note",
    f"metadata.{INJECTION}",
    INJECTION,
]


@pytest.mark.parametrize("name", INJECTABLE)
@pytest.mark.parametrize("value", [INJECTION, "1) OR 1=1 --", "$1", "\\'; SELECT pg_sleep(5); --"])
async def test_injection_in_every_parameter_is_refused_or_data(
    client: httpx.AsyncClient, db: Database, name: str, value: str
) -> None:
    for accept in (None, "text/csv"):
        response = await search(client, [(name, value)], accept=accept)
        assert response.status_code in (200, 422), f"{response.status_code}: {response.text}"
        if response.status_code == 200 and accept is None:
            # Only the text filters take any text, and as text: nothing in the seed matches.
            assert name in ("q", "contains", "metadata.note"), response.text
            assert response.json()["items"] == []
    assert await entry_count(db) == SEED_ENTRIES
    async with db.pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM log_sources") == 3


# ---------------------------------------------------------------------------------------
# Plans


async def explain(db: Database, params: Params) -> list[dict[str, Any]]:
    """The plan nodes of the API's statement for `params` (all sources), as it runs them."""
    query = parse_search(
        [(k, str(v)) for k, v in params],
        now=datetime.now(UTC),
        default_window=timedelta(hours=24),
        retention=timedelta(days=30),
        max_future=timedelta(hours=1),
    )
    sql, args = page_statement(query, None)
    async with db.pool.acquire() as conn, conn.transaction(readonly=True):
        await conn.execute(planner_settings(query))
        plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
    nodes: list[dict[str, Any]] = []

    def walk(node: dict[str, Any]) -> None:
        nodes.append(node)
        for child in node.get("Plans", []):
            walk(child)

    walk(json.loads(plan)[0]["Plan"] if isinstance(plan, str) else plan[0]["Plan"])
    return nodes


@pytest.fixture
async def week_of_rows(db: Database, log_repo: LogRepository) -> datetime:
    """Partitions for 6 days back and 2 ahead, 6,000 rows over the last 5 days of which a
    handful hold a rare word, analysed so that the planner knows."""
    now = datetime.now(UTC)
    async with db.pool.acquire() as conn:
        await ensure_partitions(conn, {(now + timedelta(days=d)).date() for d in range(-6, 3)})
    ids = await source_ids(db)
    names = list(ids)
    await log_repo.save_many(
        {
            "source_id": ids[names[n % 3]],
            "level": "INFO",
            "message": ("zebracorn sighted " if n % 1000 == 7 else "")
            + f"GET /api/v1/items/{n} HTTP/1.1 200 took {n % 97} ms",
            "metadata": {"status": 200 + n % 5, "n": n},
            "timestamp": now - timedelta(minutes=n * 1.2),
        }
        for n in range(6000)
    )
    async with db.pool.acquire() as conn:
        await conn.execute("VACUUM ANALYZE log_entries")
    return now


def window_partitions(now: datetime) -> set[str]:
    return {partition_name((now - timedelta(hours=24)).date()), partition_name(now.date())}


async def test_a_24h_word_query_reads_only_the_window_partitions_of_the_hot_tier(
    db: Database, week_of_rows: datetime
) -> None:
    """The hot tier has no full-text index (docs/storage.md): a word search reads the
    window's partitions, narrowed by ILIKE; the compressed tier has its own index."""
    nodes = await explain(db, [("since", "24h"), ("q", "zebracorn")])
    relations = {n["Relation Name"] for n in nodes if "Relation Name" in n} - {"log_sources"}
    assert relations, nodes
    assert relations <= window_partitions(week_of_rows), relations


async def test_a_24h_page_without_filters_walks_the_primary_key_of_the_window(
    db: Database, week_of_rows: datetime
) -> None:
    nodes = await explain(db, [("since", "24h"), ("limit", 100)])
    relations = {n["Relation Name"] for n in nodes if "Relation Name" in n} - {"log_sources"}
    assert relations <= window_partitions(week_of_rows), relations
    scans = {n["Node Type"] for n in nodes if n.get("Relation Name") in relations}
    assert scans == {"Index Scan"}, scans
    assert all(
        n["Index Name"].endswith("_pkey") for n in nodes if n.get("Relation Name") in relations
    )


async def test_a_24h_metadata_query_is_partition_pruned(
    db: Database, week_of_rows: datetime
) -> None:
    nodes = await explain(db, [("since", "24h"), ("metadata.n", 42)])
    relations = {n["Relation Name"] for n in nodes if "Relation Name" in n} - {"log_sources"}
    assert relations and relations <= window_partitions(week_of_rows), relations


async def test_the_search_parameters_are_documented(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/openapi.json")).json()
    operation = schema["paths"]["/api/v1/logs"]["get"]
    names = {p["name"] for p in operation["parameters"]}
    assert {"from", "to", "since", "source", "level", "min_level", "q", "contains"} <= names
    assert {"limit", "cursor"} <= names
    assert set(operation["responses"]["200"]["content"]) >= {
        "application/json",
        "application/x-ndjson",
        "text/csv",
    }


@pytest.mark.parametrize("limit", [1, 2, 3, 100])
async def test_word_pages_read_newest_slices_first_without_losing_rows(
    client: httpx.AsyncClient, db: Database, limit: int
) -> None:
    """Matches spread over the whole window, some in every slice the page reader tries
    (15 min, then 1 h 15, 5 h 15, 21 h 15 back) and on either side of their edges: every
    page size gives exactly the one-query answer."""
    now = datetime.now(UTC)
    offsets = [timedelta(minutes=m) for m in (1, 14, 16, 70, 80, 300, 320, 1270, 1280, 1430)]
    repo = LogRepository(db.pool, db.redis_client, cache=db.cache)
    await repo.save_many(
        [
            {"message": f"zebracorn sighting {n}", "source_id": 1, "timestamp": now - offset}
            for n, offset in enumerate(offsets)
        ]
    )
    async with db.pool.acquire() as conn:
        expected = [
            r["id"]
            for r in await conn.fetch(
                "SELECT id FROM log_entries WHERE message LIKE 'zebracorn%' "
                'ORDER BY "timestamp" DESC, id DESC'
            )
        ]
    seen: list[int] = []
    cursor: str | None = None
    for _ in range(20):
        params: list[tuple[str, str | int]] = [("q", "zebracorn"), ("limit", limit)]
        if cursor:
            params.append(("cursor", cursor))
        page = (await search(client, params)).json()
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == expected
    assert len(expected) == len(offsets)
