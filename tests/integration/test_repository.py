from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from argon2 import PasswordHasher

from logkeep import Database, LogEntry, LogRepository
from logkeep.cache.keys import Keys
from logkeep.cache.query_cache import QueryCache
from logkeep.db.repositories import SourceRepository, UnknownSource, UserRepository
from logkeep.domain.entry import InvalidLogEntry


async def _source_id(db: Database, name: str) -> int:
    async with db.pool.acquire() as conn:
        source_id: int = await conn.fetchval("SELECT id FROM log_sources WHERE name = $1", name)
    return source_id


async def _count(db: Database, where: str = "true", *args: Any) -> int:
    async with db.pool.acquire() as conn:
        n: int = await conn.fetchval(f"SELECT count(*) FROM log_entries WHERE {where}", *args)
    return n


async def test_save_log_entry_returns_id_of_a_committed_row(
    db: Database, log_repo: LogRepository
) -> None:
    source_id = await _source_id(db, "app_errors")
    entry_id = await log_repo.save_log_entry(
        {
            "message": "disk full",
            "source_id": source_id,
            "level": "error",
            "metadata": {"host": "db-1", "free_bytes": 0},
        }
    )
    async with db.pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM log_entries WHERE id = $1", entry_id)
    assert row is not None
    assert (row["message"], row["level"], row["source_id"]) == ("disk full", "ERROR", source_id)
    assert row["metadata"] == {"host": "db-1", "free_bytes": 0}


async def test_log_entry_objects_are_accepted(db: Database, log_repo: LogRepository) -> None:
    source_id = await _source_id(db, "nginx_access")
    stamp = datetime.now(UTC) - timedelta(minutes=3)
    entry_id = await log_repo.save_log_entry(LogEntry("GET /", source_id, timestamp=stamp))
    async with db.pool.acquire() as conn:
        saved = await conn.fetchval('SELECT "timestamp" FROM log_entries WHERE id = $1', entry_id)
    assert saved == stamp


async def test_cached_read_then_write_then_read_sees_the_write(
    db: Database, log_repo: LogRepository
) -> None:
    source_id = await _source_id(db, "app_errors")
    before = await log_repo.get_recent_logs(limit=5, source_id=source_id)
    # Prove the next read is served from the cache: a row written behind the
    # repository's back (no invalidation) stays invisible while the cache holds.
    async with db.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO log_entries (source_id, \"timestamp\", message) VALUES ($1, now(), 'x')",
            source_id,
        )
    assert await log_repo.get_recent_logs(limit=5, source_id=source_id) == before
    entry_id = await log_repo.save_log_entry({"message": "fresh", "source_id": source_id})
    after = await log_repo.get_recent_logs(limit=5, source_id=source_id)
    assert after[0]["id"] == entry_id
    assert after[0]["message"] == "fresh"
    # The unfiltered read and the summary, cached earlier or not, see it too.
    everything = await log_repo.get_recent_logs(limit=1)
    assert everything[0]["id"] == entry_id


async def test_write_to_one_source_keeps_other_sources_cached(
    db: Database, log_repo: LogRepository
) -> None:
    app_id = await _source_id(db, "app_errors")
    nginx_id = await _source_id(db, "nginx_access")
    await log_repo.get_recent_logs(limit=3, source_id=nginx_id)
    hits = await db.redis.keys(f"{db.keys.prefix}cache:*")
    await log_repo.save_log_entry({"message": "other source", "source_id": app_id})
    # Same key is built again: nginx's generation did not move.
    await log_repo.get_recent_logs(limit=3, source_id=nginx_id)
    assert sorted(await db.redis.keys(f"{db.keys.prefix}cache:*")) == sorted(hits)


