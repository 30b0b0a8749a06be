"""`logkeep ingest`: lines from a feed (a file, followed or not, or standard input) sent
to a running logkeep's ingest API in batches.

A batch closes at `max_lines` entries, about `max_bytes`, or `flush_interval` seconds
after its first entry was read, so a slow stream (`tail -F x | logkeep ingest -`) is sent
as it goes. 429 and 503 are retried after their Retry-After, an unreachable server with
capped backoff: a one-shot send gives up on a server it never reached after a few tries
(a wrong URL says so at once) and on one that stops answering after five minutes; a
follower keeps trying. For a file, the checkpoint records each batch before it is sent
and moves past it once logkeep answered (see checkpoint.py).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx
import orjson

from logkeep.handler import answer_detail, backoff_seconds, retry_after_seconds
from logkeep.ingest.checkpoint import FileIdentity, Keeper
from logkeep.ingest.multiline import Joiner, Record, SingleLines

# Before logkeep ever answered, this many connection failures end a one-shot send.
FIRST_CONTACT_ATTEMPTS = 3
# A one-shot send gives up on a batch logkeep has not taken for this long.
ONE_SHOT_RETRY_DEADLINE_S = 300.0
MAX_BACKOFF_S = 10.0
# After Ctrl-C or SIGTERM, the batch in hand gets this long to be answered.
STOP_GRACE_S = 10.0
POLL_S = 0.25
# A joined entry is complete when no line came for this long.
MULTILINE_IDLE_S = 0.5
REPORT_EVERY_S = 30.0
MAX_LISTED_ERRORS = 20


@dataclass
class SendSummary:
    lines: int = 0  # entries sent (a joined stack trace is one)
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, reason), the first 20
    seconds: float = 0.0

    @property
    def lines_per_second(self) -> float:
        return self.lines / self.seconds if self.seconds else 0.0

    def add_error(self, line: int, reason: str) -> None:
        self.rejected += 1
        if len(self.errors) < MAX_LISTED_ERRORS:
            self.errors.append((line, reason))


class SendError(RuntimeError):
    """The server refused a batch for a reason retrying cannot fix, or never answered."""


class Stopped(RuntimeError):
    """Asked to stop while logkeep had not answered for the batch in hand."""


@dataclass(frozen=True)
class SendOptions:
    source: str
    json_lines: bool  # the lines are logkeep events (NDJSON), not raw lines
    line_format: str | None
    durable: bool
    max_lines: int
    max_bytes: int
    flush_interval: float = 1.0
    # Entries may be several lines joined (--multiline): sent as NDJSON events, since a
    # text/plain body is split at every newline.
    joined: bool = False
    # Give up at once on a server never reached (a one-shot send: likely a wrong URL).
    fail_fast: bool = True
    # Never give up on a server that answered before (following, or a stream).
    patient: bool = False

    @property
    def _whole_message(self) -> bool:
        """Joined entries are stored whole as their message (`--format text`); otherwise
        their first line is parsed by the source's rules."""
        return self.line_format == "text"

    @property
    def params(self) -> dict[str, str]:
        params = {"source": self.source}
        if self.joined and not self.json_lines:
            if not self._whole_message:
                params["parse"] = "true"
        elif self.line_format and not self.json_lines:
            params["format"] = self.line_format
        if self.durable:
            params["mode"] = "durable"
        return params

    @property
    def content_type(self) -> str:
        if self.json_lines or self.joined:
            return "application/x-ndjson"
        return "text/plain; charset=utf-8"

    def body(self, records: list[Record]) -> bytes:
        if self.json_lines or not self.joined:
            return b"\n".join(record.data for record in records)
        return b"\n".join(joined_event(r.data, whole=self._whole_message) for r in records)


CONTINUATION_KEY = "continuation"


def joined_event(data: bytes, *, whole: bool) -> bytes:
    """An entry of joined lines as an ingest event. `whole`: the entry is the message.
    Otherwise the API parses the first line by the source's rules (it would parse the
    joined text as one line, and a regex's message group would keep only its first
    line), and the lines joined to it are kept in metadata.continuation."""
    text = data.decode("utf-8", "replace")
    first, newline, rest = text.partition("\n")
    if whole or not newline:
        return orjson.dumps({"message": text})
    return orjson.dumps({"message": first, "metadata": {CONTINUATION_KEY: rest}})


