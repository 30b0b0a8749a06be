"""Facets of a search: the most common values of source, level and metadata keys among
a sample of matching entries, each with the filter that selects it. Pure, no I/O.

Metadata keys are ranked by how many entries their top values cover, so keys with a few
common values come before near-unique ones.

Every value carries the exact text to send back as a search parameter
(`metadata.status=503`, `metadata.code="503"`), so a click in the explorer asks for
precisely the value it counted, whatever its JSON type."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any

import orjson

from logkeep.domain import exactjson
from logkeep.domain.search import MAX_METADATA_DEPTH, MAX_VALUE_CHARS, metadata_value

MAX_KEYS = 8  # metadata keys shown, the most frequent first
MAX_VALUES = 8  # values shown per field
_KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # as search accepts in metadata.<key>

Scalar = str | int | float | Decimal | bool | None  # Decimal: see exactjson


def filter_text(value: Scalar) -> str | None:
    """The parameter value that finds `value` in metadata (None: it cannot be asked for)."""
    if isinstance(value, bool) or value is None or isinstance(value, int | float | Decimal):
        text = exactjson.dumps(value).decode()  # 10**30 as its digits, as search reads it
    elif isinstance(value, str):
        # Text that would read as a number, true/false/null or a quoted string is quoted.
        try:
            text = value if metadata_value(value) == value else orjson.dumps(value).decode()
        except ValueError:
            text = orjson.dumps(value).decode()
    else:
        return None
    return text if len(text) <= MAX_VALUE_CHARS else None


def scalar_paths(
    document: Mapping[str, Any], prefix: str = "", depth: int = 1
) -> Iterator[tuple[str, Scalar]]:
    """(dotted key, value) of every scalar a metadata filter can name; arrays and keys
    search cannot spell are left out."""
    for key, value in document.items():
        if not isinstance(key, str) or not _KEY.fullmatch(key):
            continue
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            if depth < MAX_METADATA_DEPTH:
                yield from scalar_paths(value, path + ".", depth + 1)
        elif not isinstance(value, list):
            yield path, value


def _identity(value: Scalar) -> tuple[str, Scalar]:
    # True == 1 in Python; in JSON (and in a containment filter) they differ.
    return type(value).__name__, value


def _field(name: str, counts: Counter[tuple[str, Scalar]], present: int) -> dict[str, Any]:
    values = []
    for (_, value), count in counts.most_common():
        text = value if name in ("source", "level") else filter_text(value)
        if text is None:
            continue
        values.append({"value": value, "filter": text, "count": count})
        if len(values) == MAX_VALUES:
            break
    param = name if name in ("source", "level") else f"metadata.{name}"
    return {"field": name, "param": param, "present": present, "values": values}


def _coverage(counts: Counter[tuple[str, Scalar]]) -> int:
    return sum(count for _, count in counts.most_common(MAX_VALUES))


def facets(items: Sequence[Mapping[str, Any]], *, complete: bool) -> dict[str, Any]:
    """Facets of `items` (search results); `complete` says they are every match."""
    sources: Counter[tuple[str, Scalar]] = Counter()
    levels: Counter[tuple[str, Scalar]] = Counter()
    by_key: dict[str, Counter[tuple[str, Scalar]]] = {}
    for item in items:
        sources[_identity(item["source"])] += 1
        levels[_identity(item["level"])] += 1
        metadata = item.get("metadata")
        if isinstance(metadata, Mapping):
            for path, value in scalar_paths(metadata):
                by_key.setdefault(path, Counter())[_identity(value)] += 1
    # Keys whose few top values cover most entries say the most (method, status, host);
    # near-unique ones (bytes, trace ids) cover little in MAX_VALUES values and sink.
    keys = sorted(by_key, key=lambda k: (-_coverage(by_key[k]), k))[:MAX_KEYS]
    return {
        "sample": len(items),
        "complete": complete,
        "fields": [
            _field("source", sources, len(items)),
            _field("level", levels, len(items)),
            *(_field(k, by_key[k], sum(by_key[k].values())) for k in keys),
        ],
    }
