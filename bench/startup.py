"""Time from `logkeep up` to /readyz 200: cold (new data directory) and warm (same one).

.venv/bin/python bench/startup.py [--seed-rows 100000] [--binaries auto|wheels]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from logkeep.api.local import free_port
from logkeep.embedded import temporary_root

LOGKEEP = str(Path(sys.executable).parent / "logkeep")


def time_to_ready(workdir: Path, seed_rows: int, binaries: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOGKEEP_")}
    env["LOGKEEP_EMBEDDED_BINARIES"] = binaries
    port = free_port()
    started = time.monotonic()
    process = subprocess.Popen(
        [LOGKEEP, "up", "--port", str(port), "--seed-rows", str(seed_rows)],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            if process.poll() is not None:
                raise SystemExit(f"logkeep up exited with {process.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                    if r.status == 200:
                        return time.monotonic() - started
            except OSError:
                time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed-rows", type=int, default=100_000)
    parser.add_argument("--binaries", choices=["auto", "wheels"], default="auto")
    args = parser.parse_args()
    with temporary_root("lk-start-") as workdir:
        cold = time_to_ready(workdir, args.seed_rows, args.binaries)
        warm = time_to_ready(workdir, args.seed_rows, args.binaries)
    print(
        f"startup ({args.binaries} binaries, {args.seed_rows} seed rows): "
        f"cold={cold:.1f}s warm={warm:.1f}s"
    )


if __name__ == "__main__":
    main()
