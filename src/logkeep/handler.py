"""A `logging.Handler` that sends an application's log records to logkeep.

    import logging
    from logkeep.handler import LogkeepHandler

    logging.getLogger().addHandler(LogkeepHandler(source="myapp"))

`emit` turns a record into one event in the caller's thread (message and traceback as one
text, the record's time and level, its fields and `extra=` values as metadata) and puts it
in a bounded in-memory queue; that is all the application ever waits for. One background
thread sends the queue as NDJSON to `POST /api/v1/ingest` in batches (by size, or after
`flush_interval` seconds), retrying 429/503 after their `Retry-After` and unreachable
servers with capped exponential backoff and jitter. Every event carries its own
`event_id` and every batch an `Idempotency-Key`, so a batch retried after a lost answer is
stored once. A full queue drops the new record and counts it; a batch logkeep refuses for
good (a 4xx other than 429) is dropped and reported on stderr, never through `logging`.

This module needs only the standard library, httpx and orjson: importing it does not load
the server's dependencies.
"""

from __future__ import annotations

import collections
import contextlib
import email.utils
import gzip
import itertools
import logging
import math
import os
import random
import re
import sys
import threading
import time
import traceback
import uuid
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

DEFAULT_API_URL = "http://127.0.0.1:8000"
INGEST_PATH = "/api/v1/ingest"
# The server's per-line limit (LOGKEEP_INGEST_MAX_LINE_BYTES) and per-entry metadata limit;
# an event is cut to fit rather than refused, so a giant traceback still arrives.
DEFAULT_MAX_EVENT_BYTES = 256 * 1024
MAX_METADATA_BYTES = 60 * 1024
# Below this a body is sent as it is: gzip costs more than it saves on a few lines.
GZIP_MIN_BYTES = 16 * 1024
# Retry pacing: backoff doubles from the first delay up to `max_backoff`; a Retry-After
# is honoured up to this ceiling (a misconfigured proxy must not park the queue for a day).
FIRST_BACKOFF_S = 0.25
MAX_RETRY_AFTER_S = 300.0
# While closing, a retry waits at most this long, so the close deadline gets several tries.
CLOSING_RETRY_S = 0.5
# One report per kind of trouble per this many seconds on stderr; the rest are counted.
REPORT_EVERY_S = 60.0

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def logkeep_level(levelno: int) -> str:
    """logkeep's level for a `logging` level number (custom levels go to the one below)."""
    if levelno >= logging.CRITICAL:
        return "FATAL"
    if levelno >= logging.ERROR:
        return "ERROR"
    if levelno >= logging.WARNING:
        return "WARN"
    if levelno >= logging.INFO:
        return "INFO"
    return "DEBUG"


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header (seconds or an HTTP date) in seconds, or None if unusable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def backoff_seconds(attempt: int, cap: float) -> float:
    """Exponential backoff with equal jitter: half fixed, half random, so retries from
    many processes spread out without any of them retrying at once."""
    ceiling = min(cap, FIRST_BACKOFF_S * 2.0 ** min(attempt, 30))
    return ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not security


def _json_default(value: object) -> str:
    try:
        return str(value)
    except Exception:  # noqa: BLE001 - a user object whose __str__ fails must not lose the record
        return f"<{type(value).__name__} that cannot be shown>"


_SURROGATE = re.compile("[\ud800-\udfff]")


def _clean_text(text: str) -> str:
    """Text logkeep accepts: NUL bytes and lone surrogates become U+FFFD."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = _SURROGATE.sub("\ufffd", text)
    return text


def _clean(value: Any) -> Any:
    """`value` with every string in it made acceptable (see _clean_text)."""
    if isinstance(value, str):
        return _clean_text(value)
    if isinstance(value, dict):
        return {_clean(str(k)): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, int | float | bool) or value is None:
        return value
    return _clean_text(_json_default(value))


def _cut_middle(text: str, keep: int) -> str:
    """`text` shortened to about `keep` characters, keeping its head and its tail (a
    traceback's message and its final exception line both matter)."""
    if len(text) <= keep:
        return text
    head = keep // 2
    tail = max(keep - head, 0)
    cut = len(text) - head - tail
    return f"{text[:head]}\n[... {cut} characters cut by logkeep.handler ...]\n{text[-tail:]}"


def _dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_json_default, option=orjson.OPT_NON_STR_KEYS)


