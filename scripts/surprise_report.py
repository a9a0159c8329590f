"""The surprise monitor's figures from benchmark results: pushes flagged, their delay, false alarms per clean episode.

    .venv/bin/python scripts/surprise_report.py runs/bench_perceived/results.jsonl [--push-step 8] [--within 3]

A pushed episode (``faults=push``) is detected when the agent flags a surprise within ``--within`` steps after the
first observation that shows the push (the push is applied before step ``push_step`` executes, so the agent first
sees it at step ``push_step + 1``). False alarms: surprises per episode in cells without faults.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--push-step", type=int, default=8, help="configs/faults/push.yaml push_step")
    parser.add_argument("--within", type=int, default=3)
    args = parser.parse_args()
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for line in args.results.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict) and "surprise_steps" in row and row.get("subgoals") == "perceived":
            cells[(row["task"], row["faults"], row["config"])].append(row)
    for (task, faults, config), rows in sorted(cells.items()):
        latest = {r["seed"]: r for r in rows}.values()
        first_seen = args.push_step + 1
        if faults == "push":
            reached = [r for r in latest if r["steps"] > first_seen]  # episodes still running when the push came
            delays = [next((s - first_seen for s in r["surprise_steps"] if s >= first_seen), None) for r in reached]
            hit = [d for d in delays if d is not None and d < args.within]
            print(
                f"{task} faults=push ({config}): {len(hit)}/{len(reached)} pushes flagged within {args.within} steps"
                f" ({100 * len(hit) / max(len(reached), 1):.0f} %), median delay "
                f"{np.median(hit) if hit else float('nan'):.1f} steps; surprises before the push: "
                f"{sum(sum(s < first_seen for s in r['surprise_steps']) for r in latest)}"
            )
        else:
            alarms = [len(r["surprise_steps"]) for r in latest]
            print(
                f"{task} faults={faults} ({config}): {np.mean(alarms):.2f} false alarms per episode "
                f"over {len(alarms)} episodes (max {max(alarms)})"
            )


if __name__ == "__main__":
    main()
