"""Request and response models of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr


class LogEntryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Strict: `true` must not become source 1, nor `1.5` a message.
    source: StrictStr | StrictInt = Field(description="source name or id")
    message: StrictStr
    level: StrictStr | None = None
    timestamp: StrictStr | StrictInt | StrictFloat | None = Field(
        default=None, description="RFC 3339 text or epoch seconds/milliseconds"
    )
    metadata: dict[str, Any] | None = None


class LogEntryCreated(BaseModel):
    id: int
    source_id: int


class LogEntryPublic(BaseModel):
    id: int
    source_id: int
    source: str
    timestamp: datetime
    level: str
    message: str
    metadata: dict[str, Any]
    ingested_at: datetime


class RecentLogsPublic(BaseModel):
    items: list[LogEntryPublic]
