"""Episodes per second, serial against batched (``batch_episodes=E``), for one benchmark cell, in one process.

    python scripts/bench_batched.py --episodes 12 --lanes 12 --device cpu -- planner.num_samples=12 ...
    scripts/bench_batched.sh   # the GPU measurement: 100 JEPA reach episodes, serial vs 100 lanes, on cuda

Runs the cell serially into ``OUT/serial`` and then batched into ``OUT/batched`` (both fresh), times each
``benchmark.run`` from the call to its summary (world-model load and env set-up included, for both), and prints
episodes per second, the ratio, the success counts and how many seeds gave the serial row (every non-timing field).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from planner.apps import benchmark, shards
from planner.cli import CONFIG_DIR

TIMING = {"plan_ms_p50", "plan_ms_p95", "plan_ms_all", "goal_ms_all", "peak_rss_mb", "hardware"}


def run(out: Path, overrides: list[str]) -> tuple[float, dict[int, dict]]:
    """Wall seconds of one fresh cell run, and its rows by seed without the timing fields."""
    shutil.rmtree(out, ignore_errors=True)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(config_name="benchmark", overrides=[*overrides, f"out={out}"])
    start = time.perf_counter()
    benchmark.run(cfg)
    wall = time.perf_counter() - start
    rows = {r["seed"]: {k: v for k, v in r.items() if k not in TIMING} for r in shards.read_all_results(out)}
    return wall, rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=12)
    parser.add_argument("--lanes", type=int, default=12, help="batch_episodes of the batched run")
    parser.add_argument("--task", default="reach")
    parser.add_argument("--world-model", default="jepa")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default="runs/bench_batched")
    parser.add_argument("overrides", nargs="*", help="further benchmark overrides (the planner budget, ...)")
    args = parser.parse_args(argv)
    cell = [
        f"task={args.task}",
        f"world_model={args.world_model}",
        f"device={args.device}",
        f"episodes={args.episodes}",
        *args.overrides,
    ]
    out = Path(args.out)
    serial_s, serial = run(out / "serial", cell)
    batched_s, batched = run(out / "batched", [*cell, f"batch_episodes={args.lanes}"])
    n = args.episodes
    figures = {
        "cell": " ".join(cell),
        "lanes": args.lanes,
        "serial_s": round(serial_s, 2),
        "batched_s": round(batched_s, 2),
        "serial_episodes_per_s": round(n / serial_s, 3),
        "batched_episodes_per_s": round(n / batched_s, 3),
        "ratio": round(serial_s / batched_s, 2),
        "serial_successes": sum(bool(r["success"]) for r in serial.values()),
        "batched_successes": sum(bool(r["success"]) for r in batched.values()),
        "seeds_with_the_serial_row": sum(batched.get(s) == r for s, r in serial.items()),
        "seeds_with_the_serial_outcome": sum(
            (batched.get(s) or {}).get("success") == r["success"] and batched[s]["steps"] == r["steps"]
            for s, r in serial.items()
        ),
    }
    print(json.dumps(figures, indent=1))
    print(
        f"{n} episodes: serial {serial_s:.1f} s ({n / serial_s:.2f} ep/s), batched E={args.lanes} {batched_s:.1f} s "
        f"({n / batched_s:.2f} ep/s): {serial_s / batched_s:.2f}x; success {figures['serial_successes']}/{n} serial, "
        f"{figures['batched_successes']}/{n} batched; {figures['seeds_with_the_serial_row']}/{n} seeds gave the "
        "serial row"
    )
    (out / "figures.json").write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
