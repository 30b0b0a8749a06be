"""The alerting routes' contract: what their request bodies may hold is what the OpenAPI
document says, case by case. Each refused body is a 422 naming the field, and the
document refuses it too; each accepted body is accepted by both. The few rules the
document cannot state (what exists, the clock, a setting) are listed apart, with the
reason tests/integration/schemathesis.toml gives for them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jsonschema_rs

from logkeep.db.database import Database
from tests.integration.test_openapi import JSON, assert_problem

PREVIEW = "/api/v1/alert-rules/preview"
CHANNELS = "/api/v1/alert-channels"
SILENCES = "/api/v1/silences"
LATER = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
LATER_TEXT = LATER.isoformat().replace("+00:00", "Z")

Case = tuple[str, dict[str, Any], str | None]  # what, body, the field refused (None: accepted)


def body_validator(document: dict[str, Any], path: str, method: str) -> Any:
    """The document's schema of a request body, as a JSON Schema validator (ECMA-like
    patterns, formats checked), references resolved within the document."""
    content = document["paths"][path][method]["requestBody"]["content"]
    schema = content["application/json"]["schema"]
    return jsonschema_rs.validator_for(
        {**schema, "components": document["components"]}, validate_formats=True
    )


async def disagreements(
    client: httpx.AsyncClient,
    path: str,
    cases: list[Case],
    accepted: int,
    *,
    document_states_it: bool = True,
    method: str = "post",
    documented_as: str | None = None,
) -> list[str]:
    """Where the server or the document does not answer a case as it says: a refusal is
    a 422 problem whose errors name the field (and, where `document_states_it`, a body
    the document refuses); an acceptance is `accepted`, and a body the document takes."""
    document = (await client.get("/openapi.json")).json()
    valid = body_validator(document, documented_as or path, method)
    wrong = []
    for what, body, field in cases:
        response = await client.request(method.upper(), path, json=body)
        if field is None:
            if response.status_code != accepted:
                wrong.append(f"{what}: {response.status_code} {response.text[:300]}")
            if not valid.is_valid(body):
                wrong.append(f"{what}: the document refuses it")
            continue
        if response.status_code != 422:
            wrong.append(f"{what}: {response.status_code} {response.text[:300]}, not 422")
            continue
        problem = response.json()
        named = [".".join(str(p) for p in e["loc"][1:]) for e in problem.get("errors", [])]
        if field not in named:
            wrong.append(f"{what}: names {named}, not {field!r}: {problem['detail']}")
        if valid.is_valid(body) != (not document_states_it):
            says = "takes" if valid.is_valid(body) else "refuses"
            wrong.append(f"{what}: the document {says} it")
    return wrong


async def a_source(client: httpx.AsyncClient) -> int:
    source_id: int = (await client.get("/api/v1/sources")).json()[0]["id"]
    return source_id


async def a_rule(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body = {"name": "errors", "threshold": 3, "window_seconds": 300, **fields}
    created = await client.post("/api/v1/alert-rules", json=body)
    assert created.status_code == 201, created.text
    rule: dict[str, Any] = created.json()
    return rule


# -- rules --------------------------------------------------------------------------------


RULES: list[Case] = [
    ("the defaults", {}, None),
    ("levels", {"level": ["WARN", "ERROR"]}, None),
    ("a whole count as 3.0", {"threshold": 3.0}, None),
    ("a ratio", {"kind": "ratio", "threshold": 0.25, "denominator": {"min_level": "INFO"}},
     None),
    ("an absence by source", {"kind": "absence", "threshold": 1, "group_by": "source",
                              "expected_groups": ["app_errors"], "seen_lookback_seconds": 600},
     None),
    ("new shapes, no groups", {"kind": "new_pattern", "group_by": ""}, None),
    ("a metadata group", {"group_by": "metadata.http.status", "labels": {"team": "pay"},
                          "metadata": {"http.status": "500"}}, None),
    ("level and min_level", {"level": ["WARN"], "min_level": "ERROR"}, "min_level"),
    ("a ratio over 1", {"kind": "ratio", "threshold": 2}, "threshold"),
    ("a count of 2.5", {"threshold": 2.5}, "threshold"),
    ("a negative threshold", {"threshold": -1.1}, "threshold"),
    ("an absence below 1", {"kind": "absence", "threshold": 0}, "threshold"),
    ("expected groups without groups", {"kind": "absence", "expected_groups": ["a"]},
     "expected_groups"),
    ("a lookback without groups", {"kind": "absence", "seen_lookback_seconds": 600},
     "seen_lookback_seconds"),
    ("new shapes grouped", {"kind": "new_pattern", "group_by": "source"}, "group_by"),
    ("a group by a spaced key", {"group_by": "metadata.a b"}, "group_by"),
    ("a group key ending in a newline", {"group_by": "metadata.a\n"}, "group_by"),
    ("a label name with a space", {"labels": {"a b": "x"}}, "labels"),
    ("a label name ending in a newline", {"labels": {"a\n": "x"}}, "labels"),
    ("17 labels", {"labels": {f"l{i}": "x" for i in range(17)}}, "labels"),
    ("a label with NUL", {"labels": {"team": "a\x00"}}, "labels"),
    ("an empty metadata key", {"metadata": {"a..b": "1"}}, "metadata"),
    ("a metadata key with NUL", {"not_metadata": {"a\x00": "1"}}, "not_metadata"),
    ("a long metadata value", {"metadata": {"k": "x" * 1025}}, "metadata"),
    ("9 metadata terms", {"metadata": {f"k{i}": "1" for i in range(9)}}, "metadata"),
    ("an empty contains", {"contains": ""}, "contains"),
    ("NUL in a description", {"description": "a\x00b"}, "description"),
    ("an empty contains in a threshold rule's denominator", {"denominator": {"contains": ""}},
     "denominator.contains"),
    ("a denominator with level and min_level",
     {"kind": "ratio", "threshold": 0.5, "denominator": {"level": ["WARN"], "min_level": "ERROR"}},
     "denominator.min_level"),
]  # fmt: skip


async def test_a_rule_is_refused_for_what_the_document_says(client: httpx.AsyncClient) -> None:
    assert await disagreements(client, PREVIEW, RULES, 200) == []


async def test_what_the_document_cannot_say_of_a_rule(client: httpx.AsyncClient) -> None:
    """Refused with a 422 naming the field, though the document takes them: what exists,
    and the search's rules that no schema states (schemathesis.toml says the same)."""
    cases: list[Case] = [
        ("a source that does not exist", {"sources": [999_999]}, "sources"),
        ("a query without words", {"query": "!!!"}, "query"),
        ("terms nested in one another", {"metadata": {"a": "1", "a.b": "2"}}, "metadata.a.b"),
        ("8 terms and 1 excluded", {"metadata": {f"k{i}": "1" for i in range(8)},
                                    "not_metadata": {"x": "1"}}, "metadata"),
        ("a number out of range", {"metadata": {"n": "1e999"}}, "metadata.n"),
    ]  # fmt: skip
    wrong = await disagreements(client, PREVIEW, cases, 200, document_states_it=False)
    assert wrong == []