async def test_recent_logs_filters_and_orders(db: Database, log_repo: LogRepository) -> None:
    source_id = await _source_id(db, "db_slow_queries")
    rows = await log_repo.get_recent_logs(limit=100, source_id=source_id, level="warn")
    assert len(rows) == await _count(db, "source_id = $1 AND level = 'WARN'", source_id)
    assert rows and all(r["level"] == "WARN" and r["source_id"] == source_id for r in rows)
    newest = await log_repo.get_recent_logs(limit=7)
    assert len(newest) == 7
    stamps = [r["timestamp"] for r in newest]
    assert stamps == sorted(stamps, reverse=True)
    async with db.pool.acquire() as conn:
        expected = await conn.fetch(
            'SELECT id FROM log_entries ORDER BY "timestamp" DESC, id DESC LIMIT 7'
        )
    assert [r["id"] for r in newest] == [r["id"] for r in expected]


@pytest.mark.parametrize("limit", [0, -1, 1001])
async def test_recent_logs_rejects_bad_limits(log_repo: LogRepository, limit: int) -> None:
    with pytest.raises(ValueError, match="limit"):
        await log_repo.get_recent_logs(limit=limit)


async def test_error_summary_matches_raw_rows(db: Database, log_repo: LogRepository) -> None:
    summary = await log_repo.get_error_summary(hours=24)
    async with db.pool.acquire() as conn:
        raw = await conn.fetch(
            "SELECT s.name, count(*) AS total, "
            "count(*) FILTER (WHERE level = 'ERROR') AS errors, "
            "count(*) FILTER (WHERE level = 'FATAL') AS fatal "
            "FROM log_entries e JOIN log_sources s ON s.id = e.source_id "
            "WHERE \"timestamp\" >= date_trunc('minute', now() - interval '24 hours') "
            "GROUP BY s.name"
        )
    expected = {r["name"]: (r["total"], r["errors"], r["fatal"]) for r in raw}
    got = {s["source"]: (s["total"], s["errors"], s["fatal"]) for s in summary["sources"]}
    assert got == expected
    assert all(0 <= s["error_rate"] <= 1 for s in summary["sources"])


async def test_summary_sees_a_new_error_after_a_cached_read(
    db: Database, log_repo: LogRepository
) -> None:
    source_id = await _source_id(db, "nginx_access")
    first = await log_repo.get_error_summary(hours=1)
    await log_repo.save_log_entry({"message": "boom", "source_id": source_id, "level": "FATAL"})
    second = await log_repo.get_error_summary(hours=1)

    def fatal(summary: dict[str, Any]) -> int:
        return sum(s["fatal"] for s in summary["sources"] if s["source"] == "nginx_access")

    assert fatal(second) == fatal(first) + 1


async def test_save_many_copies_everything_in_one_go(db: Database, log_repo: LogRepository) -> None:
    source_id = await _source_id(db, "app_errors")
    before = await _count(db)
    now = datetime.now(UTC)
    batch = [
        {
            "message": f"line {n}",
            "source_id": source_id,
            "level": "INFO",
            "timestamp": (now - timedelta(seconds=n)).isoformat(),
            "metadata": {"n": n},
        }
        for n in range(2500)
    ]
    assert await log_repo.save_many(batch) == 2500
    assert await _count(db) == before + 2500
    async with db.pool.acquire() as conn:
        metadata = await conn.fetchval("SELECT metadata FROM log_entries WHERE message = 'line 42'")
    assert metadata == {"n": 42}


