"""Live tail: which committed entries a client asked for, and resumable event ids. Pure."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from logkeep.domain.entry import Level
from logkeep.domain.filters import select_levels
from logkeep.domain.timerange import InvalidQuery

_EVENT_ID = re.compile(r"^(\d{1,20}-\d{1,20}):(\d{1,6})$")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class EventPosition:
    """Where a client is: a tail stream entry and the index of an item in it."""

    stream_id: str
    index: int

    def event_id(self) -> str:
        return f"{self.stream_id}:{self.index}"

    def read_after(self) -> str:
        """The stream id to XREAD after so that this position's own entry comes back
        (its later items may not have been sent): the id just before it."""
        ms, seq = (int(part) for part in self.stream_id.split("-"))
        if seq > 0:
            return f"{ms}-{seq - 1}"
        return f"{ms - 1}-{2**64 - 1}" if ms > 0 else "0-0"

    @classmethod
    def parse(cls, text: str) -> EventPosition:
        match = _EVENT_ID.match(text.strip())
        if match is None or any(int(part) >= 2**64 for part in match[1].split("-")):
            raise InvalidQuery("Last-Event-ID", f"{text[:64]!r} is not an id this server sent")
        return cls(match[1], int(match[2]))


def contains(document: Any, wanted: Any) -> bool:
    """jsonb's @> for parsed JSON: objects by key, arrays by element, scalars by value
    (numbers by their exact value whatever their Python type, as search compares them)."""
    if isinstance(wanted, Mapping):
        return isinstance(document, Mapping) and all(
            key in document and contains(document[key], value) for key, value in wanted.items()
        )
    if isinstance(wanted, list):
        return isinstance(document, list) and all(
            any(contains(item, w) for item in document) for w in wanted
        )
    if type(document) is type(wanted):  # also floats: equal doubles print the same
        return bool(document == wanted)
    wanted_number = _number(wanted)
    return wanted_number is not None and _number(document) == wanted_number


def _number(value: object) -> Decimal | None:
    """A JSON number's value as jsonb compares it (exactly, by decimal value), None for
    anything else (true is not 1). A float stands for the decimal it prints as, which is
    what logkeep stores for it (exactjson): 1e30 is 10**30, 5.0 is 5."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return Decimal(repr(value)) if math.isfinite(value) else None
    if isinstance(value, int | Decimal):
        return Decimal(value)
    return None


@dataclass(frozen=True, slots=True)
class TailFilter:
    source_ids: frozenset[int] | None = None
    levels: frozenset[str] | None = None
    words: tuple[str, ...] = ()
    substring: str | None = None
    metadata: Mapping[str, Any] | None = None
    excluded_metadata: tuple[Mapping[str, Any], ...] = ()  # not.metadata.<key>=<value>

    @classmethod
    def build(
        cls,
        *,
        source_ids: Sequence[int] | None,
        levels: Sequence[str],
        min_level: str | None,
        q: str | None,
        substring: str | None,
        metadata: Mapping[str, Any] | None = None,
        excluded_metadata: Sequence[Mapping[str, Any]] = (),
    ) -> TailFilter:
        chosen = select_levels(levels, min_level)
        return cls(
            # [] means no source at all (a caller with no grants), never "every source".
            source_ids=None if source_ids is None else frozenset(source_ids),
            levels=None if len(chosen) == len(Level) else frozenset(lv.value for lv in chosen),
            words=tuple(w.casefold() for w in _WORD.findall(q or "")),
            substring=substring.casefold() if substring else None,
            metadata=metadata or None,
            excluded_metadata=tuple(excluded_metadata),
        )

    def matches(self, item: Mapping[str, Any]) -> bool:
        if self.source_ids is not None and item["source_id"] not in self.source_ids:
            return False
        if self.levels is not None and item["level"] not in self.levels:
            return False
        message: str = item["message"]
        if self.substring is not None and self.substring not in message.casefold():
            return False
        if self.words:
            present = {w.casefold() for w in _WORD.findall(message)}
            if not all(word in present for word in self.words):
                return False
        if any(contains(item["metadata"], doc) for doc in self.excluded_metadata):
            return False
        return self.metadata is None or contains(item["metadata"], self.metadata)
