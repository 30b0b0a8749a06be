"""The protocol decoders, pure: OTLP, Loki, Elasticsearch bulk, GELF, compression and
what they share (source names, credentials, the first-use policy)."""

from __future__ import annotations

import base64
import gzip
import zlib
from datetime import UTC, datetime
from typing import Any

import cramjam
import orjson
import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)

from logkeep.domain.auth import ANONYMOUS_ADMIN, key_principal
from logkeep.domain.entry import InvalidLogEntry, Level
from logkeep.domain.ingest import BodyError
from logkeep.domain.protocols import elastic, gelf, loki, otlp
from logkeep.domain.protocols.common import first_use, shipper_token, source_name
from logkeep.domain.protocols.compression import decode_content, snappy_raw, sniffed

KEY = "lkk_" + "a" * 43


# -- common ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("checkout", "checkout"),
        ("Checkout API", "checkout-api"),
        ("unknown_service:python", "unknown_service-python"),
        ("web-01.example.com", "web-01.example.com"),
        ("  --Ünïcode!!  ", "n-code"),
        ("x" * 100, "x" * 63),
        ("12345", None),  # digits only would mean a source id
        ("", None),
        ("!!!", None),
        (42, None),
    ],
)
def test_source_names(given: object, expected: str | None) -> None:
    assert source_name(given) == expected


def test_shipper_credentials() -> None:
    es = base64.b64encode(f"my-id:{KEY}".encode()).decode()
    basic = base64.b64encode(f"anyone:{KEY}".encode()).decode()
    assert shipper_token(f"ApiKey {es}") == KEY
    assert shipper_token(f"ApiKey {KEY}") == KEY
    assert shipper_token(f"Basic {basic}") == KEY
    assert shipper_token(f"basic {basic}") == KEY
    for bad in (
        None,
        "",
        "ApiKey",
        "ApiKey !!!notbase64",
        "Basic " + base64.b64encode(b"user:not-a-key").decode(),
        "Basic " + base64.b64encode(b"no colon").decode(),
        "Digest abc",
        "Bearer " + KEY,  # bearer_token's business, not this one's
    ):
        assert shipper_token(bad) is None


def test_first_use_policy() -> None:
    limited = key_principal(7, "web", ["ingest"], False, [1])
    unlimited = key_principal(8, "all", ["ingest"], True, [])
    assert first_use("create", limited, "new").create
    assert first_use("create", limited, "new").grant_to_key == 7
    assert first_use("create", unlimited, "new").grant_to_key is None
    assert first_use("key", unlimited, "new").create
    assert first_use("key", None, "new").create  # a receiver writes for the operator
    refused = first_use("key", limited, "new")
    assert not refused.create
    assert "LOGKEEP_SOURCES_ON_FIRST_USE=key" in refused.reason
    for who in (ANONYMOUS_ADMIN, limited, None):
        decision = first_use("refuse", who, "new")
        assert not decision.create and "=refuse" in decision.reason


# -- OTLP --------------------------------------------------------------------------------


def otlp_request(records: list[dict[str, Any]], service: str = "Shop API") -> dict[str, Any]:
    return {
        "resourceLogs": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": service}}]
                },
                "scopeLogs": [{"scope": {"name": "shop", "version": "1.0"}, "logRecords": records}],
            }
        ]
    }


@pytest.mark.parametrize(
    ("number", "level"),
    [(1, Level.DEBUG), (4, Level.DEBUG), (5, Level.DEBUG), (9, Level.INFO), (12, Level.INFO),
     (13, Level.WARN), (17, Level.ERROR), (20, Level.ERROR), (21, Level.FATAL), (24, Level.FATAL)],
)  # fmt: skip
def test_otlp_severity_bands(number: int, level: Level) -> None:
    assert otlp.severity_level(number, "ignored") is level


def test_otlp_severity_text_when_no_number() -> None:
    assert otlp.severity_level(0, "Warning") == "Warning"  # parsed like any level later
    assert otlp.severity_level(0, "") is None


