"""What perceived sub-goals would read: the cube at reset and the target in the goal photo, by the cube detector and
by the JEPA's probes, against the simulator's truth (cm). The figures in world_models/checkpoints/CUBE_DETECTOR.md.

    MUJOCO_GL=egl .venv/bin/python scripts/perception_readings.py detector --seeds 20000:20040
    MUJOCO_GL=egl .venv/bin/python scripts/perception_readings.py probe --seeds 500:520 --tasks pick_place
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import envs  # noqa: E402


def stats(errors: list[float]) -> str:
    e = 100 * np.asarray(errors)
    return f"mean {e.mean():.2f} median {np.median(e):.2f} p90 {np.percentile(e, 90):.2f}" if len(e) else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", choices=["detector", "probe"])
    parser.add_argument("--seeds", default="20000:20040")
    parser.add_argument("--tasks", nargs="+", default=["pick_place", "push", "reach"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    lo, hi = (int(x) for x in args.seeds.split(":"))
    if args.source == "detector":
        from world_models.detector import load_detector

        det = load_detector()
    else:
        from world_models.jepa.checkpoint import load_world_model

        wm = load_world_model()
    for task in args.tasks:
        env = envs.make(task)
        rows: dict[str, list[float]] = {"cube at reset": [], "cube in goal photo": [], "hand in goal photo": []}
        air: list[float] = []
        for seed in range(lo, hi):
            obs, info = env.reset(seed=seed)
            state, base = info["state"], env.unwrapped
            photo, goal = base.goal_observation(), base.goal_state()
            with torch.no_grad():
                if args.source == "detector":
                    cube, seen_cube, seen_hand = (
                        det.locate(obs["pixels"])[0],
                        det.locate(photo["pixels"], "cube_pos")[0],
                        det.locate(photo["pixels"], "ee_pos")[0],
                    )
                else:  # the probes read proprio too: a photo has none, so it is left at the training mean
                    cube = wm.decode(wm.encode(obs))["cube_pos"][0].numpy()
                    seen = wm.decode(wm.encode_goal({"pixels": photo["pixels"]})[0])
                    seen_cube, seen_hand = seen["cube_pos"][0].numpy(), seen["ee_pos"][0].numpy()
            rows["cube at reset"].append(float(np.linalg.norm(cube - state["cube_pos"])))
            rows["cube in goal photo"].append(float(np.linalg.norm(seen_cube - state["target_pos"])))
            rows["hand in goal photo"].append(float(np.linalg.norm(seen_hand - goal["ee_pos"])))
            if state["target_pos"][2] > 0.04:
                air.append(rows["cube in goal photo"][-1])
        print(task, *(f"| {k}: {stats(v)}" for k, v in rows.items()), f"| cube in photo, air targets: {stats(air)}")


if __name__ == "__main__":
    main()
