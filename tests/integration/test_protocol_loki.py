"""Loki push from the real clients: python-logging-loki (JSON; it insists on 204) and
winston-loki (protobuf with raw snappy), with an API key as the Basic password."""

from __future__ import annotations

import asyncio
import logging
import uuid
from datetime import UTC, datetime, timedelta

import logging_loki
import pytest

from logkeep.config import Settings
from logkeep.db.access import AccessRepository
from logkeep.db.database import Database
from tests.integration.shippers import node_module, run_node, shipper_stack, wait_rows


async def ingest_key(db: Database) -> str:
    key = await AccessRepository(db.pool).create_key("shipper", ["ingest"], all_sources=True)
    return key.token


@pytest.fixture
def auth_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"auth_required": True})


async def test_python_logging_loki_json_exactly_once(auth_settings: Settings) -> None:
    tag = uuid.uuid4().hex
    async with shipper_stack(auth_settings) as stack:
        token = await ingest_key(stack.db)
        handler = logging_loki.LokiHandler(
            url=f"{stack.url}/loki/api/v1/push",
            tags={"app": "shop-py", "env": "test"},
            auth=("shipper", token),
            version="1",
        )
        failures: list[str] = []
        handler.handleError = lambda record: failures.append(record.getMessage())
        logger = logging.getLogger(f"loki.{tag}")
        logger.propagate = False
        logger.setLevel(logging.DEBUG)
        logger.addHandler(handler)
        try:
            await asyncio.to_thread(
                logger.warning, "cache miss %s", tag, extra={"tags": {"region": "eu"}}
            )
            # python-logging-loki stamps each push with the time it sends it; the same
            # push sent twice (a retry after a lost answer) is stored once.
            record = logger.makeRecord(
                logger.name, logging.ERROR, __file__, 1, "cache down %s", (tag,), None
            )
            emitter = handler.emitter
            payload = emitter.build_payload(record, handler.format(record))
            for _ in range(2):
                answer = await asyncio.to_thread(
                    emitter.session.post, emitter.url, json=payload, timeout=10
                )
                assert answer.status_code == 204
        finally:
            logger.removeHandler(handler)
            handler.close()
        stored = await wait_rows(stack.db, tag, 2)
    assert failures == []  # every push was answered 204
    assert len(stored) == 2
    miss, down = stored
    assert {r["source"] for r in stored} == {"shop-py"}
    assert (miss["level"], down["level"]) == ("WARN", "ERROR")
    assert miss["message"] == f"cache miss {tag}"
    assert miss["metadata"]["labels"] == {
        "app": "shop-py",
        "env": "test",
        "region": "eu",
        "severity": "warning",
        "logger": f"loki.{tag}",
    }
    assert abs(down["timestamp"] - datetime.now(UTC)) < timedelta(minutes=1)


@pytest.mark.slow  # a Node.js or syslog-ng subprocess
async def test_winston_loki_protobuf_snappy(auth_settings: Settings) -> None:
    node_module("winston-loki")
    node_module("snappy")
    tag = uuid.uuid4().hex
    async with shipper_stack(auth_settings) as stack:
        token = await ingest_key(stack.db)
        env = {"LOKI_URL": stack.url, "TAG": tag, "AUTH": f"shipper:{token}"}
        out = await run_node("winston_loki.cjs", env)
        stored = await wait_rows(stack.db, tag, 2)
    assert "content-type application/x-protobuf" in out
    assert len(stored) == 2
    low, gone = sorted(stored, key=lambda r: r["level"] != "WARN")
    assert {r["source"] for r in stored} == {"shop-node"}
    assert (low["level"], gone["level"]) == ("WARN", "ERROR")
    assert low["message"] == f"stock low {tag}"
    assert low["metadata"]["labels"]["component"] == "inventory"
    assert low["metadata"]["labels"]["env"] == "test"
    assert abs(low["timestamp"] - datetime.now(UTC)) < timedelta(minutes=1)
