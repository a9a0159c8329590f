"""The information contract: what an agent that plans from what a real robot has may read of the env.

A real robot has its camera frames, its proprioception, the name of its task and a goal given by the user: a photo
of the finished scene. ``RobotView`` hands exactly that to the agent's side of an episode (goal building,
re-perception) and raises ``ContractViolation`` on anything else: no ``info["state"]``, no ``env.unwrapped``, no
``TaskSample``, no rendering of imagined states, no proprio of the goal scene (a photo has none). Success checks,
the executed-violation audit and guardrail placement (the user's own keep-out geometry) stay outside it.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

# The observation keys a robot measures itself; anything else in an observation is privileged.
ROBOT_OBS_KEYS = ("pixels", "proprio")
# The keys of the goal photo: images only, never the goal scene's proprio.
GOAL_OBS_KEYS = ("pixels",)


class ContractViolation(PermissionError):
    """Raised when the agent's side of an episode reads something a real robot would not have."""


class RobotView:
    """A read-only view of ``env`` limited to the robot's own inputs.

    Allowed: ``task_name``, ``action_space``, ``observation(obs)`` (the robot's keys of an observation the episode
    loop received) and ``goal_photo()`` (the episode's goal image, pixels only, at most once per episode, like the
    photo a user takes of the finished scene). Any other attribute raises ``ContractViolation``.
    """

    __slots__ = ("_env", "_goal_taken", "task_name", "action_space")

    def __init__(self, env: gym.Env) -> None:
        object.__setattr__(self, "_env", env)
        object.__setattr__(self, "_goal_taken", False)
        object.__setattr__(self, "task_name", str(env.unwrapped.task.name))
        object.__setattr__(self, "action_space", env.action_space)

    def goal_photo(self) -> dict[str, np.ndarray]:
        """The goal image ``{"pixels": uint8 [H, W, 3]}`` (and any other camera views), once per episode."""
        if self._goal_taken:
            raise ContractViolation("the goal photo is given once per episode (at reset); keep the one you took")
        object.__setattr__(self, "_goal_taken", True)
        goal = self._env.unwrapped.goal_observation()
        return {k: np.asarray(v).copy() for k, v in goal.items() if k in GOAL_OBS_KEYS or k.startswith("pixels_")}

    @staticmethod
    def observation(obs: dict[str, Any]) -> dict[str, Any]:
        """The robot's own measurements of an observation: pixels (every camera) and proprio, nothing else."""
        return {k: v for k, v in obs.items() if k in ROBOT_OBS_KEYS or k.startswith("pixels_")}

    def __getattr__(self, name: str) -> Any:
        raise ContractViolation(
            f"information contract: the agent may not read env.{name}; it gets the camera, the proprio, the task "
            "name and one goal photo (see planner/apps/contract.py)"
        )

    def __setattr__(self, name: str, value: Any) -> None:
        raise ContractViolation(f"information contract: the agent may not set env.{name}")
