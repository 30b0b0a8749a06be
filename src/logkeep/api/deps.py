"""FastAPI dependencies: the objects a request handler may ask for, from app state."""

from __future__ import annotations

from fastapi import Request

from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.db.repositories import LogRepository, SourceRepository


def get_logs(request: Request) -> LogRepository:
    repo: LogRepository = request.app.state.logs
    return repo


def get_sources(request: Request) -> SourceRepository:
    repo: SourceRepository = request.app.state.sources
    return repo


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings
