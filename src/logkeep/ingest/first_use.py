"""Sources a shipper names for the first time, created, restricted or refused by
LOGKEEP_SOURCES_ON_FIRST_USE (the policy: domain/protocols/common.first_use). One place,
which any ingest path can pass to `IngestService.prepare_events(resolve=...)`."""

from __future__ import annotations

import asyncpg
import structlog

from logkeep.db.access import AccessRepository
from logkeep.db.queries import q
from logkeep.domain.auth import Principal
from logkeep.domain.entry import InvalidLogEntry
from logkeep.domain.ingest import SourceRules
from logkeep.domain.protocols.common import FirstUseMode, first_use
from logkeep.domain.sources import DEFAULT_FORMAT_TYPE, DEFAULT_SOURCE_TYPE, is_source_name
from logkeep.ingest.catalog import source_rules
from logkeep.ingest.service import IngestService, SourceResolver

log = structlog.get_logger(__name__)


class SourcesOnFirstUse:
    def __init__(self, service: IngestService, pool: asyncpg.Pool, mode: FirstUseMode) -> None:
        self._service = service
        self._pool = pool
        self._access = AccessRepository(pool)
        self.mode = mode

    def resolver(self, principal: Principal | None, protocol: str) -> SourceResolver:
        """Sources by name for one request of `principal` (None: a receiver such as
        GELF, writing for the operator who started it)."""
        allowed = None if principal is None else principal.sources

        async def resolve(ref: str | int) -> SourceRules:
            if isinstance(ref, str) and await self._service.catalog.get(ref) is None:
                return await self._first_use(ref, principal, protocol)
            return await self._service.active_source(ref, allowed)

        return resolve

    async def _first_use(
        self, name: str, principal: Principal | None, protocol: str
    ) -> SourceRules:
        if not is_source_name(name):
            raise InvalidLogEntry("source", f"{name[:64]!r} is not a source name")
        decision = first_use(self.mode, principal, name)
        if not decision.create:
            raise InvalidLogEntry("source", decision.reason)
        async with self._pool.acquire() as conn, conn.transaction():
            created = await conn.fetchval(
                q("create_source_on_first_use"),
                name,
                f"created on first use ({protocol})",
                DEFAULT_SOURCE_TYPE,
                DEFAULT_FORMAT_TYPE,
            )
            row = await conn.fetchrow(q("source_rules_by_name"), name)
            assert row is not None  # created now, or by the request that won the race
            granted = True
            if decision.grant_to_key is not None:
                if created is not None:
                    await conn.execute(q("grant_key_source"), decision.grant_to_key, created)
                else:  # created meanwhile: by this key (granted then) or by someone else
                    granted = await conn.fetchval(
                        q("key_source_granted"), decision.grant_to_key, row["id"]
                    )
        source = source_rules(dict(row))
        if created is not None:
            by = "receiver" if principal is None else f"{principal.kind} {principal.name}"
            log.info("source_created_on_first_use", source=name, protocol=protocol, by=by)
            await self._access.audit(
                "source_created_on_first_use",
                actor_id=principal.id
                if principal is not None and principal.kind == "user"
                else None,
                target_type="source",
                target_id=source.id,
                details={"protocol": protocol, "by": by, "granted_to_key": decision.grant_to_key},
            )
        if not granted:
            raise InvalidLogEntry("source", f"source {name!r} is not granted to this key")
        if not source.is_active:
            raise InvalidLogEntry("source", f"source {name!r} is inactive")
        return source
