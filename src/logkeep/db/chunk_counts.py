"""What each compressed chunk holds for a filter, counted per minute and level, and kept
in memory by the chunk's identity: the match histogram reads only the chunks it has not
counted before.

Never stale: a chunk is never changed once written (compaction, merging and retention
write new chunks, with new ids, and delete old ones; the application role cannot UPDATE
log_chunks), so what a chunk holds for a filter is a fact. Which chunks an answer reads
is decided in its own snapshot every time, and the hot tier is counted every time.

Counts cover every matching event of the chunk, whatever the window and the levels
asked: a histogram's window and buckets are whole minutes, so any window and interval
sum them exactly, and the levels are chosen when summing. An entry takes about 1.5 KB
(measured with tracemalloc over 920 entries of three words, a broad one included: a chunk
spans about 15 minutes), so MAX_ENTRIES of them hold about 30 MB at most, least recently
used out: about ten words over a day of 10 million events a week.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from datetime import datetime
from typing import TypeAlias

from logkeep.domain.chunks import LEVEL_CODE, LEVELS

MINUTE_US = 60_000_000
MAX_ENTRIES = 20_000

# (id, source id, min_ts, compacted_at): ids come from a sequence and are never reused in
# one database; the time it was written tells apart chunks of two databases (tests).
ChunkIdentity = tuple[int, int, datetime, datetime]
Counts: TypeAlias = "array[int]"  # (minute, level code, events) triples, flat


def count_minutes(
    into: dict[tuple[int, str], int],
    stamps: list[int],
    levels: list[str],
    indices: Iterable[int],
) -> None:
    """Add the events at `indices` to `into`, keyed (minute start in microseconds, level
    name)."""
    for index in indices:
        at = stamps[index]
        key = (at - at % MINUTE_US, levels[index])
        into[key] = into.get(key, 0) + 1


def minute_counts(stamps: list[int], levels: list[str], indices: Iterable[int]) -> Counts:
    """(minute start in microseconds, level code, events) triples of the events at
    `indices`, flat: what one chunk holds for one filter."""
    found: dict[tuple[int, str], int] = {}
    count_minutes(found, stamps, levels, indices)
    flat = array("q")
    for (minute, level), n in found.items():
        flat.extend((minute, LEVEL_CODE[level], n))
    return flat


def add_counts(
    into: dict[tuple[int, str], int],
    counts: Counts,
    start_us: int,
    end_us: int,
    levels: frozenset[int] | None,
) -> None:
    """Add a chunk's counts of the minutes in [start_us, end_us) and of `levels` (None:
    all) to `into`, keyed (minute, level name)."""
    for i in range(0, len(counts), 3):
        minute, level, n = counts[i], counts[i + 1], counts[i + 2]
        if start_us <= minute < end_us and (levels is None or level in levels):
            key = (minute, LEVELS[level])
            into[key] = into.get(key, 0) + n


class ChunkCounts:
    """Counts per chunk and filter, least recently used out past `max_entries`."""

    def __init__(self, max_entries: int = MAX_ENTRIES) -> None:
        self._max_entries = max_entries
        self._entries: OrderedDict[tuple[ChunkIdentity, Hashable], Counts] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, chunk: ChunkIdentity, condition: Hashable) -> Counts | None:
        key = (chunk, condition)
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, chunk: ChunkIdentity, condition: Hashable, counts: Counts) -> None:
        self._entries[(chunk, condition)] = counts
        self._entries.move_to_end((chunk, condition))
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
