"""GET /api/v1/logs: search, as JSON pages with a keyset cursor or as an NDJSON/CSV export.

Parameters are parsed by `logkeep.domain.search` from the raw query string rather than
declared one by one to FastAPI: `metadata.<key>` names are open-ended, unknown names must
be refused, and every refusal should read the same (422, naming the parameter).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from logkeep.api.auth import Reader, readable_sources, requested_sources
from logkeep.api.deps import get_db, get_settings, get_sources
from logkeep.api.fields import LEVEL_SCHEMA, NO_NUL, SOURCE_REF_SCHEMA
from logkeep.api.problems import answers
from logkeep.api.schemas import LogEntryPublic
from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.db.repositories import SourceRepository
from logkeep.db.search import LogSearch
from logkeep.domain import exactjson
from logkeep.domain.search import (
    DEFAULT_LIMIT,
    MAX_CURSOR_CHARS,
    MAX_LIMIT,
    MAX_METADATA_DEPTH,
    MAX_METADATA_FILTERS,
    MAX_SOURCES,
    MAX_VALUE_CHARS,
    OutputFormat,
    choose_format,
    parse_search,
)

router = APIRouter()

CSV_COLUMNS = ("id", "timestamp", "source", "level", "message", "metadata")


class SearchResultsPublic(BaseModel):
    items: list[LogEntryPublic]
    next_cursor: str | None


def _param(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _text(max_length: int = MAX_VALUE_CHARS, **more: Any) -> dict[str, Any]:
    return {"type": "string", "maxLength": max_length, "pattern": NO_NUL, **more}


_DATE_TIME = {"type": "string", "maxLength": 64, "format": "date-time"}


# `metadata[a.b]=500` in the document (deepObject, which generated clients can send);
# `metadata.a.b=500` is the same filter, as the CLI and older clients write it.
_KEY = "[A-Za-z0-9_-]{1,64}"
METADATA_KEY_PATH = f"^{_KEY}(?:\\.{_KEY}){{0,{MAX_METADATA_DEPTH - 1}}}$"
_DEEP_OBJECT = re.compile(r"^(metadata|not\.metadata)\[([^\[\]]*)\]$")


def metadata_param(name: str, description: str) -> dict[str, Any]:
    return {
        **_param(
            name,
            description,
            {
                "type": "object",
                "propertyNames": {"pattern": METADATA_KEY_PATH},
                "additionalProperties": _text(),
                "maxProperties": MAX_METADATA_FILTERS,
            },
        ),
        "style": "deepObject",
        "explode": True,
    }


def query_items(request: Request) -> list[tuple[str, str]]:
    """The query's (name, value) pairs, with the deepObject form `metadata[a.b]=v` read
    as `metadata.a.b=v`: one filter syntax for the parsers, two spellings on the wire."""
    items = []
    for name, value in request.query_params.multi_items():
        deep = _DEEP_OBJECT.fullmatch(name)
        items.append((f"{deep[1]}.{deep[2]}", value) if deep else (name, value))
    return items


METADATA_PARAM = metadata_param(
    "metadata",
    "metadata containment, `metadata[status]=500` or `metadata[http.status]=500` for a "
    'nested key: 500 is the number, "500" the text, true/false/null those values '
    "(also written `metadata.status=500`)",
)
NOT_METADATA_PARAM = metadata_param(
    "not.metadata",
    "leaves out entries whose metadata holds this value: `not.metadata[env]=dev` "
    "(also written `not.metadata.env=dev`)",
)

# Documentation only: the values are read and checked by parse_search.
OPENAPI_PARAMETERS = [
    # As FromQuery and ToQuery: a date-time holds no NUL, so no pattern (which also cost
    # schemathesis 16 s to generate strings for, with the format and the length).
    _param("from", "window start, RFC 3339 (inclusive)", _DATE_TIME),
    _param("to", "window end, RFC 3339 (exclusive); default now", _DATE_TIME),
    _param(
        "since",
        "window back from `to`: 15m, 2h, 7d, 1w (give either since or from, not both)",
        {"type": "string", "pattern": r"^\s*[0-9]{1,6}[smhdw]\s*$"},
    ),
    _param(
        "source",
        "source ids or names (repeat)",
        {"type": "array", "items": {**SOURCE_REF_SCHEMA, "maxLength": 64}, "maxItems": MAX_SOURCES},
    ),
    _param(
        "level",
        "exact levels (repeat; give either level or min_level, not both)",
        {"type": "array", "items": LEVEL_SCHEMA},
    ),
    _param("min_level", "this level and more severe", LEVEL_SCHEMA),
    _param(
        "q", "words that must all appear (full-text, case-insensitive)", _text(512, minLength=1)
    ),
    _param("contains", "case-insensitive substring of the message", _text(512, minLength=1)),
    _param(
        "limit",
        "entries per page",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
    ),
    _param(
        "cursor",
        "next_cursor of the previous page",
        {"type": "string", "pattern": "^[A-Za-z0-9_-]+$", "maxLength": MAX_CURSOR_CHARS},
    ),
    METADATA_PARAM,
    NOT_METADATA_PARAM,
]


def ndjson_chunk(items: list[dict[str, Any]]) -> bytes:
    return b"".join(exactjson.dumps(entry) + b"\n" for entry in items)


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """A cell a spreadsheet will not run: logged text is attacker-controlled (a user agent
    of `=HYPERLINK(...)`), so cells that would start a formula get a leading quote."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_chunk(items: list[dict[str, Any]], *, header: bool = False) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)  # quotes commas, quotes and newlines in messages
    if header:
        writer.writerow(CSV_COLUMNS)
    for entry in items:
        writer.writerow(
            [
                entry["id"],
                entry["timestamp"],
                entry["source"],
                entry["level"],
                spreadsheet_safe(entry["message"]),
                exactjson.dumps(entry["metadata"]).decode(),  # "{...": never a formula
            ]
        )
    return buffer.getvalue().encode("utf-8")


