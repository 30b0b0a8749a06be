"""LogkeepHandler without a logkeep: events as encoded, retry pacing, the bounded queue."""

from __future__ import annotations

import ast
import logging
import logging.config
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from logkeep import handler as handler_module
from logkeep.handler import (
    LogkeepHandler,
    backoff_seconds,
    encode_event,
    logkeep_level,
    retry_after_seconds,
)


def make_record(message: str = "hello %s", *args: object, **extra: Any) -> logging.LogRecord:
    logger = logging.getLogger("tests.handler")
    exc_info = extra.pop("exc_info", None)
    record = logger.makeRecord(
        "tests.handler", logging.WARNING, __file__, 42, message, args, exc_info, "fn", extra
    )
    return record


def free_port() -> int:
    """A loopback port nothing listens on: connections to it are refused at once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def decode(line: bytes) -> dict[str, Any]:
    event: dict[str, Any] = orjson.loads(line)
    return event


def test_the_module_imports_only_the_standard_library_httpx_and_orjson() -> None:
    tree = ast.parse(Path(handler_module.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert imported - set(sys.stdlib_module_names) == {"httpx", "orjson"}


def test_an_application_importing_the_handler_loads_no_store_driver() -> None:
    """The package's own names load lazily, so an application pays for httpx only."""
    probe = (
        "import sys, logkeep.handler; "
        "print(sorted(m for m in ('asyncpg', 'redis', 'pydantic', 'fastapi') if m in sys.modules))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert shown.strip() == "[]"


@pytest.mark.parametrize(
    ("levelno", "level"),
    [
        (logging.DEBUG, "DEBUG"),
        (5, "DEBUG"),
        (logging.INFO, "INFO"),
        (25, "INFO"),
        (logging.WARNING, "WARN"),
        (logging.ERROR, "ERROR"),
        (logging.CRITICAL, "FATAL"),
        (60, "FATAL"),
    ],
)
def test_levels_map_to_logkeep_levels(levelno: int, level: str) -> None:
    assert logkeep_level(levelno) == level


def test_an_event_carries_the_record_time_level_fields_and_extras() -> None:
    record = make_record("order %s paid", 7, user="ana", amount=12.5, when=datetime(2024, 1, 1))
    record.created = 1_700_000_000.123456
    event = decode(encode_event(record, record.getMessage(), source="shop", event_id="a-1"))
    assert event["source"] == "shop" and event["event_id"] == "a-1"
    assert event["message"] == "order 7 paid"
    assert event["level"] == "WARN"
    assert datetime.fromisoformat(event["timestamp"]) == datetime.fromtimestamp(
        1_700_000_000.123456, UTC
    )
    meta = event["metadata"]
    assert meta["user"] == "ana" and meta["amount"] == 12.5
    assert meta["when"] == "2024-01-01T00:00:00"  # datetimes as text
    assert meta["logger"] == "tests.handler" and meta["line"] == 42 and meta["function"] == "fn"
    assert meta["thread"] == "MainThread" and isinstance(meta["process"], int)
    assert "exception_type" not in meta


def test_record_fields_win_over_extras_of_the_same_name() -> None:
    record = make_record("x", logger="spoofed", custom={"a": [1, 2]})
    meta = decode(encode_event(record, "x", source="s", event_id="e"))["metadata"]
    assert meta["logger"] == "tests.handler"
    assert meta["custom"] == {"a": [1, 2]}


def test_a_traceback_is_one_message_with_its_exception_type() -> None:
    handler = LogkeepHandler(source="s", url="http://127.0.0.1:9")
    try:
        try:
            raise KeyError("card")
        except KeyError as exc:
            raise ValueError("declined") from exc
    except ValueError:
        record = make_record("payment failed", exc_info=sys.exc_info())
    event = decode(encode_event(record, handler.format(record), source="s", event_id="e"))
    message = event["message"]
    assert message.startswith("payment failed\nTraceback (most recent call last):")
    assert "KeyError: 'card'" in message and message.endswith("ValueError: declined")
    assert event["metadata"]["exception_type"] == "ValueError"
    handler.close()


def test_nul_bytes_and_lone_surrogates_become_replacement_characters() -> None:
    record = make_record("x", note="a\x00b", broken="\udcff")
    event = decode(encode_event(record, "bad\x00text \ud800", source="s", event_id="e"))
    assert event["message"] == "bad\ufffdtext \ufffd"
    assert event["metadata"]["note"] == "a\ufffdb"
    assert event["metadata"]["broken"] == "\ufffd"


def test_an_oversized_message_is_cut_in_the_middle_not_lost() -> None:
    message = "HEAD " + "é" * 400_000 + " TAIL"
    line = encode_event(make_record(), message, source="s", event_id="e", max_bytes=64 * 1024)
    assert len(line) <= 64 * 1024
    event = decode(line)
    assert event["message"].startswith("HEAD ") and event["message"].endswith(" TAIL")
    assert "characters cut by logkeep.handler" in event["message"]


def test_oversized_extras_are_dropped_and_said_so() -> None:
    record = make_record("x", blob="z" * 100_000)
    event = decode(encode_event(record, "x", source="s", event_id="e"))
    meta = event["metadata"]
    assert "blob" not in meta and "over the" in meta["_extra_dropped"]
    assert meta["logger"] == "tests.handler"


def test_an_extra_whose_str_fails_does_not_lose_the_record() -> None:
    class Hostile:
        def __str__(self) -> str:
            raise RuntimeError("no")

    event = decode(encode_event(make_record("x", thing=Hostile()), "x", source="s", event_id="e"))
    assert event["metadata"]["thing"] == "<Hostile that cannot be shown>"


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("0.5") == 0.5
    assert retry_after_seconds("-4") == 0.0
    assert retry_after_seconds("999999") == handler_module.MAX_RETRY_AFTER_S
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("nan") is None
    in_ten = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    seconds = retry_after_seconds(in_ten)
    assert seconds is not None and 8 <= seconds <= 10


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    first = [backoff_seconds(0, 10) for _ in range(200)]
    assert all(0.125 <= d <= 0.25 for d in first)
    late = [backoff_seconds(20, 10) for _ in range(200)]
    assert all(5 <= d <= 10 for d in late)
    assert len(set(late)) > 100  # jittered, not in lockstep


def test_a_full_queue_drops_new_records_counts_and_reports_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    handler = LogkeepHandler(
        source="s", url=f"http://127.0.0.1:{free_port()}", max_queue_records=100,
        flush_timeout=0.2, close_timeout=0.2,
    )  # fmt: skip
    logger = logging.getLogger("tests.handler.full")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        started = time.monotonic()
        for i in range(1000):
            logger.warning("record %d", i)
        assert time.monotonic() - started < 2
        stats = handler.stats()
        assert stats.queued == 100 and stats.dropped == 900
    finally:
        logger.removeHandler(handler)
        handler.close()
    err = capsys.readouterr().err
    assert err.count("dropping new records: the queue is full") == 1, err
    assert "100 records not delivered" in err
    assert handler.stats().abandoned == 100


def test_the_queue_is_bounded_in_bytes_too() -> None:
    handler = LogkeepHandler(
        source="s", url=f"http://127.0.0.1:{free_port()}", max_queue_bytes=50_000,
        close_timeout=0,
    )  # fmt: skip
    record = make_record("y" * 1000)
    for _ in range(100):
        handler.handle(record)
    stats = handler.stats()
    assert 20 <= stats.queued <= 50 and stats.dropped == 100 - stats.queued
    handler.close()


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGKEEP_API_URL", "https://logs.example:8443/")
    monkeypatch.setenv("LOGKEEP_API_TOKEN", "lkk_test")
    handler = LogkeepHandler(source="s")
    assert handler.url == "https://logs.example:8443/api/v1/ingest"
    assert handler._token == "lkk_test"
    explicit = LogkeepHandler(source="s", url="http://h:1/api/v1/ingest", token="")
    assert explicit.url == "http://h:1/api/v1/ingest" and explicit._token == ""
    handler.close()
    explicit.close()
    with pytest.raises(ValueError, match="source"):
        LogkeepHandler(source="")
    with pytest.raises(ValueError, match="batch_size"):
        LogkeepHandler(source="s", batch_size=0)
    with pytest.raises(ValueError, match="must start with http"):
        LogkeepHandler(source="s", url="localhost:8000")
    with pytest.raises(ValueError, match="must start with http"):
        LogkeepHandler(source="s", url="ftp://logs.example")


def test_dict_config_builds_the_handler() -> None:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "lk": {
                    "class": "logkeep.handler.LogkeepHandler",
                    "source": "app",
                    "url": "http://127.0.0.1:9",
                    "level": "WARNING",
                    "batch_size": 10,
                }
            },
            "loggers": {"tests.dictconfig": {"handlers": ["lk"], "propagate": False}},
        }
    )
    logger = logging.getLogger("tests.dictconfig")
    (handler,) = logger.handlers
    assert isinstance(handler, LogkeepHandler)
    assert handler.level == logging.WARNING and handler.batch_size == 10
    logger.removeHandler(handler)
    handler.close()
