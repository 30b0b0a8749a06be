"""Facets and the not.metadata filter: pure."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from logkeep.domain.facets import MAX_KEYS, MAX_VALUES, facets, filter_text, scalar_paths
from logkeep.domain.search import metadata_value, parse_search
from logkeep.domain.tail import TailFilter
from logkeep.domain.timerange import InvalidQuery


@pytest.mark.parametrize(
    "value",
    [
        *("503", 503, 5.5, "5.5", True, "true", None, "null", "plain", '"quoted"', "", "-1e3"),
        *(-1000.0, 10**30, -(2**64), Decimal("0.12345678901234567")),  # kept exactly
    ],
)
def test_a_filter_text_finds_exactly_its_value(value: Any) -> None:
    text = filter_text(value)
    assert text is not None
    found = metadata_value(text)
    assert found == value and type(found) is type(value)


def test_values_search_cannot_spell_are_not_offered() -> None:
    assert filter_text("x" * 2000) is None
    paths = dict(
        scalar_paths({"a": {"b": 1}, "bad key": 1, "list": [1], "ok-key_1": "v", "nl\n": 2})
    )
    assert paths == {"a.b": 1, "ok-key_1": "v"}  # "nl\n": search refuses that key


def item(source: str, level: str, **metadata: Any) -> dict[str, Any]:
    return {"source": source, "level": level, "metadata": metadata}


def test_facets_count_and_rank() -> None:
    items = [item("web", "INFO", status=200, trace=f"t{n}") for n in range(20)]
    items += [item("app", "ERROR", status=500, flag=True, trace="x")]
    result = facets(items, complete=False)
    assert result["sample"] == 21 and result["complete"] is False
    fields = {f["field"]: f for f in result["fields"]}
    assert fields["source"]["values"][0] == {"value": "web", "filter": "web", "count": 20}
    assert fields["status"]["param"] == "metadata.status"
    # status's two values cover every entry; trace's first eight cover eight: status first.
    names = [f["field"] for f in result["fields"]]
    assert names.index("status") < names.index("trace")
    assert len(fields["trace"]["values"]) == MAX_VALUES
    # True and 1 are different JSON values.
    mixed = facets([item("a", "INFO", v=True), item("a", "INFO", v=1)], complete=True)
    values = next(f for f in mixed["fields"] if f["field"] == "v")["values"]
    assert sorted(v["filter"] for v in values) == ["1", "true"]
    many = facets([item("a", "INFO", **{f"k{n}": 1 for n in range(20)})], complete=True)
    assert len(many["fields"]) == 2 + MAX_KEYS


def parse(*pairs: tuple[str, str]) -> Any:
    return parse_search(
        pairs,
        now=datetime(2025, 1, 1, tzinfo=UTC),
        default_window=timedelta(hours=24),
        retention=timedelta(days=30),
        max_future=timedelta(hours=1),
    )


def test_not_metadata_leaves_entries_out() -> None:
    query = parse(("not.metadata.host", "a"), ("not.metadata.status", "503"), ("metadata.x", "1"))
    assert query.excluded_metadata == ({"host": "a"}, {"status": 503})
    assert query.metadata == {"x": 1}
    plain = parse(("metadata.x", "1"))
    assert plain.excluded_metadata == ()
    assert plain.fingerprint != query.fingerprint
    with pytest.raises(InvalidQuery, match=r"not\.metadata\.bad key"):
        parse(("not.metadata.bad key", "1"))
    with pytest.raises(InvalidQuery, match=r"at most 8"):
        parse(*[(f"not.metadata.k{n}", "1") for n in range(9)])
    flt = TailFilter.build(
        source_ids=None, levels=[], min_level=None, q=None, substring=None,
        excluded_metadata=query.excluded_metadata,
    )  # fmt: skip
    assert flt.matches({"source_id": 1, "level": "INFO", "message": "m", "metadata": {"host": "b"}})
    assert not flt.matches(
        {"source_id": 1, "level": "INFO", "message": "m", "metadata": {"host": "a"}}
    )