def test_otlp_json_hex_ids_int64_strings_and_bodies() -> None:
    body = otlp_request(
        [
            {
                "timeUnixNano": "1700000000123456789",
                "severityNumber": 17,
                "severityText": "ERROR",
                "body": {"stringValue": "boom"},
                "attributes": [
                    {"key": "n", "value": {"intValue": "9007199254740993"}},
                    {"key": "ok", "value": {"boolValue": True}},
                ],
                "traceId": "5b8efff798038103d269b633813fc60c",
                "spanId": "eee19b7ec3c1b174",
                "unknownField": 1,
            },
            {
                "observedTimeUnixNano": 1700000000000000000,
                "body": {"kvlistValue": {"values": [{"key": "a", "value": {"doubleValue": 1.5}}]}},
            },
            {"body": {"bytesValue": base64.b64encode(b"\x00\x01").decode()}},
        ]
    )
    events = otlp.decode(otlp.parse_json(orjson.dumps(body)), ("service.name",), None)
    first, second, third = events
    assert isinstance(first, dict) and isinstance(second, dict) and isinstance(third, dict)
    assert first["source"] == "shop-api"
    assert first["message"] == "boom"
    assert first["level"] is Level.ERROR
    assert first["timestamp"] == datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
    assert first["metadata"] == {
        "attributes": {"n": 9007199254740993, "ok": True},
        "resource": {"service.name": "Shop API"},
        "scope": {"name": "shop", "version": "1.0"},
        "trace_id": "5b8efff798038103d269b633813fc60c",
        "span_id": "eee19b7ec3c1b174",
        "severity_text": "ERROR",
    }
    assert second["message"] == '{"a":1.5}'
    assert second["timestamp"] == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert third["message"] == '"AAE="'
    assert third["timestamp"] is None  # no time of its own: arrival time, no dedup


def test_otlp_protobuf_round_trip_and_overrides() -> None:
    parsed = json_format.ParseDict(
        otlp_request([{"body": {"stringValue": "hi"}, "attributes": [
            {"key": "logkeep.source", "value": {"stringValue": "Billing"}}]}]),
        ExportLogsServiceRequest(),
    )  # fmt: skip
    again = otlp.parse_protobuf(parsed.SerializeToString())
    keys = ("logkeep.source", "service.name")
    [event] = otlp.decode(again, keys, None)
    assert isinstance(event, dict) and event["source"] == "billing"  # the record's own
    [event] = otlp.decode(again, keys, "forced")
    assert isinstance(event, dict) and event["source"] == "forced"  # the request's header


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[1, 2]", b'{"resourceLogs": [{"scopeLogs": [{"logRecords": '
     b'[{"traceId": "zz"}]}]}]}', b'{"resourceLogs": "nope"}'],
)  # fmt: skip
def test_otlp_bad_json_is_400(body: bytes) -> None:
    with pytest.raises(BodyError) as caught:
        otlp.parse_json(body)
    assert caught.value.status == 400


def test_otlp_bad_protobuf_is_400() -> None:
    with pytest.raises(BodyError) as caught:
        otlp.parse_protobuf(b"\xff\xff\xff\xff garbage")
    assert caught.value.status == 400


def test_otlp_deep_body_refused_alone() -> None:
    value: dict[str, Any] = {"stringValue": "leaf"}
    for _ in range(40):
        value = {"arrayValue": {"values": [value]}}
    request = otlp.parse_json(orjson.dumps(otlp_request([{"body": value}, {"body": {}}])))
    deep, empty = otlp.decode(request, (), None)
    assert isinstance(deep, InvalidLogEntry) and "nested" in str(deep)
    assert isinstance(empty, dict) and empty["message"] == ""  # refused later: empty


def test_otlp_response_partial_success_only_when_rejected() -> None:
    body, kind = otlp.response(0, "", as_json=True)
    assert (body, kind) == (b"{}", "application/json")
    body, kind = otlp.response(2, "2 record(s) rejected", as_json=True)
    assert orjson.loads(body) == {
        "partialSuccess": {"rejectedLogRecords": "2", "errorMessage": "2 record(s) rejected"}
    }
    body, kind = otlp.response(1, "why", as_json=False)
    answer = ExportLogsServiceResponse.FromString(body)
    assert kind == "application/x-protobuf"
    assert answer.partial_success.rejected_log_records == 1


