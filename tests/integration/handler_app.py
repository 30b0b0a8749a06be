"""An application that logs through LogkeepHandler, driven line by line on stdin.

Run by tests/integration/test_handler.py as a real separate process. Configured with
`logging.config.dictConfig`, as an application would; APP_EXIT_WAIT_S bounds the wait
for logkeep at exit (the handler's flush and close timeouts). Commands, one per line; each
answers one JSON line on stdout:

    log N        log N records (extra: run tag and a sequence number); answers how long
                 the N logging calls took and how many records the handler holds
    exception    log one error with a chained traceback
    flush S      wait up to S seconds for delivery; answers whether all were answered
    exit         leave through the interpreter's normal exit (logging.shutdown)
"""

from __future__ import annotations

import logging
import logging.config
import os
import sys
import time

import orjson

from logkeep.handler import LogkeepHandler


def main() -> None:
    source, run = sys.argv[1], sys.argv[2]
    logging.config.dictConfig(
        {
            "version": 1,
            "handlers": {
                "logkeep": {
                    "class": "logkeep.handler.LogkeepHandler",
                    "source": source,
                    "level": "DEBUG",
                    "batch_size": 500,
                    "flush_interval": 0.2,
                    "max_backoff": 0.5,
                    # How long the exit may wait for logkeep (flush, then close).
                    "flush_timeout": float(os.environ.get("APP_EXIT_WAIT_S", "30")),
                    "close_timeout": float(os.environ.get("APP_EXIT_WAIT_S", "30")),
                }
            },
            "root": {"handlers": ["logkeep"], "level": "DEBUG"},
        }
    )
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, LogkeepHandler)
    log = logging.getLogger("shop.payments")
    seq = 0
    for command in sys.stdin:
        word, *args = command.split()
        answer: dict[str, object] = {}
        if word == "log":
            count = int(args[0])
            started = time.perf_counter()
            for _ in range(count):
                seq += 1
                log.info("order %d paid", seq, extra={"run": run, "seq": seq})
            answer = {"seconds": time.perf_counter() - started}
        elif word == "exception":
            seq += 1
            try:
                try:
                    cards: dict[str, str] = {}
                    cards["card"]  # raises KeyError
                except KeyError as exc:
                    raise ValueError("card declined") from exc
            except ValueError:
                log.exception("payment %d failed", seq, extra={"run": run, "seq": seq})
        elif word == "flush":
            answer = {"delivered": handler.wait_delivered(float(args[0]))}
        elif word == "exit":
            break
        stats = handler.stats()
        answer.update(queued=stats.queued, accepted=stats.accepted, duplicates=stats.duplicates)
        answer.update(dropped=stats.dropped, rejected=stats.rejected, seq=seq)
        sys.stdout.write(orjson.dumps(answer).decode() + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
