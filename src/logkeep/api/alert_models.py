"""Alert rules as the API takes and shows them, and their conversion to what is stored
(checked by the same rules as a search: a rule whose query the search would refuse is
refused on save, naming the field)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import HTTPException
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationError,
)
from pydantic.config import JsonDict
from pydantic_core import PydanticCustomError

from logkeep.api.fields import MAX_ID, NO_NUL, WHOLE, RowId, Text, TextMap
from logkeep.domain.alert_rules import _KEY as GROUP_KEY
from logkeep.domain.alert_rules import _LABEL as LABEL_NAME
from logkeep.domain.alert_rules import (
    KINDS,
    MAX_EXPECTED_GROUPS,
    MAX_LABELS,
    Timing,
    check_labels,
    check_search,
    check_threshold,
    check_timing,
    metadata_group_key,
    metadata_param_value,
    parse_group_by,
    search_pairs,
)
from logkeep.domain.search import (
    MAX_METADATA_DEPTH,
    MAX_METADATA_FILTERS,
    MAX_TEXT_CHARS,
    MAX_VALUE_CHARS,
    metadata_value,
)
from logkeep.domain.timerange import InvalidQuery

LevelName = Literal["DEBUG", "INFO", "WARN", "ERROR", "FATAL"]
Seconds = Annotated[StrictInt, Field(ge=0, le=MAX_ID), WHOLE]

# The patterns the domain checks (alert_rules, search), as the document states them.
_KEY_TEXT = GROUP_KEY.pattern.removeprefix("^").removesuffix("$")
METADATA_KEY_PATTERN = rf"^{_KEY_TEXT}(?:\.{_KEY_TEXT}){{0,{MAX_METADATA_DEPTH - 1}}}$"
GROUP_BY_PATTERN = rf"^(?:source|metadata\.{METADATA_KEY_PATTERN[1:-1]})?$"
MetadataTerms = Annotated[
    dict[str, Any],
    TextMap(
        max_key=65 * MAX_METADATA_DEPTH - 1,
        max_value=MAX_VALUE_CHARS,
        max_items=MAX_METADATA_FILTERS,
        key_pattern=METADATA_KEY_PATTERN,
        key_reason="metadata keys are 1 to 64 of A-Z a-z 0-9 _ -, nested with dots, "
        f"at most {MAX_METADATA_DEPTH} deep",
    ),
]
Labels = Annotated[
    dict[str, Any],
    TextMap(
        max_key=64,
        max_value=256,
        max_items=MAX_LABELS,
        key_pattern=LABEL_NAME.pattern,
        key_reason="label names are 1 to 64 of A-Z a-z 0-9 _ . -, not starting with a digit, "
        "dot or dash",
    ),
]


# Declared here, refused by the search with its own words ("must not be empty").
NonEmptyText = Annotated[Text, Field(json_schema_extra={"minLength": 1, "pattern": NO_NUL})]


def _threshold(value: float) -> float:
    if not 0 <= value <= MAX_ID:  # NaN too
        raise PydanticCustomError("threshold", f"is a number from 0 to {MAX_ID}")
    return value


def _a_number(schema: JsonDict) -> None:
    """One JSON type, number, where pydantic writes integer-or-number."""
    schema.pop("anyOf", None)
    schema.update(type="number", minimum=0, maximum=MAX_ID)


Threshold = Annotated[
    StrictInt | StrictFloat, AfterValidator(_threshold), Field(json_schema_extra=_a_number)
]

# Rules between fields, declared as the domain checks them (stored_values, below).
LEVEL_OR_MIN_LEVEL: JsonDict = {
    "anyOf": [
        {"properties": {"level": {"maxItems": 0}}},
        {"properties": {"min_level": {"type": "null"}}},
    ]
}


def _kind_is(*kinds: str, **properties: JsonValue) -> JsonDict:
    """The rule's kind is one of `kinds` (no kind: threshold), with those properties."""
    enum: list[JsonValue] = list(kinds)
    condition: JsonDict = {"properties": {"kind": {"enum": enum}, **properties}}
    if "threshold" not in kinds:
        condition["required"] = ["kind"]
    return condition


def _not(kind: str) -> JsonDict:
    return _kind_is(*(k for k in KINDS if k != kind))


