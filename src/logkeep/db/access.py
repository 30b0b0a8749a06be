"""Access data in PostgreSQL: callers as principals, API keys, source grants, audit."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson

from logkeep.db.queries import q
from logkeep.domain.auth import (
    KEY_PREFIX,
    Principal,
    key_principal,
    new_token,
    token_digest,
    user_principal,
)
from logkeep.domain.ingest import printable

KEY_SHOWN_PREFIX = 12  # "lkk_" and 8 characters: enough to tell keys apart in a list


@dataclass(frozen=True, slots=True)
class NewKey:
    token: str  # shown once, never stored
    record: dict[str, Any]


class AccessRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def user(self, user_id: int) -> Principal | None:
        """An active user as a caller, with the grants of this moment."""
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(q("user_access"), user_id)
        if row is None or not row["is_active"]:
            return None
        return user_principal(row["id"], row["username"], row["role"], row["sources"])

    async def key(self, token: str) -> Principal | None:
        """The live (unrevoked) key with this token; records when it was last used."""
        if not token.startswith(KEY_PREFIX):
            return None
        async with self._pool.acquire() as conn:
            row = await conn.fetchrow(q("key_access"), token_digest(token))
        if row is None:
            return None
        return key_principal(
            row["id"], row["name"], row["scopes"], row["all_sources"], row["sources"]
        )

    async def create_key(
        self,
        name: str,
        scopes: Sequence[str],
        *,
        source_ids: Sequence[int] = (),
        all_sources: bool = False,
        created_by: int | None = None,
    ) -> NewKey:
        token = new_token(KEY_PREFIX)
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                q("insert_key"),
                name,
                token[:KEY_SHOWN_PREFIX],
                token_digest(token),
                sorted(set(scopes)),
                all_sources,
                created_by,
            )
            assert row is not None  # INSERT ... RETURNING returns the row or raises
            if source_ids:
                await conn.execute(q("insert_key_sources"), row["id"], sorted(set(source_ids)))
        return NewKey(token, {**dict(row), "sources": sorted(set(source_ids))})

    async def list_keys(self) -> list[dict[str, Any]]:
        async with self._pool.acquire() as conn:
            return [dict(r) for r in await conn.fetch(q("list_keys"))]

    async def revoke_key(self, key_id: int) -> bool:
        async with self._pool.acquire() as conn:
            return await conn.fetchval(q("revoke_key"), key_id) is not None

    async def grant(self, user_id: int, source_ids: Sequence[int], by: int | None) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute(q("grant_sources"), user_id, sorted(set(source_ids)), by)

    async def revoke(self, user_id: int, source_ids: Sequence[int]) -> None:
        async with self._pool.acquire() as conn:
            await conn.execute(q("revoke_sources"), user_id, sorted(set(source_ids)))

    async def set_active(self, user_id: int, active: bool) -> bool:
        async with self._pool.acquire() as conn:
            return await conn.fetchval(q("set_user_active"), user_id, active) is not None

    async def set_role(self, user_id: int, role: str) -> bool:
        async with self._pool.acquire() as conn:
            return await conn.fetchval(q("set_user_role"), user_id, role) is not None

    async def audit(
        self,
        action: str,
        *,
        actor_id: int | None = None,
        target_type: str = "",
        target_id: str | int = "",
        client_addr: str | None = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        """One audit_log row. Never pass a password, token or key in `details`."""
        async with self._pool.acquire() as conn:
            await conn.execute(
                q("insert_audit"),
                actor_id,
                action,
                target_type,
                # What a caller typed (a username tried at login) may hold anything.
                printable(str(target_id), 200),
                _inet_or_none(client_addr),
                orjson.loads(orjson.dumps(details or {})),
            )


def _inet_or_none(address: str | None) -> str | None:
    """A client address for the inet column; anything else (a test client's name) is
    kept out rather than failing the audit write."""
    if not address:
        return None
    try:
        return str(ipaddress.ip_address(address))
    except ValueError:
        return None
