"""Both storage tiers answer alike: every query kind gives the same answer before and
after compaction, words are found the same way in both, cursors page exactly across a
compaction, and compaction moves every event exactly once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest

from logkeep.alerting import counts
from logkeep.config import Settings
from logkeep.db.compaction import compact, expire_sources
from logkeep.db.database import Database
from logkeep.db.partitions import ensure_partitions
from logkeep.db.repositories import LogRepository
from logkeep.domain.alert_rules import GroupBy
from logkeep.domain.bloom import filter_one_by_one, term_hashes
from logkeep.domain.chunks import decode_chunk, index_terms
from logkeep.domain.search import parse_search
from logkeep.domain.timerange import TimeRange, parse_duration

SLICE = timedelta(minutes=15)
Params = list[tuple[str, str]]


async def compact_all(db: Database) -> int:
    """Compact every slice (a clock a day ahead closes them all); events moved."""
    async with db.pool.acquire() as conn:
        report = await compact(
            conn,
            slice_length=SLICE,
            grace=timedelta(0),
            now=datetime.now(UTC) + timedelta(days=1),
        )
    assert not report.busy
    await db.cache.invalidate_sources(list(range(1, 10)))  # answers must come from PostgreSQL
    return report.events


async def tier_counts(db: Database) -> tuple[int, int]:
    async with db.pool.acquire() as conn:
        hot = await conn.fetchval("SELECT count(*) FROM log_entries")
        cold = await conn.fetchval("SELECT coalesce(sum(events), 0) FROM log_chunks")
    return int(hot), int(cold)


WORD_CASES: list[tuple[str, str, bool]] = [
    # (message, q, found)
    ("GET /api/zebra42 HTTP/1.1 200", "zebra42", True),
    ("GET /api/zebra42 HTTP/1.1 200", "/api/zebra42", True),
    ("GET /api/zebra421 HTTP/1.1 200", "zebra42", False),
    ("calling com.acme.PaymentService.charge", "PaymentService", True),
    ("calling com.acme.PaymentService.charge", "com.acme.PaymentService", True),
    ("calling com.acme.PaymentServiceImpl", "PaymentService", False),
    ("card declined for order ORD-123456 (code 7)", "ORD-123456", True),
    ("card declined for order ORD-1234567 (code 7)", "ORD-123456", False),
    ("card declined for order ORD-123456 (code 7)", "123456", True),
    ("card declined for order ORD-123456 (code 7)", "ord-123456", True),
    ("connect to 10.0.0.1:5432 refused", "10.0.0.1", True),
    ("connect to 10.0.0.12:5432 refused", "10.0.0.1", False),
    ("mail to user.name@example.com bounced", "user.name@example.com", True),
    ("mail to user.name@example.com bounced", "example", True),
    ("mail to user.name@example.com bounced", "name@example", True),
    ("table order_items locked", "order", True),
    ("table order_items locked", "items", True),
    ("PaymentDeclined: card declined", "declined", True),
    ("PaymentDeclined: card refused", "declined", False),
    ("Fehler in München: Zeitüberschreitung", "münchen", True),
    ("Fehler in München: Zeitüberschreitung", "zeitüberschreitung", True),
    ("Fehler in München: Zeitüberschreitung", "nchen", False),
    ("two words apart: alpha then beta", "beta alpha", True),
    ("only alpha here", "alpha beta", False),
    ("\u212aelvin scale", "kelvin", False),  # the Kelvin sign is not an ASCII k
]


@pytest.fixture
async def day_partitions(db: Database) -> datetime:
    now = datetime.now(UTC)
    async with db.pool.acquire() as conn:
        await ensure_partitions(conn, {(now + timedelta(days=d)).date() for d in (-1, 0, 1)})
    return now


async def test_words_are_found_alike_in_both_tiers(
    client: httpx.AsyncClient, db: Database, log_repo: LogRepository, day_partitions: datetime
) -> None:
    now = day_partitions
    messages = sorted({m for m, _, _ in WORD_CASES})
    at = {m: now - timedelta(hours=2, seconds=n) for n, m in enumerate(messages)}
    await log_repo.save_many(
        {"source_id": 1, "message": m, "timestamp": at[m], "metadata": {"n": n}}
        for n, m in enumerate(messages)
    )

    async def found(q: str) -> set[str]:
        response = await client.get("/api/v1/logs", params={"q": q, "since": "6h", "limit": 1000})
        assert response.status_code == 200, response.text
        return {i["message"] for i in response.json()["items"]}

    before = {q: await found(q) for _, q, _ in WORD_CASES}
    for message, q, expected in WORD_CASES:
        assert (message in before[q]) is expected, (message, q)
    assert await compact_all(db) >= len(messages)
    hot, cold = await tier_counts(db)
    assert hot == 0 and cold > 0
    after = {q: await found(q) for _, q, _ in WORD_CASES}
    assert after == before


async def test_chunks_with_filters_of_the_first_version_are_still_found(
    client: httpx.AsyncClient, db: Database, log_repo: LogRepository, day_partitions: datetime
) -> None:
    """Chunks compacted before migration 0007 keep blake2b filters (version 1): searches
    probe them with those hashes, so words and metadata are found as in any chunk."""
    now = day_partitions
    messages = sorted({m for m, _, _ in WORD_CASES})
    await log_repo.save_many(
        {
            "source_id": 1,
            "message": m,
            "timestamp": now - timedelta(hours=2, seconds=n),
            "metadata": {"n": n},
        }
        for n, m in enumerate(messages)
    )
    assert await compact_all(db) >= len(messages)
    async with db.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT id, source_id, min_ts, term_filter, payload FROM log_chunks"
        )
        for row in rows:
            chunk = decode_chunk(row["source_id"], row["payload"])
            terms = index_terms(chunk.messages, chunk.metadata)
            first = filter_one_by_one(terms, len(row["term_filter"]) * 8, version=1)
            assert first != row["term_filter"]
            await conn.execute(
                "UPDATE log_chunks SET bloom = $1, term_filter = NULL"
                " WHERE source_id = $2 AND min_ts = $3 AND id = $4",
                first,
                row["source_id"],
                row["min_ts"],
                row["id"],
            )
    await db.cache.invalidate_sources([1])

    async def found(params: Params) -> set[str]:
        response = await client.get("/api/v1/logs", params=[("since", "6h"), *params])
        assert response.status_code == 200, response.text
        return {i["message"] for i in response.json()["items"]}

    for message, q, expected in WORD_CASES:
        assert (message in await found([("q", q)])) is expected, (message, q)
    assert await found([("metadata.n", "3")]) == {messages[3]}
    assert await found([("metadata.n", "3"), ("q", "zebra42")]) == set()


async def test_a_process_of_the_first_filter_version_reads_every_new_chunk(
    db: Database, log_repo: LogRepository, day_partitions: datetime
) -> None:
    """During a rolling upgrade, processes of the earlier version probe `bloom` with
    blake2b hashes: new chunks pass every such probe, so those processes read and check
    them (slower, never wrong), while the new filter rules chunks out."""
    now = day_partitions
    await log_repo.save_many(
        {"source_id": 1, "message": f"event {n}", "timestamp": now - timedelta(hours=2, seconds=n)}
        for n in range(50)
    )
    await compact_all(db)
    strangers = [f"zebra{n}never" for n in range(20)]
    held = "SELECT count(*) FROM log_chunks c WHERE c.term_filter IS NOT NULL AND {}"
    async with db.pool.acquire() as conn:
        chunks = await conn.fetchval(held.format("true"))
        for version, column in ((1, "c.bloom"), (2, "c.term_filter")):
            pairs = [term_hashes(t, version) for t in strangers]
            found = [
                await conn.fetchval(
                    held.format(f"log_chunk_may_hold({column}, $1::bigint[], $2::bigint[])"),
                    [h1],
                    [h2],
                )
                for h1, h2 in pairs
            ]
            if version == 1:
                assert found == [chunks] * len(strangers)
            else:  # under 1 % false positives
                assert sum(found) <= len(strangers) * chunks * 0.05
    assert chunks > 0


async def seed_varied(log_repo: LogRepository, now: datetime, count: int = 1500) -> None:
    levels = ["DEBUG", "INFO", "WARN", "ERROR", "FATAL"]
    await log_repo.save_many(
        {
            "source_id": 1 + n % 3,
            "level": levels[n * 7 % 5],
            "message": (
                f"GET /api/v1/orders/{n} HTTP/1.1 {[200, 404, 503][n % 3]} "
                + (f"card declined for order ORD-{n:06d}" if n % 11 == 0 else "ok")
                + (" Zeitüberschreitung" if n % 97 == 0 else "")
            ),
            "metadata": {
                "status": [200, 404, 503][n % 3],
                "host": f"web-{n % 4}",
                "nested": {"k": n % 5, "deep": {"flag": n % 2 == 0}},
                "ratio": n / 8,
                **({"tags": ["a", "b"]} if n % 13 == 0 else {}),
                **({"big": 10**30} if n % 17 == 0 else {}),
            },
            # Several slices of several sources, some events sharing a timestamp.
            "timestamp": now - timedelta(minutes=5) - timedelta(seconds=(n // 2) * 13),
        }
        for n in range(count)
    )


QUERIES: list[Params] = [
    [("since", "24h")],
    [("since", "24h"), ("q", "declined")],
    [("since", "24h"), ("q", "ORD-000011")],
    [("since", "24h"), ("contains", "ZEITÜBER")],
    [("since", "24h"), ("contains", "orders/1")],
    [("since", "24h"), ("metadata.status", "503")],
    [("since", "24h"), ("metadata.nested.deep.flag", "true"), ("level", "ERROR")],
    [("since", "24h"), ("not.metadata.status", "200"), ("source", "nginx_access")],
    [("since", "24h"), ("metadata.big", "1e30")],
    [("since", "24h"), ("metadata.host", "web-1"), ("q", "card declined")],
    [("since", "3h"), ("min_level", "ERROR")],
    [("since", "24h"), ("source", "app_errors"), ("level", "WARN")],
]


def pinned(params: list[tuple[str, str]], now: datetime) -> list[tuple[str, str]]:
    """`params` with `since` as the from/to it means at `now`: two snapshots taken a minute
    apart then ask for the same window (histograms' bounds are whole minutes)."""
    out: list[tuple[str, str]] = []
    for name, value in params:
        if name == "since":
            out += [
                ("from", (now - parse_duration(value)).isoformat()),
                ("to", (now + timedelta(minutes=30)).isoformat()),
            ]
        else:
            out.append((name, value))
    return out


async def snapshot_every_answer(
    client: httpx.AsyncClient, db: Database, now: datetime
) -> dict[str, Any]:
    """Every query kind's answer over the seeded data, for windows fixed at `now`."""
    out: dict[str, Any] = {}
    for query_params in QUERIES:
        key = orjson.dumps(query_params).decode()
        params = pinned(query_params, now)
        items: list[Any] = []
        cursor = None
        while True:
            page_params = [*params, ("limit", "37"), *([("cursor", cursor)] if cursor else [])]
            response = await client.get(
                "/api/v1/logs", params=httpx.QueryParams(tuple(page_params))
            )
            assert response.status_code == 200, response.text
            body = response.json()
            items += body["items"]
            cursor = body["next_cursor"]
            if not cursor:
                break
        out[f"pages {key}"] = items
        export = await client.get(
            "/api/v1/logs",
            params=httpx.QueryParams(tuple(params)),
            headers={"Accept": "application/x-ndjson"},
        )
        out[f"export {key}"] = export.text
        out[f"facets {key}"] = (
            await client.get("/api/v1/logs/facets", params=httpx.QueryParams(tuple(params)))
        ).json()
        out[f"histogram {key}"] = (
            await client.get(
                "/api/v1/logs/histogram", params=httpx.QueryParams((*params, ("interval", "5m")))
            )
        ).json()
    out["stats histogram"] = (
        await client.get(
            "/api/v1/stats/histogram",
            params=httpx.QueryParams(tuple(pinned([("since", "24h")], now))),
        )
    ).json()
    summary = (await client.get("/api/v1/stats/summary?hours=24")).json()
    # It takes no from/to: its window is the server's last 24 hours, to the minute, which
    # moves when the minute turns between two snapshots. What it counts is compared; its
    # bounds are only checked to be the current ones.
    start, end = (datetime.fromisoformat(summary.pop(k)) for k in ("from", "to"))
    assert timedelta(hours=24) <= end - start <= timedelta(hours=24, minutes=1)
    assert timedelta(0) <= end - now <= timedelta(minutes=5)
    out["summary"] = summary
    out["recent"] = (await client.get("/api/v1/logs/recent?limit=200")).json()
    sample = out[f"pages {orjson.dumps(QUERIES[0]).decode()}"]
    for chosen in (sample[3], sample[len(sample) // 2], sample[-2]):
        where = {"source": chosen["source_id"], "at": chosen["timestamp"]}
        out[f"entry {chosen['id']}"] = (
            await client.get(f"/api/v1/logs/{chosen['id']}", params=where)
        ).json()
        out[f"context {chosen['id']}"] = (
            await client.get(
                f"/api/v1/logs/{chosen['id']}/context", params={**where, "before": 25, "after": 25}
            )
        ).json()
    # Alert evaluation's reads, inside one transaction as the evaluator runs them.
    window = TimeRange(now - timedelta(hours=3, seconds=7), now - timedelta(minutes=20, seconds=3))
    async with db.pool.acquire() as conn, conn.transaction():
        for params in QUERIES:
            query = parse_search(
                params,
                now=now,
                default_window=timedelta(hours=24),
                retention=timedelta(days=30),
                max_future=timedelta(hours=1),
            )
            key = orjson.dumps(params).decode()
            for name, group in (
                ("none", None),
                ("source", GroupBy(source=True)),
                ("host", GroupBy(False, ("host",))),
                ("nested", GroupBy(False, ("nested", "k"))),
            ):
                out[f"count {name} {key}"] = await counts.count(conn, query, window, None, group)
            out[f"samples {key}"] = await counts.samples(conn, query, window, None, 7)
            newest = await counts.newest(conn, query, window, None, 9)
            out[f"newest {key}"] = [(r["id"], r["message"]) for r in newest]
            after = (now - timedelta(hours=2), 10**6)
            following = await counts.entries_after(conn, query, window, None, after, 9)
            out[f"after {key}"] = [(r["id"], r["message"]) for r in following]
            out[f"buckets {key}"] = await counts.buckets(
                conn, query, window, timedelta(seconds=90), None, GroupBy(source=True), now
            )
    return out


async def test_every_query_kind_answers_the_same_before_and_after_compaction(
    client: httpx.AsyncClient, db: Database, log_repo: LogRepository, day_partitions: datetime
) -> None:
    now = datetime.now(UTC)
    await seed_varied(log_repo, now)
    before = await snapshot_every_answer(client, db, now)
    assert len(before[f"pages {orjson.dumps(QUERIES[0]).decode()}"]) > 1500  # with the seed
    moved = await compact_all(db)
    assert moved >= 1500
    hot, cold = await tier_counts(db)
    assert hot == 0 and cold >= 1500, "every slice was compacted"
    after = await snapshot_every_answer(client, db, now)
    assert after.keys() == before.keys()
    for key in before:
        assert after[key] == before[key], key


async def page_of(
    client: httpx.AsyncClient, params: list[tuple[str, str]], cursor: str | None
) -> dict[str, Any]:
    """One page of 50 of a search, from `cursor` (None: the first)."""
    page = [*params, ("limit", "50"), *([("cursor", cursor)] if cursor else [])]
    response = await client.get("/api/v1/logs", params=httpx.QueryParams(tuple(page)))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_half_compacted_data_answers_the_same(
    client: httpx.AsyncClient, db: Database, log_repo: LogRepository, day_partitions: datetime
) -> None:
    """Slices of one source compacted, the rest hot, plus late rows in compacted slices."""
    now = datetime.now(UTC)
    await seed_varied(log_repo, now, count=600)
    before = await snapshot_every_answer(client, db, now)
    async with db.pool.acquire() as conn:
        report = await compact(
            conn, slice_length=SLICE, grace=timedelta(0), now=now - timedelta(minutes=30)
        )
    assert report.events > 0
    hot, cold = await tier_counts(db)
    assert hot > 0 and cold > 0
    await db.cache.invalidate_sources([1, 2, 3])
    assert await snapshot_every_answer(client, db, now) == before


async def test_a_cursor_pages_exactly_while_compaction_runs(
    client: httpx.AsyncClient, db: Database, log_repo: LogRepository, day_partitions: datetime
) -> None:
    now = datetime.now(UTC)
    await seed_varied(log_repo, now, count=900)
    for params in ([("since", "24h")], [("since", "24h"), ("q", "declined")]):
        expected = []
        cursor = None
        while True:
            body = await page_of(client, params, cursor)
            expected += [i["id"] for i in body["items"]]
            cursor = body["next_cursor"]
            if not cursor:
                break
        seen: list[int] = []
        cursor = None
        step = 0
        while True:
            body = await page_of(client, params, cursor)
            seen += [i["id"] for i in body["items"]]
            cursor = body["next_cursor"]
            step += 1
            # Compact a few slices between pages: older and older parts of the window.
            async with db.pool.acquire() as conn:
                await compact(
                    conn,
                    slice_length=SLICE,
                    grace=timedelta(0),
                    now=now - timedelta(hours=5) + step * timedelta(minutes=20),
                )
            await db.cache.invalidate_sources([1, 2, 3])
            if not cursor:
                break
        assert seen == expected
        assert len(set(seen)) == len(seen)


async def test_compaction_merges_small_chunks_and_keeps_every_event_once(
    db: Database, log_repo: LogRepository, day_partitions: datetime
) -> None:
    now = datetime.now(UTC).replace(minute=30)
    base = now - timedelta(hours=3)
    for batch in range(5):  # one event per slice, then late arrivals in old slices
        await log_repo.save_many(
            [{"source_id": 2, "message": f"quiet {batch}", "timestamp": base + batch * SLICE}]
        )
        await compact_all(db)
    await log_repo.save_many(
        [{"source_id": 2, "message": f"late {n}", "timestamp": base + n * SLICE} for n in range(3)]
    )
    await compact_all(db)
    async with db.pool.acquire() as conn:
        chunks = await conn.fetch("SELECT events FROM log_chunks WHERE source_id = 2")
    assert sum(r["events"] for r in chunks) >= 8
    assert len(chunks) <= 2, "small chunks of one day are merged"


async def test_per_source_retention_expires_both_tiers_and_rollups(
    client: httpx.AsyncClient,
    db: Database,
    log_repo: LogRepository,
    settings: Settings,
) -> None:
    now = datetime.now(UTC)
    async with db.pool.acquire() as conn:
        await ensure_partitions(conn, {(now - timedelta(days=d)).date() for d in range(-1, 5)})
    await log_repo.save_many(
        {"source_id": 3, "message": f"old {d}", "timestamp": now - timedelta(days=d, hours=1)}
        for d in range(4)
    )
    await compact_all(db)
    await log_repo.save_many(
        [{"source_id": 3, "message": "hot and old", "timestamp": now - timedelta(days=3)}]
    )
    async with db.pool.acquire() as conn:
        await conn.execute("UPDATE log_sources SET retention_days = 2 WHERE id = 3")
        removed = sum((await expire_sources(conn, now)).values())
        left = await conn.fetch("SELECT min(bucket) AS oldest FROM log_metrics WHERE source_id = 3")
    assert removed == 3  # days 2 and 3 compacted, and the hot row
    await db.cache.invalidate_sources([3])
    body = (await client.get("/api/v1/logs?source=3&since=5d&limit=100")).json()
    messages = sorted(i["message"] for i in body["items"])
    assert [m for m in messages if m.startswith("old")] == ["old 0", "old 1"]
    assert left[0]["oldest"] >= now - timedelta(days=2, minutes=1)