async def test_save_many_is_all_or_nothing(db: Database, log_repo: LogRepository) -> None:
    source_id = await _source_id(db, "app_errors")
    before = await _count(db)
    batch: list[dict[str, Any]] = [{"message": "ok", "source_id": source_id}] * 5
    batch.append({"message": "bad\x00", "source_id": source_id})
    with pytest.raises(InvalidLogEntry, match=r"entries\[5\]\.message: contains a NUL"):
        await log_repo.save_many(batch)
    with pytest.raises(UnknownSource, match="9999"):
        await log_repo.save_many(
            [{"message": "ok", "source_id": source_id}, {"message": "ok", "source_id": 9999}]
        )
    assert await _count(db) == before


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"message": "", "source_id": 1}, "message: must not be empty"),
        ({"message": "x", "source_id": 1, "level": "LOUD"}, "unknown level"),
        ({"message": "x", "source_id": 1, "timestamp": "1990-01-01T00:00:00Z"}, "in the past"),
        ({"message": "x", "source_id": 1, "timestamp": "2090-01-01T00:00:00Z"}, "in the future"),
        ({"message": "x", "source_id": 1, "metadata": {"k": "v\x00"}}, "NUL"),
        ({"message": "x", "source_id": 1, "colour": "red"}, "unknown field"),
        ({"message": "x"}, "required"),
    ],
)
async def test_bad_entries_are_refused_before_any_write(
    db: Database, log_repo: LogRepository, entry: dict[str, Any], reason: str
) -> None:
    before = await _count(db)
    with pytest.raises(ValueError, match=reason):
        await log_repo.save_log_entry(entry)
    assert await _count(db) == before


async def test_unknown_and_inactive_sources_are_refused(
    db: Database, log_repo: LogRepository, source_repo: SourceRepository
) -> None:
    with pytest.raises(UnknownSource):
        await log_repo.save_log_entry({"message": "x", "source_id": 424242})
    source = await source_repo.create("retired", source_type="app", format_type="json")
    await source_repo.set_active(source["id"], False)
    with pytest.raises(UnknownSource):
        await log_repo.save_log_entry({"message": "x", "source_id": source["id"]})


async def test_injection_strings_are_stored_verbatim(db: Database, log_repo: LogRepository) -> None:
    nasty = "'); DROP TABLE log_entries; -- \" $1 %s {}"
    source_id = await _source_id(db, "app_errors")
    entry_id = await log_repo.save_log_entry(
        {"message": nasty, "source_id": source_id, "metadata": {nasty: nasty}}
    )
    async with db.pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT message, metadata FROM log_entries WHERE id = $1", entry_id
        )
    assert row is not None
    assert row["message"] == nasty and row["metadata"] == {nasty: nasty}


async def test_reads_work_without_redis(db: Database, settings: Any) -> None:
    # A client pointing at a socket nobody listens on: Redis is down.
    dead = aioredis.from_url("unix:///tmp/logkeep-no-such-redis.sock", socket_timeout=0.2)
    repo = LogRepository(db.pool, dead, cache=QueryCache(dead, Keys("t:"), backoff_s=60))
    try:
        rows = await repo.get_recent_logs(limit=3)
        summary = await repo.get_error_summary()
        source_id = await _source_id(db, "app_errors")
        entry_id = await repo.save_log_entry({"message": "no redis", "source_id": source_id})
        again = await repo.get_recent_logs(limit=1, source_id=source_id)
    finally:
        await dead.aclose()
    assert len(rows) == 3
    assert summary["sources"]
    assert again[0]["id"] == entry_id


async def test_source_repository(source_repo: SourceRepository) -> None:
    created = await source_repo.create(
        "edge.proxy-2",
        source_type="web",
        format_type="nginx_combined",
        parsing_rules={"pattern": "combined"},
    )
    assert (await source_repo.resolve("edge.proxy-2"))["id"] == created["id"]  # type: ignore[index]
    assert (await source_repo.resolve(str(created["id"])))["name"] == "edge.proxy-2"  # type: ignore[index]
    assert await source_repo.resolve("nope") is None
    updated = await source_repo.update_rules(created["id"], {"pattern": "main"}, "nginx_main")
    assert updated is not None
    assert updated["parsing_rules"] == {"pattern": "main"}
    assert updated["format_type"] == "nginx_main"
    assert updated["updated_at"] > created["updated_at"]
    names = [s["name"] for s in await source_repo.list()]
    assert "edge.proxy-2" in names and names == sorted(names)
    with pytest.raises(asyncpg.UniqueViolationError):
        await source_repo.create("edge.proxy-2", source_type="web", format_type="json")
    with pytest.raises(asyncpg.CheckViolationError):
        await source_repo.create("Bad Name!", source_type="web", format_type="json")


