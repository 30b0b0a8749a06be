"""Numbers kept exactly (or refused with one reason) on every way in and out, checked
against what PostgreSQL holds; and the parsing rules of issue 15 end to end."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from logkeep.config import Settings
from logkeep.db.database import Database
from logkeep.db.repositories import LogRepository
from logkeep.ingest.worker import Worker
from tests.conftest import running_app, served
from tests.integration.test_cli_ingest import run_ingest
from tests.integration.test_tail import read_events, wait_subscribed

NDJSON = {"Content-Type": "application/x-ndjson"}
RANGE = "(numbers are kept as 0, or from 5e-324 to 1.8e308 in magnitude)"


@dataclass(frozen=True)
class Case:
    name: str
    sent: str  # the JSON number as a client writes it
    stored: str | None  # PostgreSQL's text of metadata->'n', or None: refused
    reason: str = ""  # why it is refused, the same on every way in

    @property
    def value(self) -> Decimal:
        """The exact value the client sent."""
        return Decimal(self.sent)


def digits(text: str) -> str:
    """PostgreSQL's text for a number: positional notation, never an exponent."""
    return format(Decimal(text), "f")


CASES = [
    Case("integer-1e30", "1" + "0" * 30, "1" + "0" * 30),
    Case("uint64-plus-one", str(2**64), str(2**64)),
    Case("uint64-max", str(2**64 - 1), str(2**64 - 1)),
    Case("int64-min-minus-one", str(-(2**63) - 1), str(-(2**63) - 1)),
    Case("big-negative", "-" + "9" * 40, "-" + "9" * 40),
    Case(
        "big-with-fraction", "123456789012345678901234567890.5", "123456789012345678901234567890.5"
    ),
    Case("fraction-17-digits", "0.12345678901234567", "0.12345678901234567"),
    Case("float-17-digits", "1700000000.1234567", "1700000000.1234567"),
    Case("fraction", "0.1", "0.1"),
    Case("fraction-trailing-zero", "12.50", "12.5"),  # an equal value
    Case("negative-fraction", "-2.75", "-2.75"),
    Case("exponent", "1e30", "1" + "0" * 30),
    Case("exponent-negative", "2.5E-3", "0.0025"),
    Case("exponent-plus", "4E+2", "400.0"),
    Case("double-max", "1.7976931348623157e308", digits("1.7976931348623157e308")),
    Case("smallest-subnormal", "5e-324", digits("5e-324")),
    Case("minus-zero", "-0", "0"),  # PostgreSQL has no negative zero: an equal value
    Case("minus-zero-fraction", "-0.0", "0.0"),
    Case("overflow", "1e999", None, f"the number 1E+999 is out of range {RANGE}"),
    Case("overflow-negative", "-1e999", None, f"the number -1E+999 is out of range {RANGE}"),
    Case("underflow", "1e-400", None, f"the number 1E-400 is out of range {RANGE}"),
    Case("just-over-double-max", "1.8e308", None, f"the number 1.8E+308 is out of range {RANGE}"),
    Case("nan", "NaN", None, "NaN is not a JSON number"),
    Case("infinity", "Infinity", None, "Infinity is not a JSON number"),
    Case("minus-infinity", "-Infinity", None, "-Infinity is not a JSON number"),
]


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(settings) as http:
        yield http


def event(message: str, number: str) -> str:
    """An event of app_errors with `number` as written (JSON text, not a Python value)."""
    return f'{{"source": "app_errors", "message": "{message}", "metadata": {{"n": {number}}}}}'


def exact(text: str | bytes) -> Any:
    """A JSON answer read with every number as an exact Decimal."""
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


async def stored_numbers(db: Database, tag: str) -> dict[str, list[tuple[str | None, str | None]]]:
    """message -> [(text of metadata->'n', _parse_error)] of the entries of this test."""
    async with db.pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT message, (metadata->'n')::text AS n, metadata->>'_parse_error' AS error"
            " FROM log_entries WHERE message LIKE $1 ORDER BY id",
            f"%{tag}%",
        )
    found: dict[str, list[tuple[str | None, str | None]]] = {}
    for row in rows:
        found.setdefault(row["message"], []).append((row["n"], row["error"]))
    return found


