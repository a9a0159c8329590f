"""Compare planners on one task: success, planning time and guardrail counts side by side, from the benchmark app.

python examples/compare_planners.py --task reach --planners cem mppi --episodes 10 [--overrides k=v ...]
"""

import argparse

from hydra import compose, initialize_config_dir

from planner.apps import benchmark
from planner.cli import CONFIG_DIR


def main() -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="reach")
    parser.add_argument("--planners", nargs="+", default=["cem", "mppi"])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument("--out", default="runs/compare_planners")
    parser.add_argument("--overrides", nargs="*", default=[])
    args = parser.parse_args()
    rows = []
    for planner in args.planners:
        overrides = [
            f"task={args.task}",
            f"planner={planner}",
            f"episodes={args.episodes}",
            f"out={args.out}",
            "append=true",  # one summary for all planners
        ]
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            cfg = compose(config_name="benchmark", overrides=[*overrides, *args.overrides])
        rows = benchmark.run(cfg)  # one results.jsonl for all planners: the summary has a row each
    print(f"{'planner':<8} {'success':>8} {'ms p50':>8} {'executed viol.':>15}")
    for row in rows:
        print(
            f"{row['planner']:<8} {row['success_rate']:>8.0%} {row['plan_ms_p50']:>8.0f} {row['executed_violations']:>15}"
        )
    return rows


if __name__ == "__main__":
    main()