async def test_user_repository(user_repo: UserRepository) -> None:
    user = await user_repo.create("dana", "Dana@Example.com", "s3cret-pass", "analyst")
    assert "password_hash" not in user
    assert await user_repo.authenticate("dana", "wrong") is None
    assert await user_repo.authenticate("nobody-here", "s3cret-pass") is None
    authed = await user_repo.authenticate("dana", "s3cret-pass")
    assert authed is not None and authed["last_login"] is not None
    assert "password_hash" not in authed
    with pytest.raises(asyncpg.UniqueViolationError):
        await user_repo.create("dana2", "dana@example.com", "x-password", "viewer")
    listed = {u["username"]: u for u in await user_repo.list()}
    assert listed["dana"]["role"] == "analyst"
    assert all("password_hash" not in u for u in listed.values())


async def test_user_lookups_and_inactive_accounts(db: Database, user_repo: UserRepository) -> None:
    created = await user_repo.create("erin", "erin@example.com", "erin-password", "viewer")
    by_id = await user_repo.get(created["id"])
    by_name = await user_repo.get_by_username("erin")
    assert by_id is not None and by_name is not None
    assert by_id["username"] == by_name["username"] == "erin"
    assert "password_hash" not in by_id and "password_hash" not in by_name
    assert await user_repo.get(999_999) is None
    assert await user_repo.get_by_username("nobody") is None
    async with db.pool.acquire() as conn:
        await conn.execute("UPDATE users SET is_active = false WHERE id = $1", created["id"])
    # The right password for a disabled account is refused like a wrong one.
    assert await user_repo.authenticate("erin", "erin-password") is None


async def test_weak_hashes_are_upgraded_at_login(db: Database) -> None:
    weak = UserRepository(db.pool, PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    await weak.create("fay", "fay@example.com", "fay-password", "viewer")
    strong = UserRepository(db.pool)
    assert await strong.authenticate("fay", "fay-password") is not None
    async with db.pool.acquire() as conn:
        stored = await conn.fetchval("SELECT password_hash FROM users WHERE username = 'fay'")
    assert not PasswordHasher().check_needs_rehash(stored)
    assert PasswordHasher().verify(stored, "fay-password")


async def test_no_stale_read_under_concurrent_writers_and_readers(
    db: Database, settings: Any
) -> None:
    """Many writers and readers, through two repositories with caches of their own (as two
    processes would have): every read started after a write returned sees that write."""
    keys = Keys(settings.redis_key_prefix)
    writer_side = LogRepository(db.pool, db.redis_client, cache=QueryCache(db.redis_client, keys))
    reader_side = LogRepository(db.pool, db.redis_client, cache=QueryCache(db.redis_client, keys))
    source_id = await _source_id(db, "app_errors")
    stale: list[int] = []

    async def writer(n: int) -> None:
        for i in range(15):
            entry_id = await writer_side.save_log_entry(
                {"message": f"w{n}-{i}", "source_id": source_id}
            )
            for repo in (writer_side, reader_side):
                seen = await repo.get_recent_logs(limit=1000, source_id=source_id)
                if entry_id not in {row["id"] for row in seen}:
                    stale.append(entry_id)
                newest = await repo.get_recent_logs(limit=1000)
                if entry_id not in {row["id"] for row in newest}:
                    stale.append(entry_id)

    async def reader() -> None:
        # Keeps refilling the cache with results computed while writes are in flight.
        for _ in range(60):
            await reader_side.get_recent_logs(limit=1000, source_id=source_id)
            await reader_side.get_recent_logs(limit=1000)

    await asyncio.gather(*(writer(n) for n in range(4)), reader(), reader())
    assert stale == []
    hits = await db.redis.keys(f"{settings.redis_key_prefix}cache:*")
    assert hits, "the cache was never used, so this test proved nothing"
