"""Render each task's default camera view (start | goal, 320 px) and the 64 px image the model sees, and every camera
at 64 px (docs/cameras.png), to docs/."""

from __future__ import annotations

import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np

import envs
from envs.scene import CAMERAS

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

# Every camera at the 64 px the model would see (scaled up 4x): pick_place at the start, and with the fingers closed on
# the cube, where the front camera loses it and the in-hand camera holds it in the middle of its view.
env = envs.make("pick_place", cameras=list(CAMERAS))
obs, _ = env.reset(seed=0)
base = env.unwrapped
held = base.goal_observation(next(g for g in base.subgoals() if g["phase"] == "close"))
rows = [np.concatenate([np.kron(o[k], np.ones((4, 4, 1), np.uint8)) for k in base.pixel_keys], 1) for o in (obs, held)]
iio.imwrite(out / "cameras.png", np.concatenate(rows, 0))
print(f"wrote {out / 'cameras.png'} (columns: {', '.join(CAMERAS)})")