# -- Loki --------------------------------------------------------------------------------


def test_loki_labels() -> None:
    assert loki.parse_labels('{app="shop", msg="say \\"hi\\"\\n", path="c:\\\\x"}') == {
        "app": "shop",
        "msg": 'say "hi"\n',
        "path": "c:\\x",
    }
    assert loki.parse_labels("{}") == {}
    assert loki.parse_labels('{ a = "1" ,b="2"}') == {"a": "1", "b": "2"}
    for bad in ('app="x"', "{app=x}", '{app="x" b="y"}', '{="x"}'):
        with pytest.raises(InvalidLogEntry):
            loki.parse_labels(bad)


def test_loki_json_entries_metadata_and_bad_values() -> None:
    body = orjson.dumps(
        {
            "streams": [
                {
                    "stream": {"job": "Web", "level": "warning"},
                    "values": [
                        ["1700000000000000001", "one"],
                        ["1700000000000000002", "two", {"trace_id": "t1", "level": "error"}],
                        ["soon", "three"],
                        ["1700000000000000004", 4],
                    ],
                    "other": "ignored",
                },
                {"stream": {"app": "x"}, "values": [[1700000000000000005, "five"]]},
            ],
            "ignored": True,
        }
    )
    one, two, three, four, five = loki.decode_json(body, ("app", "job"), None)
    assert isinstance(one, dict) and isinstance(two, dict) and isinstance(five, dict)
    assert one["source"] == "web"
    assert one["level"] is Level.WARN
    assert one["metadata"] == {"labels": {"job": "Web", "level": "warning"}}
    assert two["level"] is Level.ERROR  # structured metadata before labels
    assert two["metadata"]["structured_metadata"] == {"trace_id": "t1", "level": "error"}
    assert isinstance(three, InvalidLogEntry) and "nanoseconds" in str(three)
    assert isinstance(four, InvalidLogEntry)
    assert five["source"] == "x"


@pytest.mark.parametrize(
    "body",
    [b"nope", b"[]", b'{"streams": {}}', b'{"streams": [{}]}',
     b'{"streams": [{"stream": [null], "values": []}]}',
     # Labels are an object: null, false, "" and [] were taken for none.
     b'{"streams": [{"stream": null, "values": []}]}',
     b'{"streams": [{"stream": false, "values": []}]}',
     b'{"streams": [{"stream": "", "values": []}]}',
     b'{"streams": [{"stream": [], "values": []}]}'],
)  # fmt: skip
def test_loki_bad_json_is_400(body: bytes) -> None:
    with pytest.raises(BodyError):
        loki.decode_json(body, (), None)


def test_loki_stream_without_labels() -> None:
    body = b'{"streams": [{"values": [["1700000000000000000", "no labels"]]}]}'
    (event,) = loki.decode_json(body, ("app",), None)
    assert isinstance(event, dict)
    assert event["source"] == loki.FALLBACK_SOURCE
    assert event["metadata"] == {"labels": {}}


def test_loki_protobuf() -> None:
    request: Any = loki.PushRequest()
    stream = request.streams.add(labels='{service_name="Pay", level="info"}')
    entry = stream.entries.add(line="paid")
    entry.timestamp.FromDatetime(datetime(2024, 5, 1, 12, 0, 0, 250000))
    entry.structuredMetadata.add(name="order", value="7")
    request.streams.add(labels="broken").entries.add(line="lost")
    good, bad = loki.decode_protobuf(request.SerializeToString(), ("service_name",), None)
    assert isinstance(good, dict)
    assert good["source"] == "pay"
    assert good["timestamp"] == datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)
    assert good["metadata"]["structured_metadata"] == {"order": "7"}
    assert isinstance(bad, InvalidLogEntry)


# -- compression -------------------------------------------------------------------------


