"""Routes the web explorer needs beyond search: facets of a search, the histogram of its
matches, one entry by its key, an entry's context in its source, and a preview of
parsing rules on a sample line. Every read takes the caller's sources, as search does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from logkeep.api.auth import Reader, readable_sources, requested_sources, require
from logkeep.api.deps import get_db, get_settings, get_sources
from logkeep.api.fields import (
    FORMAT_TYPE_SCHEMA,
    SINCE_PATTERN,
    JsonObject,
    PathId,
    StorableText,
    Text,
)
from logkeep.api.problems import answers
from logkeep.api.responses import ExactJSONResponse
from logkeep.api.search import OPENAPI_PARAMETERS, encoded, query_items, started
from logkeep.config import Settings
from logkeep.db.chunk_counts import ChunkCounts
from logkeep.db.explore import (
    COUNT_TIMEOUT_MS,
    CountTooSlow,
    EntryKey,
    ExploreRepository,
    context_bounds,
)
from logkeep.db.queries import q
from logkeep.db.repositories import SourceRepository
from logkeep.db.search import LogSearch
from logkeep.domain.auth import Action, Principal
from logkeep.domain.entry import MAX_SOURCE_ID, InvalidLogEntry, parse_timestamp
from logkeep.domain.facets import facets
from logkeep.domain.histogram import plan_histogram
from logkeep.domain.ingest import PARSE_ERROR_KEY, SourceRules, entry_from_line
from logkeep.domain.parsers import InvalidRules, LineParseError, compile_parser
from logkeep.domain.search import MAX_LIMIT, OutputFormat, SearchQuery, parse_search, rfc3339
from logkeep.domain.timerange import InvalidQuery
from logkeep.ingest.service import entry_limits

router = APIRouter(tags=["explorer"])
Admin = Annotated[Principal, Depends(require(Action.ADMIN))]

FACET_SAMPLE = MAX_LIMIT  # the newest matches facets are counted over
MAX_CONTEXT = 500  # entries per side and request
MAX_ENTRY_ID = 2**63 - 1
MAX_SAMPLE_LINE = 256 * 1024


def chunk_counts(app: FastAPI) -> ChunkCounts:
    """The app's memory of what each chunk holds for a filter (db/chunk_counts.py)."""
    known: ChunkCounts | None = getattr(app.state, "chunk_counts", None)
    if known is None:
        known = app.state.chunk_counts = ChunkCounts()
    return known


async def get_explore(request: Request) -> ExploreRepository:
    db, settings = await get_db(request), await get_settings(request)
    return ExploreRepository(
        db.reads,
        db.cache,
        ttl_s=settings.cache_ttl_search_s,
        chunk_counts=chunk_counts(request.app),
    )


def _search_query(
    request: Request, settings: Settings, *, drop: tuple[str, ...], extra: list[tuple[str, str]]
) -> SearchQuery:
    """The search the request's parameters describe (as GET /api/v1/logs reads them),
    without the parameters in `drop` and with `extra`."""
    items = [(k, v) for k, v in query_items(request) if k not in drop]
    return parse_search(
        [*items, *extra],
        now=datetime.now(UTC),
        default_window=timedelta(seconds=settings.query_default_window_s),
        retention=timedelta(days=settings.retention_days),
        max_future=timedelta(seconds=settings.max_entry_future_s),
    )


async def _sources_of(
    principal: Principal, sources: SourceRepository, query: SearchQuery
) -> list[int] | None:
    return readable_sources(
        principal, await requested_sources(principal, sources, list(query.source_refs))
    )


# The search's parameters but its page (limit, cursor), which these routes ignore.
SEARCH_FILTERS = [p for p in OPENAPI_PARAMETERS if p["name"] not in ("limit", "cursor")]
INTERVAL_PARAMETER = {
    "name": "interval",
    "in": "query",
    "required": False,
    "description": "bucket size in whole minutes dividing a day: 1m, 5m, 1h, 1d...",
    "schema": {"type": "string", "maxLength": 16, "pattern": SINCE_PATTERN},
}


@router.get(
    "/api/v1/logs/facets",
    openapi_extra={"parameters": SEARCH_FILTERS},
    description=(
        f"Top values of source, level and the {8} most common metadata keys among the "
        f"newest {FACET_SAMPLE} entries matching the search (the same parameters as "
        "GET /api/v1/logs; `limit` and `cursor` are ignored). `complete` is true when the "
        "sample holds every match. Each value carries the parameter and text that filter "
        "for it. Cached like search pages."
    ),
)
async def search_facets(
    request: Request,
    principal: Reader,
    settings: Annotated[Settings, Depends(get_settings)],
    sources: Annotated[SourceRepository, Depends(get_sources)],
) -> dict[str, Any]:
    query = _search_query(
        request, settings, drop=("limit", "cursor"), extra=[("limit", str(FACET_SAMPLE))]
    )
    source_ids = await _sources_of(principal, sources, query)
    db = await get_db(request)
    search = LogSearch(
        db.reads, db.cache, ttl_s=settings.cache_ttl_search_s, stream_max_rows=FACET_SAMPLE
    )
    page = await search.page(query, source_ids)
    return facets(page["items"], complete=page["next_cursor"] is None)


