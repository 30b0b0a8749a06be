"""Realistic sample data for the brief's three sources: pure, deterministic per seed."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from faker import Faker

from logkeep.domain.entry import Level


@dataclass(frozen=True)
class SourceSpec:
    name: str
    description: str
    source_type: str
    format_type: str
    parsing_rules: dict[str, Any]
    share: float  # fraction of generated entries


NGINX = SourceSpec(
    name="nginx_access",
    description="nginx access logs (combined format) from the edge proxies",
    source_type="web",
    format_type="nginx_combined",
    parsing_rules={
        "pattern": "combined",
        "level_by_status": {"5xx": "ERROR", "4xx": "WARN", "default": "INFO"},
        "fields": ["client_ip", "method", "path", "status", "bytes", "referer", "user_agent"],
    },
    share=0.70,
)
APP = SourceSpec(
    name="app_errors",
    description="application error logs, one JSON object per line",
    source_type="application",
    format_type="json",
    parsing_rules={
        "timestamp_field": "ts",
        "level_field": "level",
        "message_field": "msg",
        "metadata_fields": ["service", "host", "exception", "trace_id", "user_id"],
    },
    share=0.15,
)
SLOW_QUERIES = SourceSpec(
    name="db_slow_queries",
    description="PostgreSQL slow query log (log_min_duration_statement)",
    source_type="database",
    format_type="regex",
    parsing_rules={
        "pattern": r"duration: (?P<duration_ms>[0-9.]+) ms\s+statement: (?P<statement>.*)",
        "level_by_duration_ms": {"5000": "ERROR", "1000": "WARN", "default": "INFO"},
    },
    share=0.15,
)
SOURCES = (NGINX, APP, SLOW_QUERIES)

_PATHS = [
    "/",
    "/login",
    "/logout",
    "/api/v1/orders",
    "/api/v1/orders/{id}",
    "/api/v1/cart",
    "/api/v1/products",
    "/api/v1/products/{id}",
    "/api/v1/search",
    "/static/app.js",
    "/static/app.css",
    "/healthz",
    "/checkout",
    "/account/settings",
    "/images/{id}.webp",
]
_METHODS = ["GET"] * 16 + ["POST"] * 3 + ["PUT", "DELETE"]
_STATUSES = (
    [200] * 80
    + [201] * 3
    + [204] * 2
    + [301, 302, 304] * 2
    + [400, 401, 403]
    + [404] * 4
    + [429, 500, 502, 503]
)
_SERVICES = ["checkout", "payments", "inventory", "auth", "search", "notifications"]
_FAILURES = [
    ("TimeoutError", "upstream {svc} did not answer within {n}s"),
    ("ConnectionResetError", "connection reset by peer while calling {svc}"),
    ("KeyError", "missing field 'customer_id' in payload from {svc}"),
    ("ValueError", "invalid quantity {n} for SKU {sku}"),
    ("PaymentDeclined", "card declined for order {order} (code {n})"),
    ("IntegrityError", 'duplicate key value violates unique constraint "orders_pkey"'),
    ("OutOfMemoryError", "worker {svc}-{n} exceeded its memory limit and was killed"),
]
_TABLES = ["orders", "order_items", "customers", "products", "inventory", "payments", "sessions"]
_STATEMENTS = [
    "SELECT * FROM {t} WHERE customer_id = {n} ORDER BY created_at DESC",
    "UPDATE {t} SET status = 'shipped' WHERE id = {n}",
    "SELECT count(*) FROM {t} WHERE created_at > now() - interval '30 days'",
    "DELETE FROM {t} WHERE expires_at < now()",
    "SELECT p.*, i.stock FROM products p JOIN inventory i USING (sku) WHERE p.category = '{w}'",
    "INSERT INTO {t} SELECT * FROM {t}_staging",
]


@dataclass(frozen=True)
class SampleEntry:
    source: str
    timestamp: datetime
    level: Level
    message: str
    metadata: dict[str, Any]


class SampleGenerator:
    """Generates entries spread over a window, busier by day than by night."""

    def __init__(self, seed: int = 5) -> None:
        self._rng = random.Random(seed)  # noqa: S311 - sample data, not secrets
        fake = Faker()
        fake.seed_instance(seed)
        self._ips = [fake.ipv4_public() for _ in range(400)]
        self._agents = [fake.user_agent() for _ in range(120)]
        self._referers = ["-"] * 5 + [fake.url() for _ in range(40)]
        self._hosts = [f"{fake.word()}-{n:02d}" for n in range(1, 13)]
        self._users = [fake.user_name() for _ in range(300)]
        self._words = [fake.word() for _ in range(60)]

    def _timestamp(self, start: datetime, span_s: float) -> datetime:
        # Rejection sampling against a diurnal curve peaking mid-afternoon UTC.
        while True:
            at = start + timedelta(seconds=self._rng.random() * span_s)
            weight = 0.35 + 0.65 * (1 - abs(at.hour + at.minute / 60 - 15) / 12)
            if self._rng.random() < weight:
                return at

    def generate(self, count: int, end: datetime, days: float = 7.0) -> list[SampleEntry]:
        """`count` entries between `end - days` and `end`, in time order."""
        start = end - timedelta(days=days)
        span = (end - start).total_seconds()
        names = [s.name for s in SOURCES]
        weights = [s.share for s in SOURCES]
        makers = {NGINX.name: self._nginx, APP.name: self._app, SLOW_QUERIES.name: self._slow}
        stamps = sorted(self._timestamp(start, span) for _ in range(count))
        chosen = self._rng.choices(names, weights, k=count)
        return [makers[name](ts) for name, ts in zip(chosen, stamps, strict=True)]

    def iter_batches(
        self, count: int, end: datetime, batch: int = 10_000, days: float = 7.0
    ) -> Iterator[list[SampleEntry]]:
        entries = self.generate(count, end, days)
        for offset in range(0, len(entries), batch):
            yield entries[offset : offset + batch]

    def _nginx(self, ts: datetime) -> SampleEntry:
        r = self._rng
        path = r.choice(_PATHS).replace("{id}", str(r.randint(1, 99_999)))
        method = r.choice(_METHODS)
        status = r.choice(_STATUSES)
        size = 0 if status in (204, 304) else r.randint(120, 250_000)
        ip = r.choice(self._ips)
        agent = r.choice(self._agents)
        referer = r.choice(self._referers)
        request_time = round(r.lognormvariate(-3.0, 1.1), 3)
        stamp = ts.strftime("%d/%b/%Y:%H:%M:%S +0000")
        message = (
            f'{ip} - - [{stamp}] "{method} {path} HTTP/1.1" {status} {size} "{referer}" "{agent}"'
        )
        level = Level.ERROR if status >= 500 else Level.WARN if status >= 400 else Level.INFO
        return SampleEntry(
            NGINX.name,
            ts,
            level,
            message,
            {
                "client_ip": ip,
                "method": method,
                "path": path,
                "status": status,
                "bytes": size,
                "referer": referer,
                "user_agent": agent,
                "request_time": request_time,
            },
        )

    def _app(self, ts: datetime) -> SampleEntry:
        r = self._rng
        svc = r.choice(_SERVICES)
        exception, template = r.choice(_FAILURES)
        message = template.format(
            svc=svc,
            n=r.randint(1, 60),
            sku=f"SKU-{r.randint(1000, 9999)}",
            order=f"ORD-{r.randint(100_000, 999_999)}",
        )
        level = r.choices(
            [Level.DEBUG, Level.INFO, Level.WARN, Level.ERROR, Level.FATAL], [3, 12, 25, 55, 5]
        )[0]
        return SampleEntry(
            APP.name,
            ts,
            level,
            f"{exception}: {message}",
            {
                "service": svc,
                "host": r.choice(self._hosts),
                "exception": exception,
                "trace_id": f"{r.getrandbits(128):032x}",
                "user_id": r.choice(self._users),
            },
        )

    def _slow(self, ts: datetime) -> SampleEntry:
        r = self._rng
        table = r.choice(_TABLES)
        statement = r.choice(_STATEMENTS).format(
            t=table, n=r.randint(1, 500_000), w=r.choice(self._words)
        )
        duration = round(500 + r.lognormvariate(6.5, 1.0), 1)
        level = Level.ERROR if duration >= 5000 else Level.WARN if duration >= 1000 else Level.INFO
        return SampleEntry(
            SLOW_QUERIES.name,
            ts,
            level,
            f"duration: {duration} ms  statement: {statement}",
            {
                "duration_ms": duration,
                "database": "shop",
                "user": "app",
                "table": table,
                "rows": r.randint(0, 200_000),
            },
        )


def fixed_test_entries(now: datetime) -> list[SampleEntry]:
    """The small deterministic set of the test environment: 60 entries, 20 per source,
    one per minute going back from `now`, levels cycling DEBUG..FATAL."""
    levels = list(Level)
    entries = []
    for index, spec in enumerate(SOURCES):
        for n in range(20):
            ts = (now - timedelta(minutes=n + 1)).replace(microsecond=0)
            level = levels[n % len(levels)]
            entries.append(
                SampleEntry(
                    spec.name,
                    ts,
                    level,
                    f"{spec.name} test entry {n:02d} ({level.value})",
                    {"seq": n, "source_index": index, "test": True},
                )
            )
    return sorted(entries, key=lambda e: e.timestamp)
