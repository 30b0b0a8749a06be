"""The API's CPU per event on `POST /api/v1/ingest`, for each kind of body, under the load
of `logkeep bench ingest` (its sender, its events, a real `logkeep serve` and `logkeep
worker`, a database of its own per run), optionally with a sampling profile of the API:

    .venv/bin/python bench/api_cpu.py [--rows 100000] [--mode ndjson ...]
        [--baseline-src DIR] [--profile DIR] [--top 20]

`--per-request N` sends N events per request instead of 1,000: what a request costs
whatever it holds (middleware, routing, dependencies, the Redis call) shows at small N.

Modes: NDJSON, a JSON array and text lines (the nginx source's raw lines with
`?source=nginx_access`, parsed by its rules), each plain and gzipped.

`--baseline-src DIR`: each mode runs twice, alternately, once with the API and worker
importing logkeep from DIR (another checkout's `src`, e.g. `git archive COMMIT src | tar
-x -C /tmp/before`) and once from this tree; it prints both figures and their ratio.
(The stores, the events and the machine are the same: only the code differs.)

`--profile DIR`: py-spy samples the API and the worker while each mode runs (on-CPU
samples only, aggregated by function) into DIR/<mode>.txt and DIR/<mode>.worker.txt and
prints the functions with the most samples, by their own time and including what they
call. Profiled runs are slower, so
their CPU figures are not the ones to compare: measure without `--profile`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson

from logkeep.bench import ingest as ingest_bench
from logkeep.bench import wire
from logkeep.bench.ingest import (
    START_DEADLINE_S,
    _database_url,
    _ident,
    bodies_of,
    create_template,
    end_to_end,
    sample_events,
)
from logkeep.bench.wire import Wire
from logkeep.cli.common import load_settings, stores
from logkeep.config import Settings
from logkeep.embedded import temporary_root
from logkeep.logging import configure_logging

PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
NGINX = "nginx_access"
INGEST = "/api/v1/ingest"
IDLE = ("Condition.wait ",)


def _gzip(encode: Any) -> Any:
    return lambda events: gzip.compress(encode(events), compresslevel=1)


def _json_array(events: Sequence[wire.Event]) -> bytes:
    return orjson.dumps(list(events))


def _text(events: Sequence[wire.Event]) -> bytes:
    return b"\n".join(e["message"].encode() for e in events)


NDJSON = {"content-type": "application/x-ndjson"}
JSON = {"content-type": "application/json"}
TEXT = {"content-type": "text/plain"}
GZ = {"content-encoding": "gzip"}
TAKEN = wire.NDJSON.taken
MODES = {
    "ndjson": Wire("NDJSON", INGEST, NDJSON, 202, wire.ndjson, TAKEN),
    "ndjson-gzip": Wire("NDJSON gzip", INGEST, NDJSON | GZ, 202, _gzip(wire.ndjson), TAKEN),
    "json": Wire("JSON array", INGEST, JSON, 202, _json_array, TAKEN),
    "json-gzip": Wire("JSON array gzip", INGEST, JSON | GZ, 202, _gzip(_json_array), TAKEN),
    "text": Wire("text nginx", f"{INGEST}?source={NGINX}", TEXT, 202, _text, TAKEN),
    "text-gzip": Wire(
        "text nginx gzip", f"{INGEST}?source={NGINX}", TEXT | GZ, 202, _gzip(_text), TAKEN
    ),
}


# -- the profiler ----------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat.rpartition(")")[2].split()[1]) == pid:
                    found.append(int(entry.name))
    return found


def _ready_api(deadline_s: float = START_DEADLINE_S) -> tuple[int, int]:
    """The pids of the `logkeep serve` and `logkeep worker` this process started
    (bench.ingest starts them as children), once the API answers /readyz: their start-up
    is not what is measured."""
    deadline = time.monotonic() + deadline_s
    api = worker = None
    while time.monotonic() < deadline:
        for child in _children(os.getpid()):
            with contextlib.suppress(OSError):
                argv = (Path("/proc") / str(child) / "cmdline").read_bytes().split(b"\0")
                if b"worker" in argv:
                    worker = child
                if b"serve" in argv and api is None:
                    port = argv[argv.index(b"--port") + 1].decode()
                    with contextlib.suppress(httpx.TransportError):
                        if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                            api = child
        if api is not None and worker is not None:
            return api, worker
        time.sleep(0.05)
    raise RuntimeError("no `logkeep serve` and `logkeep worker` children became ready")


def worker_profile(output: Path) -> Path:
    return output.with_name(f"{output.stem}.worker{output.suffix}")


@contextlib.contextmanager
def profiled(output: Path | None) -> Iterator[None]:
    """py-spy recording the API started inside the block into `output`, and its worker
    into `output` with `.worker` before the suffix, until they exit."""
    if output is None:
        yield
        return
    recorder: list[subprocess.Popen[bytes]] = []

    def attach() -> None:
        api, worker = _ready_api()
        for pid, into in ((api, output), (worker, worker_profile(output))):
            recorder.append(
                subprocess.Popen(
                    [PY_SPY, "record", "--pid", str(pid), "--rate", "200", "--function",
                     "--format", "raw", "--output", str(into)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip

    thread = threading.Thread(target=attach, daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()
        for process in recorder:  # it ends when the API does
            process.wait(60)


def top_functions(raw: Path, count: int) -> tuple[int, list[tuple[str, int, int]]]:
    """(samples, [(function, own samples, samples including callees)]) of a py-spy raw
    (collapsed stacks) file, the most expensive by own time first."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if frames and frames[-1].startswith(IDLE):
            continue  # an idle thread pool's worker, which py-spy takes for busy
        weight = int(n)
        samples += weight
        if frames:
            own[frames[-1]] += weight
        for frame in set(frames):
            total[frame] += weight
    return samples, [(name, n, total[name]) for name, n in own.most_common(count)]


