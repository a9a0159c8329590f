"""Calibrate and check the surprise monitor's signals on clean and pushed episodes (a cube knocked at step 8).

The scripted experts drive the episodes (no planning, so it runs in minutes on a CPU). Signals, per frame:
- ``latent_mse``: the JEPA's one-step prediction error on the visual latent (what the agent logs as ``pred_error``);
- ``cell_max``: the same error, largest over the cells of the latent map (a small object moves few cells);
- ``cube_probe``: the distance between the cube the JEPA's probe reads from the predicted and the encoded latent;
- ``object_jump``: how far the cube detector's reading lies from the mean of its readings so far in the episode, on
  frames where the robot is not moving the cube (what ``perception.jump_distance`` thresholds).
Each threshold is a quantile of the per-episode maximum on clean calibration seeds; detection within ``--within``
frames of the push and false alarms per clean episode are counted on other, fresh seeds.

    MUJOCO_GL=egl OMP_NUM_THREADS=1 .venv/bin/python scripts/calibrate_surprise.py --calib 0:30 --test 5000:5030
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import envs  # noqa: E402
from envs.experts import scripted_expert  # noqa: E402
from planner.apps.goals import prediction_error  # noqa: E402
from world_models.detector import load_detector  # noqa: E402
from world_models.jepa.checkpoint import load_world_model  # noqa: E402

PUSH_STEP, PUSH_VELOCITY = 8, (0.0, 1.5)  # configs/faults/push.yaml
SIGNALS = ("latent_mse", "cell_max", "cube_probe", "object_jump")


def episode_signals(env, wm, detector, seed: int, push: bool) -> dict[str, list[float]]:
    """Per-frame signals of one expert episode (index i: the frame after step i)."""
    policy = scripted_expert(env)
    obs, _ = env.reset(seed=seed)
    base = env.unwrapped
    mask = wm.encode_goal({"pixels": obs["pixels"]})[1]  # the visual dimensions, as the agent compares them
    out: dict[str, list[float]] = {k: [] for k in SIGNALS}
    readings = [detector.locate(obs["pixels"])[0]]
    with torch.no_grad():
        z = wm.encode(obs)
    for step in range(base.task.max_episode_steps):
        action = policy(obs)
        if push and step == PUSH_STEP:
            base.data.qvel[base.cube_qvel][:2] = PUSH_VELOCITY
        obs, _, terminated, truncated, info = env.step(action)
        with torch.no_grad():
            z_prev, z = z, wm.encode(obs)
            out["latent_mse"].append(prediction_error(wm, z_prev, action, z, mask))
            predicted = wm.rollout(z_prev, torch.as_tensor(action, dtype=z.dtype).reshape(1, 1, -1))[:, -1]
            cells = wm.split(predicted)[0] - wm.split(z)[0]
            out["cell_max"].append(float(cells.square().mean(dim=-3).amax()))
            cubes = wm.decode(predicted)["cube_pos"], wm.decode(z)["cube_pos"]
            out["cube_probe"].append(float(torch.linalg.vector_norm(cubes[0] - cubes[1])))
        reading = detector.locate(obs["pixels"])[0]
        moving_it = bool(info["state"]["grasped"]) or np.linalg.norm(info["state"]["ee_pos"] - reading) < 0.06
        jump = 0.0 if moving_it else float(np.linalg.norm(reading - np.mean(readings, axis=0)))
        out["object_jump"].append(jump)
        readings = [reading] if moving_it or jump > 0.04 else [*readings, reading]
        if info["is_success"] or terminated or truncated:
            break
    return out


def seeds(spec: str) -> range:
    lo, hi = (int(x) for x in spec.split(":"))
    return range(lo, hi)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="pick_place")
    parser.add_argument("--calib", default="0:30", help="clean calibration seeds lo:hi")
    parser.add_argument("--test", default="5000:5030", help="fresh seeds lo:hi for detection and false alarms")
    parser.add_argument("--quantile", type=float, default=0.95, help="of the clean per-episode maxima")
    parser.add_argument("--within", type=int, default=3, help="frames after the push that count as detected")
    parser.add_argument("--out", default="runs/surprise_calibration.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    wm, detector = load_world_model(), load_detector()
    env = envs.make(args.task)
    calib = [episode_signals(env, wm, detector, s, push=False) for s in seeds(args.calib)]
    clean = [episode_signals(env, wm, detector, s, push=False) for s in seeds(args.test)]
    pushed = [episode_signals(env, wm, detector, s, push=True) for s in seeds(args.test)]
    report: dict[str, object] = {"task": args.task, "calibration_seeds": args.calib, "test_seeds": args.test}
    for name in SIGNALS:
        threshold = float(np.quantile([max(ep[name]) for ep in calib], args.quantile))
        false_alarms = [sum(v > threshold for v in ep[name]) for ep in clean]
        delays = []
        for ep in pushed:
            hits = [i - PUSH_STEP for i, v in enumerate(ep[name]) if i >= PUSH_STEP and v > threshold]
            delays.append(hits[0] if hits else None)
        report[name] = {
            "threshold": threshold,
            "false_alarms_per_clean_episode": float(np.mean(false_alarms)),
            "push_detection_rate": sum(d is not None and d < args.within for d in delays) / len(pushed),
            "median_delay_frames": float(np.median(hit)) if (hit := [d for d in delays if d is not None]) else None,
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
