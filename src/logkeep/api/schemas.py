"""Request and response models of the HTTP API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class LogEntryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str | int = Field(description="source name or id")
    message: str
    level: str | None = None
    timestamp: datetime | str | int | float | None = None
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
