"""GET /api/v1/tail: new entries as Server-Sent Events, resumable with Last-Event-ID."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from sse_starlette import EventSourceResponse, ServerSentEvent

from logkeep.api.auth import Reader, readable_sources, requested_sources, resolve_principal
from logkeep.api.deps import get_db, get_settings, get_sources
from logkeep.api.fields import LevelQuery, LevelsQuery, SourcesQuery
from logkeep.api.problems import answers
from logkeep.api.search import METADATA_PARAM, NOT_METADATA_PARAM, query_items
from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.db.repositories import SourceRepository
from logkeep.domain import exactjson
from logkeep.domain.auth import Forbidden
from logkeep.domain.search import (
    METADATA_PREFIX,
    NOT_METADATA_PREFIX,
    excluded_documents,
    metadata_document,
)
from logkeep.domain.tail import EventPosition, TailFilter

router = APIRouter()

BLOCK_MS = 1000  # how long one XREAD waits before looking again
# How often a stream renews its listener mark (well within cache.tail.LISTENER_TTL_S) and
# checks its caller's credentials and scope again.
RECHECK_S = 5.0


async def tail_events(
    db: Database,
    flt: TailFilter,
    resume: EventPosition | None,
    still_allowed: Callable[[], Awaitable[bool]],
) -> AsyncIterator[ServerSentEvent]:
    """Entries as they commit. Every RECHECK_S the caller's credentials and scope
    are checked again: a revoked key, an ended session or a changed grant ends the
    stream (the client reconnects, and is answered with its current rights)."""
    client = db.tail_redis
    assert client is not None
    await db.tail.mark_listening(client)
    marked_at = time.monotonic()
    after = resume.read_after() if resume else await db.tail.last_id(client)
    while True:
        if time.monotonic() - marked_at > RECHECK_S:
            if not await still_allowed():
                return
            await db.tail.mark_listening(client)
            marked_at = time.monotonic()
        batches = await db.tail.read(client, after, BLOCK_MS)
        last_sent: str | None = None
        for stream_id, items in batches:
            for index, item in enumerate(items):
                if resume and stream_id == resume.stream_id and index <= resume.index:
                    continue  # sent before the client reconnected
                if flt.matches(item):
                    last_sent = EventPosition(stream_id, index).event_id()
                    yield ServerSentEvent(
                        data=exactjson.dumps(item).decode(), id=last_sent, event="log"
                    )
            after = stream_id
        if batches:
            # Where this client now is, even if nothing matched: a reconnect resumes here
            # instead of at "now", so nothing published during the gap is lost.
            position = EventPosition(after, len(batches[-1][1]) - 1).event_id()
            if position != last_sent:
                yield ServerSentEvent(data="", id=position, event="position")


@router.get(
    "/api/v1/tail",
    tags=["logs"],
    response_class=EventSourceResponse,
    openapi_extra={"parameters": [METADATA_PARAM, NOT_METADATA_PARAM]},
    responses={
        200: {
            "description": "Server-Sent Events: `log` events (data: an entry as JSON, id: "
            "its position), `position` events, and heartbeat comments",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        },
        **answers(401, 403, 422, 503),
    },
)
async def tail(
    request: Request,
    principal: Reader,
    db: Annotated[Database, Depends(get_db)],
    settings: Annotated[Settings, Depends(get_settings)],
    sources: Annotated[SourceRepository, Depends(get_sources)],
    source: SourcesQuery = None,
    level: LevelsQuery = None,
    min_level: LevelQuery = None,
    q: Annotated[str | None, Query(max_length=512)] = None,
    contains: Annotated[str | None, Query(max_length=512)] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64)] = None,
) -> EventSourceResponse:
    requested = await requested_sources(principal, sources, source or [])
    source_ids = readable_sources(principal, requested)

    async def still_allowed() -> bool:
        try:
            current = await resolve_principal(request)
            return current is not None and current.readable(requested) == source_ids
        except (HTTPException, Forbidden):
            return False

    metadata = metadata_document(
        (name, value) for name, value in query_items(request) if name.startswith(METADATA_PREFIX)
    )
    excluded = excluded_documents(
        (name, value)
        for name, value in query_items(request)
        if name.startswith(NOT_METADATA_PREFIX)
    )
    flt = TailFilter.build(
        source_ids=source_ids,
        levels=level or [],
        min_level=min_level,
        q=q,
        substring=contains,
        metadata=metadata,
        excluded_metadata=excluded,
    )
    resume = EventPosition.parse(last_event_id) if last_event_id else None
    slots: asyncio.Semaphore = request.app.state.tail_slots
    if slots.locked():
        raise HTTPException(
            503, "too many live tail clients; retry later", headers={"Retry-After": "10"}
        )

    async def guarded() -> AsyncIterator[ServerSentEvent]:
        # Taken when the stream starts, so that a response never sent holds no slot.
        async with slots:
            async for event in tail_events(db, flt, resume, still_allowed):
                yield event

    return EventSourceResponse(guarded(), ping=settings.tail_heartbeat_s)