def test_snappy_raw_and_its_bomb() -> None:
    data = b"log line " * 1000
    assert snappy_raw(bytes(cramjam.snappy.compress_raw(data)), 1_000_000) == data
    with pytest.raises(BodyError) as caught:
        snappy_raw(bytes(cramjam.snappy.compress_raw(data)), 100)
    assert caught.value.status == 413
    with pytest.raises(BodyError) as caught:
        snappy_raw(b"\x05garbage", 100)
    assert caught.value.status == 400


def test_content_codings_and_sniffing() -> None:
    data = b'{"short_message": "x"}'
    assert decode_content(zlib.compress(data), "deflate", 1000) == data
    assert decode_content(gzip.compress(data), "gzip", 1000) == data
    assert decode_content(bytes(cramjam.snappy.compress_raw(data)), "snappy", 1000) == data
    assert sniffed(zlib.compress(data), 1000) == data
    assert sniffed(gzip.compress(data), 1000) == data
    assert sniffed(data, 1000) == data
    bomb = zlib.compress(b"0" * 10_000_000)
    with pytest.raises(BodyError) as caught:
        sniffed(bomb, 1_000_000)
    assert caught.value.status == 413
    with pytest.raises(BodyError):
        decode_content(b"\x78\x9cbroken", "deflate", 1000)


# -- Elasticsearch -----------------------------------------------------------------------


def bulk(*lines: object) -> bytes:
    return (
        b"\n".join(line if isinstance(line, bytes) else orjson.dumps(line) for line in lines)
        + b"\n"
    )


def test_bulk_actions_documents_and_fields() -> None:
    body = bulk(
        {"index": {"_index": "Web-Logs", "_type": "_doc", "_id": "a1"}},
        {"@timestamp": "2024-05-01T12:00:00Z", "message": "hi", "log": {"level": "warn"},
         "host": {"name": "w1"}},
        b"",
        {"create": {}},
        {"log": "from fluent bit", "level": "ERROR"},
        {"delete": {"_index": "x", "_id": "1"}},
        {"update": {"_index": "x", "_id": "1"}},
        {"doc": {"a": 1}},
        {"index": {"_index": "x"}},
        b"{not json",
        {"index": {"_index": "x"}},
        {"no_message": True},
        {"index": {"_index": "x"}},
        {"message": "odd level", "level": "verbose"},
    )  # fmt: skip
    items = elastic.parse_bulk(body, "fallback", None, 1000)
    assert [i.op for i in items] == [
        "index",
        "create",
        "delete",
        "update",
        "index",
        "index",
        "index",
    ]
    first = items[0].event
    assert isinstance(first, dict)
    assert first["source"] == "web-logs"
    assert first["event_id"] == "a1"
    assert first["level"] is Level.WARN  # ECS log.level, nested
    assert first["metadata"] == {
        "log": {"level": "warn"},
        "host": {"name": "w1"},
        "_index": "Web-Logs",
    }
    second = items[1].event
    assert isinstance(second, dict)
    assert second["source"] == "fallback" and second["message"] == "from fluent bit"
    assert second["level"] is Level.ERROR
    for item in items[2:6]:
        assert isinstance(item.event, InvalidLogEntry)
    odd = items[6].event
    assert isinstance(odd, dict) and odd["level"] is None
    assert odd["metadata"]["level"] == "verbose"  # kept where we cannot name it


def test_bulk_nested_ecs_level() -> None:
    [item] = elastic.parse_bulk(
        bulk({"index": {}}, {"message": "m", "log": {"level": "warning"}}), "i", None, 1000
    )
    assert isinstance(item.event, dict) and item.event["level"] is Level.WARN


@pytest.mark.parametrize(
    "body", [bulk({"index": {}}), bulk(["not an object"], {}), bulk({"upsert": {}}, {}),
             bulk({"index": {}, "create": {}}, {})],
)  # fmt: skip
def test_bulk_malformed_actions_are_400(body: bytes) -> None:
    with pytest.raises(BodyError) as caught:
        elastic.parse_bulk(body, "i", None, 1000)
    assert caught.value.status == 400


