"""The protocol endpoints' answers, in each protocol's own format, and what they share
with /api/v1/ingest: sources on first use, credentials, access control, rate limits.
(The real clients' tests are beside this one.)"""

from __future__ import annotations

import asyncio
import base64
import gzip
import time
import zlib
from collections.abc import AsyncIterator
from typing import Any

import cramjam
import httpx
import orjson
import pytest
import uvicorn
from google.rpc.status_pb2 import Status

from logkeep.api.app import create_app
from logkeep.api.local import free_port
from logkeep.api.otlp import serve_with_otlp_port
from logkeep.config import Settings
from logkeep.db.access import AccessRepository
from logkeep.db.database import Database
from logkeep.domain.protocols import loki
from tests.conftest import running_app

NDJSON = {"content-type": "application/x-ndjson"}
PROTOBUF = {"content-type": "application/x-protobuf"}


def otlp_json(service: str, *records: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {
            "resourceLogs": [
                {
                    "resource": {
                        "attributes": [{"key": "service.name", "value": {"stringValue": service}}]
                    },
                    "scopeLogs": [{"logRecords": list(records)}],
                }
            ]
        }
    )


async def source_id(db: Database, name: str) -> int | None:
    async with db.pool.acquire() as conn:
        found: int | None = await conn.fetchval("SELECT id FROM log_sources WHERE name = $1", name)
        return found


# -- OTLP --------------------------------------------------------------------------------


async def test_otlp_json_partial_success_names_the_rejected(client: httpx.AsyncClient) -> None:
    body = otlp_json(
        "svc",
        {"timeUnixNano": "1700000000000000000", "body": {"stringValue": "too old"}},
        {"body": {"stringValue": "fine"}},
        {"body": {"stringValue": "nul \u0000 inside"}},
    )
    answer = await client.post(
        "/v1/logs", content=body, headers={"content-type": "application/json"}
    )
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    partial = answer.json()["partialSuccess"]
    assert partial["rejectedLogRecords"] == "2"
    assert "record 1: timestamp" in partial["errorMessage"]
    assert "record 3: message: contains a NUL" in partial["errorMessage"]