@router.get(
    "/api/v1/logs/histogram",
    openapi_extra={"parameters": [*SEARCH_FILTERS, INTERVAL_PARAMETER]},
    description=(
        "Matches of a search (the parameters of GET /api/v1/logs, plus `interval`) per "
        "interval and level, in the shape of GET /api/v1/stats/histogram. Counted from the "
        "entries, so it answers searches with words, substrings or metadata that the "
        "rollups cannot; without those, /api/v1/stats/histogram is cheaper. A count that "
        f"takes over {COUNT_TIMEOUT_MS // 1000} s is a 422 asking for a narrower search."
    ),
)
async def match_histogram(
    request: Request,
    principal: Reader,
    settings: Annotated[Settings, Depends(get_settings)],
    sources: Annotated[SourceRepository, Depends(get_sources)],
    explore: Annotated[ExploreRepository, Depends(get_explore)],
) -> dict[str, Any]:
    query = _search_query(request, settings, drop=("limit", "cursor", "interval"), extra=[])
    interval = request.query_params.get("interval")
    source_ids = await _sources_of(principal, sources, query)
    plan = plan_histogram(
        query.window,
        interval=interval,
        levels=[lv.value for lv in query.levels] if query.levels else [],
        min_level=None,
        source_ids=source_ids,
    )
    try:
        return await explore.match_histogram(query, plan, source_ids)
    except CountTooSlow:
        raise HTTPException(
            422,
            f"histogram: counting the matches took over {COUNT_TIMEOUT_MS // 1000} s; "
            "narrow the window or add filters",
        ) from None


EXPORTS = {
    "csv": (OutputFormat.CSV, "text/csv; charset=utf-8", "logs.csv"),
    "ndjson": (OutputFormat.NDJSON, OutputFormat.NDJSON.value, "logs.ndjson"),
}


@router.get(
    "/api/v1/logs/export",
    openapi_extra={"parameters": SEARCH_FILTERS},
    responses={
        200: {
            "description": "every matching entry, as an attachment",
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                OutputFormat.NDJSON.value: {"schema": {"type": "string"}},
            },
        }
    },
    description=(
        "Every entry matching the search (the parameters of GET /api/v1/logs), streamed as "
        "`format=csv` or `format=ndjson`, as an attachment: the same export as "
        "GET /api/v1/logs with an Accept header, for a browser link, which cannot set one."
    ),
)
async def export(
    request: Request,
    principal: Reader,
    settings: Annotated[Settings, Depends(get_settings)],
    sources: Annotated[SourceRepository, Depends(get_sources)],
    format: Annotated[str, Query(pattern="^(csv|ndjson)$")] = "csv",
) -> Response:
    query = _search_query(request, settings, drop=("limit", "cursor", "format"), extra=[])
    source_ids = await _sources_of(principal, sources, query)
    fmt, media_type, filename = EXPORTS[format]
    db = await get_db(request)
    search = LogSearch(
        db.reads,
        db.cache,
        ttl_s=settings.cache_ttl_search_s,
        stream_max_rows=settings.stream_max_rows,
    )
    body = await started(encoded(search.stream(query, source_ids), fmt))
    return StreamingResponse(
        body,
        media_type=media_type,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "X-Logkeep-Row-Limit": str(settings.stream_max_rows),
        },
    )


@router.get("/api/v1/users/{user_id}/grants")
async def user_grants(user_id: PathId, admin: Admin, request: Request) -> dict[str, Any]:
    """The sources granted to a user (admins read every source without grants)."""
    async with (await get_db(request)).pool.acquire() as conn:
        rows = await conn.fetch(q("user_grants"), user_id)
    return {"user_id": user_id, "sources": [r["source_id"] for r in rows]}


def _entry_key(entry_id: int, source_id: int, at: str) -> EntryKey:
    if not 1 <= entry_id <= MAX_ENTRY_ID:
        raise InvalidQuery("id", f"must be from 1 to {MAX_ENTRY_ID}")
    try:
        timestamp = parse_timestamp(at)
    except InvalidLogEntry as exc:
        raise InvalidQuery("at", exc.reason) from None
    return EntryKey(source_id, timestamp, entry_id)