def test_bulk_answer_items() -> None:
    items = elastic.parse_bulk(
        bulk({"create": {"_id": "x"}}, {"message": "a"}, {"index": {}}, {"message": "b"},
             {"create": {"_id": "y"}}, {"message": "c"}, {"index": {}}, {"nope": 1}),
        "logs", None, 1000,
    )  # fmt: skip
    outcomes = elastic.outcomes(4, {4: "message: no message field"}, frozenset({0, 1}))
    assert outcomes == ["duplicate", "duplicate", "created", "message: no message field"]
    answer = orjson.loads(elastic.bulk_response(items, outcomes, 3))
    statuses = [next(iter(i.values()))["status"] for i in answer["items"]]
    assert statuses == [409, 200, 201, 400]
    assert answer["errors"] is True
    assert answer["items"][0]["create"]["error"]["type"] == "version_conflict_engine_exception"
    assert answer["items"][3]["index"]["error"]["reason"] == "message: no message field"
    assert len(answer["items"][1]["index"]["_id"]) == 20


# -- GELF --------------------------------------------------------------------------------


def test_gelf_message_fields() -> None:
    message = {
        "version": "1.1",
        "host": "Web-01",
        "short_message": "boom",
        "full_message": "Traceback ...",
        "timestamp": 1700000000.25,
        "level": 3,
        "facility": "app",
        "_user_id": 42,
        "_id": "ignored",
        "_": "ignored too",
    }
    event = gelf.decode(orjson.dumps(message), ("_source", "host"), None, "gelf", 10_000)
    assert isinstance(event, dict)
    assert event["source"] == "web-01"
    assert event["level"] is Level.ERROR
    assert event["timestamp"] == datetime(2023, 11, 14, 22, 13, 20, 250000, tzinfo=UTC)
    assert event["metadata"] == {
        "host": "Web-01", "full_message": "Traceback ...", "facility": "app", "user_id": 42,
    }  # fmt: skip
    as_float = gelf.decode(orjson.dumps({**message, "level": 4.0}), (), None, "gelf", 10_000)
    assert isinstance(as_float, dict) and as_float["level"] is Level.WARN
    with_source = gelf.decode(
        orjson.dumps({**message, "_source": "Orders"}), ("_source", "host"), None, "gelf", 10_000
    )
    assert isinstance(with_source, dict) and with_source["source"] == "orders"


@pytest.mark.parametrize(
    ("message", "field"),
    [({"host": "h"}, "short_message"), ({"short_message": " "}, "short_message"),
     ({"short_message": "m", "level": 9}, "level"),
     ({"short_message": "m", "timestamp": "soon"}, "timestamp"),
     ({"short_message": "m", "timestamp": 1e300}, "timestamp"),
     # Numbers as text are ASCII and whole, as the document's patterns say: float() and
     # int() also take spaces, underscores and other scripts' digits, and isdigit took
     # "²", which int() then refused with a ValueError (a 500 over HTTP).
     ({"short_message": "m", "level": "\u00b2"}, "level"),  # ²
     ({"short_message": "m", "level": "\u0663"}, "level"),  # Arabic-Indic 3
     ({"short_message": "m", "level": " 3"}, "level"),
     ({"short_message": "m", "level": "8"}, "level"),
     ({"short_message": "m", "level": "0" * 5000 + "8"}, "level"),
     ({"short_message": "m", "timestamp": " 1700000000"}, "timestamp"),
     ({"short_message": "m", "timestamp": "1_700_000_000"}, "timestamp"),
     ({"short_message": "m", "timestamp": "\u0661\u0667" + "\u0660" * 8}, "timestamp"),
     ({"short_message": "m", "timestamp": "nan"}, "timestamp"),
     ({"short_message": "m", "host": 5}, "host"),
     ({"short_message": "m", "host": None}, "host"),
     ({"short_message": "m", "full_message": ["trace"]}, "full_message")],
)  # fmt: skip
def test_gelf_refusals_name_the_field(message: dict[str, Any], field: str) -> None:
    event = gelf.decode(orjson.dumps(message), (), None, "gelf", 10_000)
    assert isinstance(event, InvalidLogEntry) and event.field == field