async def test_otlp_gzip_chunked_and_full_success(client: httpx.AsyncClient) -> None:
    body = gzip.compress(otlp_json("svc", {"body": {"stringValue": "zipped"}}))

    async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: sent chunked
        for start in range(0, len(body), 7):
            yield body[start : start + 7]

    answer = await client.post(
        "/v1/logs",
        content=chunked(),
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert answer.status_code == 200
    assert answer.json() == {}  # partial_success unset on full success


async def test_otlp_errors_are_status_messages(client: httpx.AsyncClient) -> None:
    answer = await client.post("/v1/logs", content=b"\xff\xfe junk", headers=PROTOBUF)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/x-protobuf"
    status = Status.FromString(answer.content)
    assert status.code == 3 and "ExportLogsServiceRequest" in status.message
    answer = await client.post("/v1/logs", content=b"x", headers={"content-type": "text/plain"})
    assert answer.status_code == 415
    empty = await client.post("/v1/logs", content=b"", headers=PROTOBUF)
    assert empty.status_code == 400
    broken = await client.post(
        "/v1/logs",
        content=b"\x1f\x8b\x08\x00broken",
        headers={"content-type": "application/json", "content-encoding": "gzip"},
    )
    assert broken.status_code == 400
    assert "gzip" in broken.json()["message"]


async def test_otlp_too_many_records_is_413(settings: Settings) -> None:
    few = settings.model_copy(update={"ingest_max_lines": 2})
    async with running_app(few) as http:
        records = [{"body": {"stringValue": f"r{i}"}} for i in range(3)]
        answer = await http.post(
            "/v1/logs",
            content=otlp_json("svc", *records),
            headers={"content-type": "application/json"},
        )
    assert answer.status_code == 413
    assert "over the limit of 2" in answer.json()["message"]


# -- Loki --------------------------------------------------------------------------------


async def test_loki_codings_partial_rejection_and_ready(client: httpx.AsyncClient) -> None:
    push = orjson.dumps({"streams": [{"stream": {"app": "lk"}, "values": [
        ["1700000000000000000", "ancient"], [str(time.time_ns()), "now"]]}]})  # fmt: skip
    answer = await client.post(
        "/loki/api/v1/push",
        content=zlib.compress(push),
        headers={"content-type": "application/json", "content-encoding": "deflate"},
    )
    assert answer.status_code == 400  # as Loki: the good entry stored, the bad one named
    assert answer.text.startswith("1 entry(s) rejected: entry 1: timestamp")
    request: Any = loki.PushRequest()
    stream = request.streams.add(labels='{app="lk"}')
    entry = stream.entries.add(line="snappy without a Content-Encoding")
    entry.timestamp.GetCurrentTime()
    raw = bytes(cramjam.snappy.compress_raw(request.SerializeToString()))
    answer = await client.post("/loki/api/v1/push", content=raw, headers=PROTOBUF)
    assert answer.status_code == 204
    answer = await client.post("/loki/api/v1/push", content=raw[:5], headers=PROTOBUF)
    assert answer.status_code == 400
    assert (await client.get("/ready")).status_code == 200


async def test_loki_rate_limited_is_429_with_retry_after(settings: Settings) -> None:
    tight = settings.model_copy(update={"rate_limit_client_eps": 1, "rate_limit_client_burst": 1})
    now = str(time.time_ns())
    push = orjson.dumps(
        {"streams": [{"stream": {"app": "lk"}, "values": [[now, "a"], [now, "b"]]}]}
    )
    async with running_app(tight) as http:
        first = await http.post(
            "/loki/api/v1/push", content=push, headers={"content-type": "application/json"}
        )
        second = await http.post(
            "/loki/api/v1/push", content=push, headers={"content-type": "application/json"}
        )
    assert first.status_code == 204  # larger than the burst, admitted once the budget is full
    assert second.status_code == 429
    assert int(second.headers["retry-after"]) >= 1


# -- Elasticsearch -----------------------------------------------------------------------


async def test_elasticsearch_handshake(client: httpx.AsyncClient) -> None:
    info = await client.get("/es/", headers={"accept": "application/json"})
    assert info.status_code == 200
    assert info.headers["x-elastic-product"] == "Elasticsearch"
    assert info.json()["version"]["number"].startswith("8.")
    assert (await client.head("/es/")).headers["x-elastic-product"] == "Elasticsearch"
    for path in ("/_license", "/es/_license"):
        answer = await client.get(path)
        assert answer.json()["license"]["status"] == "active"
    health = await client.get("/_cluster/health")
    assert health.json()["status"] == "green"
    assert (await client.head("/_cat/health")).status_code == 200
    for method, path in (("PUT", "/_index_template/logs"), ("PUT", "/_ilm/policy/keep"),
                         ("PUT", "/es/_template/old")):  # fmt: skip
        answer = await client.request(method, path, json={"anything": True})
        assert answer.json() == {"acknowledged": True}
        assert answer.headers["x-elastic-product"] == "Elasticsearch"


async def test_elasticsearch_bulk_media_types_and_errors(client: httpx.AsyncClient) -> None:
    body = (
        b'{"index": {"_type": "_doc"}}\n{"message": "one", "@timestamp": "2100-01-01T00:00:00Z"}\n'
        b"\n"
        b'{"create": {"_index": "other"}}\n{"message": "two"}\n'
    )
    compat = "application/vnd.elasticsearch+x-ndjson; compatible-with=8"
    answer = await client.post(
        "/App-Logs/_bulk",
        content=gzip.compress(body),
        headers={"content-type": compat, "content-encoding": "gzip",
                 "accept": "application/vnd.elasticsearch+json; compatible-with=8"},
    )  # fmt: skip
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/vnd.elasticsearch+json")
    result = answer.json()
    assert result["errors"] is True
    future, other = result["items"]
    assert future["index"]["status"] == 400
    assert "in the future" in future["index"]["error"]["reason"]
    assert future["index"]["_index"] == "App-Logs"
    assert other["create"]["status"] == 201 and other["create"]["_index"] == "other"
    malformed = await client.post("/_bulk", content=b"{nope}\n{}\n", headers=NDJSON)
    assert malformed.status_code == 400
    assert malformed.json()["error"]["type"] == "illegal_argument_exception"
    wrong = await client.post("/_bulk", content=b"{}", headers={"content-type": "text/csv"})
    assert wrong.status_code == 415
    empty = await client.post("/_bulk", content=b"\n\n", headers=NDJSON)
    assert empty.status_code == 400  # as Elasticsearch: a bulk request needs an action
    health = await client.get("/_cat/health")
    assert health.headers["content-type"].startswith("text/plain")


# -- GELF over HTTP ----------------------------------------------------------------------


async def test_gelf_http_sniffs_compression(client: httpx.AsyncClient) -> None:
    message = orjson.dumps({"version": "1.1", "host": "h", "short_message": "hello"})
    for body, label in ((zlib.compress(message), "gzip"), (gzip.compress(message), "deflate"),
                        (message, "")):  # fmt: skip
        answer = await client.post("/gelf", content=body, headers={"content-encoding": label})
        assert answer.status_code == 202
    bad = await client.post("/gelf", content=orjson.dumps({"host": "h"}))
    assert bad.status_code == 400
    assert "short_message" in bad.text


async def test_gelf_http_takes_what_its_document_says(client: httpx.AsyncClient) -> None:
    """A null level or timestamp is absent (as Graylog takes it); what the document's
    types and patterns refuse is a 400 naming the field (a level of "²" was a 500)."""
    taken = await client.post(
        "/gelf", content=orjson.dumps({"short_message": "n", "level": None, "timestamp": None})
    )
    assert taken.status_code == 202, taken.text
    for field, value in (("level", "²"), ("host", 5), ("timestamp", "1_700_000_000")):
        refused = await client.post(
            "/gelf", content=orjson.dumps({"short_message": "m", field: value})
        )
        assert refused.status_code == 400, (field, refused.status_code, refused.text)
        assert refused.text.startswith(f"{field}: "), refused.text


async def test_loki_stream_labels_are_an_object(client: httpx.AsyncClient) -> None:
    line = [str(time.time_ns()), "no labels"]
    json_type = {"content-type": "application/json"}
    for stream in ({"values": [line]}, {"stream": {}, "values": [line]}):
        answer = await client.post(
            "/loki/api/v1/push", content=orjson.dumps({"streams": [stream]}), headers=json_type
        )
        assert answer.status_code == 204, answer.text
    null = {"streams": [{"stream": None, "values": [line]}]}
    answer = await client.post("/loki/api/v1/push", content=orjson.dumps(null), headers=json_type)
    assert answer.status_code == 400
    assert '"stream" must be an object' in answer.text


# -- sources on first use, credentials, access -------------------------------------------


@pytest.mark.parametrize("mode", ["create", "key", "refuse"])
async def test_sources_on_first_use(settings: Settings, db: Database, mode: str) -> None:
    configured = settings.model_copy(update={"auth_required": True, "sources_on_first_use": mode})
    access = AccessRepository(db.pool)
    everything = await access.create_key("all", ["ingest"], all_sources=True)
    app_errors = await source_id(db, "app_errors")
    assert app_errors is not None
    limited = await access.create_key("limited", ["ingest"], source_ids=[app_errors])
    json_type = {"content-type": "application/json"}
    async with running_app(configured) as http:
        answers = {}
        for who, token, service in (
            ("all", everything.token, f"new-by-all-{mode}"),
            ("limited", limited.token, f"new-by-limited-{mode}"),
        ):
            answers[who] = await http.post(
                "/v1/logs",
                content=otlp_json(service, {"body": {"stringValue": "first"}}),
                headers={**json_type, "authorization": f"Bearer {token}"},
            )
        # An existing source the limited key was not granted: refused in every mode.
        ungranted = await http.post(
            "/v1/logs",
            content=otlp_json("nginx_access", {"body": {"stringValue": "no"}}),
            headers={**json_type, "authorization": f"Bearer {limited.token}"},
        )
    assert ungranted.json()["partialSuccess"]["rejectedLogRecords"] == "1"
    created_by_all = await source_id(db, f"new-by-all-{mode}")
    created_by_limited = await source_id(db, f"new-by-limited-{mode}")
    if mode == "refuse":
        assert created_by_all is None and created_by_limited is None
        for answer in answers.values():
            assert (
                "LOGKEEP_SOURCES_ON_FIRST_USE=refuse"
                in answer.json()["partialSuccess"]["errorMessage"]
            )
        return
    assert created_by_all is not None
    assert answers["all"].json() == {}
    if mode == "key":
        assert created_by_limited is None
        reason = answers["limited"].json()["partialSuccess"]["errorMessage"]
        assert "'limited' may create none" in reason
        return
    assert created_by_limited is not None  # create: made, and granted to that key only
    assert answers["limited"].json() == {}
    async with db.pool.acquire() as conn:
        grants = await conn.fetch(
            "SELECT key_id FROM api_key_sources WHERE source_id = $1", created_by_limited
        )
        audited = await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'source_created_on_first_use'"
        )
    assert [g["key_id"] for g in grants] == [limited.record["id"]]
    assert audited == 2


