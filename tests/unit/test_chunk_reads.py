"""Reading a decoded chunk for a query: the positions of its events in a window and past
a keyset cursor, found by bisection, are exactly those a comparison of every event picks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from logkeep.db.tiers import ChunkMatcher, EventFilter
from logkeep.domain.chunks import ChunkEvent, decode_chunk, encode_chunk, micros
from logkeep.domain.timerange import TimeRange

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def chunk_of(offsets: list[int]) -> list[ChunkEvent]:
    # Few distinct instants, so that many events share a timestamp and ids decide.
    return [
        ChunkEvent(100 + n, 1, T0 + timedelta(seconds=s), "INFO", f"m{n}", {}, T0)
        for n, s in enumerate(offsets)
    ]


@settings(max_examples=300, deadline=None)
@given(
    offsets=st.lists(st.integers(0, 6), min_size=1, max_size=30),
    window=st.tuples(st.integers(-1, 8), st.integers(-1, 8)),
    after=st.one_of(st.none(), st.tuples(st.integers(-1, 8), st.integers(95, 135))),
    descending=st.booleans(),
)
def test_span_picks_the_events_a_full_comparison_picks(
    offsets: list[int],
    window: tuple[int, int],
    after: tuple[int, int] | None,
    descending: bool,
) -> None:
    events = chunk_of(offsets)
    chunk = decode_chunk(1, encode_chunk(events).payload)
    start, end = (T0 + timedelta(seconds=s) for s in window)
    if start > end:
        start, end = end, start
    key = None if after is None else (micros(T0 + timedelta(seconds=after[0])), after[1])
    lo, hi = ChunkMatcher(EventFilter(TimeRange(start, end))).span(chunk, key, descending)
    expected = [
        i
        for i, (t, ident) in enumerate(zip(chunk.timestamps, chunk.ids, strict=True))
        if micros(start) <= t < micros(end)
        and (key is None or ((t, ident) < key if descending else (t, ident) > key))
    ]
    assert list(range(lo, hi)) == expected
