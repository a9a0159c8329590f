"""What every registered MuJoCo env shares, whatever its robot: the episode's goal and sub-goals read from its task and
sampled episode, and camera renders."""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np


class TaskSceneEnv:
    """Mixin for envs with ``task`` (envs.tasks.Task), ``sample`` (the episode's TaskSample, None before reset),
    ``model``, ``data`` and a ``_renderers`` dict (one ``mujoco.Renderer`` per image size)."""

    def goal_state(self) -> dict[str, np.ndarray]:
        """Where hand, cube and gripper are at this episode's goal."""
        if self.sample is None:
            raise RuntimeError("call reset() before goal_state()")
        return self.task.goal_state(self.sample)

    def subgoals(self) -> list[dict[str, Any]]:
        """This episode's sub-goal scenes (the last is the goal)."""
        if self.sample is None:
            raise RuntimeError("call reset() before subgoals()")
        return self.task.subgoals(self.sample)

    def render_camera(self, size: int, camera: str) -> np.ndarray:
        """An RGB image ``uint8 [size, size, 3]`` from a named camera (no shadows, no multisampling)."""
        renderer = self._renderers.get(size)
        if renderer is None:
            renderer = self._renderers[size] = mujoco.Renderer(self.model, size, size)
        renderer.update_scene(self.data, camera=camera)
        return renderer.render().copy()
