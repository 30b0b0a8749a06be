"""One typed settings object, read from LOGKEEP_* environment variables and `.env`."""

from __future__ import annotations

import ipaddress
import re
import ssl
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from logkeep.instance import default_data_dir, running_instance

Environment = Literal["dev", "test", "prod"]

# Values that must never reach production: the empty string and the usual placeholders.
PLACEHOLDER_SECRETS = frozenset(
    {"", "changeme", "change-me", "changethis", "secret", "password", "admin", "logkeep"}
)
MIN_PROD_SECRET_LENGTH = 12


def split_read_urls(value: str) -> list[str]:
    """The DSNs of LOGKEEP_DATABASE_READ_URLS. A comma separates two URLs only where the
    next one starts: a multi-host URL (`postgresql://h1,h2/db`) stays whole."""
    parts = re.split(r"\s+|,\s*(?=postgres(?:ql)?://)", value.strip())
    return [part for part in parts if part]


# Two per primary of the common three-primary cluster, room to grow to six; more shards
# cost a request spread over many sources more calls and commits (bench/redis_cluster.py).
CLUSTER_INGEST_SHARDS = 6


class SettingsError(ValueError):
    """A setting is missing or unsafe for the environment; the message names it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LOGKEEP_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    env: Environment = "dev"

    # Stores. Unset: the running `logkeep up`'s (logkeep.instance), else embedded servers
    # under data_dir (dev and test only). data_dir is one place per user, not per cwd.
    database_url: str | None = None
    redis_url: str | None = None
    data_dir: Path = Field(default_factory=default_data_dir)

    # PostgreSQL pool.
    pg_pool_min_size: int = Field(default=2, ge=0)
    pg_pool_max_size: int = Field(default=10, ge=1)
    statement_timeout_ms: int = Field(default=30_000, ge=0)
    connect_deadline_s: float = Field(default=15.0, gt=0)
    application_name: str = "logkeep"
    # Streaming replicas that searches, exports and aggregates read from (whitespace- or
    # comma-separated DSNs; docs/scale.md). A replica more than read_replica_max_lag_ms
    # behind leaves the rotation, and a read waits at most that long for its replica to
    # replay the primary's latest write before it reads the primary instead.
    database_read_urls: str = ""
    read_replica_max_lag_ms: int = Field(default=1000, ge=1)

    # Redis client.
    redis_max_connections: int = Field(default=64, ge=1)
    redis_socket_timeout_s: float = Field(default=2.0, gt=0)
    redis_health_check_interval_s: int = Field(default=15, ge=0)
    redis_key_prefix: str = "logkeep:"
    # Ingest streams (with their dedup sets and rate limits) the events are spread over:
    # a source's events always go to the same one. Unset: 1, or 6 when LOGKEEP_REDIS_URL
    # names a Redis Cluster (so 1, 2, 3 or 6 primaries get an equal share). Change it
    # only with ingest stopped and the backlog empty (docs/scale.md).
    ingest_shards: int | None = Field(default=None, ge=1, le=256)
    # After a Redis failure, reads skip the cache for this long instead of paying a
    # connect timeout on every request.
    redis_backoff_s: float = Field(default=2.0, ge=0)

    # Cache TTLs per kind of query (seconds).
    cache_enabled: bool = True
    cache_ttl_recent_s: int = Field(default=30, ge=1)
    cache_ttl_summary_s: int = Field(default=60, ge=1)
    cache_ttl_search_s: int = Field(default=30, ge=1)
    cache_ttl_histogram_s: int = Field(default=30, ge=1)

    # Live tail.
    tail_buffer_entries: int = Field(default=1000, ge=10)  # stream entries of <=100 items
    tail_heartbeat_s: float = Field(default=15.0, gt=0)
    tail_max_clients: int = Field(default=32, ge=1)

    # Queries.
    query_default_window_s: int = Field(default=86_400, ge=60)  # when no from/since given
    stream_max_rows: int = Field(default=1_000_000, ge=1)  # NDJSON/CSV exports

    # Storage tiers (docs/storage.md): each closed slice of each source is compacted into
    # compressed chunks by API processes (one at a time) every compaction_interval_s
    # (0 = never). A slice closes compaction_grace_s after its end; slices divide a day.
    compaction_interval_s: int = Field(default=60, ge=0)
    compaction_slice_s: int = Field(default=900, ge=60, le=86_400)
    compaction_grace_s: int = Field(default=120, ge=0)
    # `logkeep doctor` warns when the oldest closed slice waits longer than this.
    compaction_max_lag_s: int = Field(default=3600, ge=60)

    # Retention and partitions.
    retention_days: int = Field(default=30, ge=1)
    partition_days_ahead: int = Field(default=3, ge=1)
    # How often a running API process runs partition maintenance; 0 turns it off.
    maintenance_interval_s: int = Field(default=3600, ge=0)

    # Accepted timestamp window for entries, relative to now.
    # Unset: the retention period. Never more, or old entries would escape retention.
    max_entry_age_days: int | None = Field(default=None, ge=1)
    max_entry_future_s: int = Field(default=3600, ge=0)

    # HTTP API. `api_url` is where the CLI's read commands find a running logkeep
    # (default: http://<http_host>:<http_port>); `api_token` is what they send: a
    # session token or an API key (required wherever the API requires credentials).
    api_url: str | None = None
    api_token: SecretStr = SecretStr("")
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # Addresses of reverse proxies whose X-Forwarded-For is believed (comma-separated);
    # empty: none, so a caller cannot choose the address its logins are counted under.
    trusted_proxies: str = ""
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    # HTTPS served by logkeep itself (PEM files; both or neither). Behind a TLS-terminating
    # proxy leave them unset and list the proxy in trusted_proxies (docs/deploy.md).
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # Ingest (POST /api/v1/ingest, syslog, `logkeep ingest`).
    # fast: answer once events are in the Redis Stream; durable: once PostgreSQL committed.
    ingest_mode: Literal["fast", "durable"] = "fast"
    ingest_max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)  # also decompressed
    ingest_max_line_bytes: int = Field(default=256 * 1024, ge=256)
    ingest_max_lines: int = Field(default=10_000, ge=1)  # per request
    ingest_durable_timeout_s: float = Field(default=30.0, gt=0)
    # Bytes of events in the stream not yet committed: past this, 503 with Retry-After.
    ingest_max_backlog_bytes: int = Field(default=256 * 1024 * 1024, ge=1024)
    # Dedup window: an event seen again within it is dropped. Memory: 56 bytes per event
    # (measured, Redis 7) for 1.25 windows, so 60 s at 10,000 events/s holds about 42 MB;
    # shippers retry a failed batch within seconds. 0 turns per-event dedup off.
    dedup_window_s: int = Field(default=60, ge=0)
    # Rate limits in events per second with a burst allowance; 0 means unlimited. A
    # source's configuration may set its own (`rate_limit_eps`, `rate_limit_burst`).
    rate_limit_source_eps: int = Field(default=50_000, ge=0)
    rate_limit_source_burst: int = Field(default=200_000, ge=1)
    rate_limit_client_eps: int = Field(default=50_000, ge=0)
    rate_limit_client_burst: int = Field(default=200_000, ge=1)

    # Worker: batches close at this many events or this long after their first event.
    worker_batch_events: int = Field(default=5000, ge=1)
    # Batch loops per worker process and ingest shard: while one waits for its COPY,
    # another reads and decodes the next batch (one loop leaves PostgreSQL idle half the
    # time).
    worker_concurrency: int = Field(default=2, ge=1, le=16)
    worker_batch_wait_ms: int = Field(default=200, ge=1)
    # Entries a consumer has held this long without acknowledging are claimed by others.
    worker_claim_idle_ms: int = Field(default=30_000, ge=100)
    # `logkeep worker` and `logkeep syslog` serve Prometheus metrics on this port
    # (0: none; `logkeep up` and `serve` have /metrics on the API).
    metrics_port: int = Field(default=0, ge=0, le=65535)

    # Syslog receiver (TCP and UDP on one port).
    syslog_host: str = "127.0.0.1"
    syslog_port: int = Field(default=5514, ge=0, le=65535)
    syslog_source: str = "syslog"

    # Shippers' protocols: OTLP/HTTP, Loki push, Elasticsearch bulk, GELF (docs/shippers.md).
    # A source named for the first time: `create` it; create it only for callers that may
    # write every source (`key`); or `refuse` the event. Unset: create in dev, key elsewhere.
    sources_on_first_use: Literal["create", "key", "refuse"] | None = None
    otlp_port: int = Field(default=0, ge=0, le=65535)  # also serve /v1/logs here; 0: API only
    # Where each protocol finds an event's source, first match wins (comma-separated).
    otlp_source_attributes: str = "logkeep.source,service.name"
    loki_source_labels: str = "source,service_name,app,job"
    gelf_source_fields: str = "_source,host"
    # GELF receiver (UDP and TCP on one port), and its source for what maps to none.
    gelf_host: str = "127.0.0.1"
    gelf_port: int = Field(default=12201, ge=0, le=65535)
    gelf_source: str = "gelf"

    # Access control. Unset: required everywhere but dev (dev without credentials acts
    # as an admin on this machine).
    auth_required: bool | None = None
    session_idle_s: int = Field(default=3600, ge=60)  # slides on every use
    session_lifetime_s: int = Field(default=12 * 3600, ge=60)  # never extended
    login_max_failures_per_user: int = Field(default=5, ge=1)
    login_max_failures_per_address: int = Field(default=20, ge=1)
    login_failure_window_s: int = Field(default=900, ge=1)

    # Alerting (docs/alerting.md). public_url: where people open logkeep; notifications
    # link to the explorer there. alerts_enabled: API processes evaluate rules and send
    # notifications (one evaluator per rule at a time, by lease).
    public_url: str = "http://127.0.0.1:8000"
    alerts_enabled: bool = True
    alert_settle_s: float = Field(default=2.0, ge=0, le=300)  # after a tick, for ingest lag
    alert_lease_s: float = Field(default=15.0, ge=2)  # and at most 60 % of a rule's interval
    alert_concurrency: int = Field(default=4, ge=1, le=64)  # rules evaluated at once
    alert_samples: int = Field(default=5, ge=0, le=50)  # entries per group in a notification
    alert_max_catchup_ticks: int = Field(default=60, ge=1)  # after an outage, at most
    alert_delivery_attempts: int = Field(default=10, ge=1)
    alert_delivery_timeout_s: float = Field(default=10.0, gt=0)
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    smtp_from: str = "logkeep@localhost"
    smtp_ca_file: Path | None = None  # a private CA for the SMTP server's certificate

    # Secrets and seed accounts.
    secret_key: SecretStr = SecretStr("")
    admin_username: str = "admin"
    admin_email: str = "admin@logkeep.local"
    admin_password: SecretStr = SecretStr("")
    analyst_password: SecretStr = SecretStr("")
    viewer_password: SecretStr = SecretStr("")
    seed_rows: int = Field(default=100_000, ge=0)

    @model_validator(mode="after")
    def _check_consistency(self) -> Settings:
        if self.pg_pool_min_size > self.pg_pool_max_size:
            raise ValueError(
                "LOGKEEP_PG_POOL_MIN_SIZE must not exceed LOGKEEP_PG_POOL_MAX_SIZE "
                f"({self.pg_pool_min_size} > {self.pg_pool_max_size})"
            )
        if 86_400 % self.compaction_slice_s:
            raise ValueError(
                "LOGKEEP_COMPACTION_SLICE_S must divide a day (86400 seconds), "
                f"got {self.compaction_slice_s}"
            )
        if self.max_entry_age_days is not None and self.max_entry_age_days > self.retention_days:
            # Entries older than retention would land in no partition (DEFAULT) and
            # escape retention.
            raise ValueError(
                "LOGKEEP_MAX_ENTRY_AGE_DAYS must not exceed LOGKEEP_RETENTION_DAYS "
                f"({self.max_entry_age_days} > {self.retention_days})"
            )
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            given = "CERT" if self.tls_cert_file is not None else "KEY"
            raise ValueError(
                "LOGKEEP_TLS_CERT_FILE and LOGKEEP_TLS_KEY_FILE go together: "
                f"only LOGKEEP_TLS_{given}_FILE is set"
            )
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _check_trusted_proxies(cls, value: str) -> str:
        # uvicorn compares addresses: a host name here would silently never match.
        for item in filter(None, (part.strip() for part in value.split(","))):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"LOGKEEP_TRUSTED_PROXIES: {item!r} is not an IP address or network "
                    "(CIDR); host names are not resolved"
                ) from None
        return value

    @field_validator("redis_key_prefix")
    @classmethod
    def _check_redis_key_prefix(cls, value: str) -> str:
        if "{" in value or "}" in value:
            raise ValueError(
                "LOGKEEP_REDIS_KEY_PREFIX may not contain braces: on Redis Cluster a hash "
                "tag there would put every key in one slot"
            )
        return value

    @field_validator("database_read_urls")
    @classmethod
    def _check_read_urls(cls, value: str) -> str:
        for url in split_read_urls(value):
            if not url.startswith(("postgresql://", "postgres://")):
                raise ValueError(
                    f"LOGKEEP_DATABASE_READ_URLS: {url[:40]!r} is not a postgresql:// URL"
                )
        return value

    @property
    def resolved_ingest_shards(self) -> int:
        if self.ingest_shards is not None:
            return self.ingest_shards
        cluster = (self.redis_url or "").lower().startswith(("redis+cluster:", "rediss+cluster:"))
        return CLUSTER_INGEST_SHARDS if cluster else 1

    @property
    def read_urls(self) -> list[str]:
        return split_read_urls(self.database_read_urls)

    @property
    def resolved_api_url(self) -> str:
        if recorded := self.api_url_from_instance:
            return recorded
        scheme = "https" if self.tls_cert_file is not None else "http"
        return self.api_url or f"{scheme}://{self.http_host}:{self.http_port}"

    @property
    def api_url_from_instance(self) -> str | None:
        """The running `logkeep up`'s API URL (it may have been given --port), unless an
        address is configured: LOGKEEP_API_URL, LOGKEEP_HTTP_HOST or LOGKEEP_HTTP_PORT."""
        if self.api_url or self.model_fields_set & {"http_host", "http_port"}:
            return None
        instance = running_instance(self.resolved_data_dir)
        return instance.api_url if instance is not None else None

    @property
    def requires_auth(self) -> bool:
        return self.auth_required if self.auth_required is not None else self.env != "dev"

    @property
    def first_use(self) -> Literal["create", "key", "refuse"]:
        if self.sources_on_first_use is not None:
            return self.sources_on_first_use
        return "create" if self.env == "dev" else "key"

    @property
    def entry_max_age_days(self) -> int:
        return self.max_entry_age_days or self.retention_days

    @cached_property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    def check_for_startup(self) -> None:
        """Refuse settings that are unsafe for the environment.

        Called by every long-running command before it touches a store, so that a
        production process never starts with a placeholder secret.
        """
        self._check_tls_files()
        if self.env != "prod":
            return
        problems: list[str] = []
        for name in ("secret_key", "admin_password"):
            value: SecretStr = getattr(self, name)
            raw = value.get_secret_value()
            env_name = f"LOGKEEP_{name.upper()}"
            if raw.strip().lower() in PLACEHOLDER_SECRETS:
                problems.append(f"{env_name} is empty or a placeholder")
            elif len(raw) < MIN_PROD_SECRET_LENGTH:
                problems.append(f"{env_name} is shorter than {MIN_PROD_SECRET_LENGTH} characters")
        if self.auth_required is False:
            problems.append("LOGKEEP_AUTH_REQUIRED=false: the API would answer anyone as admin")
        for name in ("database_url", "redis_url"):
            if not getattr(self, name):
                problems.append(
                    f"LOGKEEP_{name.upper()} must be set in prod (embedded servers are "
                    "for dev and test)"
                )
        if problems:
            raise SettingsError("refusing to start with LOGKEEP_ENV=prod: " + "; ".join(problems))

    def _check_tls_files(self) -> None:
        """The certificate and key can be read and belong together, or a clear error now
        instead of a traceback from the server later."""
        if self.tls_cert_file is None or self.tls_key_file is None:
            return
        for name, path in (("CERT", self.tls_cert_file), ("KEY", self.tls_key_file)):
            try:
                with path.open("rb") as file:
                    file.read(1)
            except OSError as exc:
                raise SettingsError(
                    f"LOGKEEP_TLS_{name}_FILE: cannot read {path}: {exc.strerror or exc}"
                ) from None
        try:
            # An encrypted key fails here rather than prompting for its passphrase.
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(
                self.tls_cert_file, self.tls_key_file, password=lambda: b""
            )
        except (ssl.SSLError, ValueError) as exc:
            raise SettingsError(
                f"LOGKEEP_TLS_CERT_FILE / LOGKEEP_TLS_KEY_FILE: {self.tls_cert_file} and "
                f"{self.tls_key_file} are not a PEM certificate and its private key ({exc})"
            ) from None
