"""OTLP/HTTP logs (`POST /v1/logs`): ExportLogsServiceRequest as protobuf or as OTLP JSON,
decoded with the OpenTelemetry project's own message classes, into events.

An event's metadata: `attributes` (the record's), `resource` (its resource's attributes),
`scope` (name, version, attributes), `trace_id` and `span_id` (hex), `severity_text` and
`event_name` when set. The body is the message: text as is, anything else as JSON."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from logkeep.domain.entry import InvalidLogEntry, Level
from logkeep.domain.ingest import EPOCH, BodyError
from logkeep.domain.protocols.common import Decoded, mapped_source

FALLBACK_SOURCE = "otlp"
MAX_DEPTH = 32  # nested arrays and maps in an AnyValue

# Severity numbers 1-24 in six bands of four (TRACE, DEBUG, INFO, WARN, ERROR, FATAL).
_BANDS = (Level.DEBUG, Level.DEBUG, Level.INFO, Level.WARN, Level.ERROR, Level.FATAL)


def severity_level(number: int, text: str) -> Level | str | None:
    """The level of a record: its severity number, else its text (parsed like any
    level), else None (INFO)."""
    if 1 <= number <= 24:
        return _BANDS[(number - 1) // 4]
    return text or None


def parse_protobuf(body: bytes) -> ExportLogsServiceRequest:
    request = ExportLogsServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise BodyError(400, f"body: not an OTLP ExportLogsServiceRequest ({exc})") from None
    return request


_ID_FIELDS = ("traceId", "trace_id", "spanId", "span_id")


def parse_json(body: bytes) -> ExportLogsServiceRequest:
    """OTLP JSON: lowerCamelCase (or the proto names), trace and span ids in hex (not
    protobuf JSON's base64), int64 as strings or numbers, unknown fields ignored."""
    try:
        document = orjson.loads(body)  # the protobuf classes take the numbers from here
    except orjson.JSONDecodeError as exc:
        raise BodyError(400, f"body: not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise BodyError(400, "body: expected an ExportLogsServiceRequest JSON object")
    for resource in _items(document, "resourceLogs", "resource_logs"):
        for scope in _items(resource, "scopeLogs", "scope_logs"):
            for record in _items(scope, "logRecords", "log_records"):
                for key in _ID_FIELDS:
                    value = record.get(key)
                    if isinstance(value, str):
                        record[key] = _hex_as_base64(value, key)
    try:
        return json_format.ParseDict(
            document, ExportLogsServiceRequest(), ignore_unknown_fields=True
        )
    except json_format.ParseError as exc:
        raise BodyError(400, f"body: not an OTLP ExportLogsServiceRequest ({exc})") from None


def _items(parent: Any, camel: str, snake: str) -> list[Any]:
    if not isinstance(parent, dict):
        return []
    value = parent.get(camel, parent.get(snake))
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _hex_as_base64(value: str, key: str) -> str:
    try:
        return base64.b64encode(bytes.fromhex(value)).decode()
    except ValueError:
        raise BodyError(400, f"body: {key} {value[:40]!r} is not hex") from None


def any_value(value: AnyValue, depth: int = 0) -> Any:
    """An AnyValue as JSON-ready Python: bytes as base64 text, maps as objects."""
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind is None:
        return None
    if depth >= MAX_DEPTH:
        raise InvalidLogEntry("body", f"values nested deeper than {MAX_DEPTH} levels")
    if kind == "int_value":
        return value.int_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "double_value":
        return value.double_value
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    if kind == "array_value":
        return [any_value(v, depth + 1) for v in value.array_value.values]
    return key_values(value.kvlist_value.values, depth + 1)


def key_values(pairs: Sequence[KeyValue], depth: int = 0) -> dict[str, Any]:
    return {kv.key: any_value(kv.value, depth) for kv in pairs}


def _message(body: AnyValue) -> str:
    kind = body.WhichOneof("value")
    if kind == "string_value":
        return body.string_value
    if kind is None:
        return ""
    try:
        return orjson.dumps(any_value(body)).decode()
    except TypeError as exc:  # a double that is NaN or infinite
        raise InvalidLogEntry("body", f"cannot be written as JSON ({exc})") from None


def _time(nanos: int) -> datetime | None:
    return EPOCH + timedelta(microseconds=nanos // 1000) if nanos else None


def decode(
    request: ExportLogsServiceRequest, source_attributes: Sequence[str], override: str | None
) -> list[Decoded]:
    """Every log record of the request as an event, in order; a record that cannot be
    one is its InvalidLogEntry (reported in partial_success)."""
    events: list[Decoded] = []
    for resource_logs in request.resource_logs:
        try:
            resource = key_values(resource_logs.resource.attributes)
        except InvalidLogEntry as exc:
            for scope_logs in resource_logs.scope_logs:
                events += [exc] * len(scope_logs.log_records)
            continue
        source = mapped_source(resource, source_attributes, override, FALLBACK_SOURCE)
        for scope_logs in resource_logs.scope_logs:
            scope_pb = scope_logs.scope
            scope: dict[str, Any] = {}
            if scope_pb.name:
                scope["name"] = scope_pb.name
            if scope_pb.version:
                scope["version"] = scope_pb.version
            if scope_pb.attributes:
                scope["attributes"] = key_values(scope_pb.attributes)
            for record in scope_logs.log_records:
                try:
                    events.append(
                        _event(
                            record, source, resource, scope, () if override else source_attributes
                        )
                    )
                except InvalidLogEntry as exc:
                    events.append(exc)
    return events


def _event(
    record: Any,
    source: str,
    resource: dict[str, Any],
    scope: dict[str, Any],
    record_source_keys: Sequence[str],
) -> Decoded:
    metadata: dict[str, Any] = {}
    if record.attributes:
        attributes = key_values(record.attributes)
        metadata["attributes"] = attributes
        # A record may name its own source (the first attribute configured, e.g.
        # logkeep.source), unless the request named one.
        if record_source_keys and record_source_keys[0] in attributes:
            source = mapped_source(attributes, record_source_keys[:1], None, source)
    if resource:
        metadata["resource"] = resource
    if scope:
        metadata["scope"] = scope
    if record.trace_id.strip(b"\x00"):
        metadata["trace_id"] = record.trace_id.hex()
    if record.span_id.strip(b"\x00"):
        metadata["span_id"] = record.span_id.hex()
    if record.severity_text:
        metadata["severity_text"] = record.severity_text
    if record.event_name:
        metadata["event_name"] = record.event_name
    return {
        "source": source,
        "message": _message(record.body),
        "timestamp": _time(record.time_unix_nano or record.observed_time_unix_nano),
        "level": severity_level(record.severity_number, record.severity_text),
        "metadata": metadata,
    }


def response(rejected: int, message: str, *, as_json: bool) -> tuple[bytes, str]:
    """ExportLogsServiceResponse, with partial_success only when records were rejected
    (the specification asks for it unset on full success), in the request's encoding."""
    answer = ExportLogsServiceResponse()
    if rejected:
        answer.partial_success.CopyFrom(
            ExportLogsPartialSuccess(rejected_log_records=rejected, error_message=message)
        )
    if as_json:
        return json_format.MessageToJson(answer, indent=None).encode(), "application/json"
    return answer.SerializeToString(), "application/x-protobuf"
