"""`logkeep ingest FILE`: stream a file's lines to a running logkeep's ingest API.

Lines go in batches (by count and by bytes); 429 and 503 are retried after their
Retry-After, so a file is never half-sent because the server was busy. A line too long
for the server is counted as rejected here instead of being sent.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import httpx

MAX_RETRIES = 30


@dataclass
class SendSummary:
    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # (line, reason), first 20
    seconds: float = 0.0

    @property
    def lines_per_second(self) -> float:
        return self.lines / self.seconds if self.seconds else 0.0

    def add_error(self, line: int, reason: str) -> None:
        self.rejected += 1
        if len(self.errors) < 20:
            self.errors.append((line, reason))


@dataclass(frozen=True)
class Chunk:
    first_line: int  # 1-based number of the chunk's first line in the file
    lines: list[bytes]
    line_numbers: list[int]


def chunks(
    stream: BinaryIO,
    *,
    max_lines: int,
    max_bytes: int,
    max_line_bytes: int,
    on_too_long: Callable[[int, int], None],
) -> Iterator[Chunk]:
    """Non-blank lines in batches of at most `max_lines` lines and about `max_bytes`."""
    lines: list[bytes] = []
    numbers: list[int] = []
    size = 0
    for number, raw in enumerate(stream, start=1):
        line = raw.rstrip(b"\r\n")
        if not line.strip():
            continue
        if len(line) > max_line_bytes:
            on_too_long(number, len(line))
            continue
        if lines and (len(lines) >= max_lines or size + len(line) + 1 > max_bytes):
            yield Chunk(numbers[0], lines, numbers)
            lines, numbers, size = [], [], 0
        lines.append(line)
        numbers.append(number)
        size += len(line) + 1
    if lines:
        yield Chunk(numbers[0], lines, numbers)


def send_chunks(
    client: httpx.Client,
    batches: Iterable[Chunk],
    *,
    source: str,
    json_lines: bool,
    line_format: str | None,
    durable: bool,
    on_progress: Callable[[int], None],
) -> SendSummary:
    """POST each chunk; the summary adds up the server's answers."""
    summary = SendSummary()
    started = time.monotonic()
    params = {"source": source}
    if line_format and not json_lines:
        params["format"] = line_format
    if durable:
        params["mode"] = "durable"
    content_type = "application/x-ndjson" if json_lines else "text/plain; charset=utf-8"
    run_id = uuid.uuid4().hex
    for index, chunk in enumerate(batches):
        body = b"\n".join(chunk.lines)
        # Retries of a chunk carry the same key: the server stores it once.
        headers = {"Content-Type": content_type, "Idempotency-Key": f"{run_id}-{index}"}
        result = _post_with_retries(client, body, params, headers)
        summary.lines += len(chunk.lines)
        summary.accepted += result.get("accepted", 0)
        summary.duplicates += result.get("duplicates", 0)
        for error in result.get("errors", []):
            # The server numbers lines within the request; map back to the file.
            index = error["line"] - 1
            file_line = chunk.line_numbers[index] if 0 <= index < len(chunk.lines) else 0
            summary.add_error(file_line, error["reason"])
        summary.rejected += result.get("errors_truncated", 0)
        on_progress(len(body) + 1)
    summary.seconds = time.monotonic() - started
    return summary


class SendError(RuntimeError):
    """The server refused a batch for a reason retrying cannot fix."""


def _post_with_retries(
    client: httpx.Client, body: bytes, params: dict[str, str], headers: dict[str, str]
) -> dict[str, Any]:
    last_error = ""
    for _attempt in range(MAX_RETRIES):
        try:
            response = client.post("/api/v1/ingest", content=body, params=params, headers=headers)
        except httpx.TransportError as exc:
            time.sleep(1.0)
            last_error = f"cannot reach logkeep: {exc}"
            continue
        if response.status_code in (429, 503):
            last_error = f"{response.status_code}: {response.text[:200]}"
            time.sleep(float(response.headers.get("Retry-After", "1")))
            continue
        if response.status_code in (200, 202, 422):
            result: Any = response.json()
            if isinstance(result, dict) and "accepted" in result:
                return result
        raise SendError(f"{response.status_code} from the ingest API: {response.text[:300]}")
    raise SendError(f"gave up after {MAX_RETRIES} attempts; last: {last_error}")
