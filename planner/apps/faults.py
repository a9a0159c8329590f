"""Fault injection for the benchmark: observation noise, frozen or dropped frames, a push on the cube, action delay."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from omegaconf import DictConfig


@dataclass
class Faults:
    """What goes wrong in an episode. All probabilities per step; all off by default.

    obs_noise: std of Gaussian noise added to pixels (0-255 scale) and to proprio (metres) = obs_noise / 255.
    frozen_frame_prob: the camera repeats its previous frame. dropped_frame_prob: the camera returns black.
    push_step / push_velocity: at that step the cube is given this planar velocity (m/s), as if knocked. Each push
    is logged in ``events`` with how far the cube moved during the pushed step (``moved_m``: the fingers may already
    hold it), so detection can be scored on pushes that displaced the cube.
    action_delay: the robot executes the previous command (one-step delay) when 1.
    """

    name: str = "none"
    obs_noise: float = 0.0
    frozen_frame_prob: float = 0.0
    dropped_frame_prob: float = 0.0
    push_step: int = -1
    push_velocity: tuple[float, float] = (0.0, 0.0)
    action_delay: int = 0
    seed: int = 0

    def reset(self, env: gym.Env) -> None:
        self._rng = np.random.default_rng(self.seed + int(env.unwrapped.np_random.integers(1 << 30)))
        self._last_pixels: np.ndarray | None = None
        self._previous: np.ndarray | None = None
        self.events: list[dict[str, Any]] = []
        self._pushed_from: np.ndarray | None = None

    def obs_filter(self, step: int, obs: dict[str, Any]) -> dict[str, Any]:
        pixels, proprio = obs["pixels"], obs["proprio"]
        if self.obs_noise > 0:
            pixels = np.clip(pixels + self._rng.normal(0, self.obs_noise, pixels.shape), 0, 255).astype(np.uint8)
            proprio = (proprio + self._rng.normal(0, self.obs_noise / 255.0, proprio.shape)).astype(np.float32)
        if self._last_pixels is not None and self._rng.random() < self.frozen_frame_prob:
            pixels = self._last_pixels
        elif self._rng.random() < self.dropped_frame_prob:
            pixels = np.zeros_like(pixels)
        self._last_pixels = pixels
        return {**obs, "pixels": pixels, "proprio": proprio}

    def step_hook(self, step: int, env: gym.Env) -> None:
        """Before step ``step`` executes: knock the cube at ``push_step``; one step later, log how far it moved
        (at 10 Hz control the ~7 cm slide ends within the step)."""
        base = env.unwrapped
        if self._pushed_from is not None:
            moved = np.linalg.norm(base.data.qpos[base.cube_qpos][:2] - self._pushed_from)
            self.events[-1]["moved_m"] = round(float(moved), 4)
            self._pushed_from = None
        if step == self.push_step:
            self._pushed_from = base.data.qpos[base.cube_qpos][:2].copy()
            self.events.append({"kind": "push", "step": step, "moved_m": None})
            base.data.qvel[base.cube_qvel][:2] = self.push_velocity  # a basic slice: a view into qvel

    def action_filter(self, step: int, action: np.ndarray) -> np.ndarray:
        """What the robot executes: with ``action_delay`` 1, the previous command (hold still at the first step)."""
        if self.action_delay <= 0:
            return action
        executed = self._previous if self._previous is not None else np.r_[np.zeros(3), action[3:]].astype(action.dtype)
        self._previous = action
        return executed


def make_faults(cfg: DictConfig | None) -> Faults:
    if cfg is None:
        return Faults()
    fields = {k: v for k, v in dict(cfg).items() if k in Faults.__dataclass_fields__}
    if "push_velocity" in fields:
        fields["push_velocity"] = tuple(fields["push_velocity"])
    return Faults(**fields)
