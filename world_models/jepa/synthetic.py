"""Synthetic episodes (a red 'hand' square that actions move and a blue 'cube' it pushes) for tests and smoke runs.

The scene is 2-D but shaped like the real data: ``pixels`` uint8 [T, S, S, 3], ``proprio`` [T, 8] = (ee_pos 3,
ee_vel 3, gripper 1, gripper rate 1), actions in [-1, 1]^4, positions in metres on a 0.5 m square table.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from world_models.jepa.data import ChunkWriter

TABLE = 0.5  # metres per image side
STEP = 0.03  # metres per unit action


def _draw(pos: np.ndarray, size: int, half_px: int, color: tuple[int, int, int], img: np.ndarray) -> None:
    cx, cy = (pos[:2] / TABLE * size).astype(int)
    img[max(cy - half_px, 0) : cy + half_px, max(cx - half_px, 0) : cx + half_px] = color


def synthetic_episode(rng: np.random.Generator, length: int = 20, image_size: int = 64) -> dict[str, np.ndarray]:
    """One episode of ``length`` frames with random smooth actions; arrays as in the chunk format."""
    ee = np.r_[rng.uniform(0.1, 0.4, 2), 0.1]
    cube = np.r_[rng.uniform(0.1, 0.4, 2), 0.02]
    grip = 0.08
    frames: dict[str, list[np.ndarray]] = {
        k: [] for k in ("pixels", "proprio", "actions", "ee_pos", "cube_pos", "gripper")
    }
    a = rng.uniform(-1, 1, 4)
    prev_ee, prev_grip = ee.copy(), grip
    for t in range(length):
        img = np.full((image_size, image_size, 3), 200, np.uint8)
        _draw(cube, image_size, 2, (30, 30, 220), img)
        _draw(ee, image_size, 3, (220, 30, 30), img)
        frames["pixels"].append(img)
        frames["proprio"].append(np.r_[ee, ee - prev_ee, grip, grip - prev_grip].astype(np.float32))
        frames["ee_pos"].append(ee.copy())
        frames["cube_pos"].append(cube.copy())
        frames["gripper"].append(np.array(grip))
        a = np.clip(0.7 * a + 0.5 * rng.uniform(-1, 1, 4), -1, 1)
        frames["actions"].append(a.astype(np.float32) if t < length - 1 else np.zeros(4, np.float32))
        prev_ee, prev_grip = ee.copy(), grip
        ee = ee.copy()
        ee[:2] = np.clip(ee[:2] + STEP * a[:2], 0.02, TABLE - 0.02)
        grip = (a[3] + 1) / 2 * 0.08
        if np.linalg.norm(ee[:2] - cube[:2]) < 0.04:  # push the cube along the hand's motion
            cube = cube.copy()
            cube[:2] = np.clip(cube[:2] + STEP * a[:2], 0.02, TABLE - 0.02)
    return {k: np.stack(v) for k, v in frames.items()}


def write_synthetic_dataset(
    root: str | Path,
    episodes: int = 8,
    length: int = 20,
    image_size: int = 64,
    episodes_per_chunk: int = 3,
    seed: int = 0,
) -> Path:
    """Write ``episodes`` synthetic episodes (seed ``seed + i``) in the chunk format under ``root``."""
    with ChunkWriter(
        root,
        image_size=image_size,
        action_dim=4,
        proprio_dim=8,
        env_ids=["synthetic/Squares-v0"],
        base_seed=seed,
        collection={"synthetic": True},
        episodes_per_chunk=episodes_per_chunk,
        compress=False,
    ) as writer:
        for i in range(episodes):
            if seed + i in writer.completed_seeds:
                continue
            ep = synthetic_episode(np.random.default_rng(seed + i), length, image_size)
            writer.add_episode(ep, seed=seed + i, episode_id=i, task_id=0)
    return Path(root)