class Throttled:
    """Say a message at most once per REPORT_EVERY_S."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say = say
        self._last = -REPORT_EVERY_S

    def __call__(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last >= REPORT_EVERY_S:
            self._last = now
            self._say(message)


class Poster:
    """POSTs one batch until logkeep answers for it."""

    def __init__(
        self,
        client: httpx.Client,
        options: SendOptions,
        stop: threading.Event,
        notice: Callable[[str], None],
    ) -> None:
        self._client = client
        self._options = options
        self._stop = stop
        self._notice = Throttled(notice)
        self._answered = False

    def post(self, body: bytes, key: str) -> dict[str, Any]:
        # Retries of a batch carry the same key: the server stores it once.
        headers = {"Content-Type": self._options.content_type, "Idempotency-Key": key}
        attempt = 0
        failing_since: float | None = None
        stop_deadline: float | None = None
        while True:
            try:
                response = self._client.post(
                    "/api/v1/ingest", content=body, params=self._options.params, headers=headers
                )
            except httpx.TransportError as exc:
                problem = f"cannot reach logkeep at {self._client.base_url}: {exc}"
                if (
                    not self._answered
                    and self._options.fail_fast
                    and attempt + 1 >= FIRST_CONTACT_ATTEMPTS
                ):
                    raise SendError(problem) from None
                delay = backoff_seconds(attempt, MAX_BACKOFF_S)
            else:
                self._answered = True
                status = response.status_code
                if status in (200, 202, 422):
                    result = _ingest_answer(response)
                    if result is not None:
                        return result
                problem = f"{status} from the ingest API: {answer_detail(response)}"
                if status in (429, 503):
                    after = retry_after_seconds(response.headers.get("Retry-After"))
                    delay = after if after is not None else backoff_seconds(attempt, MAX_BACKOFF_S)
                elif status >= 500 or status == 408:
                    delay = backoff_seconds(attempt, MAX_BACKOFF_S)
                else:
                    raise SendError(problem)
            now = time.monotonic()
            failing_since = now if failing_since is None else failing_since
            if not self._options.patient and now - failing_since > ONE_SHOT_RETRY_DEADLINE_S:
                raise SendError(f"gave up after {now - failing_since:.0f} s; last: {problem}")
            self._notice(f"{problem}; retrying")
            attempt += 1
            if self._stop.is_set():
                stop_deadline = now + STOP_GRACE_S if stop_deadline is None else stop_deadline
                if now + delay > stop_deadline:
                    raise Stopped(problem)
                time.sleep(delay)
            else:
                self._stop.wait(delay)  # a stop cuts the wait short; the batch gets its grace


def _ingest_answer(response: httpx.Response) -> dict[str, Any] | None:
    try:
        result = response.json()
    except ValueError:
        return None
    return result if isinstance(result, dict) and "accepted" in result else None


class Feed(Protocol):
    ended: bool
    rotation_ready: bool

    def read(self, timeout: float) -> list[Record]: ...

    def switch(self) -> bool: ...


class FileState(Protocol):
    """What the shipper needs of a file feed for checkpoints."""

    @property
    def identity(self) -> FileIdentity: ...


@dataclass
class PendingBatch:
    records: list[Record] = field(default_factory=list)
    size: int = 0
    first_read_at: float = 0.0


class Shipper:
    """Reads a feed, joins lines into entries, sends them in batches, keeps the checkpoint."""

    def __init__(
        self,
        feed: Feed,
        joiner: SingleLines | Joiner,
        poster: Poster,
        options: SendOptions,
        stop: threading.Event,
        *,
        keeper: Keeper | None = None,
        start_offset: int = 0,
        cut_at: int | None = None,
        on_progress: Callable[[int], None] = lambda n: None,
        on_error: Callable[[int, str], None] = lambda line, reason: None,
    ) -> None:
        self.feed = feed
        self.joiner = joiner
        self.poster = poster
        self.options = options
        self.stop = stop
        self.keeper = keeper
        self.summary = SendSummary()
        self._acked = start_offset
        self._cut_at = cut_at  # resend exactly the batch in flight when the last run ended
        self._on_progress = on_progress
        self._on_error = on_error
        self._batch = PendingBatch()
        self._last_line_at = time.monotonic()
        self._run_id = uuid.uuid4().hex
        self._sent = 0

    def run(self) -> SendSummary:
        """Until the feed ends or `stop` is set; Stopped if the batch in hand could not be
        delivered within the grace period after a stop (its checkpoint says so)."""
        started = time.monotonic()
        try:
            while not self.feed.ended and not self.stop.is_set():
                self._step()
            if self.stop.is_set() and self.keeper is None:
                # A stream cannot be read again: send the entry in hand too.
                self._take(self.joiner.flush(), time.monotonic())
            self._send()
        finally:
            if self.keeper is not None:
                self.keeper.write()
            self.summary.seconds = time.monotonic() - started
        return self.summary

    def _step(self) -> None:
        lines = self.feed.read(self._timeout())
        now = time.monotonic()
        if lines:
            self._last_line_at = now
        if self._cut_at is not None:
            lines = self._up_to_cut(lines, now)
        self._take(self.joiner.feed_many(lines), now)
        finishing = self.feed.ended or self.feed.rotation_ready
        if self.joiner.pending and (finishing or now - self._last_line_at >= MULTILINE_IDLE_S):
            self._take(self.joiner.flush(), now)
        batch = self._batch
        if batch.records and (
            finishing or now - batch.first_read_at >= self.options.flush_interval
        ):
            self._send()
        if self.keeper is not None:
            self.keeper.write_due()
        if self.feed.rotation_ready and self.feed.switch():
            assert self.keeper is not None
            self.keeper.switch(self._file().identity)
            self._acked = 0
            self._cut_at = None  # a cut belongs to the file that was left

    def _up_to_cut(self, lines: list[Record], now: float) -> list[Record]:
        """Take `lines` up to the end of the batch in flight when the last run ended, and
        send that batch as it was (same bytes, same key); the lines after it remain."""
        assert self._cut_at is not None
        for index, line in enumerate(lines):
            if line.end >= self._cut_at:
                self._take(self.joiner.feed_many(lines[: index + 1]), now)
                self._take(self.joiner.flush(), now)
                self._send()
                self._cut_at = None
                return lines[index + 1 :]
        self._take(self.joiner.feed_many(lines), now)
        return []

    def _timeout(self) -> float:
        wait = POLL_S
        now = time.monotonic()
        if self._batch.records:
            wait = min(wait, self._batch.first_read_at + self.options.flush_interval - now)
        if self.joiner.pending:
            wait = min(wait, self._last_line_at + MULTILINE_IDLE_S - now)
        return max(wait, 0.0)

    def _take(self, records: list[Record], now: float) -> None:
        max_lines, max_bytes = self.options.max_lines, self.options.max_bytes
        batch = self._batch
        for record in records:
            size = len(record.data) + 1
            if batch.records and (len(batch.records) >= max_lines or batch.size + size > max_bytes):
                self._send()
                batch = self._batch
            if not batch.records:
                batch.first_read_at = now
            batch.records.append(record)
            batch.size += size

    def _file(self) -> FileState:
        return self.feed  # type: ignore[return-value]  # a keeper is only given with a file

    def _send(self) -> None:
        records = self._batch.records
        if not records:
            return
        body = self.options.body(records)
        start, end = self._acked, records[-1].end
        if self.keeper is not None:
            key = self.keeper.batch_key(start, end, body, repr(sorted(self.options.params.items())))
            self.keeper.begin(start, end)
        else:
            key = f"{self._run_id}-{self._sent}"
        result = self.poster.post(body, key)
        if self.keeper is not None:
            self.keeper.commit(end, records[-1].last_line, self._file().identity)
        self._sent += 1
        self._acked = end
        self._batch = PendingBatch()
        self._count(result, records)
        self._on_progress(end - start)

    def _count(self, result: dict[str, Any], records: list[Record]) -> None:
        summary = self.summary
        summary.lines += len(records)
        summary.accepted += int(result.get("accepted", 0))
        summary.duplicates += int(result.get("duplicates", 0))
        for error in result.get("errors", []):
            # The server numbers lines within the request; map back to the file.
            index = int(error.get("line", 0)) - 1
            line = records[index].first_line if 0 <= index < len(records) else 0
            summary.add_error(line, str(error.get("reason")))
            self._on_error(line, str(error.get("reason")))
        summary.rejected += int(result.get("errors_truncated", 0))