async def _readable_source(principal: Principal, sources: SourceRepository, ref: str) -> int:
    ids = readable_sources(principal, await requested_sources(principal, sources, [ref]))
    assert ids is not None
    assert len(ids) == 1
    return ids[0]


SourceParam = Annotated[
    str, Query(min_length=1, max_length=64, description="the entry's source (name or id)")
]
AtParam = Annotated[
    str, Query(min_length=1, max_length=64, description="the entry's timestamp, RFC 3339")
]


@router.get("/api/v1/logs/{entry_id:int}", response_model=dict[str, Any], responses=answers(404))
async def get_entry(
    entry_id: int,
    principal: Reader,
    sources: Annotated[SourceRepository, Depends(get_sources)],
    explore: Annotated[ExploreRepository, Depends(get_explore)],
    source: SourceParam,
    at: AtParam,
) -> Response:
    """One entry by its key: id, source and timestamp (as every entry in a search answer
    carries them). An id alone would have to look through every partition."""
    key = _entry_key(entry_id, await _readable_source(principal, sources, source), at)
    found = await explore.entry(key)
    if found is None:
        raise HTTPException(404, f"no entry {entry_id} of source {source[:64]!r} at {at[:64]}")
    return ExactJSONResponse(found)


@router.get("/api/v1/logs/{entry_id:int}/context", response_model=dict[str, Any])
async def entry_context(
    entry_id: int,
    principal: Reader,
    settings: Annotated[Settings, Depends(get_settings)],
    sources: Annotated[SourceRepository, Depends(get_sources)],
    explore: Annotated[ExploreRepository, Depends(get_explore)],
    source: SourceParam,
    at: AtParam,
    before: Annotated[int, Query(ge=0, le=MAX_CONTEXT)] = 20,
    after: Annotated[int, Query(ge=0, le=MAX_CONTEXT)] = 20,
) -> Response:
    """The `before` entries of the same source just before this one and the `after` just
    after it (lines, not a time window; ties in time ordered by id), oldest first, with
    `more_before`/`more_after`. Load more by asking again from the first or last entry
    received. The entry itself need not exist any more (its neighbours are still found)."""
    key = _entry_key(entry_id, await _readable_source(principal, sources, source), at)
    oldest, newest = context_bounds(
        datetime.now(UTC),
        timedelta(days=settings.retention_days),
        timedelta(seconds=settings.max_entry_future_s),
    )
    found = await explore.context(key, before=before, after=after, oldest=oldest, newest=newest)
    return ExactJSONResponse(
        {
            "anchor": {
                "id": key.id,
                "source_id": key.source_id,
                "timestamp": rfc3339(key.timestamp),
            },
            **found,
        }
    )


class RulePreview(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format_type: StorableText = Field(
        min_length=1, max_length=32, json_schema_extra=FORMAT_TYPE_SCHEMA
    )
    parsing_rules: JsonObject = Field(default_factory=dict)
    line: Text = Field(min_length=1, max_length=MAX_SAMPLE_LINE)


@router.post("/api/v1/sources/preview", response_model=dict[str, Any])
async def preview_rules(
    body: RulePreview,
    admin: Admin,
    settings: Annotated[Settings, Depends(get_settings)],
) -> Response:
    """What ingest would store for `line` under these rules, before they are saved:
    422 for rules that would be refused on save; `parsed: false` (the line kept whole,
    with the reason) when the line does not fit; `accepted: false` with the reason when
    the entry would be rejected. Nothing is written."""
    try:
        parser = compile_parser(body.format_type, body.parsing_rules)
    except InvalidRules as exc:
        raise HTTPException(422, str(exc)) from None
    rules = SourceRules(MAX_SOURCE_ID, "preview", True, body.format_type, parser)
    try:
        prepared = entry_from_line(body.line, rules, limits=entry_limits(settings))
    except InvalidLogEntry as exc:
        return ExactJSONResponse(
            {"accepted": False, "parsed": False, "reason": str(exc), "entry": None}
        )
    entry = prepared.entry
    reason = entry.metadata.get(PARSE_ERROR_KEY)
    try:
        line_has_time = parser(body.line).timestamp is not None
    except LineParseError:
        line_has_time = False
    preview = {
        "accepted": True,
        "parsed": reason is None,
        "reason": reason,
        "line_has_time": line_has_time,  # else the entry gets the time it arrives
        "entry": {
            "timestamp": rfc3339(entry.timestamp),
            "level": entry.level.value,
            "message": entry.message,
            "metadata": dict(entry.metadata),
        },
    }
    return ExactJSONResponse(preview)
