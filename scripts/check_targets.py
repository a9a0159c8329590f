"""Print an eval-model report against issue 11's targets: value, target, met or missed by how much.

    .venv/bin/python scripts/check_targets.py runs/eval_model/model_report.json [more reports...]

Exits 0 either way: it reports, the model card and the person shipping a checkpoint decide.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# key -> (comparison, target); the "now" column is the shipped 64 px front-camera model
TARGETS: dict[str, tuple[str, float]] = {
    "probe_err_cube_cm": ("<=", 1.5),
    "probe_err_cube_cm_median": ("<=", 0.8),
    "probe_err_cube_cm_p90": ("<=", 3.0),
    "probe_err_cube_held_cm": ("<=", 1.5),
    "rollout10_cube_err_cm": ("<=", 2.5),
    "probe_err_ee_cm": ("<=", 0.3),
    "effective_rank_ratio": (">=", 0.5),
    "energy_true_action_rate": (">=", 0.95),
}


def check(report: dict) -> list[tuple[str, float, str, float, bool]]:
    """Rows ``(key, value, comparison, target, met)`` for every target key the report holds."""
    rows = []
    for key, (op, target) in TARGETS.items():
        value = float(report.get(key, float("nan")))
        met = value <= target if op == "<=" else value >= target
        rows.append((key, value, op, target, bool(met)))
    return rows


def main(paths: list[str]) -> None:
    for path in paths:
        report = json.loads(Path(path).read_text())
        print(f"{path}: {report.get('n_episodes')} episodes, {report.get('n_frames')} frames")
        for key, value, op, target, met in check(report):
            gap = "" if met else f"  (missed by {abs(value - target):.2f})"
            print(f"  {key:26s} {value:8.3f}   target {op} {target:<5}  {'met' if met else 'MISSED'}{gap}")


if __name__ == "__main__":
    main(sys.argv[1:])
