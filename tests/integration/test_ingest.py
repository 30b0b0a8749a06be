"""POST /api/v1/ingest through Redis and the worker into PostgreSQL."""

from __future__ import annotations

import asyncio
import gzip
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.db.repositories import SourceRepository
from logkeep.domain.entry import Level
from logkeep.domain.stream_rows import encode_row
from logkeep.ingest.worker import Worker
from tests.conftest import make_settings, running_app

NDJSON = {"Content-Type": "application/x-ndjson"}
TEXT = {"Content-Type": "text/plain"}


def ndjson(events: list[dict[str, Any]]) -> bytes:
    return b"\n".join(orjson.dumps(e) for e in events)


def now_iso(offset_s: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=offset_s)).isoformat()


async def drain(db: Database, settings: Settings) -> int:
    return await Worker(db, settings, name="test-worker").drain()


async def count_rows(db: Database, where: str = "true", *args: object) -> int:
    async with db.pool.acquire() as conn:
        n: int = await conn.fetchval(f"SELECT count(*) FROM log_entries WHERE {where}", *args)
    return n


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings) as http:
        yield http


async def test_ndjson_good_and_bad_lines(
    api: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    tag = uuid.uuid4().hex
    body = b"\n".join(
        [
            orjson.dumps({"source": "app_errors", "message": f"first {tag}", "level": "error"}),
            b'{"source": "app_errors", "message": ',  # malformed JSON
            orjson.dumps({"source": 99999, "message": "x"}),  # an id names no new source
            b"",  # blank lines are skipped, but still counted in line numbers
            orjson.dumps({"source": "app_errors", "message": f"second {tag}", "port": 8080}),
            orjson.dumps({"source": "app_errors", "message": "nul \x00 byte"}),
            orjson.dumps(
                {"source": "app_errors", "message": "old", "timestamp": "1970-01-01T00:00:00Z"}
            ),
            orjson.dumps(
                {"source": "app_errors", "message": "far", "timestamp": "2300-01-01T00:00:00Z"}
            ),
            orjson.dumps({"source": "app_errors", "message": "ts", "timestamp": "yesterday"}),
        ]
    )
    response = await api.post("/api/v1/ingest", content=body, headers=NDJSON)
    assert response.status_code == 202, response.text
    result = response.json()
    assert result["accepted"] == 2
    assert result["rejected"] == 6
    reasons = {e["line"]: e["reason"] for e in result["errors"]}
    assert set(reasons) == {2, 3, 6, 7, 8, 9}
    assert "not valid JSON" in reasons[2]
    assert "no source named or numbered '99999'" in reasons[3]
    assert "NUL" in reasons[6]
    assert "in the past" in reasons[7]
    assert "in the future" in reasons[8]
    assert "RFC 3339" in reasons[9]
    assert result["committed"] is False

    assert await drain(db, settings) == 2
    assert await count_rows(db, "message LIKE $1", f"%{tag}") == 2
    async with db.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT level, metadata FROM log_entries WHERE message = $1", f"second {tag}"
        )
    assert row is not None
    assert row["metadata"] == {"port": 8080}  # unknown top-level fields join metadata
    # The stream is trimmed once committed.
    assert await db.redis.xlen(db.keys.ingest_stream()) == 0
    assert int(await db.redis.get(db.keys.ingest_backlog_bytes()) or 0) == 0


