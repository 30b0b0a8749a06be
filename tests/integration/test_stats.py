"""Histogram and summary through the API, against real PostgreSQL and Redis.

The oracle is a straightforward count over log_entries for the same window: the rollups the
aggregates read must agree with the raw rows, before and after new writes.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from logkeep.db.database import Database
from logkeep.db.repositories import LogRepository
from logkeep.db.stats import HISTOGRAM_BY_SOURCE_SQL, HISTOGRAM_SQL, histogram_args
from logkeep.domain.histogram import EPOCH, floor_minute, plan_histogram
from logkeep.domain.timerange import TimeRange

SEED_ENTRIES = 60
INJECTION = "'; DROP TABLE log_entries; --"
HISTOGRAM = "/api/v1/stats/histogram"
SUMMARY = "/api/v1/stats/summary"
LEVELS = ["DEBUG", "INFO", "WARN", "ERROR", "FATAL"]

BucketKey = tuple[datetime, str]


# -- helpers ------------------------------------------------------------------------------


def iso(t: datetime) -> str:
    return t.isoformat()


def parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def source_ids(db: Database) -> dict[str, int]:
    async with db.pool.acquire() as conn:
        rows = await conn.fetch("SELECT name, id FROM log_sources")
    return {row["name"]: row["id"] for row in rows}


async def stored_rows(db: Database) -> tuple[int, int]:
    """(entries, sum of rollup counts): what a refused request must leave untouched."""
    async with db.pool.acquire() as conn:
        entries: int = await conn.fetchval("SELECT count(*) FROM log_entries")
        rollups: int = await conn.fetchval("SELECT coalesce(sum(count), 0) FROM log_metrics")
    return entries, rollups


async def raw_buckets(
    db: Database,
    start: datetime,
    end: datetime,
    interval: timedelta,
    levels: list[str] | None = None,
    sources: list[int] | None = None,
) -> Counter[BucketKey]:
    """Counts per (bucket, level) straight from log_entries."""
    async with db.pool.acquire() as conn:
        rows = await conn.fetch(
            """
            SELECT date_bin($1::interval, "timestamp", $2::timestamptz) AS start,
                   level::text AS level, count(*) AS n
            FROM log_entries
            WHERE "timestamp" >= $3 AND "timestamp" < $4
              AND ($5::text[] IS NULL OR level::text = ANY($5::text[]))
              AND ($6::integer[] IS NULL OR source_id = ANY($6::integer[]))
            GROUP BY 1, 2
            """,
            interval,
            EPOCH,
            start,
            end,
            levels,
            sources,
        )
    return Counter({(row["start"], row["level"]): row["n"] for row in rows})


def answered_buckets(body: dict[str, Any]) -> Counter[BucketKey]:
    counts: Counter[BucketKey] = Counter()
    for bucket in body["buckets"]:
        for level, n in bucket["counts"].items():
            if n:
                counts[(parse(bucket["start"]), level)] = n
    return counts


def assert_buckets_cover(body: dict[str, Any]) -> None:
    """Every bucket present, contiguous, aligned to the interval in UTC, covering the
    window, and each total the sum of its counts."""
    interval = timedelta(seconds=body["interval_s"])
    start, end = parse(body["from"]), parse(body["to"])
    assert floor_minute(start) == start and floor_minute(end) == end
    starts = [parse(b["start"]) for b in body["buckets"]]
    assert starts, body
    assert starts[0] <= start < starts[0] + interval
    assert starts[-1] < end <= starts[-1] + interval
    for previous, current in pairwise(starts):
        assert current - previous == interval
    for t in starts:
        assert (t - EPOCH) % interval == timedelta(0), t
    for bucket in body["buckets"]:
        assert set(bucket["counts"]) == set(body["levels"])
        assert bucket["total"] == sum(bucket["counts"].values())
    assert body["total"] == sum(b["total"] for b in body["buckets"])


async def assert_matches_raw(
    db: Database,
    body: dict[str, Any],
    levels: list[str] | None = None,
    sources: list[int] | None = None,
) -> None:
    raw = await raw_buckets(
        db,
        parse(body["from"]),
        parse(body["to"]),
        timedelta(seconds=body["interval_s"]),
        levels,
        sources,
    )
    assert answered_buckets(body) == raw


async def get_ok(client: httpx.AsyncClient, path: str, params: Any = None) -> dict[str, Any]:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def cache_count(kind: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(f"logkeep_cache_{outcome}_total", {"kind": kind})
    return value or 0.0


def entry(source_id: int, at: datetime, level: str = "INFO") -> dict[str, Any]:
    return {"message": f"extra {level} at {at.isoformat()}", "source_id": source_id,
            "level": level, "timestamp": at}  # fmt: skip


# -- the histogram ------------------------------------------------------------------------


async def test_default_histogram_is_the_last_day_and_matches_raw_rows(
    client: httpx.AsyncClient, db: Database
) -> None:
    body = await get_ok(client, HISTOGRAM)
    assert body["interval_s"] == 900
    assert body["levels"] == LEVELS
    assert body["sources"] is None
    assert body["resolution_s"] == 60
    assert parse(body["to"]) - parse(body["from"]) in (
        timedelta(days=1),
        timedelta(days=1, minutes=1),
    )
    assert_buckets_cover(body)
    assert body["total"] == SEED_ENTRIES
    await assert_matches_raw(db, body)


async def test_histogram_matches_raw_rows_after_writes_at_known_times(
    client: httpx.AsyncClient, db: Database, log_repo: LogRepository
) -> None:
    ids = await source_ids(db)
    nginx, app = ids["nginx_access"], ids["app_errors"]
    # A window hours before the seed (which is the last 20 minutes), starting mid-minute.
    base = floor_minute(datetime.now(UTC)) - timedelta(hours=6)
    start, end = base + timedelta(seconds=30), base + timedelta(hours=2, seconds=10)
    us = timedelta(microseconds=1)
    boundary = base + timedelta(minutes=15) - (base - EPOCH) % timedelta(minutes=15)
    inside = [
        entry(nginx, base),  # the widened window's first instant
        entry(nginx, base + timedelta(seconds=5), "ERROR"),  # before `from`, same minute
        entry(app, boundary - us, "WARN"),  # last instant of a bucket
        entry(app, boundary, "WARN"),  # first instant of the next
        entry(app, boundary, "FATAL"),
        entry(nginx, boundary + timedelta(minutes=30), "DEBUG"),
        entry(nginx, base + timedelta(hours=2, minutes=1) - us),  # widened window's last
    ]
    outside = [
        entry(nginx, base - us, "ERROR"),
        entry(app, base + timedelta(hours=2, minutes=1), "FATAL"),
    ]
    assert await log_repo.save_many(inside + outside) == len(inside) + len(outside)

    body = await get_ok(client, HISTOGRAM, {"from": iso(start), "to": iso(end)})
    # Counts are per whole minutes: the window counted is the minutes `from`/`to` touch.
    assert parse(body["from"]) == base
    assert parse(body["to"]) == base + timedelta(hours=2, minutes=1)
    # Sized by the span asked for (1h59m40s): one-minute buckets, 121 once widened.
    assert body["interval_s"] == 60
    assert len(body["buckets"]) == 121
    assert_buckets_cover(body)
    assert body["total"] == len(inside)
    await assert_matches_raw(db, body)
    by_start = {parse(b["start"]): b for b in body["buckets"]}
    assert by_start[boundary]["counts"]["WARN"] == 1
    assert by_start[boundary]["counts"]["FATAL"] == 1
    assert by_start[boundary - timedelta(minutes=1)]["counts"]["WARN"] == 1

    # Finer and coarser explicit intervals over the same rows agree with the raw rows too.
    for interval, seconds in (("1m", 60), ("15m", 900), ("1h", 3600), ("1d", 86400)):
        body = await get_ok(
            client, HISTOGRAM, {"from": iso(start), "to": iso(end), "interval": interval}
        )
        assert body["interval_s"] == seconds
        assert_buckets_cover(body)
        assert body["total"] == len(inside)
        await assert_matches_raw(db, body)


@pytest.mark.parametrize(
    ("since", "interval_s", "max_buckets"),
    [("15m", 60, 16), ("1h", 60, 61), ("24h", 900, 97), ("7d", 10800, 57)],
)
async def test_interval_is_sized_to_the_range(
    client: httpx.AsyncClient, db: Database, since: str, interval_s: int, max_buckets: int
) -> None:
    body = await get_ok(client, HISTOGRAM, {"since": since})
    assert body["interval_s"] == interval_s
    assert max_buckets - 1 <= len(body["buckets"]) <= max_buckets
    assert_buckets_cover(body)
    await assert_matches_raw(db, body)


async def test_explicit_interval_and_its_limit(client: httpx.AsyncClient, db: Database) -> None:
    body = await get_ok(client, HISTOGRAM, {"since": "24h", "interval": "1h"})
    assert body["interval_s"] == 3600
    assert len(body["buckets"]) in (24, 25)
    assert_buckets_cover(body)
    await assert_matches_raw(db, body)
    # A day of minutes is 1,441 buckets at most: allowed; a week of them is not.
    body = await get_ok(client, HISTOGRAM, {"since": "24h", "interval": "1m"})
    assert len(body["buckets"]) in (1440, 1441)
    refused = await client.get(HISTOGRAM, params={"since": "7d", "interval": "1m"})
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"].startswith("interval:")
    assert "1500" in refused.text


async def test_level_and_min_level_filters(client: httpx.AsyncClient, db: Database) -> None:
    body = await get_ok(client, HISTOGRAM, {"since": "24h", "level": ["error", "FATAL"]})
    assert body["levels"] == ["ERROR", "FATAL"]
    assert_buckets_cover(body)
    await assert_matches_raw(db, body, levels=["ERROR", "FATAL"])
    # Seed: 60 entries, levels cycling DEBUG..FATAL.
    assert body["total"] == SEED_ENTRIES * 2 // 5

    body = await get_ok(client, HISTOGRAM, {"since": "24h", "min_level": "warning"})
    assert body["levels"] == ["WARN", "ERROR", "FATAL"]
    assert_buckets_cover(body)
    await assert_matches_raw(db, body, levels=["WARN", "ERROR", "FATAL"])
    assert body["total"] == SEED_ENTRIES * 3 // 5


async def test_source_filters_by_name_and_id(client: httpx.AsyncClient, db: Database) -> None:
    ids = await source_ids(db)
    app, slow = ids["app_errors"], ids["db_slow_queries"]
    body = await get_ok(client, HISTOGRAM, {"since": "24h", "source": "app_errors"})
    assert body["sources"] == [app]
    assert body["total"] == 20
    await assert_matches_raw(db, body, sources=[app])

    params = {"since": "24h", "source": [str(slow), "app_errors"], "min_level": "error"}
    body = await get_ok(client, HISTOGRAM, params)
    assert body["sources"] == sorted([app, slow])
    assert_buckets_cover(body)
    await assert_matches_raw(db, body, levels=["ERROR", "FATAL"], sources=[app, slow])
    assert body["total"] == 2 * 20 * 2 // 5


# -- the summary --------------------------------------------------------------------------


async def raw_summary(db: Database, start: datetime, end: datetime) -> Counter[tuple[str, str]]:
    async with db.pool.acquire() as conn:
        rows = await conn.fetch(
            """
            SELECT s.name, e.level::text AS level, count(*) AS n
            FROM log_entries e JOIN log_sources s ON s.id = e.source_id
            WHERE e."timestamp" >= $1 AND e."timestamp" < $2
            GROUP BY 1, 2
            """,
            start,
            end,
        )
    return Counter({(row["name"], row["level"]): row["n"] for row in rows})


def assert_summary_matches(body: dict[str, Any], raw: Counter[tuple[str, str]]) -> None:
    for item in body["sources"]:
        name = item["source"]
        expected = {level: raw[(name, level)] for level in LEVELS}
        assert item["counts"] == expected, name
        assert item["events"] == sum(expected.values())
        errors = expected["ERROR"] + expected["FATAL"]
        assert item["errors"] == errors
        rate = round(errors / item["events"], 6) if item["events"] else 0.0
        assert item["error_rate"] == rate
    assert body["totals"]["events"] == sum(raw.values())
    assert body["totals"]["errors"] == sum(n for (_, lv), n in raw.items() if lv in LEVELS[3:])
    answered = {(e["source"], e["level"]): e["count"] for e in body["error_summary"]}
    assert answered == {k: n for k, n in raw.items() if k[1] in ("ERROR", "FATAL") and n}


async def test_summary_matches_raw_rows(
    client: httpx.AsyncClient, db: Database, log_repo: LogRepository
) -> None:
    body = await get_ok(client, SUMMARY)
    assert body["hours"] == 24
    start, end = parse(body["from"]), parse(body["to"])
    assert floor_minute(start) == start and floor_minute(end) == end
    assert body["totals"]["events"] == SEED_ENTRIES
    assert_summary_matches(body, await raw_summary(db, start, end))
    assert {s["source"] for s in body["sources"]} == {
        "nginx_access",
        "app_errors",
        "db_slow_queries",
    }

    # More rows: some inside the last 24 hours, one just outside it.
    ids = await source_ids(db)
    now = datetime.now(UTC)
    extra = [entry(ids["nginx_access"], now - timedelta(hours=2)) for _ in range(30)]
    extra += [entry(ids["app_errors"], now - timedelta(hours=3), "FATAL") for _ in range(4)]
    extra += [entry(ids["db_slow_queries"], now - timedelta(hours=24, minutes=5), "ERROR")]
    await log_repo.save_many(extra)

    body = await get_ok(client, SUMMARY, {"hours": 24, "top": 2})
    assert body["totals"]["events"] == SEED_ENTRIES + 34
    assert_summary_matches(body, await raw_summary(db, parse(body["from"]), parse(body["to"])))
    assert [t["source"] for t in body["top_sources"]] == ["nginx_access", "app_errors"]
    assert body["top_sources"][0]["events"] == 20 + 30
    assert body["top_sources"][0]["share"] == round(50 / 94, 6)
    fatal = {e["source"]: e for e in body["error_summary"] if e["level"] == "FATAL"}
    assert fatal["app_errors"]["count"] == 4 + 4  # 20 seed entries, one in five FATAL

    # A longer window takes in the row 24h05m ago.
    body = await get_ok(client, SUMMARY, {"hours": 25})
    assert body["totals"]["events"] == SEED_ENTRIES + 35
    assert_summary_matches(body, await raw_summary(db, parse(body["from"]), parse(body["to"])))
    # The upper bound of hours is accepted.
    assert (await client.get(SUMMARY, params={"hours": 8784})).status_code == 200


# -- the cache ----------------------------------------------------------------------------


async def test_cached_histogram_then_a_write_then_the_same_request_sees_it(
    client: httpx.AsyncClient, db: Database, log_repo: LogRepository
) -> None:
    now = datetime.now(UTC)
    # An explicit window, so the key cannot change with the clock during the test.
    params = {"from": iso(now - timedelta(hours=1)), "to": iso(now + timedelta(minutes=10))}
    first = await get_ok(client, HISTOGRAM, params)
    hits = cache_count("histogram", "hits")
    assert await get_ok(client, HISTOGRAM, params) == first
    assert cache_count("histogram", "hits") == hits + 1

    ids = await source_ids(db)
    await log_repo.save_many([entry(ids["app_errors"], datetime.now(UTC), "ERROR")])

    after = await get_ok(client, HISTOGRAM, params)
    assert cache_count("histogram", "hits") == hits + 1  # a miss: the write made a new key
    assert after["total"] == first["total"] + 1
    await assert_matches_raw(db, after)


async def test_write_to_another_source_keeps_a_cached_histogram(
    client: httpx.AsyncClient, db: Database, log_repo: LogRepository
) -> None:
    ids = await source_ids(db)
    now = datetime.now(UTC)
    window = {"from": iso(now - timedelta(hours=1)), "to": iso(now + timedelta(minutes=10))}
    one_source = {**window, "source": "app_errors"}
    first = await get_ok(client, HISTOGRAM, one_source)
    everything = await get_ok(client, HISTOGRAM, window)

    await log_repo.save_many([entry(ids["nginx_access"], datetime.now(UTC))])

    hits = cache_count("histogram", "hits")
    assert await get_ok(client, HISTOGRAM, one_source) == first
    assert cache_count("histogram", "hits") == hits + 1  # same key, still reachable
    # The histogram of every source read nginx_access: it sees the write.
    after = await get_ok(client, HISTOGRAM, window)
    assert cache_count("histogram", "hits") == hits + 1
    assert after["total"] == everything["total"] + 1


async def test_equivalent_requests_share_one_cache_entry(
    client: httpx.AsyncClient, db: Database
) -> None:
    ids = await source_ids(db)
    minute = floor_minute(datetime.now(UTC)) - timedelta(hours=3)
    first = {
        "from": iso(minute + timedelta(seconds=1)),
        "to": iso(minute + timedelta(hours=2, seconds=1)),
        "source": ["app_errors", "nginx_access"],
        "level": ["err", "fatal"],
    }
    second = {
        "from": iso(minute + timedelta(seconds=59)),
        "to": iso(minute + timedelta(hours=2, seconds=2)),
        "source": [str(ids["nginx_access"]), "app_errors", "app_errors"],
        "level": ["FATAL", "ERROR"],
    }
    body = await get_ok(client, HISTOGRAM, first)
    hits = cache_count("histogram", "hits")
    assert await get_ok(client, HISTOGRAM, second) == body
    assert cache_count("histogram", "hits") == hits + 1


async def test_cached_summary_then_a_write_then_the_same_request_sees_it(
    client: httpx.AsyncClient, db: Database, log_repo: LogRepository
) -> None:
    first = await get_ok(client, SUMMARY, {"hours": 24})
    hits = cache_count("summary", "hits")
    second = await get_ok(client, SUMMARY, {"hours": 24, "top": 1})
    # Another `top` is answered from the same cached summary (unless a minute ticked over).
    if second["from"] == first["from"]:
        assert cache_count("summary", "hits") == hits + 1
        assert second["sources"] == first["sources"]

    ids = await source_ids(db)
    await log_repo.save_many([entry(ids["db_slow_queries"], datetime.now(UTC), "FATAL")])

    after = await get_ok(client, SUMMARY, {"hours": 24})
    assert after["totals"]["events"] == first["totals"]["events"] + 1
    assert after["totals"]["errors"] == first["totals"]["errors"] + 1
    before_fatal = {(e["source"], e["level"]): e["count"] for e in first["error_summary"]}
    after_fatal = {(e["source"], e["level"]): e["count"] for e in after["error_summary"]}
    key = ("db_slow_queries", "FATAL")
    assert after_fatal[key] == before_fatal.get(key, 0) + 1
    assert_summary_matches(after, await raw_summary(db, parse(after["from"]), parse(after["to"])))


# -- bad input ----------------------------------------------------------------------------


HISTOGRAM_REFUSALS: list[tuple[str, dict[str, Any], str]] = [
    ("reversed", {"from": "2030-01-02T00:00:00Z", "to": "2030-01-01T00:00:00Z"}, "from"),
    ("from-after-now", {"from": "2999-01-01T00:00:00Z"}, "from"),
    ("too-long", {"from": "2000-01-01T00:00:00Z"}, "from"),
    ("since-too-long", {"since": "400d"}, "since"),
    ("far-future", {"from": "9999-12-31T00:00:00Z", "to": "9999-12-31T23:59:59Z"}, "to"),
    ("far-past", {"from": "0001-01-01T00:00:00Z", "to": "0001-01-02T00:00:00Z"}, "to"),
    ("since-overflow", {"since": "999999w"}, "since"),
    ("to-year-one", {"to": "0001-01-01T00:00:00Z"}, "to"),
    ("since-and-from", {"since": "1h", "from": "2030-01-01T00:00:00Z"}, "since"),
    ("since-bogus", {"since": "yesterday"}, "since"),
    ("from-bogus", {"from": "last tuesday"}, "from"),
    ("from-injection", {"from": INJECTION}, "from"),
    ("to-injection", {"to": INJECTION}, "to"),
    ("since-injection", {"since": INJECTION}, "since"),
    ("source-unknown", {"source": "no_such_source"}, "source"),
    ("source-unknown-id", {"source": "999999"}, "source"),
    ("source-injection", {"source": INJECTION}, "source"),
    ("source-too-many", {"source": ["app_errors"] * 101}, "source"),
    ("level-bogus", {"level": "bogus"}, "level"),
    ("level-injection", {"level": INJECTION}, "level"),
    ("min-level-bogus", {"min_level": "loud"}, "min_level"),
    ("level-and-min-level", {"level": "error", "min_level": "warn"}, "min_level"),
    ("interval-bogus", {"interval": "often"}, "interval"),
    ("interval-seconds", {"interval": "30s"}, "interval"),
    ("interval-uneven", {"interval": "7m"}, "interval"),
    ("interval-week", {"interval": "1w"}, "interval"),
    ("interval-injection", {"interval": INJECTION}, "interval"),
    ("too-many-buckets", {"since": "30d", "interval": "1m"}, "interval"),
    ("unknown-parameter", {"min_lvl": "error"}, "min_lvl"),
    ("injection-parameter", {INJECTION: "1"}, "DROP TABLE"),
]


@pytest.mark.parametrize(
    ("params", "param"),
    [(params, param) for _, params, param in HISTOGRAM_REFUSALS],
    ids=[name for name, _, _ in HISTOGRAM_REFUSALS],
)
async def test_histogram_refuses_bad_input_naming_the_parameter(
    client: httpx.AsyncClient, db: Database, params: dict[str, Any], param: str
) -> None:
    before = await stored_rows(db)
    response = await client.get(HISTOGRAM, params=params)
    assert response.status_code == 422, f"{response.status_code}: {response.text}"
    assert param in response.text, response.text
    assert await stored_rows(db) == before == (SEED_ENTRIES, SEED_ENTRIES)


SUMMARY_REFUSALS: list[tuple[str, dict[str, Any], str]] = [
    ("hours-0", {"hours": 0}, "hours"),
    ("hours-9999", {"hours": 9999}, "hours"),
    ("hours-negative", {"hours": -1}, "hours"),
    ("hours-text", {"hours": "day"}, "hours"),
    ("hours-injection", {"hours": INJECTION}, "hours"),
    ("top-0", {"top": 0}, "top"),
    ("top-huge", {"top": 10**9}, "top"),
    ("unknown-parameter", {"source": "app_errors"}, "source"),
]


@pytest.mark.parametrize(
    ("params", "param"),
    [(params, param) for _, params, param in SUMMARY_REFUSALS],
    ids=[name for name, _, _ in SUMMARY_REFUSALS],
)
async def test_summary_refuses_bad_input_naming_the_parameter(
    client: httpx.AsyncClient, db: Database, params: dict[str, Any], param: str
) -> None:
    before = await stored_rows(db)
    response = await client.get(SUMMARY, params=params)
    assert response.status_code == 422, f"{response.status_code}: {response.text}"
    assert param in response.text, response.text
    assert await stored_rows(db) == before == (SEED_ENTRIES, SEED_ENTRIES)


# -- the plan -----------------------------------------------------------------------------


def plan_relations(plan: Any) -> set[str]:
    """Every relation a JSON plan reads."""
    found: set[str] = set()
    if isinstance(plan, dict):
        if "Relation Name" in plan:
            found.add(plan["Relation Name"])
        for value in plan.values():
            found |= plan_relations(value)
    elif isinstance(plan, list):
        for item in plan:
            found |= plan_relations(item)
    return found


@pytest.mark.parametrize("sources", [None, [1, 2]], ids=["all-sources", "some-sources"])
async def test_histogram_query_reads_log_metrics_not_log_entries(
    db: Database, sources: list[int] | None
) -> None:
    now = datetime.now(UTC)
    query = plan_histogram(
        TimeRange(now - timedelta(days=1), now),
        interval=None,
        levels=[],
        min_level=None,
        source_ids=sources,
    )
    sql, args = histogram_args(query)
    assert sql == (HISTOGRAM_SQL if sources is None else HISTOGRAM_BY_SOURCE_SQL)
    async with db.pool.acquire() as conn:
        # Both the first (custom) and a generic plan: the statement is prepared and reused.
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        for _ in range(2):
            plan = json.loads(await conn.fetchval("EXPLAIN (FORMAT JSON) " + sql, *args))
            relations = plan_relations(plan)
            assert relations == {"log_metrics"}, relations
            await conn.execute("SET plan_cache_mode = force_custom_plan")
        await conn.execute("RESET plan_cache_mode")
