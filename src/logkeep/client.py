"""The CLI's view of a running logkeep: HTTP calls to its API, and how results look."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import orjson
from httpx_sse import connect_sse
from rich.console import Console
from rich.table import Table
from rich.text import Text

RECONNECT_DELAY_S = 1.0

LEVEL_STYLES = {
    "DEBUG": "dim",
    "INFO": "green",
    "WARN": "yellow",
    "ERROR": "bold red",
    "FATAL": "bold white on red",
}


class ApiError(RuntimeError):
    """The API answered with an error, or could not be reached; the message says which."""


def _check(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        detail: Any = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    raise ApiError(f"{response.status_code} from {response.request.url.path}: {detail}")


class LogkeepClient:
    def __init__(self, base_url: str, timeout_s: float = 30.0, token: str = "") -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s, headers=headers)
        self.base_url = base_url

    def __enter__(self) -> LogkeepClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def _get(self, path: str, params: dict[str, Any], **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.get(path, params=params, **kwargs)
        except httpx.TransportError as exc:
            raise ApiError(f"cannot reach logkeep at {self.base_url}: {exc}") from exc
        _check(response)
        return response

    def search(self, params: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._get("/api/v1/logs", params).json()
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
                        yield orjson.loads(line)
        except httpx.TransportError as exc:
            raise ApiError(f"cannot reach logkeep at {self.base_url}: {exc}") from exc

    def summary(self, hours: int) -> dict[str, Any]:
        result: dict[str, Any] = self._get("/api/v1/stats/summary", {"hours": hours}).json()
        return result

    def tail(self, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """New entries as they commit; reconnects from the last event after a drop."""
        last_event_id: str | None = None
        while True:
            headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
            try:
                with connect_sse(
                    self._http,
                    "GET",
                    "/api/v1/tail",
                    params=params,
                    headers=headers,
                    timeout=httpx.Timeout(30.0, read=None),
                ) as source:
                    if not source.response.is_success:
                        source.response.read()
                        _check(source.response)
                    for event in source.iter_sse():
                        last_event_id = event.id or last_event_id  # log and position events
                        if event.event == "log":
                            yield orjson.loads(event.data)
            except (httpx.RemoteProtocolError, httpx.ReadError):
                time.sleep(RECONNECT_DELAY_S)  # dropped: resume from the last position seen
                continue
            except httpx.TransportError as exc:
                raise ApiError(f"cannot reach logkeep at {self.base_url}: {exc}") from exc


def level_text(level: str) -> Text:
    return Text(level, style=LEVEL_STYLES.get(level, ""))


def entries_table(items: list[dict[str, Any]]) -> Table:
    table = Table(show_lines=False, header_style="bold")
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("source", no_wrap=True)
    table.add_column("level", no_wrap=True)
    table.add_column("message", overflow="fold")
    for item in items:
        table.add_row(
            shown_time(item["timestamp"]),
            item["source"],
            level_text(item["level"]),
            item["message"],
        )
    return table


def shown_time(timestamp: str) -> str:
    """An entry's time to the millisecond, the same width whether or not it has a
    fraction (the API writes whole seconds without one)."""
    try:
        parsed = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return timestamp
    return parsed.strftime("%Y-%m-%d %H:%M:%S.%f")[:23]


def entry_line(item: dict[str, Any]) -> Text:
    line = Text(f"{shown_time(item['timestamp'])} {item['source']} ")
    line.append_text(level_text(item["level"]))
    line.append(f" {item['message']}")
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
        console.out(orjson.dumps(item).decode(), highlight=False)
