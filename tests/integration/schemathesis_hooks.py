"""Loaded by the schemathesis CLI in tests/integration/test_fuzz.py (SCHEMATHESIS_HOOKS):
how to put an NDJSON body on the wire, which schemathesis does not know by itself."""

from __future__ import annotations

import json
from typing import Any

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx: schemathesis.SerializationContext, value: Any) -> bytes:
    """Text as given; a list as one JSON line per item; anything else as one line."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    items = value if isinstance(value, list) else [value]
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)
