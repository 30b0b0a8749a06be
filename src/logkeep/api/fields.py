"""Field types for request bodies, paths and queries that keep hostile input out of
PostgreSQL (text without NUL characters or lone surrogates, ids within PostgreSQL's
integer), and the schemas that declare what the domain accepts, so that the OpenAPI
document states the rules the server enforces."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Path, Query
from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, core_schema

from logkeep.domain.entry import _ALIASES as LEVEL_ALIASES  # the spellings Level.parse maps
from logkeep.domain.entry import Level
from logkeep.domain.parsers import FORMAT_TYPES
from logkeep.domain.sources import SOURCE_NAME

MAX_ID = 2**31 - 1  # integer columns
NO_NUL = r"^[^\x00]*$"


def _storable(text: str) -> str:
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("is not valid UTF-8 text") from None
    return text


def _declare_no_nul(schema: dict[str, Any]) -> None:
    schema.setdefault("pattern", NO_NUL)  # a field's own pattern already says more


StorableText = Annotated[StrictStr, AfterValidator(_storable)]  # declares its own schema
Text = Annotated[StorableText, Field(json_schema_extra=_declare_no_nul)]


def _whole(value: Any) -> Any:
    """JSON has one kind of number: 12.0 is the integer 12 (as JSON Schema says), while
    true, "12" and 12.5 stay refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Constraints go before the validator (Annotated[StrictInt, Field(...), WHOLE]), or the
# document shows pydantic's "ge"/"le" instead of JSON Schema's minimum/maximum.
WHOLE = BeforeValidator(_whole)
RowId = Annotated[StrictInt, Field(ge=1, le=MAX_ID), WHOLE]
PathId = Annotated[int, Path(ge=1, le=MAX_ID)]

# Integers of 64 bits, signed or not: what orjson (our JSON encoder) writes.
_MIN_INT, _MAX_INT = -(2**63), 2**64 - 1


