"""Migration files and the pure check of the database's record against them."""

from __future__ import annotations

import hashlib

import pytest

from logkeep.db.migrate import FILE_PATTERN, Migration, MigrationError, _verify, load_migrations

M1 = Migration(1, "initial", "CREATE TABLE a (id int);")
M2 = Migration(2, "add_b", "CREATE TABLE b (id int);")
M3 = Migration(3, "add_c", "CREATE TABLE c (id int);")
ALL = [M1, M2, M3]


def test_migration_error_is_a_runtime_error() -> None:
    assert issubclass(MigrationError, RuntimeError)


def test_migration_filename_and_checksum() -> None:
    m = Migration(12, "add_index", "CREATE INDEX x ON t (c);")
    assert m.filename == "0012_add_index.sql"
    assert FILE_PATTERN.match(m.filename)
    assert m.checksum == hashlib.sha256(b"CREATE INDEX x ON t (c);").hexdigest()
    assert Migration(12, "add_index", "CREATE INDEX x ON t (d);").checksum != m.checksum


def test_shipped_migrations_are_numbered_from_one_without_gaps() -> None:
    migrations = load_migrations()
    assert migrations
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
    assert migrations[0].filename == "0001_initial.sql"


def test_shipped_migrations_have_sql_and_valid_names() -> None:
    for m in load_migrations():
        assert m.sql.strip()
        assert FILE_PATTERN.match(m.filename)
        assert len(m.checksum) == 64


def test_initial_migration_creates_the_core_tables() -> None:
    sql = load_migrations()[0].sql
    for table in ("log_sources", "log_entries", "log_metrics"):
        assert f"CREATE TABLE {table}" in sql


def test_load_migrations_is_stable() -> None:
    assert load_migrations() == load_migrations()


def test_verify_with_nothing_applied_returns_everything_in_order() -> None:
    assert _verify({}, ALL) == ALL


def test_verify_returns_only_pending() -> None:
    assert _verify({1: M1.checksum}, ALL) == [M2, M3]
    assert _verify({1: M1.checksum, 2: M2.checksum}, ALL) == [M3]


def test_verify_with_everything_applied_returns_nothing() -> None:
    assert _verify({m.version: m.checksum for m in ALL}, ALL) == []


def test_verify_shipped_migrations() -> None:
    shipped = load_migrations()
    assert _verify({}, shipped) == list(shipped)
    assert _verify({m.version: m.checksum for m in shipped}, shipped) == []


def test_verify_rejects_an_edited_migration_naming_the_file() -> None:
    recorded = hashlib.sha256(b"the original text").hexdigest()
    with pytest.raises(MigrationError, match=r"0002_add_b\.sql was edited") as info:
        _verify({1: M1.checksum, 2: recorded}, ALL)
    message = str(info.value)
    assert recorded[:12] in message
    assert M2.checksum[:12] in message


def test_verify_rejects_an_edited_shipped_migration() -> None:
    first = load_migrations()[0]
    with pytest.raises(MigrationError, match=r"0001_initial\.sql"):
        _verify({1: "0" * 64}, load_migrations())
    assert first.checksum != "0" * 64


def test_verify_rejects_a_version_without_a_file() -> None:
    applied = {m.version: m.checksum for m in ALL} | {4: "f" * 64}
    with pytest.raises(MigrationError, match="migration 0004 applied but no such file"):
        _verify(applied, ALL)


def test_verify_rejects_unknown_version_even_with_pending_ones() -> None:
    with pytest.raises(MigrationError, match="0099"):
        _verify({1: M1.checksum, 99: "a" * 64}, ALL)
