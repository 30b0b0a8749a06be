"""Alerting's pure core: ticks, the state machine with for/keep_firing_for, silences and
maintenance windows, webhook signatures, and message shapes (masking, learning,
novelty, storage round trip)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from logkeep.domain.alert_messages import signature, verify_signature
from logkeep.domain.alert_rules import (
    Timing,
    check_threshold,
    metadata_param_value,
    parse_group_by,
    tick_floor,
    ticks,
)
from logkeep.domain.alert_states import GroupState, Outcome, Silence, no_data, silenced, step
from logkeep.domain.shapes import ShapeBook, masked
from logkeep.domain.timerange import InvalidQuery

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def run(conditions: list[bool], timing: Timing) -> tuple[list[str], list[str]]:
    state: GroupState | None = None
    states, notified = [], []
    for i, holds in enumerate(conditions):
        moved = step(state, Outcome(1.0 if holds else 0.0, holds), T0 + i * MIN, timing)
        state = moved.state
        states.append(state.state)
        if moved.notify:
            notified.append(moved.notify)
            if moved.notify != "resolved":
                from logkeep.domain.alert_states import after_notification

                state = after_notification(state, moved.notify, T0 + i * MIN, False)
    return states, notified


def test_without_for_every_flap_notifies() -> None:
    states, notified = run([True, False, True, False], Timing(MIN, MIN))
    assert states == ["firing", "resolved", "firing", "resolved"]
    assert notified == ["firing", "resolved", "firing", "resolved"]


def test_for_and_keep_firing_for_hold_back_a_flapping_signal() -> None:
    timing = Timing(MIN, MIN, for_=2 * MIN, keep_firing_for=2 * MIN)
    signal = [True, True, False, True, True, True, True, False, True, False, False, False]
    states, notified = run(signal, timing)
    assert states == [
        "pending", "pending", "ok", "pending", "pending", "firing", "firing", "firing",
        "firing", "firing", "firing", "resolved",
    ]  # fmt: skip
    assert notified == ["firing", "resolved"]


def test_repeat_while_firing_and_no_data() -> None:
    timing = Timing(MIN, MIN, repeat=timedelta(minutes=2))
    _states, notified = run([True, True, True, True, True], timing)
    assert notified == ["firing", "repeat", "repeat"]
    moved = step(None, no_data("volume 1 under the minimum 5"), T0, timing)
    assert moved.state.state == "no_data" and moved.transition == ("ok", "no_data")


def test_ticks_are_aligned_and_catch_up() -> None:
    interval = timedelta(seconds=15)
    assert tick_floor(T0 + timedelta(seconds=29), interval) == T0 + timedelta(seconds=15)
    assert ticks(None, T0 + timedelta(seconds=40), interval) == [T0 + timedelta(seconds=30)]
    assert ticks(T0, T0 + timedelta(seconds=46), interval) == [
        T0 + timedelta(seconds=s) for s in (15, 30, 45)
    ]


def test_silences_by_rule_group_and_label_and_maintenance_windows() -> None:
    labels = {"team": "payments", "rule": "errors"}
    by_label = Silence(1, T0, T0 + MIN, matchers={"team": "pay*"})
    assert by_label.covers(7, "", labels) and not by_label.covers(7, "", {"team": "ops"})
    by_group = Silence(2, T0, T0 + MIN, rule_id=7, group_key='"web1"')
    assert by_group.covers(7, '"web1"', {}) and not by_group.covers(7, '"web2"', {})
    assert not by_group.covers(8, '"web1"', {})
    nightly = Silence(3, T0, T0 + 2 * timedelta(hours=1), rule_id=7, repeat="daily")
    assert nightly.active_at(T0 + timedelta(days=3, minutes=30))
    assert not nightly.active_at(T0 + timedelta(days=3, hours=3))
    assert not nightly.active_at(T0 - timedelta(minutes=1))
    assert silenced([by_group, nightly], 7, '"web2"', {}, T0 + timedelta(days=1)) is nightly


def test_webhook_signature_verifies_and_refuses_tampering_and_replays() -> None:
    body = b'{"rule": 1}'
    header = signature("k" * 20, 1_700_000_000, body)
    assert verify_signature("k" * 20, header, body, 1_700_000_010, tolerance=300)
    assert not verify_signature("k" * 20, header, body + b" ", 1_700_000_010, tolerance=300)
    assert not verify_signature("x" * 20, header, body, 1_700_000_010, tolerance=300)
    assert not verify_signature("k" * 20, header, body, 1_700_009_999, tolerance=300)


def test_rule_parts_are_checked() -> None:
    assert check_threshold("threshold", 5.0) == 5
    assert check_threshold("ratio", 0.25) == 0.25
    for kind, value in (("threshold", 2.5), ("ratio", 1.5), ("absence", -1.0)):
        with pytest.raises(InvalidQuery):
            check_threshold(kind, value)
    assert parse_group_by("metadata.http.status").path == ("http", "status")  # type: ignore[union-attr]
    with pytest.raises(InvalidQuery):
        parse_group_by("metadata.a b")
    assert metadata_param_value('"web1"') == "web1"
    assert metadata_param_value('"500"') == '"500"'  # the text 500, not the number
    assert metadata_param_value("500") == "500"


def test_masking_hides_variables_and_keeps_words() -> None:
    line = 'user 42 from 10.1.2.3:5000 id=9f1c2e3d4b5a6978 req "abc" took 1.5 ms'
    assert masked(line) == "user <NUM> from <IP> id=<HASH> req <QUOTED> took <NUM> ms"
    assert masked("x" * 5000) == "x" * 1024


def test_a_book_finds_new_shapes_after_learning_and_survives_storage() -> None:
    learning = timedelta(minutes=10)
    book = ShapeBook(T0)
    for i in range(12):
        book.observe(1, f"user {i} logged in", T0 + i * MIN, learning, {"id": i})
    book.observe(1, "disk sda failing", T0 + 11 * MIN, learning, {"id": 99})
    new = book.new_shapes(T0 + 11 * MIN, T0 + 12 * MIN, learning)
    assert [s.template for s in new] == ["disk sda failing"]
    assert new[0].samples == ({"id": 99},)
    # Before the book learned for `learning`, nothing is new.
    assert book.new_shapes(T0, T0 + 5 * MIN, learning) == []
    restored = ShapeBook.from_json(book.to_json(keep_samples_after=T0))
    again = restored.new_shapes(T0 + 11 * MIN, T0 + 12 * MIN, learning)
    assert [(s.shape_id, s.template, s.samples) for s in again] == [
        (s.shape_id, s.template, s.samples) for s in new
    ]
    # The restored book still knows its shapes: a known line is not new.
    restored.observe(1, "user 77 logged in", T0 + 12 * MIN, learning)
    assert restored.new_shapes(T0 + 12 * MIN, T0 + 13 * MIN, learning) == []
