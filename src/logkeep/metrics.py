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