def unstorable(value: Any, where: str, *, nul: bool = False) -> str | None:
    """Why parsed JSON `value` cannot be stored exactly as given, or None: an integer
    beyond 64 bits, a number out of range (1e999 parses as infinity), text that is not
    UTF-8 (a lone surrogate), and NUL characters unless `nul` (jsonb refuses them)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        if not _MIN_INT <= value <= _MAX_INT:
            return f"{where}: an integer beyond 64 bits (send it as text)"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where}: a number out of range"
    if isinstance(value, str):
        if not nul and "\x00" in value:
            return f"{where}: contains a NUL character"
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return f"{where}: not valid UTF-8 text"
        return None
    if isinstance(value, list):
        items: Iterable[tuple[str, Any]] = ((f"{where}[{i}]", v) for i, v in enumerate(value))
    else:
        assert isinstance(value, dict)
        for key in value:
            if (reason := unstorable(key, where, nul=nul)) is not None:
                return reason
        items = ((f"{where}.{_shown(key)}", v) for key, v in value.items())
    for path, item in items:
        if (reason := unstorable(item, path, nul=nul)) is not None:
            return reason
    return None


def _shown(key: str) -> str:
    """A key safe to name in an error: never echoes text that cannot be encoded."""
    return key[:64] if key.isprintable() and unstorable(key, "") is None else "(a key)"


def _storable_object(value: dict[str, Any]) -> dict[str, Any]:
    reason = unstorable(value, "", nul=False)
    if reason is not None:
        raise ValueError(reason.removeprefix(": ").removeprefix("."))
    return value


# A JSON object stored in a jsonb column.
JSON_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "propertyNames": {"pattern": NO_NUL},
    "description": "a JSON object; no NUL characters, integers of at most 64 bits",
}
JsonObject = Annotated[
    dict[str, Any],
    AfterValidator(_storable_object),
    Field(json_schema_extra=JSON_OBJECT_SCHEMA),
]


@dataclass(frozen=True, slots=True)
class TextMap:
    """`Annotated[dict[str, Any], TextMap(...)]`: a JSON object of text values (labels,
    matchers, search terms), declared and checked as a whole. Errors name the field, and
    a key only as `_shown` does: pydantic would put every key it refuses in `loc`, echoing
    input that may not even be encodable."""

    max_key: int
    max_value: int
    max_items: int | None = None
    key_pattern: str = NO_NUL
    key_reason: str = "keys are text without NUL"

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        declared: dict[str, Any] = {
            "type": "object",
            "propertyNames": {"maxLength": self.max_key, "pattern": self.key_pattern},
            "additionalProperties": {
                "type": "string", "maxLength": self.max_value, "pattern": NO_NUL,
            },
        }  # fmt: skip
        if self.max_items is not None:
            declared["maxProperties"] = self.max_items
        return declared

    def check(self, value: dict[str, Any]) -> dict[str, str]:
        if self.max_items is not None and len(value) > self.max_items:
            raise PydanticCustomError("too_long", f"at most {self.max_items} entries")
        key_pattern = re.compile(self.key_pattern)
        for key, item in value.items():
            shown = repr(_shown(key))
            if len(key) > self.max_key:
                raise PydanticCustomError("key", f"a key is over {self.max_key} characters")
            if (reason := unstorable(key, "a key")) is not None:
                raise PydanticCustomError("key", reason)
            if not key_pattern.fullmatch(key):
                raise PydanticCustomError("key", f"{shown}: {self.key_reason}")
            if not isinstance(item, str):
                raise PydanticCustomError("value", f"{shown}: the value is text")
            if len(item) > self.max_value:
                reason = f"{shown}: the value is over {self.max_value} characters"
                raise PydanticCustomError("value", reason)
            if (reason := unstorable(item, shown)) is not None:
                raise PydanticCustomError("value", reason)
        return value


def _any_case(word: str) -> str:
    return "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else re.escape(c) for c in word)


LEVEL_NAMES = [level.value for level in Level]
# What Level.parse accepts: a name or an alias, in any case, with spaces around.
LEVEL_PATTERN = (
    r"^\s*(?:" + "|".join(_any_case(w) for w in [*LEVEL_NAMES, *sorted(LEVEL_ALIASES)]) + r")\s*$"
)
LEVEL_DESCRIPTION = (
    f"{', '.join(LEVEL_NAMES)} in any case; aliases "
    f"{', '.join(sorted(LEVEL_ALIASES))} map to the nearest"
)
LEVEL_SCHEMA: dict[str, Any] = {
    "type": "string",
    "anyOf": [{"enum": LEVEL_NAMES}, {"pattern": LEVEL_PATTERN}],
    "description": LEVEL_DESCRIPTION,
}

SOURCE_NAME_PATTERN = SOURCE_NAME.pattern
SOURCE_NAME_DESCRIPTION = "lower-case letters, digits, '_', '.' and '-', at most 63, not all digits"
# A source by id (digits) or by name; which sources exist is not the document's to say.
SOURCE_REF_SCHEMA: dict[str, Any] = {
    "type": "string",
    "anyOf": [{"pattern": r"^[0-9]{1,10}$"}, {"pattern": SOURCE_NAME_PATTERN}],
    "description": f"a source id, or a name ({SOURCE_NAME_DESCRIPTION})",
}
FORMAT_TYPE_SCHEMA: dict[str, Any] = {
    "type": "string",
    # compile_parser takes the names in any case, with spaces around
    "anyOf": [
        {"enum": sorted(FORMAT_TYPES)},
        {"pattern": r"^\s*(?:" + "|".join(_any_case(f) for f in sorted(FORMAT_TYPES)) + r")\s*$"},
    ],
    "description": f"how text lines are parsed: {', '.join(sorted(FORMAT_TYPES))}",
}

LevelQuery = Annotated[
    str | None, Query(max_length=16, json_schema_extra={**LEVEL_SCHEMA, "maxLength": 16})
]
LevelsQuery = Annotated[
    list[str] | None,
    Query(json_schema_extra={"items": {**LEVEL_SCHEMA, "maxLength": 16}}),
]
SourceQuery = Annotated[
    str | None, Query(max_length=64, json_schema_extra={**SOURCE_REF_SCHEMA, "maxLength": 64})
]
SourcesQuery = Annotated[
    list[str] | None,
    Query(json_schema_extra={"items": {**SOURCE_REF_SCHEMA, "maxLength": 64}},
          description="repeatable: source ids or names"),
]  # fmt: skip

# The window of a read (parsed by domain.timerange).
SINCE_PATTERN = r"^\s*[0-9]{1,6}[smhdw]\s*$"
FromQuery = Annotated[
    str | None,
    Query(
        alias="from",
        max_length=64,
        description="window start, RFC 3339 (give either since or from, not both)",
        json_schema_extra={"format": "date-time"},
    ),
]
ToQuery = Annotated[
    str | None,
    Query(
        alias="to",
        max_length=64,
        description="window end, RFC 3339; default now",
        json_schema_extra={"format": "date-time"},
    ),
]
SinceQuery = Annotated[
    str | None,
    Query(
        max_length=32,
        description="window back from `to`: 15m, 2h, 7d, 1w (give either since or from)",
        json_schema_extra={"pattern": SINCE_PATTERN},
    ),
]


# -- instants and unions in request bodies ---------------------------------------------------

# RFC 3339 with its offset, to the microsecond (what PostgreSQL keeps), years 0001 to 9999.
RFC3339_PATTERN = (
    r"^(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-(?:0[1-9]|1[0-2])"
    r"-(?:0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)
_RFC3339 = re.compile(RFC3339_PATTERN)
INSTANT_EXAMPLE = "2026-01-31T09:00:00Z"


def _instant(value: Any) -> datetime:
    """Only RFC 3339 text: pydantic alone would also read 0 or "1700000000" as Unix
    time (a client's unset 0 becoming 1970), a naive or a space-separated time, and cut
    a seventh fractional digit."""
    if not isinstance(value, str) or not _RFC3339.fullmatch(value):
        raise PydanticCustomError(
            "datetime_format", f"is an RFC 3339 date-time with an offset, like {INSTANT_EXAMPLE}"
        )
    try:
        instant = datetime.fromisoformat(value)
        instant.astimezone(UTC)
    except ValueError:
        raise PydanticCustomError("datetime_value", "is not a day of the calendar") from None
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is in year 0 in UTC
        raise PydanticCustomError("datetime_value", "is outside years 1 to 9999 in UTC") from None
    return instant


Instant = Annotated[
    datetime,
    BeforeValidator(_instant),
    Field(json_schema_extra={"pattern": RFC3339_PATTERN, "examples": [INSTANT_EXAMPLE]}),
]


def by_field(discriminator: str) -> WrapValidator:
    """For a discriminated union (`Field(discriminator=...)`): each error names the
    field, as one model's would, where pydantic puts the variant's tag first (`email.to`)
    and names no field for a missing or unknown tag."""

    def validate(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError as exc:
            errors = [_untagged(e, discriminator) for e in exc.errors(include_url=False)]
            raise ValidationError.from_exception_data(exc.title, errors) from None

    return WrapValidator(validate)


def _untagged(error: Any, discriminator: str) -> InitErrorDetails:
    kind, loc = error["type"], tuple(error["loc"])
    if kind == "union_tag_not_found":
        return InitErrorDetails(type="missing", loc=(discriminator,), input=error["input"])
    if kind == "union_tag_invalid":
        expected = error.get("ctx", {}).get("expected_tags", "")
        reason = PydanticCustomError("literal_error", f"Input should be one of {expected}")
        return InitErrorDetails(type=reason, loc=(discriminator,), input=error["input"])
    return InitErrorDetails(
        type=PydanticCustomError(kind, error["msg"]), loc=loc[1:], input=error["input"]
    )