def _exception_type(record: logging.LogRecord) -> str | None:
    if not record.exc_info or record.exc_info[0] is None:
        return None
    kind = record.exc_info[0]
    module = getattr(kind, "__module__", "")
    name = getattr(kind, "__qualname__", kind.__name__)
    return name if module in ("builtins", "") else f"{module}.{name}"


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """Where a record came from: logger, code location, thread, process, exception type."""
    fields: dict[str, Any] = {
        "logger": record.name,
        "module": record.module,
        "function": record.funcName,
        "line": record.lineno,
        "path": record.pathname,
        "thread": record.threadName,
        "thread_id": record.thread,
        "process": record.process,
        "process_name": record.processName,
    }
    task = record.__dict__.get("taskName")
    if task:
        fields["task"] = task
    exception_type = _exception_type(record)
    if exception_type:
        fields["exception_type"] = exception_type
    return fields


def record_metadata(record: logging.LogRecord) -> dict[str, Any]:
    """A record's fields, then its `extra=` values (the fields win a name clash)."""
    extra = {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRS}
    return {**extra, **record_fields(record)}


def encode_event(
    record: logging.LogRecord,
    message: str,
    *,
    source: str,
    event_id: str,
    max_bytes: int = DEFAULT_MAX_EVENT_BYTES,
) -> bytes:
    """One NDJSON line for `record`, at most `max_bytes` long: the message is cut in the
    middle and oversized `extra=` values dropped (and said so) rather than the event lost."""
    metadata = record_metadata(record)
    try:
        encoded_metadata = _dumps(metadata)
    except orjson.JSONEncodeError:  # lone surrogates, or numbers JSON cannot hold
        metadata = _clean(metadata)
        encoded_metadata = _dumps(metadata)
    if b"\\u0000" in encoded_metadata:
        metadata = _clean(metadata)
        encoded_metadata = _dumps(metadata)
    if len(encoded_metadata) > MAX_METADATA_BYTES:
        metadata = _clean(record_fields(record))
        metadata["_extra_dropped"] = (
            f"extra fields made metadata {len(encoded_metadata)} bytes encoded, over the "
            f"{MAX_METADATA_BYTES}-byte limit"
        )
    event = {
        "source": source,
        "event_id": event_id,
        "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
        "level": logkeep_level(record.levelno),
        "message": _clean_text(message),
        "metadata": metadata,
    }
    line = _dumps(event)
    keep = len(event["message"])
    while len(line) > max_bytes and keep > 0:
        # JSON escapes make bytes and characters differ: shrink in proportion, with margin.
        keep = int(keep * max_bytes / len(line) * 0.9) - 64
        event["message"] = _cut_middle(_clean_text(message), max(keep, 0))
        line = _dumps(event)
    return line


@dataclass(frozen=True)
class HandlerStats:
    """What became of the records a handler was given."""

    queued: int  # waiting in memory, or in the batch being sent
    accepted: int  # stored by logkeep
    duplicates: int  # already stored (a retry whose first answer was lost)
    rejected: int  # refused by logkeep, each with a reason (reported on stderr)
    dropped: int  # not queued: the queue was full, or the handler closed
    abandoned: int  # still queued when close() gave up waiting for logkeep
    failed: int  # lost to an error in the handler itself (reported on stderr)


