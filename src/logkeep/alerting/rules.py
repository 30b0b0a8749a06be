"""A rule made ready to evaluate: its searches parsed, and the sources it may read now.

A rule reads only what its owner may read at the time of the evaluation: its own
sources (all of which the owner must still be allowed), or, for a rule on every source,
every source the owner is granted. So a notification never carries entries of a source
its owner cannot read, even after a grant is revoked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import asyncpg

from logkeep.alerting.store import rule_spec
from logkeep.db.types import Conn
from logkeep.domain.alert_rules import RuleSpec, check_search
from logkeep.domain.search import SearchQuery

OWNER = """
SELECT u.username, u.role::text AS role, u.is_active,
       array(SELECT g.source_id FROM user_source_grants g WHERE g.user_id = u.id) AS sources
FROM users u WHERE u.id = $1
"""
SOURCE_NAMES = "SELECT id, name FROM log_sources"


class RuleUnusable(Exception):
    """The rule cannot be evaluated as it stands; the message says why (its error)."""


@dataclass(frozen=True, slots=True)
class PreparedRule:
    spec: RuleSpec
    query: SearchQuery
    denominator: SearchQuery | None
    channels: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Scope:
    source_ids: list[int] | None  # None: every source
    names: dict[int, str]

    def ids_by_name(self) -> dict[str, int]:
        return {name: sid for sid, name in self.names.items()}


def prepare(row: Mapping[str, Any] | asyncpg.Record, retention: timedelta) -> PreparedRule:
    spec = rule_spec(row)
    query = check_search(spec.search, retention=retention)
    denominator = None
    if spec.kind == "ratio":
        denominator = check_search(spec.denominator or (), "denominator.", retention=retention)
    return PreparedRule(spec, query, denominator, tuple(row["channels"]))


async def scope_of(conn: Conn, spec: RuleSpec) -> Scope:
    names = {r["id"]: r["name"] for r in await conn.fetch(SOURCE_NAMES)}
    readable: set[int] | None = None
    if spec.owner_id is not None:
        owner = await conn.fetchrow(OWNER, spec.owner_id)
        if owner is None or not owner["is_active"]:
            raise RuleUnusable("the rule's owner is disabled or gone")
        if owner["role"] == "viewer":
            raise RuleUnusable(f"the rule's owner {owner['username']!r} may no longer own rules")
        if owner["role"] != "admin":
            readable = set(owner["sources"])
    if spec.source_ids:
        missing = [s for s in spec.source_ids if s not in names]
        if missing:
            raise RuleUnusable(f"source {missing[0]} does not exist")
        if readable is not None:
            refused = [names[s] for s in spec.source_ids if s not in readable]
            if refused:
                raise RuleUnusable(f"the rule's owner may no longer read source {refused[0]!r}")
        return Scope(sorted(spec.source_ids), names)
    if readable is None:
        return Scope(None, names)
    if not readable:
        raise RuleUnusable("the rule's owner may read no source")
    return Scope(sorted(readable), names)
