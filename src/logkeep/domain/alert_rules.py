"""Alert rules: what a rule is, how it is checked before saving, and the instants it is
evaluated at. Pure, no I/O.

A rule's query is kept as the (name, value) pairs of `GET /api/v1/logs` (q, contains,
level, min_level, metadata.<key>, not.metadata.<key>), so it has exactly the search's
meaning; its sources are kept apart because access control reads them. Rules are
evaluated at instants aligned on multiples of their interval counted from the epoch
("ticks"), each over the window that ends there: live evaluation and the preview over
history walk the same ticks, so on the same data they decide the same.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from logkeep.domain import exactjson
from logkeep.domain.search import (
    MAX_METADATA_DEPTH,
    METADATA_PREFIX,
    SearchQuery,
    parse_search,
)
from logkeep.domain.timerange import InvalidQuery, TimeRange

KINDS = ("threshold", "ratio", "absence", "new_pattern")
OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}
# Search parameters a rule's query may hold; the window, sources and paging are the rule's.
RULE_SEARCH_PARAMS = ("q", "contains", "level", "min_level")
MIN_INTERVAL = timedelta(seconds=5)
MAX_WINDOW = timedelta(days=7)
MAX_GROUPS = 1000  # groups one evaluation keeps; beyond, the largest counts win
MAX_EXPECTED_GROUPS = 1000
MAX_LABELS = 16
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_LABEL = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")
_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True, slots=True)
class GroupBy:
    """Groups by the entry's source, or by the value at a metadata path."""

    source: bool
    path: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return "source" if self.source else METADATA_PREFIX + ".".join(self.path)

    @property
    def label(self) -> str:
        return "source" if self.source else ".".join(self.path)


def parse_group_by(text: str | None) -> GroupBy | None:
    """`source` or `metadata.<key>[.<nested>]`; None for no grouping."""
    if text is None or text == "":
        return None
    if text == "source":
        return GroupBy(source=True)
    if text.startswith(METADATA_PREFIX):
        path = tuple(text[len(METADATA_PREFIX) :].split("."))
        if len(path) <= MAX_METADATA_DEPTH and all(_KEY.fullmatch(k) for k in path):
            return GroupBy(source=False, path=path)
    raise InvalidQuery(
        "group_by", "is `source` or `metadata.<key>` (keys of A-Z a-z 0-9 _ -, dots nest)"
    )


@dataclass(frozen=True, slots=True)
class Timing:
    window: timedelta
    interval: timedelta
    for_: timedelta = timedelta(0)
    keep_firing_for: timedelta = timedelta(0)
    repeat: timedelta = timedelta(hours=4)


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """Everything evaluation needs of a rule."""

    id: int
    name: str
    kind: str
    op: str
    threshold: float
    timing: Timing
    source_ids: tuple[int, ...]  # empty: every source the owner may read
    search: tuple[tuple[str, str], ...]
    group_by: GroupBy | None = None
    denominator: tuple[tuple[str, str], ...] | None = None  # ratio; None: same sources
    min_volume: int = 1  # ratio
    expected_groups: tuple[str, ...] = ()  # absence
    seen_lookback: timedelta | None = None  # absence: groups seen this far back count
    learning: timedelta = timedelta(days=1)  # new pattern
    labels: Mapping[str, str] = field(default_factory=dict)
    owner_id: int | None = None

    def holds(self, value: float) -> bool:
        return OPS[self.op](value, self.threshold)


# -- checking a rule's parts ----------------------------------------------------------


def search_pairs(
    *,
    q: str | None = None,
    contains: str | None = None,
    level: Sequence[str] = (),
    min_level: str | None = None,
    metadata: Mapping[str, str] | None = None,
    not_metadata: Mapping[str, str] | None = None,
) -> tuple[tuple[str, str], ...]:
    """A rule's query as search parameters, in a stable order."""
    pairs: list[tuple[str, str]] = []
    if q:
        pairs.append(("q", q))
    if contains is not None:
        pairs.append(("contains", contains))
    pairs.extend(("level", lv) for lv in level)
    if min_level:
        pairs.append(("min_level", min_level))
    for key, value in sorted((metadata or {}).items()):
        pairs.append((METADATA_PREFIX + key, value))
    for key, value in sorted((not_metadata or {}).items()):
        pairs.append(("not." + METADATA_PREFIX + key, value))
    return tuple(pairs)