_GROUPED: JsonDict = {
    "required": ["group_by"], "properties": {"group_by": {"type": "string", "minLength": 1}},
}  # fmt: skip
RULE_RULES: list[JsonValue] = [
    LEVEL_OR_MIN_LEVEL,
    {  # a ratio's threshold is a fraction from 0 to 1; a count's a whole number
        "anyOf": [
            _kind_is("ratio", threshold={"maximum": 1}),
            _kind_is(*(k for k in KINDS if k != "ratio"), threshold={"type": "integer"}),
        ]
    },
    {"anyOf": [_not("absence"), {"properties": {"threshold": {"minimum": 1}}}]},
    {  # an absence rule's expected_groups and seen_lookback_seconds are values of group_by
        "anyOf": [
            _not("absence"),
            _GROUPED,
            {
                "properties": {
                    "expected_groups": {"maxItems": 0},
                    "seen_lookback_seconds": {"type": "null"},
                }
            },
        ]
    },
    {  # a new-pattern rule groups by message shape
        "anyOf": [
            _not("new_pattern"),
            {"properties": {"group_by": {"anyOf": [{"type": "null"}, {"maxLength": 0}]}}},
        ]
    },
]

DEFINITION_FIELDS = (
    "kind", "op", "threshold", "window_seconds", "interval_seconds", "for_seconds",
    "keep_firing_for_seconds", "source_ids", "search", "options", "group_by",
)  # fmt: skip


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RuleQuery(Strict):
    """A query as GET /api/v1/logs takes it (without window, sources and paging): level
    or min_level, not both."""

    model_config = ConfigDict(json_schema_extra={"allOf": [LEVEL_OR_MIN_LEVEL]})

    level: list[LevelName] = Field(default_factory=list, max_length=5)
    min_level: LevelName | None = None
    query: Text = Field(
        default="",
        max_length=MAX_TEXT_CHARS,
        description="words, as the search's q (at least one letter or digit, when given)",
    )
    contains: NonEmptyText | None = Field(default=None, max_length=MAX_TEXT_CHARS)
    metadata: MetadataTerms = Field(
        default_factory=dict,
        description='{"http.status": "500"}: metadata.<key>=<value>; at most '
        f"{MAX_METADATA_FILTERS} terms with not_metadata's, none nested in another",
    )
    not_metadata: MetadataTerms = Field(default_factory=dict)


class AlertRuleFields(RuleQuery):
    """A rule. What its kind takes: `ratio`, a threshold from 0 to 1 (a fraction); the
    others a whole count, at least 1 for `absence`, whose expected_groups and
    seen_lookback_seconds need group_by; `new_pattern` groups by shape (no group_by)."""

    model_config = ConfigDict(json_schema_extra={"allOf": RULE_RULES})

    description: Text = Field(default="", max_length=1000)
    kind: Literal["threshold", "ratio", "absence", "new_pattern"] = "threshold"
    source: RowId | None = Field(default=None, description="a source id (or use sources)")
    sources: list[RowId] = Field(default_factory=list, max_length=32)
    min_level: LevelName | None = None  # ERROR when neither level nor min_level is given
    op: Literal[">", ">=", "<", "<="] = ">="
    threshold: Threshold = 1
    window_seconds: Annotated[StrictInt, Field(gt=0, le=7 * 86_400), WHOLE] = 300
    interval_seconds: Annotated[StrictInt, Field(ge=5, le=86_400), WHOLE] = 60
    for_seconds: Annotated[StrictInt, Field(ge=0, le=604_800), WHOLE] = 0
    keep_firing_for_seconds: Annotated[StrictInt, Field(ge=0, le=604_800), WHOLE] = 0
    repeat_interval_seconds: Annotated[StrictInt, Field(ge=60, le=604_800), WHOLE] = 14_400
    group_by: Text | None = Field(
        default=None,
        max_length=600,
        description="`source` or `metadata.<key>`; empty or null: no groups",
        json_schema_extra={"pattern": GROUP_BY_PATTERN},
    )
    denominator: RuleQuery | None = Field(
        default=None, description="ratio: the query counted below the line (default: every "
        "entry of the rule's sources)"
    )  # fmt: skip
    min_volume: Annotated[StrictInt, Field(ge=1, le=MAX_ID), WHOLE] = 1
    expected_groups: list[Text] = Field(default_factory=list, max_length=MAX_EXPECTED_GROUPS)
    seen_lookback_seconds: Annotated[StrictInt, Field(ge=60, le=7 * 86_400), WHOLE] | None = None
    learning_seconds: Annotated[StrictInt, Field(ge=60, le=30 * 86_400), WHOLE] = 86_400
    labels: Labels = Field(default_factory=dict)
    channels: list[RowId] = Field(default_factory=list, max_length=32)
    is_active: StrictBool = True