async def test_credentials_the_way_shippers_send_them(settings: Settings, db: Database) -> None:
    configured = settings.model_copy(update={"auth_required": True})
    key = await AccessRepository(db.pool).create_key("shipper", ["ingest"], all_sources=True)
    reader = await AccessRepository(db.pool).create_key("reader", ["read"], all_sources=True)
    es = base64.b64encode(f"shipper:{key.token}".encode()).decode()
    basic = base64.b64encode(f"loki:{key.token}".encode()).decode()
    async with running_app(configured) as http:
        assert (
            await http.get("/es/", headers={"authorization": f"ApiKey {es}"})
        ).status_code == 200
        assert (
            await http.get("/es/", headers={"authorization": f"ApiKey {key.token}"})
        ).status_code == 200
        assert (
            await http.get("/es/", headers={"authorization": f"Basic {basic}"})
        ).status_code == 200
        assert (await http.get("/es/")).status_code == 401
        wrong = base64.b64encode(b"loki:lkk_not-a-real-key").decode()
        assert (
            await http.get("/es/", headers={"authorization": f"Basic {wrong}"})
        ).status_code == 401
        forbidden = await http.post(
            "/gelf",
            content=b'{"short_message": "x"}',
            headers={"authorization": f"Bearer {reader.token}"},
        )
        assert forbidden.status_code == 403  # a read key may not ingest, by any protocol


