"""Storage administration: a source's own retention (shorter than the global one) and
bytes per event of each storage tier (docs/storage.md). Admins only; changes audited."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from logkeep.api.auth import client_address, get_access, require
from logkeep.api.deps import get_settings
from logkeep.api.fields import PathId
from logkeep.api.problems import answers
from logkeep.config import Settings
from logkeep.db.access import AccessRepository
from logkeep.db.compaction import compaction_status
from logkeep.db.stats import storage_report
from logkeep.domain.auth import Action, Principal

router = APIRouter(prefix="/api/v1", tags=["storage"], responses=answers(401, 403, 503))
Admin = Annotated[Principal, Depends(require(Action.ADMIN))]

SET_RETENTION = """
UPDATE log_sources SET retention_days = $2 WHERE id = $1 RETURNING id, name, retention_days
"""


class RetentionUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: int | None = Field(
        description="days this source's events are kept (fewer than the global retention); "
        "null: the global retention",
        ge=1,
    )


class RetentionPublic(BaseModel):
    source_id: int
    source: str
    retention_days: int | None


@router.put(
    "/sources/{source_id}/retention",
    response_model=RetentionPublic,
    responses=answers(
        404,
        422,
        s422="Invalid input, or days not fewer than LOGKEEP_RETENTION_DAYS (a setting: "
        "the schema can state no maximum); detail names the field and the reason",
    ),
    description=(
        "Keep this source's events fewer days than LOGKEEP_RETENTION_DAYS (null: as long). "
        "Older events, their chunks and rollups go within a compaction interval."
    ),
)
async def set_retention(
    source_id: PathId,
    body: RetentionUpdate,
    admin: Admin,
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
    access: Annotated[AccessRepository, Depends(get_access)],
) -> dict[str, Any]:
    if body.days is not None and body.days >= settings.retention_days:
        raise HTTPException(
            422,
            f"days: must be fewer than the global retention of {settings.retention_days} days",
        )
    async with request.app.state.db.pool.acquire() as conn:
        row = await conn.fetchrow(SET_RETENTION, source_id, body.days)
    if row is None:
        raise HTTPException(404, f"no source {source_id}")
    await access.audit(
        "source_retention",
        actor_id=admin.id if admin.kind == "user" else None,
        target_type="source",
        target_id=str(source_id),
        client_addr=client_address(request),
        details={"by": f"{admin.kind}:{admin.name}", "days": body.days},
    )
    return {"source_id": row["id"], "source": row["name"], "retention_days": row["retention_days"]}


@router.get(
    "/storage",
    description="Events and bytes per event of each storage tier and source, and how far "
    "compaction is behind (what `logkeep stats storage` prints).",
)
async def storage(
    admin: Admin,
    request: Request,
    settings: Annotated[Settings, Depends(get_settings)],
) -> dict[str, Any]:
    async with request.app.state.db.pool.acquire() as conn:
        rows = await storage_report(conn)
        status = await compaction_status(
            conn,
            slice_length=timedelta(seconds=settings.compaction_slice_s),
            grace=timedelta(seconds=settings.compaction_grace_s),
        )
    return {
        "tiers": rows,
        "compaction_lag_s": status.lag_s,
        "chunks": status.chunks,
        "chunk_events": status.chunk_events,
    }
