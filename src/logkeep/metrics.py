"""Prometheus metrics. Definitions only; values come from the code paths that own them."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

CACHE_HITS = Counter("logkeep_cache_hits_total", "Query cache hits", ["kind"])
CACHE_MISSES = Counter("logkeep_cache_misses_total", "Query cache misses", ["kind"])
CACHE_BYPASS = Counter(
    "logkeep_cache_bypass_total",
    "Queries answered without the cache (disabled or Redis away)",
    ["kind"],
)
CACHE_ERRORS = Counter("logkeep_cache_errors_total", "Redis errors seen by the query cache")
CACHE_SAVED_SECONDS = Counter(
    "logkeep_cache_saved_seconds_total",
    "PostgreSQL time saved by cache hits (hits times the recent mean load time)",
    ["kind"],
)
CACHE_LOAD_SECONDS = Histogram(
    "logkeep_cache_load_seconds", "Time spent loading a result on a cache miss", ["kind"]
)
QUERY_SECONDS = Histogram(
    "logkeep_query_seconds",
    "PostgreSQL query duration by query name",
    ["query"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
PG_POOL_SIZE = Gauge("logkeep_pg_pool_size", "Connections open in the PostgreSQL pool")
PG_POOL_IN_USE = Gauge("logkeep_pg_pool_in_use", "PostgreSQL pool connections checked out")
PG_POOL_MAX = Gauge("logkeep_pg_pool_max_size", "Configured maximum of the PostgreSQL pool")
REDIS_RTT_SECONDS = Gauge("logkeep_redis_rtt_seconds", "Round-trip time of the last Redis PING")
HTTP_REQUESTS = Histogram(
    "logkeep_http_request_seconds", "HTTP request duration", ["method", "route", "status"]
)

# Ingest.
INGEST_EVENTS = Counter(
    "logkeep_ingest_events_total",
    "Events offered to ingest, by source and outcome "
    "(accepted, duplicate, rejected, rate_limited, backlog_full, unavailable)",
    ["source", "outcome"],
)
INGEST_DEAD_LETTERS = Counter(
    "logkeep_ingest_dead_letters_total", "Lines kept in the dead-letter table", ["source"]
)
INGEST_STREAM_LENGTH = Gauge(
    "logkeep_ingest_stream_length", "Ingest stream entries not yet committed"
)
INGEST_STREAM_PENDING = Gauge(
    "logkeep_ingest_stream_pending", "Ingest stream entries delivered to a worker, not yet acked"
)
INGEST_BACKLOG_BYTES = Gauge(
    "logkeep_ingest_backlog_bytes", "Bytes of events in the ingest stream not yet committed"
)
WORKER_BATCH_EVENTS = Histogram(
    "logkeep_worker_batch_events",
    "Events per committed batch",
    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10_000, 25_000, 50_000),
)
WORKER_COPY_SECONDS = Histogram(
    "logkeep_worker_copy_seconds",
    "Duration of a batch's transaction (ledger, COPY, rollups, commit)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
INGEST_LAG_SECONDS = Histogram(
    "logkeep_ingest_lag_seconds",
    "From acceptance (stream append) to PostgreSQL commit",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
WORKER_RETRIES = Counter(
    "logkeep_worker_retries_total", "Batches retried after a PostgreSQL failure"
)
SYSLOG_DROPPED = Counter(
    "logkeep_syslog_dropped_total",
    "Syslog messages dropped because the receiver's buffer was full (UDP only)",
)

# Read replicas (LOGKEEP_DATABASE_READ_URLS), labelled by their position in that list.
PG_REPLICA_IN_ROTATION = Gauge(
    "logkeep_pg_replica_in_rotation", "1 while reads go to this replica, 0 while out", ["replica"]
)
PG_REPLICA_LAG_SECONDS = Gauge(
    "logkeep_pg_replica_lag_seconds",
    "How long ago the primary had written what the replica has not replayed yet",
    ["replica"],
)
PG_REPLICA_LAG_BYTES = Gauge(
    "logkeep_pg_replica_lag_bytes", "WAL bytes the replica has not replayed yet", ["replica"]
)
PG_READS = Counter(
    "logkeep_pg_reads_total",
    "Reads routed to a replica or to the primary, and why the primary "
    "(no_replica, replica_error, replica_behind)",
    ["target", "reason"],
)
PG_REPLICA_WAIT_SECONDS = Histogram(
    "logkeep_pg_replica_wait_seconds",
    "Time a read waited for its replica to replay the primary's latest write",
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)

# Alerting.
ALERT_EVALUATIONS = Counter(
    "logkeep_alert_evaluations_total",
    "Rule evaluations committed, by outcome (ok, error)",
    ["outcome"],
)
ALERT_EVALUATION_SECONDS = Histogram(
    "logkeep_alert_evaluation_seconds",
    "Duration of one rule's evaluation at one tick (read, decide, write)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ALERT_NOTIFICATIONS = Counter(
    "logkeep_alert_notifications_total",
    "Notification deliveries by channel kind and outcome (sent, retry, failed)",
    ["channel", "outcome"],
)
ALERT_RULES_HELD = Gauge(
    "logkeep_alert_rules_held", "Rules this process holds the evaluation lease of"
)

# Storage tiers (docs/storage.md): compaction's progress and the compressed tier's size.
COMPACTED_EVENTS = Counter(
    "logkeep_compacted_events_total", "Events moved from the hot tier into compressed chunks"
)
COMPACTION_LAG_SECONDS = Gauge(
    "logkeep_compaction_lag_seconds",
    "Age of the oldest hot event in a closed slice (0 when compaction is caught up)",
)
CHUNKS = Gauge("logkeep_chunks", "Compressed chunks stored")
CHUNK_EVENTS_STORED = Gauge("logkeep_chunk_events", "Events held in compressed chunks")
