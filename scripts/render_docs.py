"""Render each task's default camera view (start and goal) to docs/ for the README."""

from __future__ import annotations

import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np

import envs

out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs")
out.mkdir(exist_ok=True)
for task in envs.ENV_IDS:
    env = envs.make(task, render_mode="rgb_array", render_size=320)
    env.reset(seed=0)
    base = env.unwrapped
    start = env.render()
    saved = base.get_state()
    goal = base.goal_state()
    base.goal_observation()  # exercised for the same code path as planners; render the big view of the goal below
    base.data.mocap_pos[base.ee_mocap] = goal["ee_pos"]
    for _ in range(200):
        base.data.qpos[base.cube_qpos] = np.r_[goal["cube_pos"], 1, 0, 0, 0]
        base.data.qvel[base.cube_qvel] = 0
        import mujoco

        mujoco.mj_step(base.model, base.data)
    mujoco.mj_forward(base.model, base.data)
    goal_img = env.render()
    base.set_state(saved)
    small = base._observation()["pixels"]
    small_up = np.kron(small, np.ones((5, 5, 1), dtype=np.uint8))
    iio.imwrite(out / f"{task}.png", np.concatenate([start, goal_img, small_up], axis=1))
    print(f"wrote {out / f'{task}.png'}")
