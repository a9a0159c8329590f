"""How far the simulated Panda's fingertip strays, within one control step, from the straight segment the safety
filter checks: the measurement the filter's path margins (``PANDA.path_margin``, ``delay_margin``) are derived from.

    .venv/bin/python -m planner.apps.tracking_check [--seeds 8] [--steps 60]

The hand follows a weld to the commanded position, so its path between two ticks curves (it carries its velocity
into the step and overshoots on reversals). For each executed step this records the largest distance of the 20
substep positions from the checked segment: without delay the segment from the measured start to the commanded
target; with a one-step action delay the segment the filter checked a tick earlier (from the position predicted at
the end of the action then in flight). Actions mix uniform, full-scale, reversed and small commands. It prints the
worst case and the fitted bound ``deviation <= c + k * (|commanded displacement| + |velocity| * dt)``.
"""

from __future__ import annotations

import argparse

import numpy as np

import envs


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance ``[P]`` of ``points [P, 3]`` from the segment ``a -> b``."""
    ab = b - a
    length = float(ab @ ab)
    t = np.zeros(len(points)) if length == 0 else np.clip((points - a) @ ab / length, 0.0, 1.0)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=-1)


def deviations(delay: int, seeds: int, steps: int) -> np.ndarray:
    """Rows ``[deviation, |displacement| + |v| dt]`` (metres), one per executed step."""
    rows = []
    for task in ("reach", "pick_place", "push"):
        env = envs.make(task, pixels=False)
        base = env.unwrapped
        robot, dt = base.embodiment, base.n_substeps * base.model.opt.timestep  # robot: its controller rule
        for seed in range(seeds):
            rng = np.random.default_rng(1000 * delay + seed)
            _, info = env.reset(seed=seed)
            chosen = np.zeros(4)
            in_flight = np.zeros(4)
            checked = None  # (start, velocity) the filter assumed for the action executed now (delay 1)
            for _ in range(steps):
                mode = rng.integers(4)
                if mode == 0:
                    action = rng.uniform(-1, 1, 4)
                elif mode == 1:
                    action = np.sign(rng.uniform(-1, 1, 4))
                elif mode == 2:
                    action = -chosen
                else:
                    action = 0.1 * rng.uniform(-1, 1, 4)
                p, v = info["state"]["ee_pos"].copy(), info["state"]["ee_vel"].copy()
                executed = in_flight if delay else action
                predicted_next = robot.commanded(p, in_flight)
                _, _, terminated, truncated, info = env.step(executed)
                path = info.get("ee_path")
                if path is None:
                    break
                if not delay:
                    target = robot.commanded(p, executed)
                    rows.append(
                        (_segment_distance(path, p, target).max(), np.linalg.norm(target - p) + np.linalg.norm(v) * dt)
                    )
                elif checked is not None:
                    start, v0 = checked
                    target = robot.commanded(start, executed)
                    size = np.linalg.norm(target - start) + np.linalg.norm(start - p) + np.linalg.norm(v0) * dt
                    rows.append((_segment_distance(path, start, target).max(), size))
                checked = (predicted_next, v)
                in_flight, chosen = action, action
                if terminated or truncated:
                    break
        env.close()
    return np.asarray(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=8, help="episodes per task (reach, pick_place, push)")
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    print("| action delay | steps | worst deviation | p99.9 | c | k (fitted, worst case) |")
    print("|---|---|---|---|---|---|")
    for delay in (0, 1):
        rows = deviations(delay, args.seeds, args.steps)
        dev, size = rows[:, 0], rows[:, 1]
        for c in (0.004, 0.006):
            k = float(np.max((dev - c) / np.maximum(size, 1e-9)))
            print(
                f"| {delay} | {len(rows)} | {1000 * dev.max():.1f} mm | {1000 * np.percentile(dev, 99.9):.1f} mm | "
                f"{1000 * c:.0f} mm | {max(k, 0.0):.3f} |"
            )


if __name__ == "__main__":
    main()
