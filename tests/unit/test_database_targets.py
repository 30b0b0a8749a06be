"""Describing store targets for error messages: never with credentials."""

from __future__ import annotations

import pytest

from logkeep.db.database import describe_pg_target, describe_redis_target


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("postgresql://logkeep:hunter2@db.internal:6543/logs", "db.internal:6543/logs"),
        ("postgresql://db.internal/logs", "db.internal:5432/logs"),
        ("postgres://u@db.internal", "db.internal:5432/"),
        ("postgresql://u:hunter2@/logs?host=/var/run/postgresql", "/var/run/postgresql:5432/logs"),
        ("postgresql:///logs?host=/run/pg&port=5433", "/run/pg:5433/logs"),
        ("postgresql:///logs", "localhost:5432/logs"),
    ],
)
def test_describe_pg_target(dsn: str, expected: str) -> None:
    described = describe_pg_target(dsn)
    assert described == expected
    assert "hunter2" not in described
    assert "@" not in described


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:hunter2@cache.internal:6380/2", "cache.internal:6380/2"),
        ("redis://default:hunter2@cache.internal/0", "cache.internal:6379/0"),
        ("rediss://cache.internal", "cache.internal:6379"),
        ("redis://", "localhost:6379"),
        ("unix:///run/redis/redis.sock", "/run/redis/redis.sock"),
        ("unix://:hunter2@/run/redis/redis.sock?db=1", "/run/redis/redis.sock"),
    ],
)
def test_describe_redis_target(url: str, expected: str) -> None:
    described = describe_redis_target(url)
    assert described == expected
    assert "hunter2" not in described
