"""Every Redis key logkeep uses, in one place.

Generation counters carry no TTL (a few bytes per source, and losing one would make stale
cache entries reachable again); every cached result carries a TTL.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson

CACHE_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "logkeep:"

    def source_generation(self, source_id: int) -> str:
        """Bumped after every commit that adds entries of this source."""
        return f"{self.prefix}gen:source:{source_id}"

    def all_sources_generation(self) -> str:
        """Bumped after every commit that adds entries of any source."""
        return f"{self.prefix}gen:all"

    def cached_query(self, kind: str, params: dict[str, object], generations: list[int]) -> str:
        """Cache key of one query: its kind, its normalised parameters and the generations
        of the sources it reads, so a write makes every affected key unreachable."""
        digest = hashlib.blake2b(
            orjson.dumps(params, option=orjson.OPT_SORT_KEYS), digest_size=12
        ).hexdigest()
        gens = ".".join(str(g) for g in generations)
        return f"{self.prefix}cache:v{CACHE_FORMAT_VERSION}:{kind}:{gens}:{digest}"

    def tail_stream(self) -> str:
        """Committed entries for live tail: a capped stream, never the ingest buffer."""
        return f"{self.prefix}tail"

    def source_by_name(self, name: str) -> str:
        return f"{self.prefix}source:name:{name}"
