"""Routes: the histogram and the summary, from the per-minute rollups through the cache."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from logkeep.api.auth import Reader, readable_sources, requested_sources
from logkeep.api.deps import get_db, get_settings, get_sources
from logkeep.api.fields import (
    SINCE_PATTERN,
    FromQuery,
    LevelQuery,
    LevelsQuery,
    SinceQuery,
    SourcesQuery,
    ToQuery,
)
from logkeep.api.problems import answers
from logkeep.config import Settings
from logkeep.db.repositories import SourceRepository
from logkeep.db.stats import StatsRepository
from logkeep.domain.histogram import (
    MAX_BUCKETS,
    TARGET_BUCKETS,
    check_window_bounds,
    plan_histogram,
    summary_window,
)
from logkeep.domain.histogram import top_sources as pick_top_sources
from logkeep.domain.timerange import InvalidQuery, TimeRange, parse_time_range

router = APIRouter(prefix="/api/v1/stats", tags=["stats"], responses=answers(401, 403, 422, 503))

# `source` and `level` may repeat; more than this is not a chart anyone reads, and the
# bound keeps one request from resolving thousands of names.
MAX_REPEATS = 100
MAX_HOURS = 24 * 366

WHOLE_MINUTES = (
    "Counts come from per-minute rollups, so they are per whole minutes: the window is "
    "widened to the minutes it touches (`from` and `to` in the answer are the window "
    "counted), and the minute in progress counts the entries committed so far."
)


# -- response models ----------------------------------------------------------------------


class HistogramBucket(BaseModel):
    start: datetime
    counts: dict[str, int]
    total: int


class HistogramPublic(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from")
    to: datetime
    interval_s: int
    resolution_s: int
    levels: list[str]
    sources: list[int] | None
    total: int
    buckets: list[HistogramBucket]


class SummaryTotals(BaseModel):
    events: int
    errors: int
    error_rate: float


class SourceSummary(BaseModel):
    source_id: int
    source: str
    active: bool
    events: int
    errors: int
    error_rate: float
    counts: dict[str, int]
    last_error_minute: datetime | None


class TopSource(BaseModel):
    source_id: int
    source: str
    events: int
    share: float


class ErrorCount(BaseModel):
    source_id: int
    source: str
    level: str
    count: int
    last_minute: datetime | None


class SummaryPublic(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    hours: int
    from_: datetime = Field(alias="from")
    to: datetime
    resolution_s: int
    totals: SummaryTotals
    sources: list[SourceSummary]
    top_sources: list[TopSource]
    error_summary: list[ErrorCount]


# -- dependencies -------------------------------------------------------------------------


async def get_stats(request: Request) -> StatsRepository:
    db, settings = await get_db(request), await get_settings(request)
    return StatsRepository(
        db.reads,
        db.cache,
        ttl_histogram_s=settings.cache_ttl_histogram_s,
        ttl_summary_s=settings.cache_ttl_summary_s,
    )


def only_params(*allowed: str) -> Callable[[Request], Awaitable[None]]:
    """Refuse parameters the route does not take: a misspelt `min_lvl` silently ignored
    would answer a different question than the one asked."""
    accepted = frozenset(allowed)

    async def check(request: Request) -> None:
        unknown = sorted(set(request.query_params) - accepted)
        if unknown:
            raise InvalidQuery(
                repr(unknown[0][:40]),
                f"unknown parameter (accepted: {', '.join(sorted(accepted))})",
            )

    return check


def requested_window(
    settings: Settings, now: datetime, start: str | None, end: str | None, since: str | None
) -> TimeRange:
    try:
        window = parse_time_range(
            start=start,
            end=end,
            since=since,
            now=now,
            default=timedelta(seconds=settings.query_default_window_s),
            max_span=timedelta(days=settings.retention_days),
        )
    except OverflowError:
        # `since` or the default reaching back past year 1 from an early `to`.
        raise InvalidQuery(
            "since" if since is not None else "to", "the window is out of range"
        ) from None
    check_window_bounds(window, now, timedelta(days=settings.retention_days))
    return window


# -- routes -------------------------------------------------------------------------------


# Routes return the (possibly cached) dicts and let FastAPI validate them once against
# the response model, rather than building the model and having FastAPI check it again.
@router.get(
    "/histogram",
    response_model=HistogramPublic,
    dependencies=[
        Depends(only_params("from", "to", "since", "source", "level", "min_level", "interval"))
    ],
    description=(
        "Counts per interval by level, every bucket present (zeros filled), buckets aligned "
        "to the interval in UTC. The interval is sized to the window (the smallest of 1m, "
        f"5m, 15m, 30m, 1h, 3h, 6h, 12h, 1d giving at most about {TARGET_BUCKETS} buckets) "
        "unless `interval` asks for one (whole minutes dividing a day, at most "
        f"{MAX_BUCKETS} buckets). " + WHOLE_MINUTES
    ),
)
async def histogram(
    principal: Reader,
    stats: Annotated[StatsRepository, Depends(get_stats)],
    sources: Annotated[SourceRepository, Depends(get_sources)],
    settings: Annotated[Settings, Depends(get_settings)],
    start: FromQuery = None,
    end: ToQuery = None,
    since: SinceQuery = None,
    source: SourcesQuery = None,
    level: LevelsQuery = None,
    min_level: LevelQuery = None,
    interval: Annotated[
        str | None,
        Query(
            max_length=16,
            description="bucket size in whole minutes dividing a day: 1m, 5m, 1h, 1d...",
            json_schema_extra={"pattern": SINCE_PATTERN},
        ),
    ] = None,
) -> dict[str, Any]:
    for name, values in (("source", source), ("level", level)):
        if values is not None and len(values) > MAX_REPEATS:
            raise InvalidQuery(name, f"given {len(values)} times, at most {MAX_REPEATS}")
    window = requested_window(settings, datetime.now(UTC), start, end, since)
    query = plan_histogram(
        window,
        interval=interval,
        levels=level or [],
        min_level=min_level,
        source_ids=readable_sources(
            principal, await requested_sources(principal, sources, source or [])
        ),
    )
    return await stats.histogram(query)


@router.get(
    "/summary",
    response_model=SummaryPublic,
    dependencies=[Depends(only_params("hours", "top"))],
    description=(
        "Over the last `hours`: per source events, errors (ERROR and FATAL) and error rate; "
        "totals; the `top` sources by volume; and the error summary (per source and level, "
        "ERROR and FATAL, with the last minute seen). " + WHOLE_MINUTES
    ),
)
async def summary(
    principal: Reader,
    stats: Annotated[StatsRepository, Depends(get_stats)],
    hours: Annotated[int, Query(ge=1, le=MAX_HOURS)] = 24,
    top: Annotated[int, Query(ge=1, le=MAX_REPEATS)] = 5,
) -> dict[str, Any]:
    result = await stats.summary(
        summary_window(datetime.now(UTC), hours), hours, readable_sources(principal, None)
    )
    return {**result, "top_sources": pick_top_sources(result, top)}
