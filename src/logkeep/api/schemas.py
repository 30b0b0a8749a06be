"""Request and response models of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StrictFloat, StrictInt, StrictStr

from logkeep.api.fields import LEVEL_NAMES, LEVEL_SCHEMA, NO_NUL, SOURCE_REF_SCHEMA
from logkeep.api.problems import PROBLEM_REF

# Metadata: any JSON object; text in it (keys and values) without NUL characters.
JSON_VALUE_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "string", "pattern": NO_NUL},
        {"type": "number"},
        {"type": "boolean"},
        {"type": "null"},
        {"type": "array", "items": {"$ref": "#/components/schemas/JsonValue"}},
        {"$ref": "#/components/schemas/Metadata"},
    ]
}
METADATA_SCHEMA: dict[str, Any] = {
    "type": "object",
    "propertyNames": {"pattern": NO_NUL},
    "additionalProperties": {"$ref": "#/components/schemas/JsonValue"},
    "description": "a JSON object of at most 64 KiB, without NUL characters",
}


class LogEntryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Strict: `true` must not become source 1, nor `1.5` a message.
    source: StrictStr | StrictInt = Field(
        description="source name or id",
        json_schema_extra={
            "anyOf": [SOURCE_REF_SCHEMA, {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}]
        },
    )
    message: StrictStr = Field(
        description="non-empty UTF-8 text without NUL, at most 256 Ki characters",
        json_schema_extra={"pattern": r"^[^\x00]*\S[^\x00]*$", "maxLength": 262_144},
    )
    level: StrictStr | None = Field(
        default=None, json_schema_extra={"anyOf": [LEVEL_SCHEMA, {"type": "null"}]}
    )
    timestamp: StrictStr | StrictInt | StrictFloat | None = Field(
        default=None,
        description="RFC 3339 text or epoch seconds/milliseconds, within the accepted window",
    )
    metadata: dict[str, Any] | None = None  # declared in component_schemas()


class LogEntryCreated(BaseModel):
    id: int
    source_id: int


class LogEntryPublic(BaseModel):
    id: int
    source_id: int
    source: str
    timestamp: datetime
    level: str = Field(json_schema_extra={"enum": list[JsonValue](LEVEL_NAMES)})
    message: str
    metadata: dict[str, Any]
    ingested_at: datetime


class RecentLogsPublic(BaseModel):
    items: list[LogEntryPublic]


class Health(BaseModel):
    status: str


NOT_READY_SCHEMA: dict[str, Any] = {
    "allOf": [
        PROBLEM_REF,
        {
            "type": "object",
            "required": ["problems"],
            "properties": {
                "problems": {
                    "type": "object",
                    "description": "what is not ready (postgres, redis, schema) and why",
                    "additionalProperties": {"type": "string"},
                }
            },
        },
    ]
}


def component_schemas() -> dict[str, dict[str, Any]]:
    """Schemas the document holds beside the routes' models: the body of POST
    /api/v1/logs (read by the route itself) and the recursive metadata object."""
    entry = LogEntryCreate.model_json_schema()
    entry["properties"]["metadata"] = {
        "anyOf": [{"$ref": "#/components/schemas/Metadata"}, {"type": "null"}]
    }
    return {"LogEntryCreate": entry, "JsonValue": JSON_VALUE_SCHEMA, "Metadata": METADATA_SCHEMA}
