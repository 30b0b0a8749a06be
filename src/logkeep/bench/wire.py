"""The same events as each way in sends them, for `logkeep bench ingest --protocols`:
NDJSON to /api/v1/ingest, OTLP protobuf to /v1/logs, Loki protobuf (snappy) to
/loki/api/v1/push, and Elasticsearch bulk to /_bulk; and how many of a body's events
each answer says were taken."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import cramjam
import httpx
import orjson
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from logkeep.domain.ingest import timestamp_us
from logkeep.domain.protocols import loki

Event = dict[str, Any]  # source, message, timestamp (datetime), level, metadata
SEVERITY = {"DEBUG": 5, "INFO": 9, "WARN": 13, "ERROR": 17, "FATAL": 21}


def _nanos(ts: datetime) -> int:
    return timestamp_us(ts) * 1000


def ndjson(events: Sequence[Event]) -> bytes:
    return b"\n".join(orjson.dumps(e) for e in events)


def _set_any(target: AnyValue, value: Any) -> None:
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, dict):
        for key, item in value.items():
            _set_any(target.kvlist_value.values.add(key=key).value, item)
    elif isinstance(value, list):
        for item in value:
            _set_any(target.array_value.values.add(), item)
    else:
        target.string_value = str(value)


def otlp_protobuf(events: Sequence[Event]) -> bytes:
    """One ResourceLogs per source (service.name), as an SDK's batch would be."""
    request = ExportLogsServiceRequest()
    by_source: dict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_source[event["source"]].append(event)
    for source, group in by_source.items():
        resource_logs = request.resource_logs.add()
        resource_logs.resource.attributes.add(key="service.name").value.string_value = source
        scope_logs = resource_logs.scope_logs.add()
        scope_logs.scope.name = "bench"
        for event in group:
            record = scope_logs.log_records.add(
                time_unix_nano=_nanos(event["timestamp"]),
                severity_number=SEVERITY[event["level"]],
                severity_text=event["level"],
            )
            record.body.string_value = event["message"]
            for key, value in event["metadata"].items():
                _set_any(record.attributes.add(key=key).value, value)
    return request.SerializeToString()


def loki_protobuf(events: Sequence[Event]) -> bytes:
    """One stream per source and level; metadata as structured metadata (text)."""
    request: Any = loki.PushRequest()
    streams: dict[tuple[str, str], Any] = {}
    for event in events:
        key = (event["source"], event["level"])
        stream = streams.get(key)
        if stream is None:
            labels = f'{{source="{key[0]}", level="{key[1].lower()}"}}'
            stream = streams[key] = request.streams.add(labels=labels)
        entry = stream.entries.add(line=event["message"])
        nanos = _nanos(event["timestamp"])
        entry.timestamp.seconds, entry.timestamp.nanos = divmod(nanos, 1_000_000_000)
        for name, value in event["metadata"].items():
            text = value if isinstance(value, str) else orjson.dumps(value).decode()
            entry.structuredMetadata.add(name=name, value=text)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


def elastic_bulk(events: Sequence[Event]) -> bytes:
    lines: list[bytes] = []
    for event in events:
        lines.append(orjson.dumps({"create": {"_index": event["source"]}}))
        document = {
            "@timestamp": event["timestamp"],
            "message": event["message"],
            "log.level": event["level"],
            **event["metadata"],
        }
        lines.append(orjson.dumps(document))
    return b"\n".join(lines) + b"\n"


def _ndjson_taken(response: httpx.Response, count: int) -> tuple[int, int, int]:
    result = response.json()
    return result["accepted"], result["duplicates"], result["rejected"]


def _otlp_taken(response: httpx.Response, count: int) -> tuple[int, int, int]:
    answer = ExportLogsServiceResponse.FromString(response.content)
    rejected = answer.partial_success.rejected_log_records
    return count - rejected, 0, rejected


def _loki_taken(response: httpx.Response, count: int) -> tuple[int, int, int]:
    return count, 0, 0  # 204: every entry


def _bulk_taken(response: httpx.Response, count: int) -> tuple[int, int, int]:
    statuses = [next(iter(item.values()))["status"] for item in response.json()["items"]]
    created = statuses.count(201)
    return created, statuses.count(200) + statuses.count(409), count - created


@dataclass(frozen=True)
class Wire:
    name: str
    path: str
    headers: dict[str, str]
    ok: int
    encode: Callable[[Sequence[Event]], bytes]
    taken: Callable[[httpx.Response, int], tuple[int, int, int]]  # accepted, dup, rejected


NDJSON = Wire(
    "NDJSON", "/api/v1/ingest", {"content-type": "application/x-ndjson"}, 202, ndjson,
    _ndjson_taken,
)  # fmt: skip
PROTOCOLS = (
    Wire("OTLP protobuf", "/v1/logs", {"content-type": "application/x-protobuf"}, 200,
         otlp_protobuf, _otlp_taken),
    Wire("Loki protobuf", "/loki/api/v1/push", {"content-type": "application/x-protobuf"},
         204, loki_protobuf, _loki_taken),
    Wire("Elasticsearch bulk", "/_bulk", {"content-type": "application/x-ndjson"}, 200,
         elastic_bulk, _bulk_taken),
)  # fmt: skip
