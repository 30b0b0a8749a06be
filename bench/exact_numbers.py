"""What keeping numbers exactly costs the NDJSON ingest path, against the orjson-only code
it replaced, measured in one run on this machine (pure CPU: no server is started):

    .venv/bin/python bench/exact_numbers.py [--lines 20000] [--repeat 7]

Three corpora of NDJSON events: realistic ones (the sample generator's nginx, application
and slow-query events: hex trace ids, floats, ISO timestamps); events that also carry a
17-digit epoch float and a nanosecond integer, as zap and other Go loggers write them (the
exactness check has a second look at those); and events holding an integer beyond 64
bits (read by the standard library: the slow path). For each it times, before and after:

- parse: reading the lines of NDJSON bodies of 1,000 lines as the API does (split,
  decode, read; before: orjson, with the standard library for what orjson refuses;
  after: read_json_lines, one look at the body for numbers orjson would not keep, then
  orjson for the other lines and the exact reader for those);
- prepare: all the API does with a body's lines (also validate into a LogEntry, encode
  the stream record), the metadata encoded by orjson.dumps before, exactjson after;
- worker: reading a stream entry's records back for COPY (before: the metadata encoded
  again from orjson's reading; after: taken from the record as the API encoded it).

Each pair runs alternately `--repeat` times and the best time of each is kept, counted as
this process's CPU time (on a shared machine, wall time measures the neighbours).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from logkeep.domain import exactjson
from logkeep.domain.entry import Level
from logkeep.domain.ingest import (
    EPOCH,
    SourceRules,
    decode_line,
    decode_records,
    encode_entry,
    entry_from_event,
    read_json_lines,
    split_lines,
)
from logkeep.domain.parsers import compile_parser
from logkeep.domain.samples import SampleGenerator

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)
SOURCE = SourceRules(1, "bench", True, "json", compile_parser("json", {}))
MAX_LINE = 256 * 1024
RECORDS_PER_ENTRY = 500  # events in one stream entry, as a request of 500 lines
LINES_PER_BODY = 1000  # lines of one NDJSON request body, as `logkeep bench ingest` sends


def loads_before(data: bytes | str) -> Any:
    """The parser before exactjson (domain/ingest.py's _loads)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        try:
            return json.loads(data)
        except (ValueError, RecursionError):
            pass
        raise


@contextmanager
def metadata_encoder(encode: Callable[[Any], bytes]) -> Iterator[None]:
    """LogEntry's metadata encoder for the duration (orjson.dumps, as before exactjson)."""
    original = exactjson.dumps_storable
    exactjson.dumps_storable = encode  # type: ignore[assignment]
    try:
        yield
    finally:
        exactjson.dumps_storable = original


def corpus(kind: str, lines: int) -> list[bytes]:
    entries = SampleGenerator(seed=7).generate(lines, NOW, days=1)
    out = []
    for i, e in enumerate(entries):
        event: dict[str, Any] = {
            "source": e.source,
            "timestamp": e.timestamp.isoformat(),
            "level": e.level.value,
            "message": e.message,
            **e.metadata,
        }
        if kind == "go":
            epoch = e.timestamp.timestamp()
            event["ts"] = float(f"{epoch:.7f}")  # 17 digits: zap's epoch float
            event["ts_ns"] = int(epoch * 1e9)  # 19 digits
        elif kind == "big":
            event["request_id"] = 10**30 + i  # beyond 64 bits
        out.append(exactjson.dumps(event))
    return out


def events_before(body: bytes) -> list[tuple[int, Any]]:
    """A body's lines as the API read them before exactjson."""
    return [(n, loads_before(decode_line(raw, MAX_LINE))) for n, raw in split_lines(body)]


def parse_bodies_before(bodies: list[bytes]) -> None:
    for body in bodies:
        events_before(body)


def parse_bodies(bodies: list[bytes]) -> None:
    """The lines as the API reads an NDJSON body now."""
    for body in bodies:
        read_json_lines(body, split_lines(body), MAX_LINE)


def prepare_bodies_before(bodies: list[bytes]) -> list[bytes]:
    """All the API did with a body's lines before exactjson."""
    records = []
    for body in bodies:
        for _, event in events_before(body):
            records.append(encode_entry(entry_from_event(event, SOURCE, now=NOW).entry))
    return records


def prepare_bodies(bodies: list[bytes]) -> list[bytes]:
    """All the API does with a body's lines now."""
    records = []
    for body in bodies:
        for _, event in read_json_lines(body, split_lines(body), MAX_LINE):
            records.append(entry_from_event(event, SOURCE, now=NOW).record)
    return records


@dataclass(frozen=True, slots=True)
class RowBefore:
    """StreamRow before exactjson."""

    source_id: int
    timestamp: datetime
    level: str
    message: str
    metadata: dict[str, Any]
    metadata_json: bytes


def row_before(item: Any) -> RowBefore:
    """domain/ingest.py's _row before exactjson."""
    source_id, ts_us, level, message, metadata = item
    if not (
        isinstance(source_id, int)
        and isinstance(ts_us, int)
        and isinstance(level, str)
        and isinstance(message, str)
        and isinstance(metadata, dict)
    ):
        raise ValueError("an entry record has a field of the wrong type")
    return RowBefore(
        source_id,
        EPOCH + timedelta(microseconds=ts_us),
        Level(level).value,
        message,
        metadata,
        orjson.dumps(metadata),
    )


def decode_before(payload: bytes) -> list[RowBefore]:
    """domain/ingest.py's decode_records before exactjson: orjson, and every metadata
    encoded again (dead letters left out: the corpora have none)."""
    rows = []
    for item in orjson.loads(b"[" + payload.replace(b"\n", b",") + b"]"):
        if isinstance(item, list) and len(item) == 5:
            rows.append(row_before(item))
        else:
            raise ValueError(f"unexpected record {str(item)[:80]!r}")
    return rows


def decode_all(payloads: list[bytes], decode: Callable[[bytes], object]) -> None:
    for payload in payloads:
        decode(payload)


def best_of(
    repeat: int, before: Callable[[], object], after: Callable[[], object]
) -> tuple[float, float]:
    times: dict[str, list[float]] = {"before": [], "after": []}
    for _ in range(repeat):
        for name, run in (("before", before), ("after", after)):
            started = time.process_time()
            run()
            times[name].append(time.process_time() - started)
    return min(times["before"]), min(times["after"])


def in_bodies(lines: list[bytes]) -> list[bytes]:
    per_body = range(0, len(lines), LINES_PER_BODY)
    return [b"\n".join(lines[i : i + LINES_PER_BODY]) for i in per_body]


def measure(
    repeat: int, bodies: list[bytes], payloads: list[bytes]
) -> dict[str, tuple[float, float]]:
    def prepare_before() -> None:
        with metadata_encoder(orjson.dumps):
            prepare_bodies_before(bodies)

    return {
        "parse": best_of(repeat, lambda: parse_bodies_before(bodies), lambda: parse_bodies(bodies)),
        "prepare": best_of(repeat, prepare_before, lambda: prepare_bodies(bodies)),
        "worker": best_of(
            repeat,
            lambda: decode_all(payloads, decode_before),
            lambda: decode_all(payloads, decode_records),
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    n = args.lines
    # LogEntry validates timestamps against NOW: keep the corpus inside the window.
    assert SampleGenerator(seed=7).generate(1, NOW, days=1)[0].timestamp > NOW - timedelta(2)

    print(f"{n} lines per corpus, best of {args.repeat}: lines per second, and speed after/before")
    print(f"{'corpus':<10} {'step':<8} {'before':>12} {'after':>12} {'ratio':>8}")
    for kind in ("realistic", "go", "big"):
        bodies = in_bodies(corpus(kind, n))
        with metadata_encoder(orjson.dumps):
            records_before = prepare_bodies_before(bodies)
        records = prepare_bodies(bodies)
        assert len(records) == len(records_before) == n
        payloads = [
            b"\n".join(records[i : i + RECORDS_PER_ENTRY]) for i in range(0, n, RECORDS_PER_ENTRY)
        ]

        steps = measure(args.repeat, bodies, payloads)
        for step, (before, after) in steps.items():
            print(
                f"{kind:<10} {step:<8} {n / before:>12,.0f} {n / after:>12,.0f}"
                f" {before / after:>7.2f}x"
            )
        if kind == "big":
            before_kept = orjson.loads(records_before[0])[4]["request_id"]
            after_kept = exactjson.loads(records[0])[4]["request_id"]
            print(f"{'':<10} request_id {10**30} was stored as {before_kept!r}, now {after_kept}")


if __name__ == "__main__":
    main()
