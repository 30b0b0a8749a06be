"""Named SQL: the parser and the shipped queries file."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from logkeep.db.queries import named_queries, parse_named_queries, q
from logkeep.domain.entry import LogEntry


def shipped_text() -> str:
    return resources.files("logkeep.db").joinpath("sql/queries.sql").read_text("utf-8")


def test_parse_splits_blocks_and_strips_bodies() -> None:
    text = """-- A file comment that belongs to no query.

-- name: first_query
-- what it does
SELECT 1;

-- name: second_query
SELECT 2
FROM t;
"""
    assert parse_named_queries(text) == {
        "first_query": "-- what it does\nSELECT 1;",
        "second_query": "SELECT 2\nFROM t;",
    }


def test_parse_of_text_without_headers_is_empty() -> None:
    assert parse_named_queries("SELECT 1;\n-- just a comment\n") == {}


def test_parse_keeps_definition_order() -> None:
    text = "-- name: zeta\nSELECT 1;\n-- name: alpha\nSELECT 2;\n-- name: mid\nSELECT 3;\n"
    assert list(parse_named_queries(text)) == ["zeta", "alpha", "mid"]


def test_parse_rejects_duplicate_names() -> None:
    text = "-- name: dup\nSELECT 1;\n-- name: other\nSELECT 2;\n-- name: dup\nSELECT 3;\n"
    with pytest.raises(ValueError, match="query 'dup' is defined twice"):
        parse_named_queries(text)


@pytest.mark.parametrize(
    "text",
    [
        "-- name: empty\n-- name: full\nSELECT 1;\n",
        "-- name: full\nSELECT 1;\n-- name: empty\n   \n\t\n",
        "-- name: empty\n",
    ],
)
def test_parse_rejects_empty_bodies(text: str) -> None:
    with pytest.raises(ValueError, match="query 'empty' is empty"):
        parse_named_queries(text)


def test_shipped_queries_load() -> None:
    queries = named_queries()
    for name in (
        "recent_logs",
        "insert_log_entry",
        "add_minute_counts",
        "error_summary",
        "insert_source",
        "source_by_name",
        "ensure_partition",
        "drop_partition",
        "list_partitions",
    ):
        assert name in queries
        assert queries[name].strip()
    assert queries["insert_log_entry"].upper().startswith("INSERT INTO LOG_ENTRIES")
    assert "FROM log_sources" in queries["recent_logs"]


def test_every_header_in_the_shipped_file_is_parsed() -> None:
    # A header the parser's pattern misses would silently join the previous query.
    headers = re.findall(r"^--\s*name:\s*(\S+)", shipped_text(), flags=re.MULTILINE)
    assert headers
    assert sorted(headers) == sorted(named_queries())
    for sql in named_queries().values():
        assert "-- name:" not in sql


def test_named_queries_is_loaded_once() -> None:
    assert named_queries() is named_queries()


def test_q_returns_the_named_sql() -> None:
    assert q("recent_logs") == named_queries()["recent_logs"]


def test_q_names_a_missing_query() -> None:
    with pytest.raises(KeyError, match="no_such_query"):
        q("no_such_query")


def test_insert_log_entry_takes_one_parameter_per_copy_record_column() -> None:
    sql = q("insert_log_entry")
    params = {int(n) for n in re.findall(r"\$(\d+)", sql)}
    width = len(LogEntry("m", 1).copy_record())
    assert params == set(range(1, width + 1))
