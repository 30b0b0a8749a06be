"""OTLP/HTTP logs from the real clients: the OpenTelemetry Python SDK through the standard
logging handler (protobuf), and the Node exporter (JSON)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    InMemoryLogRecordExporter,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.resources import Resource
from prometheus_client import REGISTRY

from logkeep.config import Settings
from tests.integration.shippers import node_module, run_node, shipper_stack, wait_rows


@contextmanager
def otel_logger(
    url: str, service: str, name: str
) -> Iterator[tuple[logging.Logger, LoggerProvider, OTLPLogExporter, InMemoryLogRecordExporter]]:
    """A standard-library logger whose records the OpenTelemetry SDK exports to `url`
    (and keeps in memory, to send the very same records again)."""
    provider = LoggerProvider(
        resource=Resource.create({"service.name": service, "deployment.environment": "test"})
    )
    exporter = OTLPLogExporter(endpoint=f"{url}/v1/logs", timeout=20)
    memory = InMemoryLogRecordExporter()  # type: ignore[no-untyped-call]
    provider.add_log_record_processor(BatchLogRecordProcessor(exporter))
    provider.add_log_record_processor(SimpleLogRecordProcessor(memory))
    handler = LoggingHandler(level=logging.DEBUG, logger_provider=provider)
    logger = logging.getLogger(name)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    logger.addHandler(handler)
    try:
        yield logger, provider, exporter, memory
    finally:
        logger.removeHandler(handler)
        provider.shutdown()


async def test_python_sdk_logging_handler_with_exception_exactly_once(settings: Settings) -> None:
    tag = uuid.uuid4().hex
    async with shipper_stack(settings) as stack:
        with otel_logger(stack.url, "Checkout API", f"shop.{tag}") as (log, provider, exp, mem):
            log.warning("payment slow %s", tag, extra={"order_id": 42, "region": "eu"})
            try:
                _ = 1 / 0
            except ZeroDivisionError:
                log.exception("payment failed %s", tag)
            log.debug("cart details %s", tag)
            assert await asyncio.to_thread(provider.force_flush, 20_000)
            stored = await wait_rows(stack.db, tag, 3)
            # The very same records sent again (a retry after a lost answer): duplicates.
            again = await asyncio.to_thread(exp.export, mem.get_finished_logs())
            assert again.name == "SUCCESS"
            assert len(await wait_rows(stack.db, tag, 4, deadline_s=1)) == 3
    by_message = {r["message"].split(" ")[1]: r for r in stored}
    slow, failed, cart = by_message["slow"], by_message["failed"], by_message["details"]
    assert {r["source"] for r in stored} == {"checkout-api"}  # service.name, as a name
    assert (slow["level"], failed["level"], cart["level"]) == ("WARN", "ERROR", "DEBUG")
    assert slow["message"] == f"payment slow {tag}"
    assert slow["metadata"]["attributes"]["order_id"] == 42
    assert slow["metadata"]["attributes"]["region"] == "eu"
    assert slow["metadata"]["resource"]["service.name"] == "Checkout API"
    assert slow["metadata"]["resource"]["deployment.environment"] == "test"
    assert slow["metadata"]["scope"]["name"] == f"shop.{tag}"
    assert slow["metadata"]["severity_text"] == "WARN"
    attributes = failed["metadata"]["attributes"]
    assert attributes["exception.type"] == "ZeroDivisionError"
    assert "Traceback (most recent call last)" in attributes["exception.stacktrace"]
    assert "_ = 1 / 0" in attributes["exception.stacktrace"]
    assert abs(slow["timestamp"] - datetime.now(UTC)) < timedelta(minutes=1)


def backlog_full(source: str) -> float:
    labels = {"source": source, "outcome": "backlog_full"}
    return REGISTRY.get_sample_value("logkeep_ingest_events_total", labels) or 0.0


async def test_python_sdk_retries_a_503_after_retry_after(settings: Settings) -> None:
    """A full backlog answers 503 with Retry-After; the exporter waits and sends again,
    and the records land once the worker has caught up."""
    small = settings.model_copy(update={"ingest_max_backlog_bytes": 1024})
    tag = uuid.uuid4().hex
    source = f"retry-{tag[:8]}"
    async with shipper_stack(small, worker=False) as stack:
        filler = "\n".join(
            f'{{"source": "app_errors", "message": "filler {i} {"x" * 200}"}}' for i in range(10)
        )
        async with httpx.AsyncClient(base_url=stack.url) as http:
            first = await http.post(
                "/api/v1/ingest", content=filler, headers={"content-type": "application/x-ndjson"}
            )
            assert first.status_code == 202  # the backlog is now over its bound
        full_before = backlog_full(source)
        with otel_logger(stack.url, source, f"retry.{tag}") as (log, provider, _, _mem):
            log.error("after a 503 %s", tag)
            flushed = asyncio.create_task(asyncio.to_thread(provider.force_flush, 30_000))
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # until the first attempt met the full backlog
                if backlog_full(source) > full_before:
                    break
                await asyncio.sleep(0.05)
            assert backlog_full(source) > full_before
            await stack.tasks.start(stack.db, stack.settings, worker=True, syslog_port=None)
            assert await flushed
            stored = await wait_rows(stack.db, tag, 1)
    assert len(stored) == 1
    assert stored[0]["source"] == source
    assert stored[0]["level"] == "ERROR"


@pytest.mark.slow  # a Node.js or syslog-ng subprocess
async def test_node_exporter_sends_json(settings: Settings) -> None:
    node_module("@opentelemetry/exporter-logs-otlp-http")
    tag = uuid.uuid4().hex
    async with shipper_stack(settings) as stack:
        await run_node("otlp_json.cjs", {"OTLP_URL": f"{stack.url}/v1/logs", "TAG": tag})
        stored = await wait_rows(stack.db, tag, 2)
    assert len(stored) == 2
    info, error = sorted(stored, key=lambda r: r["level"] != "INFO")
    assert {r["source"] for r in stored} == {"node-billing"}
    assert info["message"] == f"invoice sent {tag}"
    assert info["metadata"]["attributes"] == {"invoice.id": "inv-7", "amount": 12.5}
    assert info["metadata"]["trace_id"] == "5b8efff798038103d269b633813fc60c"
    assert info["metadata"]["span_id"] == "eee19b7ec3c1b174"
    assert error["level"] == "ERROR"
    # A structured body is stored as JSON text.
    assert error["message"].startswith("{") and tag in error["message"]
    assert abs(info["timestamp"] - datetime.now(UTC)) < timedelta(minutes=1)
