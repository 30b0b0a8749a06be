"""Elasticsearch's bulk API (`POST /_bulk`, `/{index}/_bulk`), as Beats, Logstash, Fluent
Bit, Vector, syslog-ng and the Elasticsearch clients send it: NDJSON action lines, each
`index` or `create` followed by its document. Documents become events; the answer has
Elasticsearch's shape, an item per action, so a bad document fails alone.

A document's source is its index (the action's `_index`, else the URL's); its message
the first of `message` (ECS), `log` (Fluent Bit), `msg`; its time `@timestamp`,
`timestamp` or `time`; its level `log.level` (ECS, flat or nested), `level` or
`severity`; `_id` is its event id (a repeat within the dedup window is a duplicate).
Every other field is metadata, as sent, with `_index`."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import orjson

from logkeep.domain.entry import InvalidLogEntry
from logkeep.domain.ingest import BodyError, split_lines
from logkeep.domain.protocols.common import (
    Decoded,
    JSONDecodeError,
    json_loads,
    known_level,
    source_name,
)

VERSION = "8.17.0"  # what the handshake reports: shippers pick their protocol by it
MESSAGE_FIELDS = ("message", "log", "msg", "MESSAGE")  # MESSAGE: syslog-ng
TIME_FIELDS = ("@timestamp", "timestamp", "time")
LEVEL_FIELDS = ("log.level", "level", "severity", "PRIORITY")
WRITE_OPS = ("index", "create")
OPS = (*WRITE_OPS, "update", "delete")


@dataclass(frozen=True, slots=True)
class BulkItem:
    op: str
    index: str  # as sent ("" when neither the action nor the URL names one)
    doc_id: str | None
    event: Decoded  # an InvalidLogEntry for what cannot be stored


def parse_bulk(
    body: bytes, url_index: str | None, override: str | None, max_line_bytes: int
) -> list[BulkItem]:
    """The actions of a bulk body. A malformed action line makes the whole request
    invalid (400), as in Elasticsearch; a bad document fails its own item."""
    items: list[BulkItem] = []
    lines = split_lines(body)  # blank lines are skipped, as Elasticsearch tolerates them
    for number, raw in lines:
        op, meta = _action(number, raw)
        index = meta.get("_index") or url_index or ""
        doc_id = meta.get("_id")
        doc_id = str(doc_id) if isinstance(doc_id, str | int) and doc_id != "" else None
        if op == "delete":
            items.append(BulkItem(op, index, doc_id, _unsupported(op)))
            continue
        document = next(lines, None)
        if document is None:
            raise BodyError(400, f"body: line {number}: the {op} action has no document line")
        if op == "update":
            items.append(BulkItem(op, index, doc_id, _unsupported(op)))
            continue
        try:
            event = document_event(document[1], index, doc_id, override, max_line_bytes)
        except InvalidLogEntry as exc:
            event = exc
        items.append(BulkItem(op, index, doc_id, event))
    return items


def _action(number: int, raw: bytes) -> tuple[str, dict[str, Any]]:
    try:
        action = orjson.loads(raw)  # names and ids only: no number to keep exactly
    except orjson.JSONDecodeError:
        action = None
    if not isinstance(action, dict) or len(action) != 1:
        raise BodyError(
            400,
            f"body: line {number}: malformed action/metadata line, expected an object "
            f"with one of {', '.join(OPS)}",
        )
    ((op, meta),) = action.items()
    if op not in OPS or not isinstance(meta, dict):
        raise BodyError(400, f"body: line {number}: unknown action {str(op)[:32]!r}")
    return op, meta


def _unsupported(op: str) -> InvalidLogEntry:
    return InvalidLogEntry(
        "action", f"{op} is not supported: logkeep stores logs append-only (index, create)"
    )


def _first(doc: dict[str, Any], names: Sequence[str]) -> tuple[str | None, Any]:
    for name in names:
        if name in doc:
            return name, doc[name]
    return None, None


def document_event(
    raw: bytes, index: str, doc_id: str | None, override: str | None, max_line_bytes: int
) -> Decoded:
    if len(raw) > max_line_bytes:
        raise InvalidLogEntry(
            "document", f"is {len(raw)} bytes, over the {max_line_bytes}-byte line limit"
        )
    try:
        doc = json_loads(raw)
    except JSONDecodeError as exc:
        raise InvalidLogEntry("document", f"is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise InvalidLogEntry("document", f"must be a JSON object, got {type(doc).__name__}")
    source = override or source_name(index)
    if source is None:
        raise InvalidLogEntry(
            "_index",
            "is missing: name it in the action, in the URL (/{index}/_bulk) or with "
            "the X-Logkeep-Source header"
            if not index
            else f"{index[:64]!r} makes no source name",
        )
    message_key, message = _first(doc, MESSAGE_FIELDS)
    if message_key is None:
        raise InvalidLogEntry("message", f"no message field (one of {', '.join(MESSAGE_FIELDS)})")
    metadata = {k: v for k, v in doc.items() if k != message_key}
    time_key, timestamp = _first(doc, TIME_FIELDS)
    if time_key is not None:
        del metadata[time_key]
    level_key, level_value = _first(doc, LEVEL_FIELDS)
    if level_key is None:
        nested = doc.get("log")
        level_value = nested.get("level") if isinstance(nested, dict) else None
    level = known_level(level_value)
    if level_key is not None and level is not None:
        del metadata[level_key]
    if index:
        metadata["_index"] = index
    return {
        "source": source,
        "message": message if isinstance(message, str) else orjson.dumps(message).decode(),
        "timestamp": timestamp,
        "level": level,
        "metadata": metadata,
        "event_id": doc_id,
    }


# -- answers -----------------------------------------------------------------------------

CREATED = "created"
DUPLICATE = "duplicate"


SHARDS = {"total": 1, "successful": 1, "failed": 0}


def id_prefix() -> str:
    """The first 14 characters of the ids a response gives documents sent without one
    (a counter makes the rest: 20 characters, shaped like Elasticsearch's)."""
    return secrets.token_urlsafe(11)[:14]


def bulk_item(item: BulkItem, outcome: str, seq_no: int, prefix: str) -> dict[str, Any]:
    """One entry of `items`: created (201); a duplicate (409 for `create` with an id, as
    Elasticsearch answers a second create of one id; otherwise 200, result `noop`);
    or rejected (400, with the reason as `outcome`)."""
    index = item.index or "logkeep"
    doc_id = item.doc_id or f"{prefix}{seq_no:06d}"
    if outcome == CREATED or (outcome == DUPLICATE and not (item.op == "create" and item.doc_id)):
        created = outcome == CREATED
        return {
            item.op: {
                "_index": index,
                "_id": doc_id,
                "_version": 1,
                "result": "created" if created else "noop",
                "_shards": SHARDS,
                "_seq_no": seq_no,
                "_primary_term": 1,
                "status": 201 if created else 200,
            }
        }
    if outcome == DUPLICATE:
        error = {
            "type": "version_conflict_engine_exception",
            "reason": f"[{doc_id}]: version conflict, document already exists",
        }
        return {item.op: {"_index": index, "_id": doc_id, "status": 409, "error": error}}
    kind = (
        "illegal_argument_exception"
        if item.op in ("update", "delete")
        else "document_parsing_exception"
    )
    error = {"type": kind, "reason": outcome}
    return {item.op: {"_index": index, "_id": doc_id, "status": 400, "error": error}}


def outcomes(
    count: int, rejected: Mapping[int, str], duplicate_positions: AbstractSet[int]
) -> list[str]:
    """What became of each of `count` items (1-based `rejected` reasons by item; the
    records of the others, in order, are numbered from 0 in `duplicate_positions`)."""
    result: list[str] = []
    record = 0
    for number in range(1, count + 1):
        reason = rejected.get(number)
        if reason is not None:
            result.append(reason)
            continue
        result.append(DUPLICATE if record in duplicate_positions else CREATED)
        record += 1
    return result


def bulk_response(items: Sequence[BulkItem], outcomes: Sequence[str], took_ms: int) -> bytes:
    prefix = id_prefix()
    answers = [
        bulk_item(item, outcome, n, prefix)
        for n, (item, outcome) in enumerate(zip(items, outcomes, strict=True))
    ]
    errors = any(outcome != CREATED and outcome != DUPLICATE for outcome in outcomes) or any(
        outcome == DUPLICATE and item.op == "create" and item.doc_id
        for item, outcome in zip(items, outcomes, strict=True)
    )
    return orjson.dumps({"took": took_ms, "errors": errors, "items": answers})


def error_body(status: int, kind: str, reason: str) -> bytes:
    """Elasticsearch's error document."""
    cause = {"type": kind, "reason": reason}
    return orjson.dumps({"error": {"root_cause": [cause], **cause}, "status": status})


def info(cluster_uuid: str) -> dict[str, Any]:
    """`GET /`: what shippers read the version from before they send anything."""
    return {
        "name": "logkeep",
        "cluster_name": "logkeep",
        "cluster_uuid": cluster_uuid,
        "version": {
            "number": VERSION,
            "build_flavor": "default",
            "build_type": "docker",
            "build_hash": "logkeep",
            "build_date": "2024-01-01T00:00:00.000Z",
            "build_snapshot": False,
            "lucene_version": "9.12.0",
            "minimum_wire_compatibility_version": "7.17.0",
            "minimum_index_compatibility_version": "7.0.0",
        },
        "tagline": "You Know, for Search",
    }


def license_info() -> dict[str, Any]:
    """`GET /_license`: Beats and Logstash read it before they send."""
    return {
        "license": {
            "status": "active",
            "uid": "00000000-0000-0000-0000-000000000000",
            "type": "basic",
            "issue_date": "2024-01-01T00:00:00.000Z",
            "issue_date_in_millis": 1704067200000,
            "max_nodes": 1000,
            "max_resource_units": None,
            "issued_to": "logkeep",
            "issuer": "logkeep",
            "start_date_in_millis": -1,
        }
    }


def cluster_health() -> dict[str, Any]:
    return {
        "cluster_name": "logkeep",
        "status": "green",
        "timed_out": False,
        "number_of_nodes": 1,
        "number_of_data_nodes": 1,
        "active_primary_shards": 0,
        "active_shards": 0,
        "relocating_shards": 0,
        "initializing_shards": 0,
        "unassigned_shards": 0,
        "delayed_unassigned_shards": 0,
        "number_of_pending_tasks": 0,
        "number_of_in_flight_fetch": 0,
        "task_max_waiting_in_queue_millis": 0,
        "active_shards_percent_as_number": 100.0,
    }