async def test_every_way_in_stores_each_number_exactly_or_refuses_it_the_same_way(
    api: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    tag = uuid.uuid4().hex
    events = [event(f"ndjson {c.name} {tag}", c.sent) for c in CASES]
    ndjson = await api.post("/api/v1/ingest", content="\n".join(events).encode(), headers=NDJSON)
    array_body = "[" + ",".join(e.replace('"ndjson ', '"array ') for e in events) + "]"
    array = await api.post(
        "/api/v1/ingest", content=array_body.encode(), headers={"Content-Type": "application/json"}
    )
    text_body = "\n".join(f'{{"msg": "text {c.name} {tag}", "n": {c.sent}}}' for c in CASES)
    text = await api.post(
        "/api/v1/ingest",  # a source of another format: format=json then keeps every field
        params={"source": "db_slow_queries", "format": "json"},
        content=text_body.encode(),
        headers={"Content-Type": "text/plain"},
    )
    one_by_one = {}
    for c in CASES:
        body = event(f"logs {c.name} {tag}", c.sent)
        one_by_one[c.name] = await api.post(
            "/api/v1/logs", content=body.encode(), headers={"Content-Type": "application/json"}
        )
    await Worker(db, settings, name="numbers").drain()
    stored = await stored_numbers(db, tag)

    refused = [c for c in CASES if c.stored is None]
    for response in (ndjson, array):
        assert response.status_code == 202, response.text
        answer = response.json()
        assert answer["accepted"] == len(CASES) - len(refused)
        reasons = {e["line"]: e["reason"] for e in answer["errors"]}
        assert reasons == {
            i: f"metadata.n: {c.reason}" for i, c in enumerate(CASES, 1) if c.stored is None
        }
    assert text.status_code == 202, text.text
    assert text.json()["accepted"] == len(CASES)  # text lines are never lost: kept whole

    for c in CASES:
        logs = one_by_one[c.name]
        if c.stored is None:
            assert logs.status_code == 422, logs.text
            assert logs.json()["detail"] == f"metadata.n: {c.reason}"
            assert f"ndjson {c.name} {tag}" not in stored
            assert f"array {c.name} {tag}" not in stored
            line = f'{{"msg": "text {c.name} {tag}", "n": {c.sent}}}'
            assert stored[line] == [(None, f"n: {c.reason}")], c.name  # the line, whole
        else:
            assert logs.status_code == 201, logs.text
            for way in ("ndjson", "array", "text", "logs"):
                assert stored[f"{way} {c.name} {tag}"] == [(c.stored, None)], (way, c.name)
            assert Decimal(c.stored) == c.value  # what PostgreSQL holds is what was sent


async def test_search_finds_each_number_and_every_answer_carries_it_exactly(
    api: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    tag = uuid.uuid4().hex
    kept = [c for c in CASES if c.stored is not None]
    body = "\n".join(
        f'{{"source": "app_errors", "message": "{c.name} {tag}", "metadata": {{"n": {c.sent}}}}}'
        for c in kept
    )
    response = await api.post("/api/v1/ingest", content=body.encode(), headers=NDJSON)
    assert response.json()["accepted"] == len(kept), response.text
    await Worker(db, settings, name="numbers").drain()

    for c in kept:
        params = {"contains": tag, "metadata.n": c.sent, "since": "1h"}
        page = await api.get("/api/v1/logs", params=params)
        assert page.status_code == 200, page.text
        items = exact(page.content)["items"]
        matched = {item["message"] for item in items}
        # Containment compares numbers by value: 0.1 is not 0.10000000000000001, -0 is 0.
        assert f"{c.name} {tag}" in matched, c.name
        assert all(Decimal(i["metadata"]["n"]) == c.value for i in items), c.name
        again = await api.get("/api/v1/logs", params=params)  # from the query cache
        assert again.content == page.content

    everything = {"contains": tag, "since": "1h", "limit": "1000"}
    page = exact((await api.get("/api/v1/logs", params=everything)).content)
    by_message = {i["message"]: i["metadata"]["n"] for i in page["items"]}
    exported = await api.get(
        "/api/v1/logs", params=everything, headers={"Accept": "application/x-ndjson"}
    )
    by_line = {
        item["message"]: item["metadata"]["n"] for item in map(exact, exported.content.splitlines())
    }
    as_csv = await api.get("/api/v1/logs", params=everything, headers={"Accept": "text/csv"})
    by_row = {
        row["message"]: exact(row["metadata"])["n"]
        for row in csv.DictReader(io.StringIO(as_csv.text))
    }
    for c in kept:
        message = f"{c.name} {tag}"
        for answer in (by_message, by_line, by_row):
            assert answer[message] == c.value, (c.name, answer[message])


async def test_a_search_for_a_number_out_of_range_is_refused_with_the_same_reason(
    api: httpx.AsyncClient,
) -> None:
    for c in CASES:
        if c.stored is None and c.name not in ("nan", "infinity", "minus-infinity"):
            response = await api.get("/api/v1/logs", params={"metadata.n": c.sent})
            assert response.status_code == 422, response.text
            assert c.reason in response.json()["detail"]


@pytest.mark.slow
async def test_live_tail_carries_numbers_exactly_from_both_write_paths(
    settings: Settings, db: Database
) -> None:
    tag = uuid.uuid4().hex
    repo = LogRepository(db.pool, db.redis_client, cache=db.cache, tail=db.tail)
    params = {"contains": tag, "metadata.n": str(10**30)}
    async with (
        served(settings) as base,
        httpx.AsyncClient(base_url=base) as client,
        client.stream("GET", "/api/v1/tail", params=params) as stream,
    ):
        await wait_subscribed()
        await repo.save_log_entry(
            {
                "message": f"direct {tag}",
                "source_id": 2,
                "metadata": {"n": 10**30, "f": Decimal("0.12345678901234567")},
            }
        )
        body = (
            f'{{"source": "app_errors", "message": "ingested {tag}",'
            f' "metadata": {{"n": {10**30}, "f": 0.12345678901234567}}}}'
        )
        posted = await client.post("/api/v1/ingest", content=body.encode(), headers=NDJSON)
        assert posted.json()["accepted"] == 1, posted.text
        await Worker(db, settings, name="numbers").drain()
        events = await read_events(stream, 2)
    assert [exact(e["data"])["message"] for e in events] == [f"direct {tag}", f"ingested {tag}"]
    for event in events:
        assert '"n":1000000000000000000000000000000' in event["data"]
        assert '"f":0.12345678901234567' in event["data"]


async def test_recent_entries_carry_big_integers_exactly(
    api: httpx.AsyncClient, log_repo: LogRepository
) -> None:
    tag = uuid.uuid4().hex
    await log_repo.save_log_entry(
        {"message": f"recent {tag}", "source_id": 2, "metadata": {"n": 10**30}}
    )
    recent = await api.get("/api/v1/logs/recent", params={"source": "app_errors", "limit": 5})
    (item,) = [i for i in exact(recent.content)["items"] if i["message"] == f"recent {tag}"]
    assert item["metadata"] == {"n": 10**30}


async def test_recent_entries_one_entry_and_its_context_carry_long_fractions_exactly(
    api: httpx.AsyncClient, log_repo: LogRepository
) -> None:
    """Routes answering through pydantic would write the Decimal as a JSON string."""
    tag = uuid.uuid4().hex
    fraction = Decimal("0.12345678901234567")
    big = 10**30
    await log_repo.save_log_entry(
        {"message": f"recent {tag}", "source_id": 2, "metadata": {"f": fraction, "n": big}}
    )
    recent = await api.get("/api/v1/logs/recent", params={"source": "app_errors", "limit": 5})
    (item,) = [i for i in exact(recent.content)["items"] if i["message"] == f"recent {tag}"]
    assert item["metadata"] == {"f": fraction, "n": big}
    assert item["timestamp"].endswith("Z")  # as search and the models write instants

    key = {"source": "app_errors", "at": item["timestamp"]}
    entry = await api.get(f"/api/v1/logs/{item['id']}", params=key)
    assert entry.status_code == 200, entry.text
    assert exact(entry.content)["metadata"] == {"f": fraction, "n": big}
    # The entry's neighbours: ask from just after it, so it is the last one before.
    context = await api.get(
        f"/api/v1/logs/{item['id'] + 1}/context", params=key | {"before": 1, "after": 0}
    )
    assert context.status_code == 200, context.text
    (before,) = exact(context.content)["before"]
    assert before["metadata"] == {"f": fraction, "n": big}


async def test_a_rule_preview_carries_numbers_exactly(api: httpx.AsyncClient) -> None:
    line = '{"message": "paid", "amount": 0.12345678901234567, "id": 1000000000000000000000}'
    preview = await api.post("/api/v1/sources/preview", json={"format_type": "json", "line": line})
    assert preview.status_code == 200, preview.text
    assert exact(preview.content)["entry"]["metadata"] == {
        "amount": Decimal("0.12345678901234567"),
        "id": 10**21,
    }


# --- issue 15: parsing the same way everywhere --------------------------------------------


async def test_logfmt_numbers_are_numbers_that_a_metadata_search_finds(
    api: httpx.AsyncClient, db: Database, settings: Settings
) -> None:
    tag = uuid.uuid4().hex
    lines = [
        f"level=warn msg=slow duration_ms=30012 cached=false tag={tag}",
        f"level=info msg=fast duration_ms=12 cached=true tag={tag}",
        f"Connection at 10:00 is refused {tag}",  # not logfmt
    ]
    response = await api.post(
        "/api/v1/ingest",
        params={"source": "app_errors", "format": "logfmt"},
        content="\n".join(lines).encode(),
        headers={"Content-Type": "text/plain"},
    )
    assert response.json()["accepted"] == 3, response.text
    await Worker(db, settings, name="logfmt").drain()
    found = await api.get(
        "/api/v1/logs", params={"metadata.duration_ms": "30012", "metadata.tag": tag}
    )
    assert [i["message"] for i in found.json()["items"]] == ["slow"]
    assert found.json()["items"][0]["metadata"] == {
        "duration_ms": 30012,
        "cached": False,
        "tag": tag,
    }
    assert (
        await api.get("/api/v1/logs", params={"metadata.cached": "true", "metadata.tag": tag})
    ).json()["items"][0]["message"] == "fast"
    async with db.pool.acquire() as conn:
        prose = await conn.fetchrow(
            "SELECT message, metadata FROM log_entries WHERE message = $1", lines[2]
        )
    assert prose is not None
    assert prose["metadata"] == {"_parse_error": "not logfmt: no key=value pair"}


async def test_nginx_lines_sent_by_logkeep_ingest_keep_the_line_as_the_seed_does(
    settings: Settings, db: Database, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:10]
    stamp = datetime.now(UTC).strftime("%d/%b/%Y:%H:%M:%S +0000")
    line = (
        f'203.0.113.9 - - [{stamp}] "GET /{tag}?q=1 HTTP/1.1" 503 2326 "-" '
        '"Mozilla/5.0 (X11; Linux x86_64)" "custom-field" 0.123'
    )
    log_file = tmp_path / "access.log"
    log_file.write_text(line + "\n")
    async with served(settings) as base_url:
        code, out, err = await run_ingest(
            base_url, tmp_path, str(log_file), "--source", "nginx_access"
        )
    assert code == 0, out + err
    await Worker(db, settings, name="nginx").drain()
    async with db.pool.acquire() as conn:
        ingested = await conn.fetchrow(
            "SELECT message, level, metadata FROM log_entries WHERE metadata->>'path' = $1",
            f"/{tag}?q=1",
        )
    assert ingested is not None
    assert ingested["message"] == line  # as logged, the custom fields included
    assert ingested["level"] == "ERROR"
    assert ingested["metadata"]["status"] == 503
    assert ingested["metadata"]["bytes"] == 2326
    # The seed's lines are stored the same way: tests/unit/test_parsers.py parses the
    # generator's lines and finds its messages and metadata.