class AlertRuleCreate(AlertRuleFields):
    name: Text = Field(min_length=1, max_length=100)
    # Today's fields keep their meaning: a count above a threshold within a window.
    threshold: Threshold
    window_seconds: Annotated[StrictInt, Field(gt=0, le=7 * 86_400), WHOLE]


class AlertRulePreview(AlertRuleFields):
    name: Text = Field(default="preview", min_length=1, max_length=100)


def _changes(schema: JsonDict) -> None:
    """A change names only what it changes: no defaults; the rules between fields hold
    for the rule it makes, which the route checks."""
    schema.pop("allOf", None)
    properties = schema.get("properties")
    assert isinstance(properties, dict)
    for field in properties.values():
        assert isinstance(field, dict)
        field.pop("default", None)


class AlertRuleUpdate(AlertRuleFields):
    """Any fields of a rule: the others stay as they are, and the rule they make is
    checked again as a whole (a 422 names the field)."""

    model_config = ConfigDict(json_schema_extra=_changes)

    name: Text = Field(default="", min_length=1, max_length=100)  # a default never used


def validated(model: type[AlertRuleCreate], values: dict[str, Any]) -> AlertRuleCreate:
    """`values` as `model`, or a 422 naming each field (as FastAPI's own would)."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        detail = [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in errors]
        raise HTTPException(422, detail) from None


class AlertRulePublic(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int
    name: str
    description: str
    kind: str
    source_id: int | None = Field(description="the first of `sources` (older clients)")
    sources: list[int]
    min_level: str | None
    query: str
    threshold: float
    window_seconds: int
    interval_seconds: int
    is_active: bool
    created_at: datetime


def _refuse(field: str, reason: str) -> HTTPException:
    return HTTPException(422, [{"loc": ["body", *field.split(".")], "msg": reason,
                                "type": "invalid"}])  # fmt: skip


_PARAM_FIELDS = {"q": "query", "level": "level", "min_level": "min_level", "contains": "contains"}


def _pairs(
    query: RuleQuery, default_min_level: str | None, where: str = ""
) -> tuple[tuple[str, str], ...]:
    min_level = query.min_level or (None if query.level else default_min_level)
    if query.level and query.min_level:
        raise _refuse(where + "min_level", "give either level or min_level, not both")
    return search_pairs(
        q=query.query or None,
        contains=query.contains,
        level=query.level,
        min_level=min_level,
        metadata=query.metadata,
        not_metadata=query.not_metadata,
    )


def _checked(pairs: tuple[tuple[str, str], ...], where: str, retention: timedelta) -> None:
    try:
        check_search(pairs, retention=retention)
    except InvalidQuery as exc:
        name = exc.param
        field = _PARAM_FIELDS.get(name, name.replace("not.metadata.", "not_metadata."))
        raise _refuse(where + field, exc.reason) from None


def stored_values(
    body: AlertRuleFields, name: str, owner_id: int | None, retention: timedelta
) -> tuple[list[Any], list[int]]:
    """The columns of alert_rules in store.INSERT_RULE's order, and the channel ids; 422
    naming the field for anything the rule or its searches would refuse."""
    source_ids = sorted(set(([body.source] if body.source else []) + body.sources))
    search = _pairs(body, "ERROR")
    _checked(search, "", retention)
    try:
        group_by = parse_group_by(body.group_by)
        threshold = check_threshold(body.kind, float(body.threshold))
        check_timing(
            Timing(
                window=timedelta(seconds=body.window_seconds),
                interval=timedelta(seconds=body.interval_seconds),
            ),
            retention,
        )
        check_labels(body.labels)
    except InvalidQuery as exc:
        raise _refuse(exc.param, exc.reason) from None
    options: dict[str, Any] = {}
    op = body.op
    # Checked whatever the kind (a body is valid or not as a whole); kept for ratios.
    denominator = _pairs(body.denominator, None, "denominator.") if body.denominator else ()
    _checked(denominator, "denominator.", retention)
    if body.kind == "ratio":
        options.update(denominator=[list(p) for p in denominator], min_volume=body.min_volume)
    elif body.kind == "absence":
        op = "<"
        if body.expected_groups and group_by is None:
            raise _refuse("expected_groups", "needs group_by")
        expected = body.expected_groups
        if group_by is not None and not group_by.source:
            try:
                expected = [metadata_group_key(metadata_value(v)) for v in expected]
            except ValueError as exc:
                raise _refuse("expected_groups", str(exc)) from None
        options["expected_groups"] = expected
        if body.seen_lookback_seconds is not None:
            if group_by is None:
                raise _refuse("seen_lookback_seconds", "needs group_by")
            options["seen_lookback_seconds"] = body.seen_lookback_seconds
        if threshold < 1:
            raise _refuse("threshold", "an absence rule fires below a count of at least 1")
    elif body.kind == "new_pattern":
        if group_by is not None:
            raise _refuse("group_by", "a new-pattern rule groups by shape itself")
        options["learning_seconds"] = body.learning_seconds
    assert body.kind in KINDS
    values = [
        name, body.description, body.kind, op, threshold, body.window_seconds,
        body.interval_seconds, body.for_seconds, body.keep_firing_for_seconds,
        body.repeat_interval_seconds, source_ids, [list(p) for p in search], options,
        None if group_by is None else group_by.text, dict(body.labels), body.is_active,
        owner_id,
    ]  # fmt: skip
    return values, sorted(set(body.channels))


def _query_fields(pairs: list[list[str]]) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "level": [], "min_level": None, "query": "", "contains": None, "metadata": {},
        "not_metadata": {},
    }  # fmt: skip
    for name, value in pairs:
        if name == "q":
            fields["query"] = value
        elif name == "level":
            fields["level"].append(value)
        elif name in ("min_level", "contains"):
            fields[name] = value
        elif name.startswith("not.metadata."):
            fields["not_metadata"][name[len("not.metadata.") :]] = value
        elif name.startswith("metadata."):
            fields["metadata"][name[len("metadata.") :]] = value
    return fields


def public(row: dict[str, Any]) -> dict[str, Any]:
    """A stored rule as the API shows it."""
    options = row["options"]
    threshold = row["threshold"]
    if row["kind"] != "ratio" and float(threshold).is_integer():
        threshold = int(threshold)
    expected = options.get("expected_groups", [])
    if row["group_by"] and row["group_by"].startswith("metadata."):
        expected = [metadata_param_value(key) for key in expected]
    denominator = options.get("denominator")
    return {
        "id": row["id"],
        "name": row["name"],
        "description": row["description"],
        "kind": row["kind"],
        "source_id": row["source_ids"][0] if row["source_ids"] else None,
        "sources": list(row["source_ids"]),
        **_query_fields(row["search"]),
        "op": row["op"],
        "threshold": threshold,
        "window_seconds": row["window_seconds"],
        "interval_seconds": row["interval_seconds"],
        "for_seconds": row["for_seconds"],
        "keep_firing_for_seconds": row["keep_firing_for_seconds"],
        "repeat_interval_seconds": row["repeat_interval_seconds"],
        "group_by": row["group_by"],
        "denominator": None if denominator is None else _query_fields(denominator),
        "min_volume": options.get("min_volume", 1),
        "expected_groups": expected,
        "seen_lookback_seconds": options.get("seen_lookback_seconds"),
        "learning_seconds": options.get("learning_seconds", 86_400),
        "labels": row["labels"],
        "channels": list(row["channels"]),
        "is_active": row["is_active"],
        "created_by": row["created_by"],
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
    }


def editable(row: dict[str, Any]) -> dict[str, Any]:
    """A stored rule as a body that would create it again (PATCH merges into this)."""
    shown = public(row)
    fields = set(AlertRuleCreate.model_fields)
    body = {k: v for k, v in shown.items() if k in fields and k != "source"}
    if body["denominator"] is None:
        body.pop("denominator")
    return body
