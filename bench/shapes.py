"""Grouping accuracy of message shapes on LogHub's 2k-line samples (logpai/loghub).

For each system, every line's shape is computed online, in order, as a new-pattern rule
computes it (domain/shapes.py: our masks, then Drain at similarity 0.7, depth 5), and
compared with the ground truth's event ids: a line counts as right when the set of lines
sharing its shape is exactly the set sharing its event (grouping accuracy, Zhu et al.,
ICSE-SEIP 2019). drain3 with its default settings is measured in the same run, as the
baseline. LogHub is under a research licence: point this at a checkout kept outside the
repository (never commit the data):

    .venv/bin/python bench/shapes.py /path/to/loghub
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from drain3 import TemplateMiner
from drain3.template_miner_config import TemplateMinerConfig

from logkeep.domain.shapes import masked, new_drain


def grouping_accuracy(predicted: Sequence[object], truth: Sequence[str]) -> float:
    by_truth: dict[str, set[int]] = defaultdict(set)
    by_predicted: dict[object, set[int]] = defaultdict(set)
    for i, (p, t) in enumerate(zip(predicted, truth, strict=True)):
        by_truth[t].add(i)
        by_predicted[p].add(i)
    right = sum(
        len(lines)
        for lines in by_truth.values()
        if by_predicted[predicted[next(iter(lines))]] == lines
    )
    return right / len(truth)


def ours(messages: Sequence[str]) -> list[int]:
    drain = new_drain()
    return [drain.add_log_message(masked(m))[0].cluster_id for m in messages]


def drain3_defaults(messages: Sequence[str]) -> list[int]:
    config = TemplateMinerConfig()
    config.profiling_enabled = False
    miner = TemplateMiner(config=config)
    return [miner.add_log_message(m)["cluster_id"] for m in messages]


def load(path: Path) -> tuple[list[str], list[str]]:
    with path.open(encoding="utf-8", errors="replace", newline="") as file:
        rows = list(csv.DictReader(file))
    return [r["Content"] for r in rows], [r["EventId"] for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("loghub", type=Path, help="a checkout of logpai/loghub")
    args = parser.parse_args()
    files = sorted(args.loghub.glob("*/*_2k.log_structured.csv"))
    if not files:
        raise SystemExit(f"no */*_2k.log_structured.csv under {args.loghub}")
    methods: dict[str, Callable[[Sequence[str]], list[int]]] = {
        "logkeep": ours,
        "drain3 defaults": drain3_defaults,
    }
    scores: dict[str, list[float]] = {name: [] for name in methods}
    seconds: dict[str, float] = dict.fromkeys(methods, 0.0)
    lines = 0
    print(f"{'system':<12}" + "".join(f"{name:>18}" for name in methods))
    for path in files:
        messages, truth = load(path)
        lines += len(messages)
        row = f"{path.parent.name:<12}"
        for name, method in methods.items():
            started = time.perf_counter()
            accuracy = grouping_accuracy(method(messages), truth)
            seconds[name] += time.perf_counter() - started
            scores[name].append(accuracy)
            row += f"{accuracy:>18.3f}"
        print(row)
    print(f"{'mean':<12}" + "".join(f"{statistics.mean(s):>18.3f}" for s in scores.values()))
    print(f"{'lines/s':<12}" + "".join(f"{lines / seconds[n]:>18,.0f}" for n in methods))
    ours_mean, base_mean = (statistics.mean(s) for s in scores.values())
    print(f"logkeep / drain3 defaults: {ours_mean / base_mean:.3f}x grouping accuracy")


if __name__ == "__main__":
    main()
