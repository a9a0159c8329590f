"""What every registered MuJoCo env shares, whatever its robot: the episode's goal and sub-goals read from its task and
sampled episode, camera renders, and saving and restoring the simulator's state (a state it cannot step from is
refused)."""

from __future__ import annotations

from typing import Any

import mujoco
import numpy as np


def divergence_warnings(data: mujoco.MjData) -> int:
    """How often MuJoCo has found a bad position, velocity or acceleration (it then resets the state itself)."""
    kinds = (mujoco.mjtWarning.mjWARN_BADQPOS, mujoco.mjtWarning.mjWARN_BADQVEL, mujoco.mjtWarning.mjWARN_BADQACC)
    return sum(int(data.warning[kind].number) for kind in kinds)


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

    def get_state(self) -> np.ndarray:
        """The full integration state (time, qpos, qvel, controls, mocap poses, warm start): restores exactly."""
        out = np.empty(mujoco.mj_stateSize(self.model, mujoco.mjtState.mjSTATE_INTEGRATION))
        mujoco.mj_getState(self.model, self.data, out, mujoco.mjtState.mjSTATE_INTEGRATION)
        return out

    def set_state(self, state: np.ndarray) -> None:
        """Restore a state from ``get_state`` (the target marker included: it is a mocap body)."""
        state = np.asarray(state, dtype=np.float64)
        expected = mujoco.mj_stateSize(self.model, mujoco.mjtState.mjSTATE_INTEGRATION)
        if state.shape != (expected,) or not np.all(np.isfinite(state)):
            raise ValueError(f"state must be a finite vector of length {expected}, got shape {state.shape}")
        # Finite is not enough (1e300 is finite): a state the simulator cannot step from is refused, and the
        # previous state kept. One trial substep on a copy must stay finite, raise no divergence warning and give
        # observations that fit float32.
        trial = mujoco.MjData(self.model)
        mujoco.mj_setState(self.model, trial, state, mujoco.mjtState.mjSTATE_INTEGRATION)
        with np.errstate(all="ignore"):
            mujoco.mj_forward(self.model, trial)
            mujoco.mj_step(self.model, trial)
            values = np.r_[trial.qpos, trial.qvel, trial.qacc, trial.site_xpos.ravel()]
            fits = bool(np.all(np.isfinite(values)) and np.all(np.abs(values) < 1e6))
        if not fits or divergence_warnings(trial) > 0:
            raise ValueError("state makes the simulator diverge (non-finite or out-of-range values after one step)")
        mujoco.mj_setState(self.model, self.data, state, mujoco.mjtState.mjSTATE_INTEGRATION)
        mujoco.mj_forward(self.model, self.data)
