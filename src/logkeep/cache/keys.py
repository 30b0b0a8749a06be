"""Every Redis key logkeep uses, in one place.

Generation counters carry no TTL (a few bytes per source, and losing one would make stale
cache entries reachable again); every cached result carries a TTL.

Redis Cluster runs a command, a script or a MULTI only on keys of one hash slot. Keys that
one operation touches together share a hash tag (the part in braces); keys that are only
ever touched one at a time carry none, so they spread over the cluster:

- `{ingest}` (one shard), or one tag per shard (`cache/shards.py`): a shard's stream,
  backlog counter, dedup buckets, rate limits and Idempotency-Key answers. The ingest
  script checks and writes them atomically; XACK, XDEL and the backlog counter are one
  script too. A source's events always go to one shard, so its dedup and its rate limit
  stay exact; a client's rate limit lives on one shard too (the client's own).
- `{login}`: failed-login counters of users and addresses. One script counts the user
  and the address together, one MULTI clears them. Logins are few: one slot is plenty.
- No tag, one slot each:
  - generation counters. A query reads its sources' counters with one pipelined GET
    each, and a bump is one script per counter. No two need to be read at one instant:
    each is read after the query began, which is all freshness needs. So they spread
    over the cluster instead of making one hot slot;
  - cached results and their fill locks, written and dropped one key at a time;
  - sessions and each user's session index. A session is found by its token alone,
    which does not name its user, so the two cannot share a tag: the index is written
    first, so a live session is always in its user's index;
  - source rules, the tail stream and its listeners' mark, alert leases: one key per
    operation.

The prefix (LOGKEEP_REDIS_KEY_PREFIX) may not contain braces: a tag there would put every
key in one slot.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson

from logkeep.cache.shards import IngestShards
from logkeep.domain import exactjson

CACHE_FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Keys:
    prefix: str = "logkeep:"
    ingest_shards: int = 1

    def __post_init__(self) -> None:
        if "{" in self.prefix or "}" in self.prefix:
            raise ValueError(
                f"Redis key prefix {self.prefix!r} contains a brace: on Redis Cluster it "
                "would put every key in one hash slot"
            )

    @property
    def shards(self) -> IngestShards:
        return IngestShards(self.ingest_shards)

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

    def cache_fill_lock(self, cached_query_key: str) -> str:
        """Held by the process loading a missed result (stampede protection)."""
        return f"{cached_query_key}:loading"

    def tail_stream(self) -> str:
        """Committed entries for live tail: a capped stream, never the ingest buffer."""
        return f"{self.prefix}tail"

    def tail_listeners(self) -> str:
        """Present while a live tail client is connected (renewed by the clients)."""
        return f"{self.prefix}tail:listeners"

    # -- ingest ---------------------------------------------------------------------------
    # A shard's keys share its hash tag, so the ingest script may touch them all in one
    # call on Redis Cluster (one slot per shard; `cache/shards.py` spreads the shards).

    def _ingest(self, shard: int) -> str:
        return f"{self.prefix}{{{self.shards.tag(shard)}}}"

    def ingest_stream(self, shard: int = 0) -> str:
        """The ingest buffer: accepted events waiting for a worker's COPY."""
        return f"{self._ingest(shard)}:stream"

    def ingest_backlog_bytes(self, shard: int = 0) -> str:
        """Bytes of events in the shard's stream not yet committed (backpressure)."""
        return f"{self._ingest(shard)}:backlog"

    def dedup_bucket(self, bucket: int, shard: int = 0) -> str:
        """Event fingerprints first seen in one time bucket of the dedup window."""
        return f"{self._ingest(shard)}:dedup:{bucket}"

    def rate_limit(self, scope: str, subject: str, shard: int = 0) -> str:
        """GCRA state (theoretical arrival time) of one rate-limited subject."""
        return f"{self._ingest(shard)}:rate:{scope}:{subject}"

    def request_result(self, idempotency_key_digest: str, shard: int = 0) -> str:
        """The answer to a request with an Idempotency-Key (its part on this shard)."""
        return f"{self._ingest(shard)}:idem:{idempotency_key_digest}"

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
        return f"{self.prefix}login-failures:{{login}}:{kind}:{subject_digest.hexdigest()}"