def test_gelf_numbers_as_text_and_nulls_as_absent() -> None:
    """As Graylog takes them, and as the document of POST /gelf says."""
    plain = {"short_message": "m", "host": "h"}
    cases: list[tuple[dict[str, Any], Level | None, float | None]] = [
        ({"level": None, "timestamp": None}, None, None),
        ({"level": "3", "timestamp": "1700000000.25"}, Level.ERROR, 1700000000.25),
        ({"level": "07", "timestamp": "17e8"}, Level.DEBUG, 1.7e9),
        ({"level": 0, "timestamp": "-.5"}, Level.FATAL, -0.5),
    ]
    for extra, level, timestamp in cases:
        event = gelf.decode(orjson.dumps({**plain, **extra}), (), None, "g", 10_000)
        assert isinstance(event, dict), (extra, event)
        assert event["level"] is level
        expected = None if timestamp is None else datetime.fromtimestamp(timestamp, tz=UTC)
        assert event["timestamp"] == expected
    nulls = {**plain, "full_message": None, "facility": None, "file": None, "line": None}
    event = gelf.decode(orjson.dumps(nulls), (), None, "g", 10_000)
    assert isinstance(event, dict) and event["metadata"] == {"host": "h"}
    unchecked = gelf.decode(orjson.dumps({**plain, "version": 1.1}), (), None, "g", 10_000)
    assert isinstance(unchecked, dict)


def test_gelf_not_json_and_compressed() -> None:
    assert isinstance(gelf.decode(b"{oops", (), None, "g", 100), InvalidLogEntry)
    zipped = gzip.compress(b'{"short_message": "z", "host": "h"}')
    event = gelf.decode(zipped, ("host",), None, "g", 100)
    assert isinstance(event, dict) and event["message"] == "z"


def chunks(message_id: bytes, payload: bytes, size: int) -> list[bytes]:
    parts = [payload[i : i + size] for i in range(0, len(payload), size)]
    return [gelf.CHUNK_MAGIC + message_id + bytes([n, len(parts)]) + p for n, p in enumerate(parts)]


def test_chunks_reassembled_in_any_order_once() -> None:
    assembler = gelf.ChunkAssembler()
    payload = bytes(range(256)) * 10
    datagrams = chunks(b"A" * 8, payload, 300)
    assert len(datagrams) == 9
    out = [assembler.feed(d, 0.0) for d in reversed(datagrams[1:])]
    assert out == [None] * 8
    assert assembler.feed(datagrams[1], 0.1) is None  # a repeated chunk changes nothing
    assert assembler.feed(datagrams[0], 0.2) == payload
    assert assembler.pending_bytes == 0
    assert assembler.feed(b'{"plain": true}', 0.3) == b'{"plain": true}'


def test_chunk_limits_timeout_and_memory() -> None:
    assembler = gelf.ChunkAssembler(timeout_s=5, max_pending_bytes=1000)
    too_many = gelf.CHUNK_MAGIC + b"B" * 8 + bytes([0, 129]) + b"x"
    assert assembler.feed(too_many, 0) is None and assembler.dropped == 1
    first = chunks(b"C" * 8, b"y" * 600, 300)
    assert assembler.feed(first[0], 0) is None
    assembler.expire(5.1)
    assert assembler.dropped == 2 and assembler.pending_bytes == 0
    assert assembler.feed(first[1], 6) is None  # a new incomplete message now
    big = chunks(b"D" * 8, b"z" * 2400, 800)
    assembler.feed(big[0], 6)
    assembler.feed(big[1], 6)  # over 1000 bytes held: the oldest messages go first
    assert assembler.pending_bytes <= 1000
    assert assembler.dropped >= 3
    assert assembler.feed(gelf.CHUNK_MAGIC + b"short", 7) is None


def test_tcp_nul_framing() -> None:
    buffer = bytearray(b'{"a":1}\x00\x00{"b":2}\x00{"c"')
    frames, too_long = gelf.split_nul(buffer, 100)
    assert frames == [b'{"a":1}', b'{"b":2}'] and not too_long
    assert bytes(buffer) == b'{"c"'
    buffer += b"x" * 200
    assert gelf.split_nul(buffer, 100) == ([], True)
