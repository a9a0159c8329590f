"""Gymnasium registration of the Panda tasks and OGBench's cube-single tasks, the robot each runs on, and a ``make``
whose error lists the names it knows."""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from envs.embodiment import Embodiment
from envs.ogbench_cube import OGBENCH_TASKS, UR5E_2F85, OGBenchCubeTask
from envs.panda_env import PANDA
from envs.tasks import TASKS

ENV_IDS: dict[str, str] = {
    "reach": "jepa_mpc/PandaReach-v0",
    "push": "jepa_mpc/PandaPush-v0",
    "pick_place": "jepa_mpc/PandaPickPlace-v0",
    # OGBench cube-single's five evaluation tasks (task_id 1-5) on its UR5e; need the ogbench extra to make
    **{name: f"jepa_mpc/OGBenchCubeSingle-task{tid}-v0" for name, tid in OGBENCH_TASKS.items()},
}
# The robot (envs.embodiment) each task name runs on.
EMBODIMENTS: dict[str, Embodiment] = {
    **{task: PANDA for task in TASKS},
    **{name: UR5E_2F85 for name in OGBENCH_TASKS},
}


def register_all() -> None:
    """Register every task with gymnasium (idempotent)."""
    for task, env_id in ENV_IDS.items():
        if env_id in gym.registry:
            continue
        if task in OGBENCH_TASKS:
            entry, kwargs, steps = "envs.ogbench_cube:OGBenchCubeEnv", {"task_id": OGBENCH_TASKS[task]}, 200
        else:
            entry, kwargs, steps = "envs.panda_env:PandaEnv", {"task": task}, TASKS[task].max_episode_steps
        gym.register(id=env_id, entry_point=entry, kwargs=kwargs, max_episode_steps=steps)


def embodiment_of(name: str) -> Embodiment:
    """The robot a task (name or id) runs on, at its default controller settings."""
    task = next(task for task, full in ENV_IDS.items() if full == env_id(name))
    return EMBODIMENTS[task]


def phase_names() -> set[str]:
    """Every phase name the registered tasks' sub-goals use."""
    return {phase for task in TASKS.values() for phase in task.phases} | set(OGBenchCubeTask.phases)


def env_id(name: str) -> str:
    """Full gymnasium id from a task name (``reach``) or an id; raises ``ValueError`` listing known names."""
    if name in ENV_IDS:
        return ENV_IDS[name]
    if name in ENV_IDS.values():
        return name
    by_robot = sorted(ENV_IDS, key=lambda task: (task in OGBENCH_TASKS, task))  # the Panda's tasks, then OGBench's
    known = by_robot + sorted(ENV_IDS.values())
    raise ValueError(f"unknown env {name!r}; known: {', '.join(known)}")


def make(name: str, **kwargs: Any) -> gym.Env:
    """``gym.make`` for a task name or id, e.g. ``make("pick_place", image_size=64)``."""
    register_all()
    return gym.make(env_id(name), **kwargs)
