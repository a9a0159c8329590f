"""Success rate against planning budget (samples per CEM iteration): runs benchmark cells, then plots them.

python scripts/budget_sweep.py --task reach --samples 4 8 16 32 64 --episodes 20 --out runs/budget
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from planner.apps import benchmark  # noqa: E402
from planner.cli import CONFIG_DIR  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="reach")
    parser.add_argument("--planner", default="cem")
    parser.add_argument("--world-model", default="oracle")
    parser.add_argument("--samples", type=int, nargs="+", default=[4, 8, 16, 32, 64])
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--out", default="runs/budget")
    parser.add_argument("--overrides", nargs="*", default=[])
    args = parser.parse_args()
    points = []
    for n in args.samples:
        out = Path(args.out) / f"{args.task}_{args.planner}_{args.world_model}_n{n}"
        elites = max(2, min(12, n // 4))
        overrides = [
            f"task={args.task}",
            f"planner={args.planner}",
            f"world_model={args.world_model}",
            f"episodes={args.episodes}",
            f"out={out}",
            f"planner.num_samples={n}",
            *args.overrides,
        ]
        if args.planner == "cem":
            overrides.append(f"planner.num_elites={elites}")
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            cfg = compose(config_name="benchmark", overrides=overrides)
        (row,) = benchmark.run(cfg)
        points.append({"samples": n, **row})
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"{args.task}_{args.planner}_{args.world_model}.json").write_text(json.dumps(points, indent=2))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    xs = [p["samples"] for p in points]
    ys = [100 * p["success_rate"] for p in points]
    lo = [100 * (p["success_rate"] - p["success_ci95"][0]) for p in points]
    hi = [100 * (p["success_ci95"][1] - p["success_rate"]) for p in points]
    ax.errorbar(xs, ys, yerr=[lo, hi], marker="o", capsize=3)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("samples per CEM iteration")
    ax.set_ylabel("success % (95 % CI)")
    ax.set_title(f"{args.task}, {args.planner}, {args.world_model}, {args.episodes} episodes each")
    fig.tight_layout()
    path = Path(args.out) / f"{args.task}_{args.planner}_{args.world_model}.png"
    fig.savefig(path, dpi=100)
    print(f"plot: {path}")


if __name__ == "__main__":
    main()
