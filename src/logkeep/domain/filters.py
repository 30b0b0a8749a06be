"""Filters that search, aggregates and live tail share: pure."""

from __future__ import annotations

from collections.abc import Sequence

from logkeep.domain.entry import InvalidLogEntry, Level
from logkeep.domain.timerange import InvalidQuery


def _parse_level(param: str, text: str) -> Level:
    try:
        return Level.parse(text)
    except InvalidLogEntry as exc:
        raise InvalidQuery(param, exc.reason) from None


def select_levels(levels: Sequence[str], min_level: str | None) -> tuple[Level, ...]:
    """The levels a query asks for, in severity order: the `level`s given, or those at or
    above `min_level`, or all."""
    if levels and min_level is not None:
        raise InvalidQuery("min_level", "give either level or min_level, not both")
    if min_level is not None:
        floor = _parse_level("min_level", min_level)
        return tuple(lv for lv in Level if lv.severity >= floor.severity)
    if levels:
        chosen = {_parse_level("level", text) for text in levels}
        return tuple(lv for lv in Level if lv in chosen)
    return tuple(Level)