async def encoded(
    batches: AsyncGenerator[list[dict[str, Any]], None], fmt: OutputFormat
) -> AsyncGenerator[bytes, None]:
    """Batches of rows as bytes; the CSV header travels with the first batch, so that the
    first chunk is not ready before the query has answered."""
    header = fmt is OutputFormat.CSV
    try:
        async for batch in batches:
            yield (
                csv_chunk(batch, header=header) if fmt is OutputFormat.CSV else ndjson_chunk(batch)
            )
            header = False
        if header:
            yield csv_chunk([], header=True)
    finally:
        await batches.aclose()  # ends the transaction and returns the connection


async def started(chunks: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
    """Run `chunks` up to its first chunk now, so that a failure to query (PostgreSQL
    down, a timeout) is still an HTTP error (503) rather than a cut-off 200."""
    first = await anext(chunks, None)

    async def rest() -> AsyncIterator[bytes]:
        try:
            if first is not None:
                yield first
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()

    return rest()


@router.get(
    "/api/v1/logs",
    tags=["logs"],
    response_model=SearchResultsPublic,
    openapi_extra={"parameters": OPENAPI_PARAMETERS},
    responses={
        200: {
            "content": {
                OutputFormat.NDJSON.value: {"schema": {"type": "string"}},
                OutputFormat.CSV.value: {"schema": {"type": "string"}},
            },
            "description": "JSON page, or every matching entry as NDJSON or CSV (by Accept)",
        },
        **answers(401, 403, 422, 503),
    },
)
async def search_logs(
    request: Request,
    principal: Reader,
    db: Annotated[Database, Depends(get_db)],
    settings: Annotated[Settings, Depends(get_settings)],
    sources: Annotated[SourceRepository, Depends(get_sources)],
) -> Response:
    """Entries newest first. `Accept: application/x-ndjson` or `text/csv` exports every
    matching entry (up to the export limit) instead of one page."""
    fmt = choose_format(request.headers.get("accept"))
    query = parse_search(
        query_items(request),
        now=datetime.now(UTC),
        default_window=timedelta(seconds=settings.query_default_window_s),
        retention=timedelta(days=settings.retention_days),
        max_future=timedelta(seconds=settings.max_entry_future_s),
    )
    source_ids = readable_sources(
        principal, await requested_sources(principal, sources, list(query.source_refs))
    )
    search = LogSearch(
        db.reads,
        db.cache,
        ttl_s=settings.cache_ttl_search_s,
        stream_max_rows=settings.stream_max_rows,
    )
    if fmt is OutputFormat.JSON:
        result = await search.page(query, source_ids)
        # Cached pages are already JSON-ready: serialise once, without revalidating.
        return Response(exactjson.dumps(result), media_type=OutputFormat.JSON.value)
    body = await started(encoded(search.stream(query, source_ids), fmt))
    headers = {"X-Logkeep-Row-Limit": str(settings.stream_max_rows)}
    if fmt is OutputFormat.CSV:
        headers["Content-Disposition"] = 'attachment; filename="logs.csv"'
        return StreamingResponse(body, media_type="text/csv; charset=utf-8", headers=headers)
    return StreamingResponse(body, media_type=fmt.value, headers=headers)