async def test_a_change_to_a_rule_is_checked_and_never_a_500(client: httpx.AsyncClient) -> None:
    rule = await a_rule(client, level=["WARN"])
    path = f"/api/v1/alert-rules/{rule['id']}"
    cases: list[Case] = [
        ("nothing", {}, None),
        ("a new name and labels", {"name": "warnings", "labels": {"team": "pay"}}, None),
        ("NUL in the name", {"name": "a\x00"}, "name"),
        ("NUL in a label name", {"labels": {"a\x00": "x"}}, "labels"),
        ("NUL in a metadata term", {"metadata": {"k": "v\x00"}}, "metadata"),
        ("a field rules do not have", {"colour": "red"}, "colour"),
        ("a null name", {"name": None}, "name"),
        ("a group by a spaced key", {"group_by": "metadata.a b"}, "group_by"),
    ]
    wrong = await disagreements(
        client, path, cases, 200, method="patch", documented_as="/api/v1/alert-rules/{rule_id}"
    )
    assert wrong == []
    # What the change makes with the rest of the rule is checked as a whole: the
    # document takes {"min_level": ...} alone, the rule already has levels.
    clash = await client.patch(path, json={"min_level": "ERROR"})
    body = assert_problem(clash, 422, "min_level: give either level or min_level")
    assert body["errors"][0]["loc"] == ["body", "min_level"]
    # The fuzzer's body: keys with NUL and lone surrogates (escaped: no client encodes them).
    fuzzed = rb'{"\u0097\ud88f\udd80\udaf7\u0000\u001e": {"\u0001": ["\ud988", -1, null]}}'
    unknown_key = await client.patch(path, content=fuzzed, headers=JSON)
    assert_problem(unknown_key, 422, "body: ")
    assert "\\u0000" not in unknown_key.text and "\\ud988" not in unknown_key.text
    after = (await client.get(path)).json()
    assert (after["name"], after["labels"], after["level"]) == ("warnings", {"team": "pay"},
                                                               ["WARN"])  # fmt: skip