def check_search(
    pairs: Iterable[tuple[str, str]], where: str = "", *, retention: timedelta
) -> SearchQuery:
    """The search a rule's pairs make, or InvalidQuery naming the parameter (prefixed
    with `where`, e.g. `denominator.`) and the reason: a rule is refused on save for
    what the search would refuse."""
    pairs = list(pairs)
    for name, _ in pairs:
        if not (name in RULE_SEARCH_PARAMS or name.startswith((METADATA_PREFIX, "not."))):
            raise InvalidQuery(where + name, "is not a parameter a rule's query takes")
    try:
        return parse_search(
            [*pairs, ("since", "1h")],
            now=datetime.now(UTC),
            default_window=timedelta(hours=1),
            retention=retention,
            max_future=timedelta(hours=1),
        )
    except InvalidQuery as exc:
        raise InvalidQuery(where + exc.param, exc.reason) from None


def check_timing(timing: Timing, retention: timedelta) -> None:
    if timing.interval < MIN_INTERVAL:
        raise InvalidQuery("interval_seconds", "is at least 5")
    if timing.window > min(MAX_WINDOW, retention):
        raise InvalidQuery("window_seconds", "is at most 7 days (and the retention period)")


def check_labels(labels: Mapping[str, str]) -> None:
    if len(labels) > MAX_LABELS:
        raise InvalidQuery("labels", f"at most {MAX_LABELS} labels")
    for name, value in labels.items():
        if not _LABEL.fullmatch(name):  # (match would let "a\n" through `$`)
            raise InvalidQuery("labels", f"{name[:64]!r} is not a label name (A-Z a-z 0-9 _ . -)")
        if not isinstance(value, str) or len(value) > 256:
            raise InvalidQuery(f"labels.{name}", "is a text of at most 256 characters")


def check_threshold(kind: str, threshold: float) -> float | int:
    """Counts are whole numbers; a ratio's threshold is a fraction from 0 to 1."""
    if not math.isfinite(threshold) or threshold < 0:
        raise InvalidQuery("threshold", "is a finite number, 0 or more")
    if kind == "ratio":
        if threshold > 1:
            raise InvalidQuery("threshold", "a ratio's threshold is a fraction from 0 to 1")
        return threshold
    if float(threshold) != int(threshold):
        raise InvalidQuery("threshold", "a count is a whole number")
    return int(threshold)


# -- ticks ----------------------------------------------------------------------------


def tick_floor(instant: datetime, interval: timedelta) -> datetime:
    """The latest tick at or before `instant` (ticks are multiples of `interval` since
    the epoch, so every process computes the same ones)."""
    return EPOCH + ((instant - EPOCH) // interval) * interval


def ticks(after: datetime | None, until: datetime, interval: timedelta) -> list[datetime]:
    """Ticks in (after, until]; only the latest when `after` is None."""
    last = tick_floor(until, interval)
    if after is None:
        return [last]
    first = tick_floor(after, interval) + interval
    count = max(0, (last - first) // interval + 1)
    return [first + i * interval for i in range(count)]


def window_at(tick: datetime, timing: Timing) -> TimeRange:
    return TimeRange(tick - timing.window, tick)


def with_window(query: SearchQuery, window: TimeRange) -> SearchQuery:
    return replace(query, window=window, cursor=None)


# -- groups ---------------------------------------------------------------------------


def group_key(value: Any) -> str:
    """A group's key: the JSON text of a metadata value (`"web1"`, `500`), a source's
    name for source groups."""
    return value if isinstance(value, str) else exactjson.dumps(value).decode()


def metadata_group_key(value: Any) -> str:
    return exactjson.dumps(value).decode()


def metadata_param_value(key: str) -> str:
    """A metadata group key as a search parameter's value: plain text where the search
    reads it back as that text, the JSON text otherwise (`"500"` for the text 500)."""
    value = exactjson.loads(key.encode())
    if isinstance(value, str):
        plain = value not in ("true", "false", "null") and not re.match(
            r"^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$", value
        )
        if plain and not (len(value) >= 2 and value[0] == value[-1] == '"'):
            return value
    return key


def group_labels(group_by: GroupBy | None, key: str) -> dict[str, str]:
    """The labels a group adds to its rule's (silences match them)."""
    if group_by is None or key == "":
        return {}
    if group_by.source:
        return {"source": key}
    value = exactjson.loads(key.encode())
    return {group_by.label: value if isinstance(value, str) else key}


def group_search_pairs(group_by: GroupBy | None, key: str) -> list[tuple[str, str]]:
    """The search parameters that narrow a rule's search to one group."""
    if group_by is None or key == "" or key.startswith("shape:"):
        return []
    if group_by.source:
        return [("source", key)]
    return [(group_by.text, metadata_param_value(key))]