def print_profile(raw: Path, count: int, process: str = "API") -> None:
    samples, rows = top_functions(raw, count)
    print(f"  py-spy: {samples} on-CPU samples of the {process}; top {count} by own time:")
    print(f"  {'own %':>6} {'total %':>8}  function")
    for name, own, total in rows:
        print(f"  {own / samples:>6.1%} {total / samples:>8.1%}  {name[:150]}")


# -- runs ------------------------------------------------------------------------------------


@dataclass
class Figure:
    us_per_event: float
    events_per_s: float
    exactly_once: bool


@contextlib.contextmanager
def code_from(src: str | None) -> Iterator[None]:
    """The processes started inside the block import logkeep from `src` (None: here)."""
    before = os.environ.get("PYTHONPATH")
    if src is not None:
        os.environ["PYTHONPATH"] = src
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = before


async def measure(
    settings: Settings,
    admin: asyncpg.Connection,
    template: str,
    way: Wire,
    events: Sequence[wire.Event],
    *,
    src: str | None = None,
    profile: Path | None = None,
) -> Figure:
    assert settings.database_url is not None
    name = f"lkbench_{secrets.token_hex(4)}_cpu"
    await admin.execute(f"CREATE DATABASE {_ident(name)} TEMPLATE {_ident(template)}")
    try:
        bodies = bodies_of(events, way)
        with code_from(src), profiled(profile):
            e2e = await end_to_end(
                settings, _database_url(settings.database_url, name), bodies, way
            )
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")
    accepted = e2e.sent.accepted
    return Figure(
        e2e.cpu["api"] / max(1, accepted + e2e.sent.duplicates) * 1e6,
        accepted / e2e.seconds,
        e2e.stored == accepted and e2e.sent.rejected == 0,
    )


async def run(settings: Settings, args: argparse.Namespace) -> None:
    assert settings.database_url is not None
    template = f"lkbench_{secrets.token_hex(4)}_tpl"
    admin = await asyncpg.connect(settings.database_url)
    try:
        await create_template(admin, settings.database_url, template)
        events = [e for chunk in sample_events(args.rows, datetime.now(UTC)) for e in chunk]
        nginx = [e for e in events if e["source"] == NGINX]
        print(
            f"API CPU per event, {len(events):,} events ({len(nginx):,} for text modes), "
            f"{args.per_request:,} per request, {os.cpu_count()} cores, best of {args.repeat}"
            + (f", baseline from {args.baseline_src}" if args.baseline_src else "")
        )
        header = f"{'mode':<18} {'us/event':>9} {'events/s':>9}"
        if args.baseline_src:
            header += f" {'before us':>10} {'before/s':>9} {'CPU ratio':>10}"
        print(header)
        for mode in args.mode:
            way = MODES[mode]
            chosen = nginx if mode.startswith("text") else events
            after: list[Figure] = []
            before: list[Figure] = []
            for _ in range(args.repeat):
                if args.baseline_src:
                    before.append(
                        await measure(settings, admin, template, way, chosen, src=args.baseline_src)
                    )
                after.append(await measure(settings, admin, template, way, chosen))
            best = min(after, key=lambda f: f.us_per_event)
            line = f"{mode:<18} {best.us_per_event:>9.1f} {best.events_per_s:>9,.0f}"
            if before:
                old = min(before, key=lambda f: f.us_per_event)
                line += (
                    f" {old.us_per_event:>10.1f} {old.events_per_s:>9,.0f}"
                    f" {old.us_per_event / best.us_per_event:>9.2f}x"
                )
            if not all(f.exactly_once for f in after + before):
                line += "  NOT EXACTLY ONCE"
            print(line, flush=True)
            if args.profile:
                args.profile.mkdir(parents=True, exist_ok=True)
                output = args.profile / f"{mode}.txt"
                await measure(settings, admin, template, way, chosen, profile=output)
                print_profile(output, args.top)
                print_profile(worker_profile(output), args.top, "worker")
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {_ident(template)} WITH (FORCE)")
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--mode", action="append", choices=list(MODES))
    parser.add_argument("--repeat", type=int, default=1, help="runs per mode; the best is kept")
    parser.add_argument("--baseline-src", help="a `src` directory of the code to compare with")
    parser.add_argument("--profile", type=Path, help="py-spy each mode's API into this folder")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument(
        "--per-request", type=int, default=1000, help="events per request (1,000 as bench ingest)"
    )
    args = parser.parse_args()
    args.mode = args.mode or list(MODES)
    ingest_bench.EVENTS_PER_REQUEST = args.per_request  # bodies_of reads it when called
    if args.baseline_src:
        args.baseline_src = str(Path(args.baseline_src).resolve())
    configure_logging("warning")
    settings = load_settings()
    with temporary_root("lk-bench-") as root:
        bench = settings.model_copy(update={"data_dir": root, "maintenance_interval_s": 0})
        with stores(bench) as (resolved, _):
            asyncio.run(run(resolved, args))


if __name__ == "__main__":
    main()
