"""What an evaluation decides: each group's state after a tick, the transitions, and the
notifications to send. Pure, no I/O.

States: ok, pending (the condition holds, not yet for `for`), firing, resolved (it fired,
then was clear for `keep_firing_for`), no_data (nothing to judge: a ratio under its
minimum volume). `for` and `keep_firing_for` are measured from the first tick the
condition held (or stopped holding): with `for` of 2 intervals the third tick in a row
fires, and a signal that flaps faster than that never does.

Notifications: `firing` when a group starts firing (or when a silence over it ends while
it still fires), `repeat` every `repeat` while it fires, `resolved` when it resolves if
its firing was notified. A silenced group keeps its state and notifies nothing.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from logkeep.domain.alert_rules import Timing

STATES = ("ok", "pending", "firing", "resolved", "no_data")


@dataclass(frozen=True, slots=True)
class Outcome:
    """One group's result at one tick: a value and whether the condition holds, or no
    data (with the reason)."""

    value: float | None
    holds: bool
    reason: str = ""
    labels: Mapping[str, str] | None = None

    @property
    def no_data(self) -> bool:
        return self.value is None


def no_data(reason: str) -> Outcome:
    return Outcome(None, False, reason)


@dataclass(frozen=True, slots=True)
class GroupState:
    state: str
    since: datetime
    active_since: datetime | None = None
    clear_since: datetime | None = None
    value: float | None = None
    reason: str = ""
    notified: bool = False
    last_notified_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Step:
    """A group's new state, and what changed at this tick."""

    state: GroupState
    transition: tuple[str, str] | None  # (from, to)
    notify: str | None  # firing | repeat | resolved


def step(prev: GroupState | None, outcome: Outcome, tick: datetime, timing: Timing) -> Step:
    """The next state of one group (notifications decided before silences)."""
    before = prev.state if prev is not None else "ok"
    holds = outcome.holds and not outcome.no_data
    base = prev or GroupState("ok", tick)
    base = replace(base, value=outcome.value, reason=outcome.reason)

    if before == "firing":
        if holds:
            state = replace(base, clear_since=None)
            due = state.last_notified_at is None or (tick - state.last_notified_at >= timing.repeat)
            notify = None
            if due:
                notify = "repeat" if state.notified else "firing"
            return Step(state, None, notify)
        clear_since = base.clear_since or tick
        if tick - clear_since >= timing.keep_firing_for:
            resolved = replace(
                base, state="resolved", since=tick, active_since=None, clear_since=None
            )
            return Step(resolved, ("firing", "resolved"), "resolved" if base.notified else None)
        return Step(replace(base, clear_since=clear_since), None, None)

    if holds:
        active_since = base.active_since if before == "pending" else tick
        assert active_since is not None
        if tick - active_since >= timing.for_:
            firing = replace(
                base,
                state="firing",
                since=tick,
                active_since=active_since,
                clear_since=None,
                notified=False,
                last_notified_at=None,
            )
            return Step(firing, (before, "firing"), "firing")
        if before == "pending":
            return Step(base, None, None)
        pending = replace(base, state="pending", since=tick, active_since=tick, clear_since=None)
        return Step(pending, (before, "pending"), None)

    # The condition does not hold (or there is nothing to judge).
    if outcome.no_data:
        target = "no_data"
    elif before in ("resolved", "ok"):
        target = before
    else:  # pending, no_data
        target = "ok"
    if target == before:
        return Step(replace(base, active_since=None), None, None)
    moved = replace(base, state=target, since=tick, active_since=None, clear_since=None)
    return Step(moved, (before, target), None)


# -- silences --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Silence:
    id: int
    starts_at: datetime
    ends_at: datetime
    rule_id: int | None = None
    group_key: str | None = None
    matchers: Mapping[str, str] | None = None
    repeat: str | None = None  # daily | weekly: a maintenance window
    repeat_until: datetime | None = None

    def active_at(self, instant: datetime) -> bool:
        if self.repeat is None:
            return self.starts_at <= instant < self.ends_at
        if instant < self.starts_at or (
            self.repeat_until is not None and instant >= self.repeat_until
        ):
            return False
        period = timedelta(days=1 if self.repeat == "daily" else 7)
        offset = (instant - self.starts_at) % period
        return offset < self.ends_at - self.starts_at

    def covers(self, rule_id: int, group_key: str, labels: Mapping[str, str]) -> bool:
        """Whether this silence applies to a group of a rule with these labels (its
        rule's and its group's); matcher values may use * as a wildcard."""
        if self.rule_id is not None and self.rule_id != rule_id:
            return False
        if self.group_key is not None and self.group_key != group_key:
            return False
        for name, pattern in (self.matchers or {}).items():
            value = labels.get(name)
            if value is None or not fnmatch.fnmatchcase(value, pattern):
                return False
        return True


def silenced(
    silences: Iterable[Silence],
    rule_id: int,
    group_key: str,
    labels: Mapping[str, str],
    at: datetime,
) -> Silence | None:
    for silence in silences:
        if silence.active_at(at) and silence.covers(rule_id, group_key, labels):
            return silence
    return None


def after_notification(state: GroupState, notify: str, tick: datetime, muted: bool) -> GroupState:
    """The state once a notification was queued (or held back by a silence): a muted
    firing is notified when the silence ends, a muted resolve is dropped."""
    if notify == "resolved":
        return replace(state, notified=False)
    if muted:
        return replace(state, notified=False, last_notified_at=None)
    return replace(state, notified=True, last_notified_at=tick)


def prunable(state: GroupState, tick: datetime, keep: timedelta) -> bool:
    """Groups that are quiet (ok, or resolved long ago) and no longer reported are
    forgotten, so a rule grouped by a key with many values stays bounded."""
    return state.state in ("ok", "no_data") or (
        state.state == "resolved" and tick - state.since >= keep
    )
