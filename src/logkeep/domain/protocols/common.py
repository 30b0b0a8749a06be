"""What every protocol decoder shares: events, source names, credentials, first use."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from logkeep.domain import exactjson
from logkeep.domain.auth import KEY_PREFIX, Principal
from logkeep.domain.entry import InvalidLogEntry, Level
from logkeep.domain.sources import is_source_name

# An event as `IngestService.prepare_events` takes it: a dict with source, message,
# timestamp, level, metadata and event_id; or the reason it cannot be one.
Event = dict[str, Any]
Decoded = Event | InvalidLogEntry

# The JSON reader of every way in: numbers kept exactly; an unstorable one (NaN, 1e999)
# is refused with the one event holding it, by entry validation.
JSONDecodeError = exactjson.JSONDecodeError
json_loads = exactjson.loads


_NOT_IN_NAME = re.compile(r"[^a-z0-9_.-]+")
MAX_NAME = 63


def source_name(value: object) -> str | None:
    """A shipper's name for a source (a service, a label, an index) as a source name:
    lower case, runs of other characters as `-`, at most 63 characters. None when
    nothing usable is left (empty, or digits only, which would mean a source id)."""
    if not isinstance(value, str) or not value:
        return None
    return _source_name(value[:256])


@lru_cache(maxsize=4096)  # shippers repeat a few names in every request
def _source_name(value: str) -> str | None:
    name = _NOT_IN_NAME.sub("-", value.strip().lower()).strip("-_.")[:MAX_NAME]
    name = name.rstrip("-")
    return name if name and is_source_name(name) else None


def mapped_source(
    fields: Mapping[str, Any], keys: Iterable[str], override: str | None, fallback: str
) -> str:
    """The source of an event: the request's explicit one (a header or ?source=), else
    the first of `keys` present in `fields` that makes a source name, else `fallback`."""
    if override:
        return override
    for key in keys:
        name = source_name(fields.get(key))
        if name is not None:
            return name
    return fallback


def known_level(value: object) -> Level | None:
    """A shipper's level when logkeep knows it, else None (the entry is INFO and the
    shipper's value stays in its metadata): a level we cannot name costs no event."""
    if not isinstance(value, str):
        return None
    try:
        return Level.parse(value)
    except InvalidLogEntry:
        return None


def setting_keys(value: str) -> tuple[str, ...]:
    """A comma-separated setting as its items."""
    return tuple(part.strip() for part in value.split(",") if part.strip())


# -- credentials -----------------------------------------------------------------------


def shipper_token(header: str | None) -> str | None:
    """An API key sent the way shippers send one, besides `Bearer`: Elasticsearch's
    `ApiKey <base64(id:key)>` (or the bare key), and Basic auth with the key as the
    password (Loki clients, Fluent Bit, syslog-ng). None when there is none."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    scheme, value = scheme.lower(), value.strip()
    if not value or len(value) > 512:
        return None
    if scheme == "apikey":
        if value.startswith(KEY_PREFIX):
            return value
        decoded = _b64(value)
        if decoded is None:
            return None
        _, _, key = decoded.rpartition(":")  # Elasticsearch: "id:api_key"
        return key if key.startswith(KEY_PREFIX) else None
    if scheme == "basic":
        decoded = _b64(value)
        if decoded is None or ":" not in decoded:
            return None
        _, _, password = decoded.partition(":")
        return password if password.startswith(KEY_PREFIX) else None
    return None


def _b64(value: str) -> str | None:
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


# -- sources on first use --------------------------------------------------------------

FirstUseMode = Literal["create", "key", "refuse"]
SETTING = "LOGKEEP_SOURCES_ON_FIRST_USE"


@dataclass(frozen=True, slots=True)
class FirstUse:
    """What may happen to a source name nobody has used yet, for this caller."""

    create: bool
    grant_to_key: int | None = None  # a limited key that creates a source is granted it
    reason: str = ""


def first_use(mode: FirstUseMode, principal: Principal | None, name: str) -> FirstUse:
    """`create`: any caller that may ingest creates the source (a key limited to some
    sources is granted the one it created, and nothing else). `key`: only callers that
    may write every source (admins, keys made with --all-sources, receivers) create it.
    `refuse`: nobody; the event is rejected with the reason. `principal` None is a
    receiver (GELF), which writes for the operator who started it."""
    unrestricted = principal is None or principal.sources is None
    if mode == "refuse":
        return FirstUse(False, reason=f"no source named {name!r} ({SETTING}=refuse)")
    if unrestricted:
        return FirstUse(True)
    assert principal is not None
    if mode == "create" and principal.kind == "key":
        return FirstUse(True, grant_to_key=principal.id)
    return FirstUse(
        False,
        reason=f"no source named {name!r}, and {principal.name!r} may create none "
        f"({SETTING}={mode}: only callers that may write every source create sources)",
    )
