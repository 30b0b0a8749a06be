"""Pure parts of read routing: WAL positions, the replicas' setting."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from logkeep.config import Settings, split_read_urls
from logkeep.db.replicas import WAL_PAGE_BYTES, ReplicaState, ReplicaStatus, reached


def test_a_replica_reaches_a_position_at_or_past_it() -> None:
    assert reached(1000, 1000)
    assert reached(1001, 1000)
    assert not reached(999, 1000)


@pytest.mark.parametrize("header", [24, 40])
def test_a_position_past_a_page_header_is_reached_at_the_page_start(header: int) -> None:
    # The primary's insert position after a record that filled its page points past the
    # next page's header; a replica that replayed that record ends at the page start.
    page = 7 * WAL_PAGE_BYTES
    assert reached(page, page + header)
    assert not reached(page - 8, page + header)
    assert not reached(page, page + header + 8)


def test_read_urls_split_on_whitespace_and_commas_between_urls() -> None:
    assert split_read_urls("") == []
    assert split_read_urls(" postgresql://a:5433/x\npostgres://b/y ") == [
        "postgresql://a:5433/x",
        "postgres://b/y",
    ]
    # A multi-host URL keeps its commas; a comma before the next URL separates.
    assert split_read_urls("postgresql://h1:5432,h2:5432/db, postgresql://c/db") == [
        "postgresql://h1:5432,h2:5432/db",
        "postgresql://c/db",
    ]


def test_read_urls_must_be_postgresql_urls() -> None:
    with pytest.raises(ValidationError, match="LOGKEEP_DATABASE_READ_URLS: 'redis://r'"):
        Settings(_env_file=None, database_read_urls="postgresql://a/x redis://r")
    settings = Settings(_env_file=None, database_read_urls="postgresql://a/x,postgresql://b/x")
    assert settings.read_urls == ["postgresql://a/x", "postgresql://b/x"]


def test_readiness_shows_hosts_and_errors_only_when_detailed() -> None:
    status = ReplicaStatus(
        2, "db2:5432/logkeep", ReplicaState.DOWN, "OSError: refused", lag_s=1.23456
    )
    assert status.public(detailed=False) == {
        "replica": 2,
        "in_rotation": False,
        "state": "down",
        "lag_s": 1.235,
    }
    detailed = status.public(detailed=True)
    assert detailed["target"] == "db2:5432/logkeep"
    assert detailed["error"] == "OSError: refused"
