"""Who may do what: roles, actions, principals and tokens. Pure, no I/O."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    ANALYST = "analyst"
    VIEWER = "viewer"


class Action(StrEnum):
    READ = "read"  # search, tail, aggregates, exports of granted sources
    INGEST = "ingest"
    SAVED_SEARCHES = "saved_searches"  # and alert rules
    ADMIN = "admin"  # users, grants, keys, sources


ROLE_ACTIONS: dict[Role, frozenset[Action]] = {
    Role.VIEWER: frozenset({Action.READ}),
    Role.ANALYST: frozenset({Action.READ, Action.SAVED_SEARCHES}),
    Role.ADMIN: frozenset(Action),
}
KEY_SCOPES = frozenset({Action.READ, Action.INGEST})

SESSION_PREFIX = "lks_"
KEY_PREFIX = "lkk_"
TOKEN_BYTES = 32


class Forbidden(Exception):
    """The caller is known but may not do this; the message says what is missing."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of a request: a user (by session) or an API key."""

    kind: str  # "user", "key", or "anonymous" (dev without credentials)
    id: int
    name: str
    actions: frozenset[Action]
    # Sources the caller may read; None means every source.
    sources: frozenset[int] | None

    def may(self, action: Action) -> bool:
        return action in self.actions

    def require(self, action: Action) -> None:
        if not self.may(action):
            raise Forbidden(f"{self.kind} {self.name!r} may not {action.value.replace('_', ' ')}")

    def readable(self, requested: Iterable[int] | None) -> list[int] | None:
        """The source ids a read may cover: the requested ones, each of which must be
        granted, or all granted ones when none were named (None: no restriction)."""
        if requested is None:
            return None if self.sources is None else sorted(self.sources)
        wanted = sorted(set(requested))
        if self.sources is not None:
            refused = [s for s in wanted if s not in self.sources]
            if refused:
                raise Forbidden(
                    f"source {', '.join(map(str, refused))}: not granted to {self.name!r}"
                )
        return wanted


def user_principal(user_id: int, username: str, role: str, granted: Iterable[int]) -> Principal:
    parsed = Role(role)
    return Principal(
        "user",
        user_id,
        username,
        ROLE_ACTIONS[parsed],
        None if parsed is Role.ADMIN else frozenset(granted),
    )


def key_principal(
    key_id: int, name: str, scopes: Iterable[str], all_sources: bool, granted: Iterable[int]
) -> Principal:
    return Principal(
        "key",
        key_id,
        name,
        frozenset(Action(s) for s in scopes) & KEY_SCOPES,
        None if all_sources else frozenset(granted),
    )


ANONYMOUS_ADMIN = Principal("anonymous", 0, "anonymous", frozenset(Action), None)


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(TOKEN_BYTES)


def token_digest(token: str) -> bytes:
    """What is stored instead of a token: a leaked store holds nothing usable."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


def same_digest(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def bearer_token(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer ...` header, if well-formed."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 200:
        return None
    return token
