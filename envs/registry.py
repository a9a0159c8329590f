"""Gymnasium registration of the Panda tasks, and a ``make`` whose error lists the names it knows."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from envs.tasks import TASKS

ENV_IDS: dict[str, str] = {
    "reach": "jepa_mpc/PandaReach-v0",
    "push": "jepa_mpc/PandaPush-v0",
    "pick_place": "jepa_mpc/PandaPickPlace-v0",
}


def register_all() -> None:
    """Register every task with gymnasium (idempotent)."""
    for task, env_id in ENV_IDS.items():
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point="envs.panda_env:PandaEnv",
                kwargs={"task": task},
                max_episode_steps=TASKS[task].max_episode_steps,
            )


def env_id(name: str) -> str:
    """Full gymnasium id from a task name (``reach``) or an id; raises ``ValueError`` listing known names."""
    if name in ENV_IDS:
        return ENV_IDS[name]
    if name in ENV_IDS.values():
        return name
    known = sorted(ENV_IDS) + sorted(ENV_IDS.values())
    raise ValueError(f"unknown env {name!r}; known: {', '.join(known)}")


def make(name: str, **kwargs: Any) -> gym.Env:
    """``gym.make`` for a task name or id, e.g. ``make("pick_place", image_size=64)``."""
    register_all()
    return gym.make(env_id(name), **kwargs)
