"""Reading Redis replies: the client returns bytes (no decode_responses), ids are text."""

from __future__ import annotations

from typing import Any


def as_text(value: Any) -> str:
    """A reply value (bytes, or already text) as str."""
    return value.decode() if isinstance(value, bytes) else str(value)