class LogkeepHandler(logging.Handler):
    """Send log records to logkeep in the background; see the module's documentation.

    `url` and `token` default to LOGKEEP_API_URL (else http://127.0.0.1:8000) and
    LOGKEEP_API_TOKEN (an API key with the ingest scope). `source` names the logkeep
    source every record goes to. Usable from `logging.config.dictConfig` with
    `"class": "logkeep.handler.LogkeepHandler"` and these arguments as keys.
    """

    _client: httpx.Client | None

    def __init__(
        self,
        source: str,
        url: str | None = None,
        token: str | None = None,
        *,
        level: int | str = logging.NOTSET,
        batch_size: int = 1000,
        batch_bytes: int = 1024 * 1024,
        flush_interval: float = 1.0,
        max_queue_records: int = 50_000,
        max_queue_bytes: int = 32 * 1024 * 1024,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        max_backoff: float = 10.0,
        timeout: float = 10.0,
        flush_timeout: float = 5.0,
        close_timeout: float = 5.0,
        compress: bool = True,
        verify: bool | str = True,
    ) -> None:
        super().__init__(level)
        if not source or not isinstance(source, str):
            raise ValueError("source: name the logkeep source these records go to")
        for name, value in (
            ("batch_size", batch_size),
            ("batch_bytes", batch_bytes),
            ("max_queue_records", max_queue_records),
            ("max_queue_bytes", max_queue_bytes),
            ("max_event_bytes", max_event_bytes),
        ):
            if value < 1:
                raise ValueError(f"{name}: must be at least 1, got {value}")
        self.source = source
        base = (url or os.environ.get("LOGKEEP_API_URL") or DEFAULT_API_URL).rstrip("/")
        self.url = base if base.endswith(INGEST_PATH) else base + INGEST_PATH
        try:
            scheme = httpx.URL(self.url).scheme
        except httpx.InvalidURL as exc:
            raise ValueError(f"url: {base!r} is not a URL ({exc})") from None
        if scheme not in ("http", "https"):
            raise ValueError(f"url: {base!r} must start with http:// or https://")
        self._token = token if token is not None else os.environ.get("LOGKEEP_API_TOKEN", "")
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self.flush_interval = flush_interval
        self.max_queue_records = max_queue_records
        self.max_queue_bytes = max_queue_bytes
        self.max_event_bytes = max_event_bytes
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.flush_timeout = flush_timeout
        self.close_timeout = close_timeout
        self.compress = compress
        self.verify = verify
        self.setFormatter(logging.Formatter("%(message)s"))
        self._reset_state()
        # Made here, so that a wrong `verify` fails at configuration, not in the thread.
        self._client = self._make_client()
        method = weakref.WeakMethod(self._reset_state)
        os.register_at_fork(after_in_child=lambda: _call_if_alive(method))

    def _reset_state(self) -> None:
        """Fresh queue state: at construction, and in a forked child (whose copy of the
        queue the parent sends, and whose event ids must not collide with the parent's)."""
        self._cond = threading.Condition(threading.Lock())
        self._queue: collections.deque[tuple[bytes, float]] = collections.deque()
        self._queued_bytes = 0  # bytes of the records in the queue
        self._pending = 0  # records queued or in the batch being sent
        self._pending_bytes = 0
        self._enqueued_total = 0
        self._done_total = 0  # records whose batch got its final answer (or was given up)
        self._taken_total = 0
        self._flush_target = 0
        self._stopping = False
        self._abandon = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._sender_ident: int | None = None
        self._client = None
        self._id_prefix = uuid.uuid4().hex[:16]
        self._ids = itertools.count(1)
        self._counts = collections.Counter[str]()
        self._flush_gave_up_at: int | None = None
        self._report_lock = threading.Lock()
        self._reported: dict[str, float] = {}
        self._suppressed = collections.Counter[str]()

    # -- the application's side ------------------------------------------------------------

    def emit(self, record: logging.LogRecord) -> None:
        if threading.get_ident() == self._sender_ident:
            return  # httpx logging from our own sender thread: sending it would feed itself
        try:
            message = self.format(record)
            line = encode_event(
                record,
                message,
                source=self.source,
                event_id=f"{self._id_prefix}-{next(self._ids)}",
                max_bytes=self.max_event_bytes,
            )
        except Exception:  # noqa: BLE001 - logging's contract: report via handleError, never raise
            self.handleError(record)
            return
        size = len(line) + 1
        with self._cond:
            full = (
                self._closed
                or self._pending >= self.max_queue_records
                or self._pending_bytes + size > self.max_queue_bytes
            )
            if full:
                self._counts["dropped"] += 1
                dropped = self._counts["dropped"]
            else:
                self._queue.append((line, time.monotonic()))
                self._queued_bytes += size
                self._pending += 1
                self._pending_bytes += size
                self._enqueued_total += 1
                if self._thread is None:
                    self._start_sender()
                elif len(self._queue) >= self.batch_size or self._queued_bytes >= self.batch_bytes:
                    self._cond.notify_all()
        if full:
            why = (
                "the handler is closed"
                if self._closed
                else (
                    f"the queue is full ({self.max_queue_records} records or "
                    f"{self.max_queue_bytes} bytes; logkeep at {self.url} is behind or away)"
                )
            )
            self._report("dropped", f"dropping new records: {why}; {dropped} dropped so far")

    def _start_sender(self) -> None:
        thread = threading.Thread(target=self._run, name="logkeep-handler", daemon=True)
        try:
            thread.start()
        except RuntimeError as exc:  # at interpreter shutdown no thread can start
            self._report("thread", f"cannot start the sending thread: {exc}")
            return
        self._thread = thread

    def wait_delivered(self, timeout: float | None = None) -> bool:
        """Wait until every record emitted so far has been answered by logkeep (stored,
        or refused), at most `timeout` seconds (default `flush_timeout`); True if so."""
        timeout = self.flush_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with self._cond:
            target = self._enqueued_total
            self._flush_target = max(self._flush_target, target)
            self._cond.notify_all()
            while self._done_total < target and self._thread is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._flush_gave_up_at = self._done_total
                    return False
                self._cond.wait(remaining)
            return self._done_total >= target

    def flush(self) -> None:
        """Send what is queued now, waiting at most `flush_timeout` seconds."""
        self.wait_delivered()

    def close(self) -> None:
        """Deliver what is queued within `close_timeout` seconds, then stop. Called by
        `logging.shutdown` at interpreter exit (after `flush`): when that flush already
        timed out and nothing was delivered since, logkeep is away and close does not
        wait a second time. What could not be delivered is counted and reported."""
        with self._cond:
            already_closed = self._closed
            self._closed = True
            self._stopping = True
            self._cond.notify_all()
            thread = self._thread
            away = self._flush_gave_up_at is not None and self._flush_gave_up_at == self._done_total
        if thread is not None and not already_closed:
            thread.join(0.0 if away else self.close_timeout)
            if thread.is_alive():
                with self._cond:
                    self._abandon = True
                    lost = self._pending
                    self._cond.notify_all()
                thread.join(CLOSING_RETRY_S)
                self._report(
                    "abandoned",
                    f"{lost} records not delivered: logkeep at {self.url} did not take them "
                    f"before the handler closed",
                )
        if (thread is None or not thread.is_alive()) and self._client is not None:
            self._client.close()  # else the thread, stuck in a request, still holds it
        super().close()

    def stats(self) -> HandlerStats:
        with self._cond:
            return HandlerStats(
                queued=self._pending,
                accepted=self._counts["accepted"],
                duplicates=self._counts["duplicates"],
                rejected=self._counts["rejected"],
                dropped=self._counts["dropped"],
                abandoned=self._counts["abandoned"],
                failed=self._counts["failed"],
            )

    # -- the sending thread -----------------------------------------------------------------

    def _run(self) -> None:
        self._sender_ident = threading.get_ident()
        if self._client is None:  # a forked child's: the parent's pool is not ours
            self._client = self._make_client()
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            size = sum(len(line) + 1 for line in batch)
            try:
                self._deliver(batch)
            except Exception as exc:  # noqa: BLE001 - reported below; the thread must go on
                with self._cond:
                    self._counts["failed"] += len(batch)
                self._report(
                    "failed",
                    f"{len(batch)} records lost to an error in the handler: "
                    + "".join(traceback.format_exception(exc)).rstrip(),
                )
            with self._cond:
                self._pending -= len(batch)
                self._pending_bytes -= size
                self._done_total += len(batch)
                self._cond.notify_all()

    def _make_client(self) -> httpx.Client:
        headers = {"Content-Type": "application/x-ndjson", "User-Agent": "logkeep-handler"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return httpx.Client(
            headers=headers,
            timeout=httpx.Timeout(self.timeout, connect=min(self.timeout, 5.0)),
            verify=self.verify,
        )

    def _next_batch(self) -> list[bytes] | None:
        """The next batch once one is due (full, old enough, flushed, or closing); None
        once closing with nothing left, or when close gave up."""
        with self._cond:
            while True:
                if self._abandon:
                    self._counts["abandoned"] += len(self._queue)
                    self._pending -= len(self._queue)
                    self._pending_bytes -= self._queued_bytes
                    self._queue.clear()
                    self._queued_bytes = 0
                    return None
                if self._queue:
                    wait = self._due_in()
                    if wait <= 0:
                        break
                elif self._stopping:
                    return None
                else:
                    wait = None
                self._cond.wait(wait)
            batch: list[bytes] = []
            size = 0
            while self._queue and len(batch) < self.batch_size:
                line, _at = self._queue[0]
                if batch and size + len(line) + 1 > self.batch_bytes:
                    break
                self._queue.popleft()
                batch.append(line)
                size += len(line) + 1
            self._queued_bytes -= size
            self._taken_total += len(batch)
            return batch

    def _due_in(self) -> float:
        """Seconds until the queued records should be sent (0: now)."""
        if (
            self._stopping
            or len(self._queue) >= self.batch_size
            or self._queued_bytes >= self.batch_bytes
            or self._flush_target > self._taken_total
        ):
            return 0.0
        return self._queue[0][1] + self.flush_interval - time.monotonic()

    def _deliver(self, batch: list[bytes]) -> None:
        """Send one batch until logkeep answers for it for good, or close gives up."""
        body = b"\n".join(batch)
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        if self.compress and len(body) >= GZIP_MIN_BYTES:
            body = gzip.compress(body, compresslevel=1)
            headers["Content-Encoding"] = "gzip"
        assert self._client is not None
        attempt = 0
        while True:
            try:
                response = self._client.post(self.url, content=body, headers=headers)
            except httpx.TransportError as exc:
                delay = backoff_seconds(attempt, self.max_backoff)
                self._report("unreachable", f"cannot reach logkeep at {self.url} ({exc}); retrying")
            else:
                status = response.status_code
                if status in (200, 202, 422) and self._took(response, len(batch)):
                    return
                if status == 413 and len(batch) > 1:
                    # Over a limit of the server's smaller than ours: send it in halves.
                    middle = len(batch) // 2
                    self._deliver(batch[:middle])
                    self._deliver(batch[middle:])
                    return
                if status in (429, 503):
                    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                    delay = (
                        retry_after
                        if retry_after is not None
                        else backoff_seconds(attempt, self.max_backoff)
                    )
                elif status >= 500 or status == 408:
                    delay = backoff_seconds(attempt, self.max_backoff)
                else:
                    with self._cond:
                        self._counts["rejected"] += len(batch)
                    self._report(
                        f"refused-{status}",
                        f"logkeep refused {len(batch)} records with {status}: "
                        f"{answer_detail(response)}; they are dropped",
                    )
                    return
            attempt += 1
            if not self._pause(delay):
                with self._cond:
                    self._counts["abandoned"] += len(batch)
                return

    def _took(self, response: httpx.Response, count: int) -> bool:
        """Count an ingest answer ({accepted, duplicates, rejected, errors}); False if the
        body is not one (a proxy's page, say)."""
        try:
            result = response.json()
        except ValueError:
            return False
        if not isinstance(result, dict) or "accepted" not in result:
            return False
        rejected = int(result.get("rejected", 0))
        with self._cond:
            self._counts["accepted"] += int(result.get("accepted", 0))
            self._counts["duplicates"] += int(result.get("duplicates", 0))
            self._counts["rejected"] += rejected
        if rejected:
            reasons = "; ".join(
                f"{error.get('reason')}"
                for error in result.get("errors", [])[:3]
                if isinstance(error, dict)
            )
            self._report("rejected", f"logkeep rejected {rejected} of {count} records: {reasons}")
        return True

    def _pause(self, delay: float) -> bool:
        """Wait `delay` seconds before a retry (at most CLOSING_RETRY_S once closing, so
        the close deadline gets several tries); False if close gave up."""
        end = time.monotonic() + delay
        with self._cond:
            while not self._abandon:
                now = time.monotonic()
                if self._stopping:
                    end = min(end, now + CLOSING_RETRY_S)
                if end <= now:
                    return True
                self._cond.wait(end - now)
            return False

    def _report(self, kind: str, message: str) -> None:
        """Tell the application's operator on stderr, at most once per kind per minute.
        Never through logging: this handler may be the one logging would call."""
        now = time.monotonic()
        with self._report_lock:
            last = self._reported.get(kind)
            if last is not None and now - last < REPORT_EVERY_S:
                self._suppressed[kind] += 1
                return
            self._reported[kind] = now
            suppressed = self._suppressed.pop(kind, 0)
        if suppressed:
            message += f" ({suppressed} more like this since the last report)"
        stream = sys.stderr
        if stream is None:
            return
        with contextlib.suppress(OSError, ValueError):  # stderr closed: nowhere left to say it
            stream.write(f"logkeep.handler: {message}\n")
            stream.flush()


def answer_detail(response: httpx.Response) -> str:
    """The reason in an error answer: `detail` of a problem (RFC 9457) or of FastAPI's
    body, else the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        detail = body.get("detail") or body.get("title")
        if detail:
            return str(detail)[:300]
    return response.text[:200]


def _call_if_alive(method: weakref.WeakMethod[Any]) -> None:
    bound = method()
    if bound is not None:
        bound()