async def test_protocol_bodies_get_the_ingest_limit(client: httpx.AsyncClient) -> None:
    """Past the API's 1 MiB default, within ingest's 16 MiB: any index's bulk path too."""
    line = b'{"index": {}}\n{"message": "' + b"x" * 1000 + b'"}\n'
    body = line * 2000  # about 2 MiB
    answer = await client.post("/any-index/_bulk", content=body, headers=NDJSON)
    assert answer.status_code == 200
    assert len(answer.json()["items"]) == 2000
    too_big = await client.post("/api/v1/auth/login", content=body, headers=NDJSON)
    assert too_big.status_code == 413  # elsewhere the default holds


async def test_otlp_port_serves_only_otlp(settings: Settings) -> None:
    """LOGKEEP_OTLP_PORT: /v1/logs alone on its own port, beside the API, stopped with it."""
    otlp_port, api_port = free_port(), free_port()
    configured = settings.model_copy(update={"otlp_port": otlp_port})
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(configured), host="127.0.0.1", port=api_port, log_config=None,
            access_log=False,
        )
    )  # fmt: skip
    serving = asyncio.create_task(serve_with_otlp_port(server, configured))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{otlp_port}") as http:
            deadline = time.monotonic() + 20
            while True:
                try:
                    answer = await http.post(
                        "/v1/logs",
                        content=otlp_json("side", {"body": {"stringValue": "via 4318"}}),
                        headers={"content-type": "application/json"},
                    )
                    break
                except httpx.ConnectError:
                    assert time.monotonic() < deadline, "the OTLP port did not open"
                    await asyncio.sleep(0.05)
            assert answer.status_code == 200 and answer.json() == {}
            assert (await http.get("/api/v1/logs/recent")).status_code == 404
    finally:
        server.should_exit = True
        await serving
    with pytest.raises(httpx.ConnectError):  # stopped with the API
        async with httpx.AsyncClient() as http:
            await http.get(f"http://127.0.0.1:{otlp_port}/v1/logs")
