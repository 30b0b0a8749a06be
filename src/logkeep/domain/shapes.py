"""Message shapes for new-pattern rules. Pure, no I/O.

How a shape is computed: the message (its first 1,024 characters) is masked — UUIDs, IP
addresses (and lists of them, with ports), MAC addresses, 0x-hex, short quoted values,
hex-like tokens (hashes, ids) and numbers become placeholders — and then clustered by
Drain (He et al., ICWS 2017; the `drain3` implementation): messages with the same number
of tokens, the same first tokens and at least 70 % of their tokens alike share a shape,
whose template keeps the common tokens and puts `<*>` where they differ. The settings
(similarity 0.7, depth 5) are one choice for every kind of log, not tuned per source:
measured on LogHub's 2k-line samples of 16 systems (bench/shapes.py), they group 84.7 %
of lines exactly as the ground truth, where drain3's defaults group 73.1 %.

How shapes are stored and bounded: one `ShapeBook` per rule, per source a Drain of at
most MAX_SHAPES_PER_SOURCE shapes (the least recently seen is forgotten first, and would
be new again), saved as JSON with the rule's status: each shape's id, template, count,
the start of its current episode and when it was last seen, and up to SAMPLES messages
of an episode younger than the rule's window.

When a shape is new: its episode starts when it is first seen, or seen again after not
being seen for the learning period; it is new while its episode started inside the
window, once the book has learned for at least the learning period before it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from drain3.drain import Drain, LogCluster
from drain3.masking import LogMasker, MaskingInstruction

from logkeep.domain.search import from_micros, to_micros

MAX_CHARS = 1024
MAX_SHAPES_PER_SOURCE = 1000
SAMPLES = 3
SAMPLE_CHARS = 500
SIMILARITY = 0.7
DEPTH = 5
FORMAT_VERSION = 1

_IP = r"(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?"
MASKS: tuple[tuple[str, str], ...] = (
    (rf"\b{_IP}(?:,{_IP})*\b", "IP"),
    (r"(?i)\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", "ID"),
    (r"(?i)\b(?:[0-9a-f]{2}:){5}[0-9a-f]{2}\b", "MAC"),
    (r"(?i)\b0x[0-9a-f]+\b", "HEX"),
    (r"\"[^\"\s]{0,64}\"|'[^'\s]{0,64}'", "QUOTED"),
    (r"(?i)\b[0-9a-f]*\d[0-9a-f]*[a-f][0-9a-f]*\b|\b[0-9a-f]*[a-f][0-9a-f]*\d[0-9a-f]*\b", "HASH"),
    (r"[-+]?\b\d+(?:[.,]\d+)*\b", "NUM"),
)
_MASKER = LogMasker([MaskingInstruction(p, name) for p, name in MASKS], "<", ">")
_SPACE = re.compile(r"\s+")


def masked(message: str) -> str:
    """The message with its variable parts replaced by <NAME> placeholders."""
    return str(_MASKER.mask(_SPACE.sub(" ", message[:MAX_CHARS]).strip()))


def new_drain() -> Drain:
    return Drain(
        depth=DEPTH, sim_th=SIMILARITY, max_children=100, max_clusters=MAX_SHAPES_PER_SOURCE
    )


@dataclass(slots=True)
class ShapeInfo:
    episode_start: int  # microseconds since the epoch
    last_seen: int
    samples: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class NewShape:
    source_id: int
    shape_id: int
    template: str
    episode_start: datetime
    count: int
    samples: tuple[dict[str, Any], ...]

    @property
    def group_key(self) -> str:
        return f"shape:{self.source_id}:{self.shape_id}"


class ShapeBook:
    """The shapes one rule has learned, per source."""

    def __init__(self, started: datetime) -> None:
        self.started = to_micros(started)  # learning began with entries from here
        # Entries up to (learned_until, learned_id) in (timestamp, id) order were read.
        self.learned_until = self.started
        self.learned_id = 0
        self._drains: dict[int, Drain] = {}
        self._info: dict[int, dict[int, ShapeInfo]] = {}

    def observe(
        self, source_id: int, message: str, at: datetime, learning: timedelta, entry: Any = None
    ) -> int:
        """Learn one message (entries must come in time order); its shape id."""
        drain = self._drains.get(source_id)
        if drain is None:
            drain = self._drains[source_id] = new_drain()
            self._info[source_id] = {}
        infos = self._info[source_id]
        cluster, _change = drain.add_log_message(masked(message))
        shape_id: int = cluster.cluster_id
        micros = to_micros(at)
        learning_micros = learning // timedelta(microseconds=1)
        info = infos.get(shape_id)
        if info is None or info.last_seen < micros - learning_micros:
            info = infos[shape_id] = ShapeInfo(micros, micros)
        info.last_seen = max(info.last_seen, micros)
        # Samples only of episodes that can be new (after the first learning period).
        if (
            entry is not None
            and len(info.samples) < SAMPLES
            and info.episode_start - learning_micros >= self.started
        ):
            info.samples.append(entry)
        if len(infos) > 2 * MAX_SHAPES_PER_SOURCE:  # drain forgot some: forget them too
            self._forget_evicted(source_id)
        return shape_id

    def _forget_evicted(self, source_id: int) -> None:
        known = set(self._drains[source_id].id_to_cluster.keys())
        self._info[source_id] = {k: v for k, v in self._info[source_id].items() if k in known}

    def new_shapes(self, start: datetime, end: datetime, learning: timedelta) -> list[NewShape]:
        """Shapes whose episode started in [start, end), if the book had learned for the
        learning period before then (otherwise every shape would look new)."""
        begin, finish = to_micros(start), to_micros(end)
        found = []
        for source_id, drain in self._drains.items():
            for shape_id, info in self._info[source_id].items():
                if not begin <= info.episode_start < finish:
                    continue
                if from_micros(info.episode_start) - learning < from_micros(self.started):
                    continue
                cluster = drain.id_to_cluster.get(shape_id)
                if cluster is None:
                    continue
                found.append(
                    NewShape(
                        source_id,
                        shape_id,
                        " ".join(cluster.log_template_tokens),
                        from_micros(info.episode_start),
                        cluster.size,
                        tuple(info.samples),
                    )
                )
        return sorted(found, key=lambda s: (s.episode_start, s.source_id, s.shape_id))

    def learning_until(self, learning: timedelta) -> datetime:
        return from_micros(self.started) + learning

    def shape_count(self) -> int:
        return sum(len(d.id_to_cluster) for d in self._drains.values())

    # -- storage ------------------------------------------------------------------------

    def to_json(self, keep_samples_after: datetime) -> dict[str, Any]:
        """The book as JSON: clusters in least-recently-used order, so that loading
        them back keeps the order in which they would be forgotten."""
        cutoff = to_micros(keep_samples_after)
        sources: dict[str, Any] = {}
        for source_id, drain in self._drains.items():
            self._forget_evicted(source_id)
            infos = self._info[source_id]
            clusters = []
            for shape_id, cluster in _lru_items(drain):
                info = infos.get(shape_id)
                if info is None:
                    continue
                samples = info.samples if info.episode_start >= cutoff else []
                clusters.append(
                    [
                        shape_id,
                        list(cluster.log_template_tokens),
                        cluster.size,
                        info.episode_start,
                        info.last_seen,
                        samples,
                    ]
                )
            sources[str(source_id)] = {"counter": drain.clusters_counter, "clusters": clusters}
        return {
            "v": FORMAT_VERSION,
            "started": self.started,
            "learned_until": self.learned_until,
            "learned_id": self.learned_id,
            "sources": sources,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ShapeBook:
        if data.get("v") != FORMAT_VERSION:
            raise ValueError("shapes saved in an unknown format")
        book = cls(from_micros(int(data["started"])))
        book.learned_until = int(data["learned_until"])
        book.learned_id = int(data["learned_id"])
        for key, saved in data["sources"].items():
            source_id = int(key)
            drain = new_drain()
            infos: dict[int, ShapeInfo] = {}
            for shape_id, tokens, size, episode_start, last_seen, samples in saved["clusters"]:
                cluster = LogCluster(tuple(tokens), int(shape_id))
                cluster.size = int(size)
                drain.id_to_cluster[cluster.cluster_id] = cluster
                drain.add_seq_to_prefix_tree(drain.root_node, cluster)
                infos[cluster.cluster_id] = ShapeInfo(int(episode_start), int(last_seen), samples)
            drain.clusters_counter = int(saved["counter"])
            book._drains[source_id] = drain
            book._info[source_id] = infos
        return book


def _lru_items(drain: Drain) -> Iterator[tuple[int, LogCluster]]:
    """Clusters from the least to the most recently used (without touching them)."""
    cache = drain.id_to_cluster
    order = getattr(cache, "_LRUCache__order", None)  # cachetools keeps it privately
    keys = list(order) if order is not None else list(cache.keys())
    for key in keys:
        cluster = cache.get(key)
        if cluster is not None:
            yield key, cluster
