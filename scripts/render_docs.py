"""Render each task's default camera view (start | goal, 320 px) and the 64 px image the model sees, to docs/."""

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
    obs, _ = env.reset(seed=0)
    start = env.render()
    goal = env.unwrapped.goal_observation(view_size=320)["view"]
    small = np.kron(obs["pixels"], np.ones((5, 5, 1), dtype=np.uint8))  # the 64 px observation, scaled up
    iio.imwrite(out / f"{task}.png", np.concatenate([start, goal, small], axis=1))
    print(f"wrote {out / f'{task}.png'}")
