"""The CLI's view of a running logkeep: HTTP calls to its API, and how results look."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import httpx
import orjson
from httpx_sse import connect_sse
from rich.console import Console
from rich.table import Table
from rich.text import Text

from logkeep.domain import exactjson

# A dropped tail waits this long before its first reconnect, doubling up to the cap.
RECONNECT_FIRST_DELAY_S = 0.5
RECONNECT_MAX_DELAY_S = 10.0
# The API sends a heartbeat every LOGKEEP_TAIL_HEARTBEAT_S (15 s by default); a tail that
# hears nothing for this long takes the connection for dead and reconnects.
TAIL_SILENCE_S = 60.0
# Answers that say "the server is restarting or busy": a tail that was connected waits
# and tries again instead of giving up.
TRANSIENT_STATUSES = frozenset({502, 503, 504})

LEVEL_STYLES = {
    "DEBUG": "dim",
    "INFO": "green",
    "WARN": "yellow",
    "ERROR": "bold red",
    "FATAL": "bold white on red",
}

UNAUTHENTICATED_HINT = (
    "authenticate with `logkeep login`, or set LOGKEEP_API_TOKEN to an API key "
    "(`logkeep users create-key NAME --scope read --all-sources`)"
)


class ApiError(RuntimeError):
    """The API answered with an error, or could not be reached; the message says which.
    `status` is the HTTP status (None: no answer), `retry_after` its Retry-After in
    seconds when it gave one."""

    def __init__(
        self, message: str, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def _one_error(item: object) -> str:
    """One entry of an error list: FastAPI's {loc, msg} or a problem's {pointer|field,
    detail|message}."""
    if not isinstance(item, dict):
        return str(item)
    where = item.get("loc") or item.get("pointer") or item.get("field") or item.get("name")
    if isinstance(where, list):
        where = ".".join(str(p) for p in where if p not in ("body", "query", "header", "path"))
    reason = item.get("detail") or item.get("msg") or item.get("message") or item.get("reason")
    reason = str(reason or "invalid")
    return f"{where}: {reason}" if where else reason


def error_reason(body: bytes) -> str:
    """The reason an error answer gives, for a person. Reads both `{"detail": ...}` and
    RFC 9457 problem details (`{type, title, status, detail, errors?}`)."""
    text = body.decode("utf-8", "replace").strip()
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return text[:500] or "(no reason given)"
    if not isinstance(document, dict):
        return text[:500]
    detail = document.get("detail")
    if isinstance(detail, list):
        reason = "; ".join(_one_error(item) for item in detail)
    elif isinstance(detail, str) and detail:
        reason = detail
    else:
        reason = str(document.get("title") or text[:500])
    errors = document.get("errors")
    if isinstance(errors, list):
        # Each field at fault that the sentence does not already name.
        extra = [text for text in map(_one_error, errors) if text not in reason]
        if extra:
            reason = f"{reason}: {'; '.join(extra)}"
    return reason


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        seconds = float(value)
    except ValueError:
        return None  # absent, or an HTTP date (the API always sends seconds)
    return seconds if 0 <= seconds < 3600 else None


def _check(response: httpx.Response) -> None:
    if response.is_success:
        return
    status = response.status_code
    reason = error_reason(response.content)
    message = f"{status} {response.reason_phrase} from {response.request.url.path}: {reason}"
    retry_after = _retry_after(response)
    if status == 401:
        message += f"\n{UNAUTHENTICATED_HINT}"
    elif retry_after is not None:
        message += f" (retry after {retry_after:g} s)"
    raise ApiError(message, status, retry_after)


def reconnect_delays(
    first_s: float = RECONNECT_FIRST_DELAY_S, cap_s: float = RECONNECT_MAX_DELAY_S
) -> Iterator[float]:
    """Capped exponential backoff with jitter (so the tails a restart dropped do not all
    come back in the same instant): first_s, then twice as long each time, up to cap_s,
    each scaled by a random factor in [0.5, 1]."""
    delay = first_s
    while True:
        yield delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret
        delay = min(cap_s, delay * 2)


def _transport_reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({exc})"
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer ({type(exc).__name__})"
    return f"connection dropped ({exc or type(exc).__name__})"


class LogkeepClient:
    def __init__(self, base_url: str, timeout_s: float = 30.0, token: str = "") -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s, headers=headers)
        self.base_url = base_url

    def __enter__(self) -> LogkeepClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def _unreachable(self, exc: httpx.TransportError) -> ApiError:
        return ApiError(f"cannot reach logkeep at {self.base_url}: {exc}")

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc
        _check(response)
        return response

    def search(self, params: dict[str, Any]) -> dict[str, Any]:
        response = self._call("GET", "/api/v1/logs", params=params)
        result: dict[str, Any] = exactjson.loads(response.content)  # numbers as stored
        return result

    def export(self, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every matching entry as NDJSON, streamed."""
        try:
            with self._http.stream(
                "GET", "/api/v1/logs", params=params, headers={"Accept": "application/x-ndjson"}
            ) as response:
                if not response.is_success:
                    response.read()
                    _check(response)
                for line in response.iter_lines():
                    if line:
                        yield exactjson.loads(line)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from exc

    def summary(self, hours: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call(
            "GET", "/api/v1/stats/summary", params={"hours": hours}
        ).json()
        return result

    def login(self, username: str, password: str) -> dict[str, Any]:
        """A new session: {"token", "expires_in", "user": {...}}."""
        body = {"username": username, "password": password}
        result: dict[str, Any] = self._call("POST", "/api/v1/auth/login", json=body).json()
        return result

    def logout(self) -> None:
        """End the session whose token this client sends."""
        self._call("POST", "/api/v1/auth/logout")

    def tail(
        self,
        params: dict[str, Any],
        on_lost: Callable[[str], None] | None = None,
        on_back: Callable[[], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """New entries as they commit. Once connected, a dropped connection, a server
        that restarts or answers 502/503/504 is retried with capped exponential backoff,
        resuming after the last event seen, so nothing committed in between is missed;
        `on_lost(reason)` and `on_back()` are told when the connection goes and comes
        back. Refusals (401, 403, 422...) and a first connection that fails raise
        ApiError."""
        last_event_id: str | None = None
        connected = lost = False
        delays = reconnect_delays()
        while True:
            headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
            wait: float | None = None
            try:
                with connect_sse(
                    self._http,
                    "GET",
                    "/api/v1/tail",
                    params=params,
                    headers=headers,
                    timeout=httpx.Timeout(30.0, read=TAIL_SILENCE_S),
                ) as source:
                    response = source.response
                    if not response.is_success:
                        response.read()
                        if not (connected and response.status_code in TRANSIENT_STATUSES):
                            _check(response)
                        reason = f"{response.status_code}: {error_reason(response.content)}"
                        wait = _retry_after(response)
                    else:
                        if lost and on_back is not None:
                            on_back()
                        connected, lost = True, False
                        delays = reconnect_delays()
                        for event in source.iter_sse():
                            last_event_id = event.id or last_event_id  # log and position
                            if event.event == "log":
                                yield exactjson.loads(event.data)
                        reason = "the server ended the stream"
            except httpx.TransportError as exc:
                if not connected:
                    raise self._unreachable(exc) from exc
                reason = _transport_reason(exc)
            if not lost and on_lost is not None:
                on_lost(reason)
            lost = True
            time.sleep(max(wait or 0.0, next(delays)))


def level_text(level: str) -> Text:
    return Text(level, style=LEVEL_STYLES.get(level, ""))


def flat_metadata(metadata: object, prefix: str = "") -> Iterator[tuple[str, object]]:
    """Nested metadata as (dotted key, value) pairs, the keys `--meta` filters take."""
    if isinstance(metadata, dict) and (metadata or not prefix):
        for key, value in metadata.items():
            yield from flat_metadata(value, f"{prefix}{key}.")
    else:
        yield prefix.removesuffix("."), metadata


def metadata_text(metadata: object) -> str:
    """`key=value` pairs, dotted for nested keys; values that are not plain words are
    written as JSON, so `status=500` (a number) and `status="500"` (text) look different,
    as they are to a filter."""
    pairs = []
    for key, value in flat_metadata(metadata):
        plain = isinstance(value, str) and _plain_word(value)
        pairs.append(f"{key}={value if plain else exactjson.dumps(value).decode()}")
    return " ".join(pairs)


def _plain_word(text: str) -> bool:
    return (
        bool(text)
        and text.isprintable()
        and not any(c in text for c in ' "=')
        and not _looks_typed(text)
    )


def _looks_typed(text: str) -> bool:
    """Text that a reader (or a filter) would take for a number, boolean or null."""
    if text in ("true", "false", "null"):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def entries_table(items: list[dict[str, Any]], show_metadata: bool = False) -> Table:
    table = Table(show_lines=False, header_style="bold")
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("source", no_wrap=True)
    table.add_column("level", no_wrap=True)
    table.add_column("message", overflow="fold")
    if show_metadata:
        table.add_column("metadata", overflow="fold", style="cyan")
    for item in items:
        # Text, not str: logged text is never read as rich markup.
        row = [
            Text(shown_time(item["timestamp"])),
            Text(item["source"]),
            level_text(item["level"]),
            Text(item["message"]),
        ]
        if show_metadata:
            row.append(Text(metadata_text(item.get("metadata") or {})))
        table.add_row(*row)
    return table


def shown_time(timestamp: str) -> str:
    """An entry's time to the millisecond, the same width whether or not it has a
    fraction (the API writes whole seconds without one)."""
    try:
        parsed = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return timestamp
    return parsed.strftime("%Y-%m-%d %H:%M:%S.%f")[:23]


def entry_line(item: dict[str, Any], show_metadata: bool = False) -> Text:
    line = Text(f"{shown_time(item['timestamp'])} {item['source']} ")
    line.append_text(level_text(item["level"]))
    line.append(f" {item['message']}")
    if show_metadata and item.get("metadata"):
        line.append(f" {metadata_text(item['metadata'])}", style="cyan")
    return line


def summary_table(summary: dict[str, Any]) -> Table:
    totals = summary["totals"]
    table = Table(
        title=f"last {summary['hours']} hours: {totals['events']:,} events, "
        f"{totals['errors']:,} errors ({totals['error_rate']:.2%})",
        header_style="bold",
    )
    for column in ("source", "events", "errors", "fatal", "error rate", "last error (UTC)"):
        table.add_column(
            column, justify="left" if column.startswith(("source", "last")) else "right"
        )
    for row in summary["sources"]:
        last_error = row.get("last_error_minute") or ""
        table.add_row(
            row["source"],
            f"{row['events']:,}",
            f"{row['errors']:,}",
            f"{row['counts'].get('FATAL', 0):,}",
            Text(f"{row['error_rate']:.2%}", style="red" if row["error_rate"] >= 0.05 else ""),
            last_error[:16].replace("T", " "),
        )
    return table


def print_json_lines(
    console: Console, items: Iterator[dict[str, Any]] | list[dict[str, Any]]
) -> None:
    for item in items:
        console.out(exactjson.dumps(item).decode(), highlight=False)
