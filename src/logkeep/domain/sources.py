"""How a caller names a source: pure."""

from __future__ import annotations

import re

from logkeep.domain.entry import MAX_SOURCE_ID

# Same rule as the CHECK on log_sources.name: lower-case, at most 63 characters, and never
# all digits, so "12" always means the source with id 12.
SOURCE_NAME = re.compile(r"^(?![0-9]+$)[a-z0-9][a-z0-9_.-]{0,62}$")

# What a source gets when its creator says nothing more: the API, `logkeep sources create`
# and sources created on first use all start from these. `source_type` is a free label for
# people (web, database...); `format_type` decides how text lines are parsed, and "text"
# keeps every line whole, so nothing is misread before someone chooses a format.
DEFAULT_SOURCE_TYPE = "application"
DEFAULT_FORMAT_TYPE = "text"


def is_source_name(text: str) -> bool:
    return SOURCE_NAME.fullmatch(text) is not None


def parse_source_ref(value: str | int) -> int | str | None:
    """An id, a name, or None when `value` can name no source at all."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value <= MAX_SOURCE_ID else None
    if value.isascii() and value.isdigit():
        return parse_source_ref(int(value)) if len(value) <= 10 else None
    return value if is_source_name(value) else None
