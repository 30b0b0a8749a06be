"""Every Redis key logkeep uses, in one place.

Generation counters carry no TTL (a few bytes per source, and losing one would make stale
cache entries reachable again); every cached result carries a TTL.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson

from logkeep.domain import exactjson

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
            exactjson.dumps(params, option=orjson.OPT_SORT_KEYS), digest_size=12
        ).hexdigest()
        gens = ".".join(str(g) for g in generations)
        return f"{self.prefix}cache:v{CACHE_FORMAT_VERSION}:{kind}:{gens}:{digest}"

    def tail_stream(self) -> str:
        """Committed entries for live tail: a capped stream, never the ingest buffer."""
        return f"{self.prefix}tail"

    def tail_listeners(self) -> str:
        """Present while a live tail client is connected (renewed by the clients)."""
        return f"{self.prefix}tail:listeners"

    # -- ingest ---------------------------------------------------------------------------
    # The ingest keys share one hash tag, so the ingest script may touch them all in one
    # call on Redis Cluster too (one slot; shard by stream when one slot is not enough).

    def ingest_stream(self) -> str:
        """The ingest buffer: accepted events waiting for a worker's COPY."""
        return f"{self.prefix}{{ingest}}:stream"

    def ingest_backlog_bytes(self) -> str:
        """Bytes of events in the ingest stream not yet committed (backpressure)."""
        return f"{self.prefix}{{ingest}}:backlog"

    def dedup_bucket(self, bucket: int) -> str:
        """Event fingerprints first seen in one time bucket of the dedup window."""
        return f"{self.prefix}{{ingest}}:dedup:{bucket}"

    def rate_limit(self, scope: str, subject: str) -> str:
        """GCRA state (theoretical arrival time) of one rate-limited subject."""
        return f"{self.prefix}{{ingest}}:rate:{scope}:{subject}"

    def request_result(self, idempotency_key_digest: str) -> str:
        """The answer to a request with an Idempotency-Key, for its retries."""
        return f"{self.prefix}{{ingest}}:idem:{idempotency_key_digest}"

    def source_rules(self, source_id: int) -> str:
        """A source's format and parsing rules, cached from PostgreSQL."""
        return f"{self.prefix}source:rules:{source_id}"

    def source_rules_by_name(self, name: str) -> str:
        return f"{self.prefix}source:rules:name:{name}"

    def source_rules_copies(self, source_id: int, name: str) -> list[str]:
        """Every cached copy of a source's rules: written together, dropped together."""
        return [self.source_rules(source_id), self.source_rules_by_name(name)]

    # -- alerting -------------------------------------------------------------------------

    def alert_lease(self, rule_id: int) -> str:
        """Who evaluates a rule: a process's token, with a TTL it renews while alive."""
        return f"{self.prefix}alerts:lease:{rule_id}"

    # -- sessions and logins --------------------------------------------------------------

    def session(self, digest: str) -> str:
        """One session, by the SHA-256 of its token (the token itself is never stored)."""
        return f"{self.prefix}session:{digest}"

    def user_sessions(self, user_id: int) -> str:
        """The digests of a user's sessions, to end them all at once."""
        return f"{self.prefix}user-sessions:{user_id}"

    def login_failures(self, kind: str, subject: str) -> str:
        """Failed logins of a username or a client address in the current window."""
        subject_digest = hashlib.blake2b(subject.encode("utf-8", "surrogatepass"), digest_size=12)
        return f"{self.prefix}login-failures:{kind}:{subject_digest.hexdigest()}"
