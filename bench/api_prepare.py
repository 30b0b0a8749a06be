"""The API's work per event on `POST /api/v1/ingest` without HTTP and Redis: a request
body in, the stream records and fingerprints out (gunzip, split, read, validate, parse by
rules, fingerprint, encode), for each kind of body, against another checkout's code in
the same run:

    git archive COMMIT src | tar -x -C /tmp/before
    .venv/bin/python bench/api_prepare.py --baseline-src /tmp/before/src [--rows 20000]

The bodies (the sample events of `logkeep bench ingest`, 1,000 per request) are made
once; each code version then prepares all of them in a process of its own (importing
logkeep from its `src`), alternately, `--rounds` times; the best CPU time of each is kept
(on a shared machine, wall time measures the neighbours). It prints microseconds of CPU
per event for both, the ratio, and checks that both made the same records.

Corpora: `realistic` (the sample events); `go` (plus a 17-digit epoch float and a
nanosecond integer per event, as zap writes them); `big` (plus an integer beyond 64
bits per event, read exactly by the slow path).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

EVENTS_PER_REQUEST = 1000
NGINX = "nginx_access"


@dataclass(frozen=True)
class Body:
    media_type: str
    encoding: str | None
    source: str | None
    data: bytes
    events: int


def _events(rows: int, corpus: str) -> list[dict[str, Any]]:
    from logkeep.bench.ingest import sample_events

    now = datetime.now(UTC) - timedelta(minutes=5)
    events = [e for chunk in sample_events(rows, now) for e in chunk]
    for i, event in enumerate(events):
        epoch = event["timestamp"].timestamp()
        if corpus == "go":
            event["metadata"] = {**event["metadata"], "ts": float(f"{epoch:.7f}")}
            event["metadata"]["ts_ns"] = int(epoch * 1e9)
        elif corpus == "big":
            event["metadata"] = {**event["metadata"], "request_id": 10**30 + i}
    return events


def _bodies(rows: int, corpus: str, mode: str) -> list[Body]:
    from logkeep.domain import exactjson

    events = _events(rows, corpus)
    if mode.startswith("text"):
        events = [e for e in events if e["source"] == NGINX]
    chunks = [events[i : i + EVENTS_PER_REQUEST] for i in range(0, len(events), 1000)]
    gz = mode.endswith("-gzip")
    out = []
    for chunk in chunks:
        if mode.startswith("ndjson"):
            media, source = "application/x-ndjson", None
            data = b"\n".join(exactjson.dumps(e) for e in chunk)
        elif mode.startswith("json"):
            media, source = "application/json", None
            data = exactjson.dumps(chunk)
        else:
            media, source = "text/plain", NGINX
            data = b"\n".join(e["message"].encode() for e in chunk)
        if gz:
            data = gzip.compress(data, compresslevel=1)
        out.append(Body(media, "gzip" if gz else None, source, data, len(chunk)))
    return out


# -- the child: one code version -------------------------------------------------------------


class Catalog:
    """The sample sources, as SourceCatalog.get answers (no stores in this benchmark)."""

    def __init__(self) -> None:
        from logkeep.domain.ingest import SourceRules
        from logkeep.domain.parsers import compile_parser
        from logkeep.domain.samples import SOURCES

        self._by_name = {
            spec.name: SourceRules(
                n, spec.name, True, spec.format_type,
                compile_parser(spec.format_type, spec.parsing_rules),
            )
            for n, spec in enumerate(SOURCES, start=1)
        }  # fmt: skip

    async def get(self, ref: str | int) -> Any:
        return self._by_name.get(str(ref))


async def _prepare_all(bodies: list[Body], repeat: int) -> tuple[float, str]:
    from logkeep.api.ingest import _batch_from_body
    from logkeep.config import Settings
    from logkeep.domain.ingest import decompress
    from logkeep.ingest.service import IngestService, entry_limits

    settings = Settings()
    service = IngestService(settings, Catalog(), None, None, entry_limits(settings))  # type: ignore[arg-type]
    best = float("inf")
    digest = ""
    for _ in range(repeat):
        made: list[tuple[bytes, bytes | None]] = []
        reasons: list[str] = []
        started = time.process_time()
        for body in bodies:
            data = decompress(body.data, body.encoding, settings.ingest_max_body_bytes)
            batch = await _batch_from_body(
                data, body.media_type, service, settings, source=body.source,
                line_format=None, parse=False, resolve=service.active_source,
            )  # fmt: skip
            made += zip(batch.records, batch.fingerprints, strict=True)
            reasons += [rejection.reason for rejection in batch.rejected]
        best = min(best, time.process_time() - started)
        digest = _digest(made, reasons)
    return best, digest


def _digest(made: list[tuple[bytes, bytes | None]], reasons: list[str]) -> str:
    """What the records say (whatever their encoding in the stream: versions that wrote
    JSON records and those that write COPY tuples are compared by their values), their
    fingerprints and the rejections."""
    try:
        from logkeep.domain.stream_rows import decode_row, scan

        def values(record: bytes) -> Any:
            rows = [decode_row(record, at) for at in scan(record).starts]
            return rows[0] if rows else None
    except ImportError:  # a version before COPY tuples
        from logkeep.domain.ingest import decode_records

        def values(record: bytes) -> Any:
            rows = decode_records(record)[0]
            return rows[0] if rows else None

    digest = hashlib.sha256()
    for record, fingerprint in made:
        row = values(record)
        if row is not None:
            digest.update(repr(row.copy_record()).encode())
        digest.update(fingerprint or b"-")
    for reason in reasons:
        digest.update(reason.encode())
    return digest.hexdigest()


def child(path: Path, repeat: int) -> None:
    bodies: list[Body] = pickle.loads(path.read_bytes())  # noqa: S301 - our own temp file
    seconds, digest = asyncio.run(_prepare_all(bodies, repeat))
    print(json.dumps({"seconds": seconds, "digest": digest}))


# -- the parent ------------------------------------------------------------------------------


def _run_child(path: Path, src: str | None, repeat: int) -> dict[str, Any]:
    env = {**os.environ, "LOGKEEP_ENV": "test"}
    env.pop("PYTHONPATH", None)
    if src is not None:
        env["PYTHONPATH"] = src
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(path), "--repeat", str(repeat)],
        env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the versions")
    parser.add_argument("--repeat", type=int, default=3, help="passes in each process")
    parser.add_argument("--baseline-src", help="a `src` directory of the code to compare with")
    parser.add_argument(
        "--mode",
        action="append",
        choices=["ndjson", "ndjson-gzip", "json", "json-gzip", "text", "text-gzip"],
    )
    parser.add_argument("--corpus", action="append", choices=["realistic", "go", "big"])
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.repeat)
        return
    baseline = str(Path(args.baseline_src).resolve()) if args.baseline_src else None
    modes = args.mode or ["ndjson", "ndjson-gzip", "json", "json-gzip", "text", "text-gzip"]
    corpora = args.corpus or ["realistic", "go", "big"]
    print(
        f"API prepare CPU per event, {args.rows:,} events per corpus ({EVENTS_PER_REQUEST:,} "
        f"per request), best of {args.rounds}x{args.repeat}"
        + (f"; before: {baseline}" if baseline else "")
    )
    header = f"{'corpus':<10} {'mode':<12} {'events':>7} {'after us':>9}"
    if baseline:
        header += f" {'before us':>10} {'speed':>7}"
    print(header)
    with tempfile.TemporaryDirectory(prefix="lk-bench-prepare-") as tmp:
        for corpus in corpora:
            for mode in modes:
                if mode.startswith("text") and corpus != "realistic":
                    continue  # text lines carry no JSON numbers
                bodies = _bodies(args.rows, corpus, mode)
                events = sum(b.events for b in bodies)
                path = Path(tmp) / "bodies.pickle"
                path.write_bytes(pickle.dumps(bodies))
                after: list[dict[str, Any]] = []
                before: list[dict[str, Any]] = []
                for _ in range(args.rounds):
                    if baseline:
                        before.append(_run_child(path, baseline, args.repeat))
                    after.append(_run_child(path, None, args.repeat))
                new = min(r["seconds"] for r in after) / events * 1e6
                line = f"{corpus:<10} {mode:<12} {events:>7,} {new:>9.2f}"
                if before:
                    old = min(r["seconds"] for r in before) / events * 1e6
                    same = {r["digest"] for r in after} == {r["digest"] for r in before}
                    line += f" {old:>10.2f} {old / new:>6.2f}x"
                    line += "" if same else "  RECORDS DIFFER"
                print(line, flush=True)


if __name__ == "__main__":
    main()