async def test_json_array_and_queryable_through_the_api(
    api: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    tag = uuid.uuid4().hex
    events = [
        {"source": "app_errors", "message": f"array {i} {tag}", "level": "warn"} for i in range(3)
    ]
    response = await api.post("/api/v1/ingest", json=events)
    assert response.status_code == 202
    assert response.json()["accepted"] == 3
    await drain(db, settings)
    found = await api.get("/api/v1/logs", params={"contains": tag, "source": "app_errors"})
    assert found.status_code == 200
    messages = sorted(item["message"] for item in found.json()["items"])
    assert messages == [f"array {i} {tag}" for i in range(3)]
    assert {item["level"] for item in found.json()["items"]} == {"WARN"}


async def test_malformed_json_array_is_400(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/api/v1/ingest", content=b'[{"source": 1,', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["detail"]


async def test_text_lines_are_parsed_by_the_source_rules(
    api: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    stamp = datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
    tag = uuid.uuid4().hex[:12]
    lines = [
        f'10.0.0.1 - - [{stamp}] "GET /ok/{tag} HTTP/1.1" 200 512 "-" "curl/8.0"',
        f'10.0.0.2 - - [{stamp}] "POST /fail/{tag} HTTP/1.1" 503 0 "-" "curl/8.0"',
        f"this is not an access log line {tag}",
    ]
    response = await api.post(
        "/api/v1/ingest",
        params={"source": "nginx_access"},
        content="\n".join(lines).encode(),
        headers=TEXT,
    )
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 3
    await drain(db, settings)
    async with db.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT level::text, message, metadata FROM log_entries "
            "WHERE message LIKE $1 OR metadata->>'path' LIKE $1 ORDER BY level",
            f"%{tag}%",
        )
    by_level = {row["level"]: row for row in rows}
    assert set(by_level) == {"INFO", "ERROR"}
    assert by_level["ERROR"]["metadata"]["status"] == 503
    infos = [r for r in rows if r["level"] == "INFO"]
    assert len(infos) == 2
    unparsed = [r for r in infos if "_parse_error" in r["metadata"]]
    assert len(unparsed) == 1  # kept whole, with the reason, never dropped
    assert unparsed[0]["message"] == lines[2]


async def test_text_needs_a_source(api: httpx.AsyncClient) -> None:
    missing = await api.post("/api/v1/ingest", content=b"hello", headers=TEXT)
    assert missing.status_code == 422
    assert "?source=" in missing.json()["detail"]


async def test_sources_named_for_the_first_time_follow_the_first_use_setting(
    settings: Settings, db: Database
) -> None:
    """The same policy as the shippers' protocols (LOGKEEP_SOURCES_ON_FIRST_USE)."""
    tag = uuid.uuid4().hex[:8]
    refusing = settings.model_copy(update={"sources_on_first_use": "refuse"})
    async with running_app(refusing) as api:
        text = await api.post(
            "/api/v1/ingest", params={"source": f"new-{tag}"}, content=b"hello", headers=TEXT
        )
        assert text.status_code == 422
        assert f"'new-{tag}'" in text.json()["detail"]
        assert "LOGKEEP_SOURCES_ON_FIRST_USE=refuse" in text.json()["detail"]
        lines = await api.post(
            "/api/v1/ingest",
            content=ndjson(
                [
                    {"source": "app_errors", "message": f"known {tag}"},
                    {"source": f"new-{tag}", "message": f"first {tag}"},
                ]
            ),
            headers=NDJSON,
        )
        assert lines.json()["accepted"] == 1
        assert "LOGKEEP_SOURCES_ON_FIRST_USE=refuse" in lines.json()["errors"][0]["reason"]
    sources = SourceRepository(db.pool)
    assert await sources.resolve(f"new-{tag}") is None

    # The dev admin may write every source: it creates them, with the default type and
    # format, from NDJSON and from text lines alike.
    creating = settings.model_copy(update={"sources_on_first_use": "create"})
    async with running_app(creating) as api:
        lines = await api.post(
            "/api/v1/ingest",
            content=ndjson([{"source": f"new-{tag}", "message": f"first {tag}"}]),
            headers=NDJSON,
        )
        assert lines.json()["accepted"] == 1, lines.text
        text = await api.post(
            "/api/v1/ingest",
            params={"source": f"text-{tag}"},
            content=f"second {tag}".encode(),
            headers=TEXT,
        )
        assert text.json()["accepted"] == 1, text.text
    for name in (f"new-{tag}", f"text-{tag}"):
        created = await sources.resolve(name)
        assert created is not None and created["is_active"]
        assert (created["source_type"], created["format_type"]) == ("application", "text")
    assert await drain(db, settings) == 3  # with the known source's line refused nothing
    assert await count_rows(db, "message IN ($1, $2)", f"first {tag}", f"second {tag}") == 2


async def test_invalid_utf8_and_giant_lines_are_rejected_alone(
    api: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    tag = uuid.uuid4().hex
    giant = b"x" * (10 * 1024 * 1024)
    body = b"\n".join([f"good {tag}".encode(), b"bad \xff\xfe utf8", giant, f"also {tag}".encode()])
    response = await api.post(
        "/api/v1/ingest",
        params={"source": "app_errors", "format": "text"},
        content=body,
        headers=TEXT,
    )
    assert response.status_code == 202, response.text
    result = response.json()
    assert result["accepted"] == 2
    reasons = {e["line"]: e["reason"] for e in result["errors"]}
    assert "not valid UTF-8" in reasons[2]
    assert "over the 262144-byte line limit" in reasons[3]
    await drain(db, settings)
    assert await count_rows(db, "message LIKE $1", f"% {tag}") == 2


async def test_gzip_bodies(api: httpx.AsyncClient, db: Database, settings: Settings) -> None:
    tag = uuid.uuid4().hex
    body = gzip.compress(ndjson([{"source": "app_errors", "message": f"zipped {tag}"}]))
    response = await api.post(
        "/api/v1/ingest", content=body, headers={**NDJSON, "Content-Encoding": "gzip"}
    )
    assert response.status_code == 202
    assert response.json()["accepted"] == 1

    broken = await api.post(
        "/api/v1/ingest",
        content=body[:-12] + b"garbage",
        headers={**NDJSON, "Content-Encoding": "gzip"},
    )
    assert broken.status_code == 400
    assert "gzip" in broken.json()["detail"]

    not_gzip = await api.post(
        "/api/v1/ingest", content=b"plain", headers={**NDJSON, "Content-Encoding": "gzip"}
    )
    assert not_gzip.status_code == 400

    bomb = gzip.compress(b"\n" * (settings.ingest_max_body_bytes + 10))
    exploded = await api.post(
        "/api/v1/ingest", content=bomb, headers={**NDJSON, "Content-Encoding": "gzip"}
    )
    assert exploded.status_code == 413
    assert "decompressed" in exploded.json()["detail"]
    await drain(db, settings)
    assert await count_rows(db, "message = $1", f"zipped {tag}") == 1


async def test_request_limits_say_which(settings: Settings) -> None:
    limited = settings.model_copy(update={"ingest_max_lines": 3, "ingest_max_body_bytes": 2048})
    async with running_app(limited) as api:
        lines = ndjson([{"source": "app_errors", "message": f"m{i}"} for i in range(4)])
        too_many = await api.post("/api/v1/ingest", content=lines, headers=NDJSON)
        assert too_many.status_code == 413
        assert "over the limit of 3 per request" in too_many.json()["detail"]
        too_big = await api.post("/api/v1/ingest", content=b"x" * 4096, headers=NDJSON)
        assert too_big.status_code == 413
        assert "2048-byte limit" in too_big.json()["detail"]


async def test_unsupported_content_type_is_415(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/api/v1/ingest", content=b"<xml/>", headers={"Content-Type": "application/xml"}
    )
    assert response.status_code == 415


async def test_dedup_drops_events_seen_within_the_window(
    api: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    tag = uuid.uuid4().hex
    ts = now_iso()
    events = [
        {"source": "app_errors", "message": f"with id {tag}", "event_id": f"id-{tag}"},
        {"source": "app_errors", "message": f"with ts {tag}", "timestamp": ts},
        {"source": "app_errors", "message": f"bare {tag}"},  # no identity: never deduped
    ]
    first = await api.post("/api/v1/ingest", content=ndjson(events), headers=NDJSON)
    assert first.json()["accepted"] == 3
    again = await api.post("/api/v1/ingest", content=ndjson(events), headers=NDJSON)
    assert again.status_code == 202
    assert again.json()["accepted"] == 1
    assert again.json()["duplicates"] == 2
    # The same event twice in one request is a duplicate too.
    twice = [{"source": "app_errors", "message": f"twice {tag}", "event_id": f"t-{tag}"}] * 2
    inside = await api.post("/api/v1/ingest", content=ndjson(twice), headers=NDJSON)
    assert (inside.json()["accepted"], inside.json()["duplicates"]) == (1, 1)
    await drain(db, settings)
    assert await count_rows(db, "message LIKE $1", f"% {tag}") == 5


async def test_duplicates_between_new_events_leave_the_new_ones_whole(
    api: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    """The ingest script cuts duplicates out of the request's joined records: what is
    left around them is stored exactly, in order."""
    tag = uuid.uuid4().hex
    old = [
        {"source": "app_errors", "message": f"old {i} {tag}", "event_id": f"{tag}-{i}"}
        for i in range(2)
    ]
    await api.post("/api/v1/ingest", content=ndjson(old), headers=NDJSON)
    mixed: list[dict[str, Any]] = [
        {"source": "app_errors", "message": f"new 0 {tag} \u00e9", "metadata": {"k": [1]}},
        old[0],
        {"source": "app_errors", "message": f"new 1 {tag}", "event_id": f"{tag}-n"},
        old[1],
        {"source": "app_errors", "message": f"new 2 {tag}", "level": "ERROR"},
    ]
    answer = await api.post("/api/v1/ingest", content=ndjson(mixed), headers=NDJSON)
    assert (answer.json()["accepted"], answer.json()["duplicates"]) == (3, 2)
    await drain(db, settings)
    async with db.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT message, level::text, metadata FROM log_entries WHERE message LIKE $1 "
            "ORDER BY id",
            f"% {tag}%",
        )
    assert [(r["message"], r["level"]) for r in rows] == [
        (f"old 0 {tag}", "INFO"),
        (f"old 1 {tag}", "INFO"),
        (f"new 0 {tag} \u00e9", "INFO"),
        (f"new 1 {tag}", "INFO"),
        (f"new 2 {tag}", "ERROR"),
    ]
    assert rows[2]["metadata"] == {"k": [1]}


async def test_idempotency_key_replays_the_first_answer(
    api: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    tag = uuid.uuid4().hex
    body = ndjson([{"source": "app_errors", "message": f"idem {tag}"}] * 2)
    headers = {**NDJSON, "Idempotency-Key": f"batch-{tag}"}
    first = await api.post("/api/v1/ingest", content=body, headers=headers)
    assert first.json()["accepted"] == 2
    retry = await api.post("/api/v1/ingest", content=body, headers=headers)
    assert retry.json()["accepted"] == 0
    assert retry.json()["duplicates"] == 2
    assert retry.json()["replayed"] is True
    await drain(db, settings)
    assert await count_rows(db, "message = $1", f"idem {tag}") == 2


async def test_rate_limit_answers_429_with_retry_after(settings: Settings) -> None:
    limited = settings.model_copy(
        update={"rate_limit_source_eps": 5, "rate_limit_source_burst": 10}
    )
    async with running_app(limited) as api:
        events = [{"source": "app_errors", "message": f"r{i}"} for i in range(8)]
        ok = await api.post("/api/v1/ingest", content=ndjson(events), headers=NDJSON)
        assert ok.status_code == 202
        refused = await api.post("/api/v1/ingest", content=ndjson(events), headers=NDJSON)
        assert refused.status_code == 429
        retry_after = int(refused.headers["Retry-After"])
        assert 1 <= retry_after <= 3  # 6 events over the burst at 5/s
        assert "5 events/s" in refused.json()["detail"]


async def test_a_source_can_have_its_own_rate_limit(settings: Settings, db: Database) -> None:
    async with db.pool.acquire() as conn:
        await conn.execute(
            "UPDATE log_sources SET configuration = configuration || "
            "'{\"rate_limit_eps\": 1, \"rate_limit_burst\": 2}' WHERE name = 'db_slow_queries'"
        )
    async with running_app(settings) as api:
        events = [{"source": "db_slow_queries", "message": f"q{i}"} for i in range(3)]
        assert (
            await api.post("/api/v1/ingest", content=ndjson(events), headers=NDJSON)
        ).status_code == 202
        refused = await api.post("/api/v1/ingest", content=ndjson(events[:1]), headers=NDJSON)
        assert refused.status_code == 429
        other = [{"source": "app_errors", "message": "unaffected"}]
        assert (
            await api.post("/api/v1/ingest", content=ndjson(other), headers=NDJSON)
        ).status_code == 202


async def test_durable_mode_answers_after_commit(settings: Settings, db: Database) -> None:
    tag = uuid.uuid4().hex
    stop = asyncio.Event()
    worker = Worker(db, settings, name="durable")
    running = asyncio.create_task(worker.run(stop))
    try:
        async with running_app(settings) as api:
            response = await api.post(
                "/api/v1/ingest",
                params={"mode": "durable"},
                content=ndjson([{"source": "app_errors", "message": f"durable {tag}"}]),
                headers=NDJSON,
            )
            assert response.status_code == 200, response.text
            assert response.json()["committed"] is True
            # Committed means visible right away, in PostgreSQL and through the API.
            assert await count_rows(db, "message = $1", f"durable {tag}") == 1
            found = await api.get("/api/v1/logs", params={"contains": tag})
            assert [i["message"] for i in found.json()["items"]] == [f"durable {tag}"]
    finally:
        stop.set()
        await running


async def test_durable_mode_times_out_with_503_when_nothing_commits(settings: Settings) -> None:
    patient = settings.model_copy(update={"ingest_durable_timeout_s": 0.3})
    async with running_app(patient) as api:
        response = await api.post(
            "/api/v1/ingest",
            params={"mode": "durable"},
            content=ndjson([{"source": "app_errors", "message": "nobody writes me"}]),
            headers=NDJSON,
        )
    assert response.status_code == 503
    assert response.headers["Retry-After"]


async def test_full_backlog_answers_503(settings: Settings, db: Database) -> None:
    small = settings.model_copy(update={"ingest_max_backlog_bytes": 1024})
    async with running_app(small) as api:
        big = ndjson([{"source": "app_errors", "message": "x" * 600}] * 2)
        assert (await api.post("/api/v1/ingest", content=big, headers=NDJSON)).status_code == 202
        full = await api.post("/api/v1/ingest", content=big, headers=NDJSON)
        assert full.status_code == 503
        assert full.headers["Retry-After"]
        assert "backlog" in full.json()["detail"]
        await drain(db, settings)  # the worker catches up: accepted again
        assert (await api.post("/api/v1/ingest", content=big, headers=NDJSON)).status_code == 202


async def test_rule_changes_reach_ingest_within_a_second(settings: Settings, db: Database) -> None:
    sources = SourceRepository(db.pool, db.redis, db.keys)
    source = await sources.create(
        f"rules-{uuid.uuid4().hex[:8]}",
        source_type="app",
        format_type="regex",
        parsing_rules={"pattern": r"^(?P<user>\w+) did"},
    )
    async with running_app(settings) as api:
        params = {"source": source["name"]}
        await api.post("/api/v1/ingest", params=params, content=b"alice did it", headers=TEXT)
        await sources.update_rules(
            source["id"], {"pattern": r"^(?P<actor>\w+) did"}, format_type="regex"
        )
        deadline = time.monotonic() + 1.0
        while True:
            await api.post("/api/v1/ingest", params=params, content=b"bob did it", headers=TEXT)
            await drain(db, settings)
            async with db.pool.acquire() as conn:
                keys = await conn.fetchval(
                    "SELECT metadata ? 'actor' FROM log_entries WHERE source_id = $1 "
                    "AND message = 'bob did it' ORDER BY id DESC LIMIT 1",
                    source["id"],
                )
            if keys or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert keys, "the new rules were not used within a second"


async def test_inactive_source_is_rejected(settings: Settings, db: Database) -> None:
    sources = SourceRepository(db.pool, db.redis, db.keys)
    found = await sources.get_by_name("db_slow_queries")
    assert found is not None
    await sources.set_active(found["id"], False)
    await asyncio.sleep(0.6)
    async with running_app(settings) as api:
        response = await api.post(
            "/api/v1/ingest",
            content=ndjson([{"source": "db_slow_queries", "message": "m"}]),
            headers=NDJSON,
        )
    assert response.status_code == 422
    assert "inactive" in response.json()["errors"][0]["reason"]


async def test_redelivered_entries_are_written_once(settings: Settings, db: Database) -> None:
    """A worker that committed but died before acknowledging: the entry comes back."""
    tag = uuid.uuid4().hex
    async with running_app(settings) as api:
        await api.post(
            "/api/v1/ingest",
            content=ndjson([{"source": "app_errors", "message": f"once {tag}"}] * 3),
            headers=NDJSON,
        )
    quick = settings.model_copy(update={"worker_claim_idle_ms": 100})
    first = Worker(db, quick, name="first")
    await first.ensure_group()
    stop = asyncio.Event()
    entries = await first._collect(stop, idle_block_ms=50)
    assert entries
    # Commit without acknowledging, as a worker killed right after COMMIT would.
    await first._commit_once(entries)
    await asyncio.sleep(0.2)
    second = Worker(db, quick, name="second")
    assert await second.drain() == 0  # claimed, found in the ledger, skipped
    assert await count_rows(db, "message = $1", f"once {tag}") == 3
    assert await db.redis.xlen(db.keys.ingest_stream()) == 0


async def test_two_workers_share_the_stream_without_duplicates(
    settings: Settings, db: Database
) -> None:
    tag = uuid.uuid4().hex
    async with running_app(settings) as api:
        for batch in range(20):
            events = [{"source": "app_errors", "message": f"{tag} {batch}-{i}"} for i in range(50)]
            await api.post("/api/v1/ingest", content=ndjson(events), headers=NDJSON)
    async with Database(settings) as other_db:
        a = Worker(db, settings, name="a")
        b = Worker(other_db, settings, name="b")
        done = await asyncio.gather(a.drain(), b.drain())
    assert sum(done) == 1000
    async with db.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT count(*), count(DISTINCT message) FROM log_entries WHERE message LIKE $1",
            f"{tag} %",
        )
    assert row is not None
    assert (row[0], row[1]) == (1000, 1000)


async def test_corrupt_stream_entry_goes_to_dead_letters(settings: Settings, db: Database) -> None:
    worker = Worker(db, settings, name="dl")
    await worker.ensure_group()
    await db.redis.xadd(db.keys.ingest_stream(), {"n": 1, "e": b"\xff not a record"})
    await worker.drain()
    async with db.pool.acquire() as conn:
        rows = await conn.fetch("SELECT reason, raw FROM ingest_dead_letters")
    assert len(rows) == 1
    assert "not the ingest record format" in rows[0]["reason"]
    assert "not a record" in rows[0]["raw"]
    assert await db.redis.xlen(db.keys.ingest_stream()) == 0


async def test_an_entry_postgresql_refuses_becomes_dead_letters_and_the_rest_lands(
    settings: Settings, db: Database
) -> None:
    """COPY tuples are stored undecoded: one PostgreSQL refuses (metadata that is not
    JSON, which the API never writes) turns its entry's events into dead letters, whole,
    and the other entries of the batch are committed."""
    worker = Worker(db, settings, name="refused")
    await worker.ensure_group()
    found = await SourceRepository(db.pool).get_by_name("app_errors")
    assert found is not None
    ts_us = int(datetime.now(UTC).timestamp() * 1e6)
    tag = uuid.uuid4().hex

    def row(message: str, metadata: bytes) -> bytes:
        return encode_row(found["id"], ts_us, Level.WARN, message.encode(), metadata)

    stream = db.keys.ingest_stream()
    bad = row(f"bad neighbour {tag}", b"{}") + row(f"refused {tag}", b"{not json")
    await db.redis.xadd(stream, {"n": 2, "c": bad})
    await db.redis.xadd(stream, {"n": 1, "c": row(f"good {tag}", b'{"k":1}')})
    assert await worker.drain() == 1
    async with db.pool.acquire() as conn:
        stored = await conn.fetch(
            "SELECT message, metadata FROM log_entries WHERE message LIKE $1", f"% {tag}"
        )
        dead = await conn.fetch("SELECT source_id, reason, raw FROM ingest_dead_letters")
    assert [(r["message"], r["metadata"]) for r in stored] == [(f"good {tag}", {"k": 1})]
    assert len(dead) == 2
    assert all(d["source_id"] == found["id"] for d in dead)
    assert all(d["reason"].startswith("PostgreSQL refused the entry") for d in dead)
    raws = sorted(d["raw"] for d in dead)  # each row as JSON text, its metadata as it came
    assert f'"bad neighbour {tag}",{{}}]' in raws[0]
    assert f'"refused {tag}",{{not json]' in raws[1]
    assert await db.redis.xlen(stream) == 0


async def test_stream_entries_of_the_earlier_json_format_are_committed(
    settings: Settings, db: Database
) -> None:
    """Entries an API of an earlier version appended (JSON records) still land, with their
    rollups, beside entries of COPY tuples."""
    worker = Worker(db, settings, name="legacy")
    await worker.ensure_group()
    now = datetime.now(UTC).replace(microsecond=0)
    found = await SourceRepository(db.pool).get_by_name("app_errors")
    assert found is not None
    source_id = found["id"]
    records = [
        orjson.dumps([source_id, int(now.timestamp() * 1e6), "WARN", f"legacy {i}", {"i": i}])
        for i in range(3)
    ]
    dead = b'{"source_id": null, "raw": "old raw", "reason": "old reason"}'
    await db.redis.xadd(db.keys.ingest_stream(), {"n": 4, "e": b"\n".join([*records, dead])})
    warnings = (
        "SELECT coalesce(sum(count), 0) FROM log_metrics WHERE source_id = $1 AND level = 'WARN'"
    )
    async with db.pool.acquire() as conn:
        counted_before = await conn.fetchval(warnings, source_id)
    assert await worker.drain() == 3
    async with db.pool.acquire() as conn:
        stored = await conn.fetch(
            "SELECT message, level::text FROM log_entries WHERE message LIKE 'legacy %' "
            "ORDER BY message"
        )
        counted = await conn.fetchval(warnings, source_id) - counted_before
        reasons = await conn.fetch("SELECT reason FROM ingest_dead_letters")
    assert [(r["message"], r["level"]) for r in stored] == [
        (f"legacy {i}", "WARN") for i in range(3)
    ]
    assert counted == 3
    assert [r["reason"] for r in reasons] == ["old reason"]


async def test_metrics_count_outcomes_by_source(api: httpx.AsyncClient) -> None:
    await api.post(
        "/api/v1/ingest",
        content=ndjson(
            [{"source": "app_errors", "message": "m"}, {"source": "x!", "message": "m"}]
        ),
        headers=NDJSON,
    )
    text = (await api.get("/metrics")).text
    assert 'logkeep_ingest_events_total{outcome="accepted",source="app_errors"}' in text
    assert 'logkeep_ingest_events_total{outcome="rejected",source="unknown"}' in text
    assert "logkeep_ingest_stream_length" in text
    assert "logkeep_ingest_backlog_bytes" in text


async def test_redis_down_answers_503(
    stores: Any, database_url_fixture: str, short_tmp: Any
) -> None:
    from logkeep.embedded import EmbeddedRedis

    redis_server = EmbeddedRedis(short_tmp / "redis", ephemeral=True)
    redis_server.start()
    try:
        settings = make_settings(database_url_fixture, redis_server.url())
        async with running_app(settings) as api:
            ok = await api.post(
                "/api/v1/ingest",
                content=ndjson([{"source": "app_errors", "message": "before"}]),
                headers=NDJSON,
            )
            assert ok.status_code == 202
            redis_server.stop()
            down = await api.post(
                "/api/v1/ingest",
                content=ndjson([{"source": "app_errors", "message": "during"}]),
                headers=NDJSON,
            )
            assert down.status_code == 503
            assert down.headers["Retry-After"]
            assert "Redis" in down.json()["detail"]
    finally:
        redis_server.stop()
    conn = await asyncpg.connect(database_url_fixture)
    try:
        # Nothing was written around the buffer.
        assert await conn.fetchval("SELECT count(*) FROM log_entries WHERE message = 'during'") == 0
    finally:
        await conn.close()


async def test_same_second_lines_from_different_clients_are_all_kept(
    api: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    """Dedup compares whole events: 50 hits on one URL in one second are 50 events."""
    stamp = datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
    tag = uuid.uuid4().hex[:10]
    lines = [f'10.9.0.{i} - - [{stamp}] "GET /{tag} HTTP/1.1" 200 5 "-" "ua"' for i in range(50)]
    body = "\n".join(lines).encode()
    first = await api.post(
        "/api/v1/ingest", params={"source": "nginx_access"}, content=body, headers=TEXT
    )
    assert (first.json()["accepted"], first.json()["duplicates"]) == (50, 0)
    # The same lines again (a shipper's retry) are duplicates.
    again = await api.post(
        "/api/v1/ingest", params={"source": "nginx_access"}, content=body, headers=TEXT
    )
    assert (again.json()["accepted"], again.json()["duplicates"]) == (0, 50)
    await drain(db, settings)
    assert await count_rows(db, "metadata->>'path' = $1", f"/{tag}") == 50


async def test_a_source_may_turn_content_dedup_off(
    api: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    async with db.pool.acquire() as conn:
        await conn.execute(
            'UPDATE log_sources SET configuration = configuration || \'{"dedup": "off"}\' '
            "WHERE name = 'app_errors'"
        )
    await asyncio.sleep(0.6)  # the rules cache of this process
    await db.redis.delete(db.keys.source_rules_by_name("app_errors"))
    event = [{"source": "app_errors", "message": "same", "timestamp": now_iso()}]
    await asyncio.sleep(0.6)
    for _ in range(2):
        response = await api.post("/api/v1/ingest", content=ndjson(event), headers=NDJSON)
        assert response.json()["accepted"] == 1


async def test_durable_duplicate_is_not_committed_before_its_original(
    settings: Settings, db: Database
) -> None:
    """A durable retry whose events were all accepted before must wait for them."""
    tag = uuid.uuid4().hex
    patient = settings.model_copy(update={"ingest_durable_timeout_s": 0.3})
    event = [{"source": "app_errors", "message": f"retry {tag}", "timestamp": now_iso()}]
    async with running_app(patient) as api:
        params = {"mode": "durable"}
        first = await api.post(
            "/api/v1/ingest", params=params, content=ndjson(event), headers=NDJSON
        )
        assert first.status_code == 503  # no worker yet
        retry = await api.post(
            "/api/v1/ingest", params=params, content=ndjson(event), headers=NDJSON
        )
        assert retry.status_code == 503, retry.text  # not "committed": nothing is, yet
    # The last retry may wait the usual time: a loaded machine commits in more than 0.3 s.
    async with running_app(settings) as api:
        stop = asyncio.Event()
        worker = asyncio.create_task(Worker(db, settings, name="late").run(stop))
        try:
            final = await api.post(
                "/api/v1/ingest", params=params, content=ndjson(event), headers=NDJSON
            )
        finally:
            stop.set()
            await worker
    assert final.status_code == 200, final.text
    assert final.json()["duplicates"] == 1
    assert await count_rows(db, "message = $1", f"retry {tag}") == 1


async def test_worker_recovers_when_the_stream_is_lost(
    api: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    worker = Worker(db, settings, name="nogroup")
    await worker.ensure_group()
    await db.redis.delete(db.keys.ingest_stream())  # a Redis without persistence restarted
    tag = uuid.uuid4().hex
    await api.post(
        "/api/v1/ingest",
        content=ndjson([{"source": "app_errors", "message": f"after loss {tag}"}]),
        headers=NDJSON,
    )
    assert await worker.drain() == 1
    assert await count_rows(db, "message = $1", f"after loss {tag}") == 1


async def test_a_lone_surrogate_rejects_its_event_only(api: httpx.AsyncClient) -> None:
    body = (
        b'[{"source": "app_errors", "message": "bad \\ud800"},'
        b' {"source": "app_errors", "message": "ok"}]'
    )
    response = await api.post(
        "/api/v1/ingest", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 1
    assert response.json()["errors"][0]["line"] == 1
    assert "UTF-8" in response.json()["errors"][0]["reason"]


async def test_idempotency_keys_belong_to_their_client(db: Database, settings: Settings) -> None:
    from logkeep.cache.ingest_buffer import DedupWindow, IngestBuffer

    buffer = IngestBuffer(db.ingest_client, db.keys, dedup=DedupWindow(60), max_backlog_bytes=10**9)
    first = await buffer.append(
        [b"[1]"], [None], idempotency_key="1", idempotency_ttl_s=60, client="a"
    )
    other = await buffer.append(
        [b"[2]"], [None], idempotency_key="1", idempotency_ttl_s=60, client="b"
    )
    again = await buffer.append(
        [b"[1]"], [None], idempotency_key="1", idempotency_ttl_s=60, client="a"
    )
    assert (first.kept, other.kept, again.kept) == (1, 1, 0)
    assert again.replayed and not other.replayed
