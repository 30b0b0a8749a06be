"""Time windows of queries (`from`/`to` or `since=15m`): pure."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from logkeep.domain.entry import InvalidLogEntry, parse_timestamp


class InvalidQuery(ValueError):
    """A query parameter is invalid; `param` names it and the message says why."""

    def __init__(self, param: str, reason: str) -> None:
        super().__init__(f"{param}: {reason}")
        self.param = param
        self.reason = reason


_DURATION = re.compile(r"^([0-9]{1,6})(s|m|h|d|w)$")  # ASCII digits only, as documented
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str, param: str = "since") -> timedelta:
    """`15m`, `2h`, `7d`, `1w` (and `30s`)."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise InvalidQuery(param, f"{text[:32]!r} is not a duration like 15m, 2h or 7d")
    return timedelta(seconds=int(match[1]) * _UNIT_SECONDS[match[2]])


@dataclass(frozen=True, slots=True)
class TimeRange:
    start: datetime  # inclusive
    end: datetime  # exclusive

    @property
    def span(self) -> timedelta:
        return self.end - self.start


def _instant(param: str, text: str) -> datetime:
    try:
        return parse_timestamp(text)
    except InvalidLogEntry as exc:
        raise InvalidQuery(param, exc.reason) from None


def parse_time_range(
    *,
    start: str | None,
    end: str | None,
    since: str | None,
    now: datetime,
    default: timedelta,
    max_span: timedelta,
) -> TimeRange:
    """The window a query reads: `since` (relative to now) or `from`/`to`; `default`
    back from now when none is given. Every query has a window, so every query is
    partition-pruned."""
    for param, text, example in (
        ("since", since, "a duration like 15m"),
        ("from", start, "an RFC 3339 time"),
        ("to", end, "an RFC 3339 time"),
    ):
        if text is not None and not text.strip():
            raise InvalidQuery(param, f"is empty: give {example}, or leave it out")
    if since is not None and start is not None:
        raise InvalidQuery("since", "give either since or from, not both")
    upper = now if end is None else _instant("to", end)
    # The parameter a bad lower bound comes from (with neither given, `to` is to blame).
    lower_param = "since" if since is not None else "from" if start is not None else "to"
    try:
        if since is not None:
            lower = upper - parse_duration(since)
        elif start is not None:
            lower = _instant("from", start)
        else:
            lower = upper - default
    except OverflowError:  # e.g. since=999999w, or a `to` near year 1
        raise InvalidQuery(lower_param, "reaches outside the calendar") from None
    if lower >= upper:
        raise InvalidQuery(lower_param, f"{lower.isoformat()} is not before {upper.isoformat()}")
    if upper - lower > max_span:
        raise InvalidQuery(
            lower_param, f"the window is longer than {max_span.days} days; narrow it"
        )
    return TimeRange(lower, upper)
