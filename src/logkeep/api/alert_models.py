"""Alert rules as the API takes and shows them, and their conversion to what is stored
(checked by the same rules as a search: a rule whose query the search would refuse is
refused on save, naming the field)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import HTTPException
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

from logkeep.api.fields import MAX_ID, WHOLE, RowId, Text
from logkeep.domain.alert_rules import (
    KINDS,
    MAX_EXPECTED_GROUPS,
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
from logkeep.domain.search import metadata_value
from logkeep.domain.timerange import InvalidQuery

LevelName = Literal["DEBUG", "INFO", "WARN", "ERROR", "FATAL"]
Seconds = Annotated[StrictInt, Field(ge=0, le=MAX_ID), WHOLE]
MetadataTerms = dict[Annotated[str, Field(max_length=600)], Text]

DEFINITION_FIELDS = (
    "kind", "op", "threshold", "window_seconds", "interval_seconds", "for_seconds",
    "keep_firing_for_seconds", "source_ids", "search", "options", "group_by",
)  # fmt: skip


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RuleQuery(Strict):
    """A query as GET /api/v1/logs takes it (without window, sources and paging)."""

    level: list[LevelName] = Field(default_factory=list, max_length=5)
    min_level: LevelName | None = None
    query: Text = Field(default="", max_length=512, description="words, as the search's q")
    contains: Text | None = Field(default=None, max_length=512)
    metadata: MetadataTerms = Field(
        default_factory=dict, description='{"http.status": "500"}: metadata.<key>=<value>'
    )
    not_metadata: MetadataTerms = Field(default_factory=dict)


class AlertRuleFields(RuleQuery):
    description: Text = Field(default="", max_length=1000)
    kind: Literal["threshold", "ratio", "absence", "new_pattern"] = "threshold"
    source: RowId | None = Field(default=None, description="a source id (or use sources)")
    sources: list[RowId] = Field(default_factory=list, max_length=32)
    min_level: LevelName | None = None  # ERROR when neither level nor min_level is given
    op: Literal[">", ">=", "<", "<="] = ">="
    threshold: Annotated[StrictInt | StrictFloat, Field(ge=0, le=MAX_ID)] = 1
    window_seconds: Annotated[StrictInt, Field(gt=0, le=7 * 86_400), WHOLE] = 300
    interval_seconds: Annotated[StrictInt, Field(ge=5, le=86_400), WHOLE] = 60
    for_seconds: Annotated[StrictInt, Field(ge=0, le=604_800), WHOLE] = 0
    keep_firing_for_seconds: Annotated[StrictInt, Field(ge=0, le=604_800), WHOLE] = 0
    repeat_interval_seconds: Annotated[StrictInt, Field(ge=60, le=604_800), WHOLE] = 14_400
    group_by: Text | None = Field(
        default=None, max_length=600, description="`source` or `metadata.<key>`"
    )
    denominator: RuleQuery | None = Field(
        default=None, description="ratio: the query counted below the line (default: every "
        "entry of the rule's sources)"
    )  # fmt: skip
    min_volume: Annotated[StrictInt, Field(ge=1, le=MAX_ID), WHOLE] = 1
    expected_groups: list[Text] = Field(default_factory=list, max_length=MAX_EXPECTED_GROUPS)
    seen_lookback_seconds: Annotated[StrictInt, Field(ge=60, le=7 * 86_400), WHOLE] | None = None
    learning_seconds: Annotated[StrictInt, Field(ge=60, le=30 * 86_400), WHOLE] = 86_400
    labels: dict[Annotated[str, Field(max_length=64)], Text] = Field(default_factory=dict)
    channels: list[RowId] = Field(default_factory=list, max_length=32)
    is_active: StrictBool = True


class AlertRuleCreate(AlertRuleFields):
    name: Text = Field(min_length=1, max_length=100)
    # Today's fields keep their meaning: a count above a threshold within a window.
    threshold: Annotated[StrictInt | StrictFloat, Field(ge=0, le=MAX_ID)]
    window_seconds: Annotated[StrictInt, Field(gt=0, le=7 * 86_400), WHOLE]


class AlertRulePreview(AlertRuleFields):
    name: Text = Field(default="preview", min_length=1, max_length=100)


class AlertRuleUpdate(Strict):
    """Any field of a rule; the rule is checked again as a whole."""

    model_config = ConfigDict(extra="allow")


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


def _pairs(query: RuleQuery, default_min_level: str | None) -> tuple[tuple[str, str], ...]:
    min_level = query.min_level or (None if query.level else default_min_level)
    if query.level and query.min_level:
        raise _refuse("min_level", "give either level or min_level, not both")
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
    if body.kind == "ratio":
        denominator = _pairs(body.denominator, None) if body.denominator else ()
        _checked(denominator, "denominator.", retention)
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
