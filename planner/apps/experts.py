"""``jepa-mpc experts``: success of each task's scripted expert over seeded episodes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from omegaconf import DictConfig
from tqdm import tqdm

import envs


def expert_success(task: str, episodes: int, seed: int = 0) -> dict[str, float]:
    """Run the scripted expert for ``episodes`` seeded episodes (seeds seed..seed+episodes-1), no rendering."""
    env = envs.make(task, pixels=False)
    policy = envs.scripted_expert(env)
    successes, lengths = [], []
    for episode in tqdm(range(episodes), desc=f"expert {task}", leave=False):
        obs, info = env.reset(seed=seed + episode)
        steps = 0
        while True:
            obs, _, terminated, truncated, info = env.step(policy(obs))
            steps += 1
            if info["is_success"] or terminated or truncated:
                break
        successes.append(bool(info["is_success"]))
        lengths.append(steps)
    env.close()
    return {
        "task": task,
        "episodes": episodes,
        "success_rate": float(np.mean(successes)),
        "mean_steps": float(np.mean(lengths)),
    }


def run(cfg: DictConfig) -> list[dict[str, float]]:
    rows = [expert_success(task, int(cfg.episodes), int(cfg.seed)) for task in cfg.tasks]
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "experts.json").write_text(json.dumps(rows, indent=2))
    print(f"{'task':<12} {'episodes':>8} {'success':>8} {'steps':>6}")
    for row in rows:
        print(f"{row['task']:<12} {row['episodes']:>8} {row['success_rate']:>8.2%} {row['mean_steps']:>6.1f}")
    print(f"wrote {out / 'experts.json'}")
    return rows
