"""Loki push (`POST /loki/api/v1/push`): JSON, or protobuf `logproto.PushRequest`. The
protobuf classes are built at import from a descriptor written here (the message shapes
of Loki's push.proto; nothing generated or copied), parsed by the protobuf runtime.

An event's metadata: `labels` (the stream's labels) and `structured_metadata` (the
entry's, when it has some). The line is the message; the level comes from a `level`-like
label or structured metadata entry, INFO otherwise."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2
from google.protobuf.message import DecodeError, Message

from logkeep.domain.entry import InvalidLogEntry, Level
from logkeep.domain.ingest import EPOCH, BodyError
from logkeep.domain.protocols.common import (
    Decoded,
    JSONDecodeError,
    json_loads,
    known_level,
    mapped_source,
)

FALLBACK_SOURCE = "loki"
LEVEL_KEYS = ("level", "detected_level", "severity", "lvl", "loglevel")

_F = descriptor_pb2.FieldDescriptorProto


def _message_classes() -> dict[str, type[Message]]:
    """logproto.PushRequest and friends, in a pool of their own."""
    proto = descriptor_pb2.FileDescriptorProto(
        name="logkeep/loki_push.proto",
        package="logproto",
        syntax="proto3",
        dependency=["google/protobuf/timestamp.proto"],
    )

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> None:
        described = proto.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            field = described.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = type_name

    one, many = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    message("LabelPairAdapter", ("name", 1, _F.TYPE_STRING, one, ""),
            ("value", 2, _F.TYPE_STRING, one, ""))  # fmt: skip
    message(
        "EntryAdapter",
        ("timestamp", 1, _F.TYPE_MESSAGE, one, ".google.protobuf.Timestamp"),
        ("line", 2, _F.TYPE_STRING, one, ""),
        ("structuredMetadata", 3, _F.TYPE_MESSAGE, many, ".logproto.LabelPairAdapter"),
    )
    message(
        "StreamAdapter",
        ("labels", 1, _F.TYPE_STRING, one, ""),
        ("entries", 2, _F.TYPE_MESSAGE, many, ".logproto.EntryAdapter"),
        ("hash", 3, _F.TYPE_UINT64, one, ""),
    )
    message("PushRequest", ("streams", 1, _F.TYPE_MESSAGE, many, ".logproto.StreamAdapter"))
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(timestamp_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(proto)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"logproto.{name}"))
        for name in ("PushRequest", "StreamAdapter", "EntryAdapter", "LabelPairAdapter")
    }


MESSAGES = _message_classes()
PushRequest = MESSAGES["PushRequest"]

# {name="value", other="with \"quotes\""}: Prometheus label-set syntax.
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_.]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|(?=\}))')
_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
_UNESCAPED = {"n": "\n", "t": "\t"}


def parse_labels(text: str) -> dict[str, str]:
    """A stream's label set as a dict; InvalidLogEntry when it is not one."""
    body = text.strip()
    if not (body.startswith("{") and body.endswith("}")):
        raise InvalidLogEntry("labels", f'{text[:80]!r} is not a label set {{name="value"}}')
    labels: dict[str, str] = {}
    pos, end = 1, len(body) - 1
    while pos < end and body[pos:end].strip():
        match = _LABEL.match(body, pos)
        if match is None:
            raise InvalidLogEntry("labels", f"cannot read a label at {body[pos : pos + 40]!r}")
        value = match[2]
        if "\\" in value:
            value = _ESCAPE.sub(lambda m: _UNESCAPED.get(m[1], m[1]), value)
        labels[match[1]] = value
        pos = match.end()
    return labels


def level_of(*fields: Mapping[str, Any]) -> Level | None:
    for mapping in fields:
        for key in LEVEL_KEYS:
            level = known_level(mapping.get(key))
            if level is not None:
                return level
    return None


def _event(
    source: str,
    labels: dict[str, str],
    timestamp: datetime,
    line: str,
    structured: dict[str, str],
) -> Decoded:
    metadata: dict[str, Any] = {"labels": labels}
    if structured:
        metadata["structured_metadata"] = structured
    return {
        "source": source,
        "message": line,
        "timestamp": timestamp,
        "level": level_of(structured, labels),
        "metadata": metadata,
    }


def _nanos(value: object) -> datetime:
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        nanos = int(value)
    elif isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        nanos = value
    else:
        raise InvalidLogEntry("timestamp", f"{str(value)[:40]!r} is not epoch nanoseconds")
    try:
        return EPOCH + timedelta(microseconds=nanos // 1000)
    except OverflowError:
        raise InvalidLogEntry("timestamp", f"{nanos} nanoseconds is out of range") from None


def decode_json(body: bytes, label_keys: Sequence[str], override: str | None) -> list[Decoded]:
    """`{"streams": [{"stream": {labels}, "values": [[ns, line, {metadata}?], ...]}]}`;
    other keys are ignored. A value that cannot be an entry is its InvalidLogEntry."""
    try:
        document = json_loads(body)
    except JSONDecodeError as exc:
        raise BodyError(400, f"body: not valid JSON ({exc})") from None
    streams = document.get("streams") if isinstance(document, dict) else None
    if not isinstance(streams, list):
        raise BodyError(400, 'body: expected {"streams": [...]}')
    events: list[Decoded] = []
    for stream in streams:
        values = stream.get("values") if isinstance(stream, dict) else None
        if not isinstance(values, list):
            raise BodyError(400, 'body: every stream needs "values": [[ts, line], ...]')
        labels = stream.get("stream", {})  # absent: no labels; null is not an object
        if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
            raise BodyError(400, 'body: every stream\'s "stream" must be an object of strings')
        source = mapped_source(labels, label_keys, override, FALLBACK_SOURCE)
        for value in values:
            try:
                if not isinstance(value, list) or len(value) not in (2, 3):
                    raise InvalidLogEntry(
                        "values", "each value must be [ts, line] or [ts, line, {}]"
                    )
                line = value[1]
                if not isinstance(line, str):
                    raise InvalidLogEntry("line", "must be a string")
                structured = value[2] if len(value) == 3 else {}
                if not isinstance(structured, dict) or not all(
                    isinstance(v, str) for v in structured.values()
                ):
                    raise InvalidLogEntry("structured metadata", "must be an object of strings")
                events.append(_event(source, labels, _nanos(value[0]), line, structured))
            except InvalidLogEntry as exc:
                events.append(exc)
    return events


def decode_protobuf(body: bytes, label_keys: Sequence[str], override: str | None) -> list[Decoded]:
    """A (decompressed) protobuf PushRequest's entries as events."""
    request: Any = PushRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise BodyError(400, f"body: not a Loki PushRequest ({exc})") from None
    events: list[Decoded] = []
    for stream in request.streams:
        try:
            labels = parse_labels(stream.labels)
        except InvalidLogEntry as exc:
            events += [exc] * len(stream.entries)
            continue
        source = mapped_source(labels, label_keys, override, FALLBACK_SOURCE)
        for entry in stream.entries:
            ts = entry.timestamp
            try:
                timestamp = EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)
            except OverflowError:
                events.append(InvalidLogEntry("timestamp", f"{ts.seconds} s is out of range"))
                continue
            structured = {pair.name: pair.value for pair in entry.structuredMetadata}
            events.append(_event(source, labels, timestamp, entry.line, structured))
    return events
