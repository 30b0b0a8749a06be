"""FastAPI dependencies: the objects a request handler may ask for, from app state.

Every dependency is `async def`: FastAPI runs a plain `def` one in a worker thread, a
thread hop per dependency and request that costs more than reading an attribute.
"""

from __future__ import annotations

from fastapi import Request

from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.db.repositories import LogRepository, SourceRepository
from logkeep.domain.timerange import InvalidQuery


async def get_logs(request: Request) -> LogRepository:
    repo: LogRepository = request.app.state.logs
    return repo


async def get_sources(request: Request) -> SourceRepository:
    repo: SourceRepository = request.app.state.sources
    return repo


async def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def resolve_source_ids(sources: SourceRepository, refs: list[str]) -> list[int] | None:
    """Ids of the named (or numbered) sources; None when no source was asked for.
    An unknown source is a 422 naming it, never an empty result."""
    if not refs:
        return None
    ids: list[int] = []
    for ref in refs:
        found = await sources.resolve(ref)
        if found is None:
            raise InvalidQuery("source", f"no source named or numbered {ref[:64]!r}")
        ids.append(found["id"])
    return sorted(set(ids))