async def test_a_change_states_only_what_it_changes(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    update = document["components"]["schemas"]["AlertRuleUpdate"]
    create = document["components"]["schemas"]["AlertRuleCreate"]
    assert update["additionalProperties"] is False
    assert set(update["properties"]) == set(create["properties"])
    assert "required" not in update and "allOf" not in update
    assert not [name for name, p in update["properties"].items() if "default" in p]
    assert create["allOf"] and "name" in create["required"]


async def test_preview_is_no_rule_id(client: httpx.AsyncClient) -> None:
    for method in ("PATCH", "GET", "DELETE"):
        response = await client.request(method, PREVIEW, json={})
        assert_problem(response, 405, f"{method} is not allowed here (allowed: POST)")
        assert response.headers["allow"] == "POST"
    assert_problem(await client.get("/api/v1/alert-rules/preview/history"), 404, "Not Found")
    assert_problem(await client.patch("/api/v1/alert-rules/x1", json={}), 404, "Not Found")
    document = (await client.get("/openapi.json")).json()
    assert set(document["paths"]["/api/v1/alert-rules/{rule_id}"]) == {"get", "patch", "delete"}
    assert "/api/v1/alert-rules/{rule_id}/history" in document["paths"]


# -- channels -------------------------------------------------------------------------------

SECRET = "s" * 16

CHANNEL_CASES: list[Case] = [
    ("a webhook", {"name": "w", "kind": "webhook", "url": "http://127.0.0.1:9/x",
                   "secret": SECRET}, None),
    ("email to a text of addresses", {"name": "e", "kind": "email",
                                      "to": "ops@example.test, b@example.test",
                                      "url": "", "secret": None}, None),
    ("slack", {"name": "s", "kind": "slack", "url": "https://hooks.slack.com/services/T/B/X",
               "to": []}, None),
    ("teams", {"name": "t", "kind": "teams", "url": "https://x.webhook.office.com/a?b=c"}, None),
    ("the fuzzer's email without addresses",
     {"kind": "email", "name": "0", "secret": "x", "to": "", "url": ""}, "to"),
    ("an email with a secret", {"kind": "email", "name": "0", "secret": "x",
                                "to": "a@b.test"}, "secret"),
    ("an email with a url", {"name": "e", "kind": "email", "to": ["ops@example.test"],
                             "url": "https://x.test/"}, "url"),
    ("a webhook's short secret", {"name": "w", "kind": "webhook", "url": "http://h.test/x",
                                  "secret": "short"}, "secret"),
    ("a webhook without a secret", {"name": "w", "kind": "webhook",
                                    "url": "http://h.test/x"}, "secret"),
    ("a webhook's broken url", {"name": "w", "kind": "webhook", "url": "http://[",
                                "secret": SECRET}, "url"),
    ("a webhook's port past 65535", {"name": "w", "kind": "webhook",
                                     "url": "http://h.test:65536/", "secret": SECRET}, "url"),
    ("a webhook over ftp", {"name": "w", "kind": "webhook", "url": "ftp://h.test/x",
                            "secret": SECRET}, "url"),
    ("a url with a space", {"name": "w", "kind": "webhook", "url": "http://h.test/a b",
                            "secret": SECRET}, "url"),
    ("the fuzzer's teams url, no IPv6 address", {"secret": "", "kind": "teams", "to": "",
                                                 "name": "\u00ab`C\U000cecf3\u0096",
                                                 "url": "https://r)rS@[0b.0]"}, "url"),
    ("a webhook to an IPv6 address", {"name": "v6", "kind": "webhook",
                                      "url": "http://[fd00::5]:9000/hook", "secret": SECRET},
     None),
    ("slack over http", {"name": "s", "kind": "slack",
                         "url": "http://hooks.slack.com/x"}, "url"),
    ("slack with a secret", {"name": "s", "kind": "slack", "url": "https://hooks.slack.com/x",
                             "secret": SECRET}, "secret"),
    ("teams with addresses", {"name": "t", "kind": "teams", "url": "https://x.test/",
                              "to": ["a@b.test"]}, "to"),
    ("an address with a space", {"name": "e", "kind": "email",
                                 "to": ["ops@example.test", "not an@address"]}, "to"),
    ("51 addresses", {"name": "e", "kind": "email",
                      "to": [f"a{i}@x.test" for i in range(51)]}, "to"),
    ("addresses with an empty one", {"name": "e", "kind": "email", "to": "a@x.test,,"}, "to"),
    ("an unknown kind", {"name": "p", "kind": "pigeon"}, "kind"),
    ("no kind", {"name": "p"}, "kind"),
    ("NUL in a name", {"name": "a\x00", "kind": "slack", "url": "https://x.test/"}, "name"),
]  # fmt: skip


async def test_a_channel_takes_what_its_kind_takes(client: httpx.AsyncClient) -> None:
    assert await disagreements(client, CHANNELS, CHANNEL_CASES, 201) == []
    document = (await client.get("/openapi.json")).json()
    schema = document["components"]["schemas"]["ChannelCreate"]
    assert schema["discriminator"]["mapping"] == {
        "webhook": "#/components/schemas/WebhookChannel",
        "email": "#/components/schemas/EmailChannel",
        "slack": "#/components/schemas/ChatChannel",
        "teams": "#/components/schemas/ChatChannel",
    }
    listed = {c["name"]: c for c in (await client.get(CHANNELS)).json()}
    assert listed["e"]["to"] == ["ops@example.test", "b@example.test"]
    assert (listed["w"]["has_secret"], listed["s"]["url"]) == (True, "https://hooks.slack.com/…")


# -- silences -------------------------------------------------------------------------------


async def test_a_silence_takes_what_the_document_says(client: httpx.AsyncClient) -> None:
    rule = (await a_rule(client))["id"]
    cases: list[Case] = [
        ("a rule until later", {"rule_id": rule, "ends_at": LATER_TEXT}, None),
        ("a daily window by labels, with offsets",
         {"matchers": {"team": "pay*"}, "starts_at": "2026-01-05T01:00:00+02:00",
          "ends_at": "2026-01-05T03:30:00.25+02:00", "repeat": "daily",
          "repeat_until": "2031-01-01T00:00:00Z", "rule_id": None, "group": None}, None),
        ("a group of a rule", {"rule_id": rule, "group": "", "ends_at": LATER_TEXT}, None),
        ("the fuzzer's starts_at of 0", {"rule_id": rule, "starts_at": 0,
                                         "ends_at": LATER_TEXT}, "starts_at"),
        ("Unix time in text", {"rule_id": rule, "starts_at": "1700000000",
                               "ends_at": LATER_TEXT}, "starts_at"),
        ("a naive time", {"rule_id": rule, "ends_at": "2030-01-01T00:00:00"}, "ends_at"),
        ("a space for T", {"rule_id": rule, "ends_at": "2030-01-01 00:00:00Z"}, "ends_at"),
        ("seven digits of a second", {"rule_id": rule,
                                      "ends_at": "2030-01-01T00:00:00.1234567Z"}, "ends_at"),
        ("30 February", {"rule_id": rule, "ends_at": "2030-02-30T00:00:00Z"}, "ends_at"),
        ("neither a rule nor labels", {"ends_at": LATER_TEXT}, "matchers"),
        ("a group without its rule", {"group": "x", "matchers": {"a": "b"},
                                      "ends_at": LATER_TEXT}, "group"),
        ("repeat_until without repeat", {"rule_id": rule, "ends_at": LATER_TEXT,
                                         "repeat_until": "2031-01-01T00:00:00Z"}, "repeat_until"),
        ("a label name with NUL", {"matchers": {"a\x00": "b"}, "ends_at": LATER_TEXT},
         "matchers"),
        ("a label name of 65", {"matchers": {"k" * 65: "b"}, "ends_at": LATER_TEXT}, "matchers"),
        ("a value that is no text", {"matchers": {"k": 5}, "ends_at": LATER_TEXT}, "matchers"),
    ]  # fmt: skip
    assert await disagreements(client, SILENCES, cases, 201) == []
    listed = (await client.get(SILENCES)).json()
    window = next(s for s in listed if s["repeat"] == "daily")
    assert (window["starts_at"], window["ends_at"]) == (
        "2026-01-04T23:00:00Z", "2026-01-05T01:30:00.250000Z",
    )  # fmt: skip


async def test_what_the_document_cannot_say_of_a_silence(client: httpx.AsyncClient) -> None:
    """The clock and the relation of two instants (schemathesis.toml says the same)."""
    rule = (await a_rule(client))["id"]
    cases: list[Case] = [
        ("an end already past", {"rule_id": rule, "ends_at": "2020-01-01T00:00:00Z"}, "ends_at"),
        ("a daily window of two days", {"rule_id": rule, "starts_at": "2030-01-01T00:00:00Z",
                                        "ends_at": "2030-01-03T00:00:00Z", "repeat": "daily"},
         "ends_at"),
        ("an end in year 10000 in UTC", {"rule_id": rule,
                                         "ends_at": "9999-12-31T23:00:00-05:00"}, "ends_at"),
    ]  # fmt: skip
    wrong = await disagreements(client, SILENCES, cases, 201, document_states_it=False)
    assert wrong == []


async def test_a_chat_url_saved_before_it_was_checked_whole_is_hidden_whole(
    client: httpx.AsyncClient, db: Database
) -> None:
    """Saved by an older version, which took https://[0b.0]/...: listing channels split
    it to show its host, and every GET /alert-channels answered 500."""
    async with db.pool.acquire() as conn:
        await conn.execute(
            "INSERT INTO alert_channels (name, kind, url, recipients, secret)"
            " VALUES ('old chat', 'teams', 'https://[0b.0]/webhook/SECRET', '{}', '')"
        )
    listed = await client.get(CHANNELS)
    assert listed.status_code == 200, listed.text
    assert [c["url"] for c in listed.json() if c["name"] == "old chat"] == ["…"]
