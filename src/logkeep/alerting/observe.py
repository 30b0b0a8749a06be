"""What a rule sees at one tick: each group's value and whether its condition holds.

The arithmetic is pure (`outcomes_*`); `observe` reads the counts (alerting/counts.py)
or feeds the shape book, then calls it. The preview computes the same counts from
buckets and calls the same functions, so both decide alike.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from logkeep.alerting import counts
from logkeep.alerting.rules import PreparedRule, Scope
from logkeep.db.types import Conn
from logkeep.domain.alert_rules import RuleSpec, window_at
from logkeep.domain.alert_states import Outcome, no_data
from logkeep.domain.search import from_micros, rfc3339, to_micros
from logkeep.domain.shapes import ShapeBook
from logkeep.domain.timerange import TimeRange

SCAN_CHUNK = 5000
MAX_SCAN_PER_TICK = 200_000  # entries a new-pattern rule reads per tick, at most
BOOTSTRAP_ROWS = 100_000  # the newest entries of the learning period learned at the start
SAMPLE_MESSAGE_CHARS = 1000


def _named(keys: Mapping[str, int], spec: RuleSpec, scope: Scope) -> dict[str, int]:
    """Source groups by name (their ids as text come from SQL)."""
    if spec.group_by is None or not spec.group_by.source:
        return dict(keys)
    return {scope.names.get(int(k), k): v for k, v in keys.items()}


def outcomes_threshold(
    spec: RuleSpec, values: Mapping[str, int], known: Iterable[str]
) -> dict[str, Outcome]:
    """Each counted group, and the groups still being watched (now at 0)."""
    result = {k: Outcome(float(v), spec.holds(v)) for k, v in values.items()}
    for key in known:
        result.setdefault(key, Outcome(0.0, spec.holds(0)))
    if spec.group_by is None:
        result.setdefault("", Outcome(0.0, spec.holds(0)))
    return result


def outcomes_ratio(
    spec: RuleSpec,
    numerator: Mapping[str, int],
    denominator: Mapping[str, int],
    known: Iterable[str],
) -> dict[str, Outcome]:
    keys = set(denominator) | set(known) | ({""} if spec.group_by is None else set())
    result = {}
    for key in keys:
        volume = denominator.get(key, 0)
        if volume < spec.min_volume:
            result[key] = no_data(f"volume {volume} under the minimum {spec.min_volume}")
            continue
        ratio = numerator.get(key, 0) / volume
        result[key] = Outcome(ratio, spec.holds(ratio), f"{numerator.get(key, 0)} of {volume}")
    return result


def outcomes_absence(
    spec: RuleSpec, values: Mapping[str, int], seen: Iterable[str], known: Iterable[str]
) -> dict[str, Outcome]:
    """Fewer than `threshold` matches: overall, or for every expected or recently seen
    group value (and the groups still being watched)."""
    if spec.group_by is None:
        total = values.get("", 0)
        return {"": Outcome(float(total), total < spec.threshold)}
    groups = set(spec.expected_groups) | set(seen) | set(known)
    if not groups:
        return {"": no_data("no group value is expected or was seen recently")}
    return {g: Outcome(float(values.get(g, 0)), values.get(g, 0) < spec.threshold) for g in groups}


def outcomes_new_pattern(
    spec: RuleSpec, book: ShapeBook, tick: datetime, names: Mapping[int, str], known: Iterable[str]
) -> dict[str, Outcome]:
    window = window_at(tick, spec.timing)
    if window.start < book.learning_until(spec.learning):
        until = rfc3339(book.learning_until(spec.learning))
        return {"": no_data(f"learning the shapes of its sources until {until}")}
    result: dict[str, Outcome] = {}
    for shape in book.new_shapes(window.start, window.end, spec.learning):
        result[shape.group_key] = Outcome(
            float(shape.count),
            True,
            labels={"source": names.get(shape.source_id, str(shape.source_id)),
                    "shape": shape.template},
        )  # fmt: skip
    for key in known:
        if key.startswith("shape:"):
            result.setdefault(key, Outcome(0.0, False))
    return result


def shape_samples(book: ShapeBook, key: str, spec: RuleSpec, tick: datetime) -> list[Any]:
    window = window_at(tick, spec.timing)
    for shape in book.new_shapes(window.start, window.end, spec.learning):
        if shape.group_key == key:
            return list(shape.samples)
    return []


def _entry(row: Any, names: Mapping[int, str]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "timestamp": rfc3339(row["timestamp"]),
        "source": names.get(row["source_id"], str(row["source_id"])),
        "level": row["level"],
        "message": row["message"][:SAMPLE_MESSAGE_CHARS],
    }


def feed(book: ShapeBook, rows: Sequence[Any], spec: RuleSpec, names: Mapping[int, str]) -> None:
    for row in rows:
        book.observe(
            row["source_id"], row["message"], row["timestamp"], spec.learning, _entry(row, names)
        )


async def advance_book(
    conn: Conn, rule: PreparedRule, scope: Scope, book: ShapeBook | None, tick: datetime
) -> ShapeBook:
    """The rule's shape book, having read every entry before `tick` (at most
    MAX_SCAN_PER_TICK a call; the rest next time)."""
    spec = rule.spec
    if book is None:
        begin = tick - spec.timing.window
        book = ShapeBook(begin - spec.learning)
        rows = await counts.newest(
            conn, rule.query, TimeRange(begin - spec.learning, begin), scope.source_ids,
            BOOTSTRAP_ROWS,
        )  # fmt: skip
        if len(rows) == BOOTSTRAP_ROWS:  # learned less than the whole period
            book.started = to_micros(rows[0]["timestamp"])
        feed(book, rows, spec, scope.names)
        book.learned_until = to_micros(begin)
        book.learned_id = 0
    read = 0
    while read < MAX_SCAN_PER_TICK:
        start = from_micros(book.learned_until)
        if start >= tick:
            break
        rows = await counts.entries_after(
            conn, rule.query, TimeRange(start, tick), scope.source_ids,
            (start, book.learned_id), SCAN_CHUNK,
        )  # fmt: skip
        feed(book, rows, spec, scope.names)
        read += len(rows)
        if len(rows) < SCAN_CHUNK:
            book.learned_until, book.learned_id = to_micros(tick), 0
            break
        last = rows[-1]
        book.learned_until, book.learned_id = to_micros(last["timestamp"]), last["id"]
    return book


async def observe(
    conn: Conn,
    rule: PreparedRule,
    scope: Scope,
    tick: datetime,
    known: Iterable[str],
    book: ShapeBook | None,
) -> tuple[dict[str, Outcome], ShapeBook | None]:
    """Each group's outcome at `tick` (and the shape book, for new-pattern rules)."""
    spec = rule.spec
    window = window_at(tick, spec.timing)
    known = list(known)
    if spec.kind == "new_pattern":
        book = await advance_book(conn, rule, scope, book, tick)
        return outcomes_new_pattern(spec, book, tick, scope.names, known), book
    values = _named(
        await counts.count(conn, rule.query, window, scope.source_ids, spec.group_by), spec, scope
    )
    if spec.kind == "threshold":
        return outcomes_threshold(spec, values, known), None
    if spec.kind == "ratio":
        assert rule.denominator is not None
        volume = _named(
            await counts.count(conn, rule.denominator, window, scope.source_ids, spec.group_by),
            spec,
            scope,
        )
        return outcomes_ratio(spec, values, volume, known), None
    seen: list[str] = []
    if spec.group_by is not None and spec.seen_lookback:
        recent = TimeRange(tick - spec.seen_lookback, tick)
        seen = list(
            _named(
                await counts.count(conn, rule.query, recent, scope.source_ids, spec.group_by),
                spec,
                scope,
            )
        )
    return outcomes_absence(spec, values, seen, known), None


LOOKBACK_DEFAULT = timedelta(hours=1)
