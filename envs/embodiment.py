"""One definition per robot: its actions, the controller rule that turns a command into a hand target, the layout of
its proprio vector and what its gripper readings mean. The env, the oracle, the safety filter and the estimators read
it; planner/ names no robot, no action index and no gripper width of its own."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class Embodiment:
    """A robot as the planner sees it.

    Actions are normalized to ``[-1, 1]`` per channel. The first three (``dx, dy, dz``) move the commanded hand
    position ``action_scale`` metres per unit from the *measured* one, clipped to the box ``[ee_low, ee_high]``
    (the controller rule, ``commanded``); channel ``gripper_action`` commands the gripper, either ``"absolute"``
    (the value is the opening asked for, so holding it means repeating the last command) or ``"relative"`` (the
    value changes the opening, so 0 holds it).

    Gripper readings (the named quantity ``gripper`` in states, goals and ``measured``) are in ``gripper_unit``,
    ``gripper_closed`` shut and ``gripper_open`` fully open (larger is more open). A sub-goal whose gripper lies
    strictly inside ``holding`` holds an object between the fingers; fingers measured below ``empty_below`` on such
    a sub-goal, ``grasp_steps`` control steps after it began, closed on nothing (a failed or slipped grasp).

    ``proprio`` names the measured quantities of the proprio vector: ``{name: (start, stop)}``; it must have
    ``ee_pos`` (hand position, metres, world frame) and ``gripper``.

    ``motion_model`` holds what the hand does with a command, measured on this robot, for the proprio estimator
    (``planner.estimation.ProprioFilter``): ``tracking`` (the fraction of the commanded displacement the hand covers
    in one control step) and, if the robot measures ``ee_vel``, ``end_velocity_gain`` (the hand's velocity, m/s, at
    the end of a step per metre commanded), and any other of its settings that depend on the robot (e.g.
    ``detect_noise``, the clean residual's scale).

    ``path_margin`` and ``delay_margin`` (metres) are how far the hand's real path between two control ticks strays
    from the straight segment to its commanded position, without and with a command in flight (the start of the
    segment is then a prediction too); the safety filter keeps every hard guardrail that far from the commanded path
    (``planner.apps.tracking_check`` measures them on the Panda).
    """

    name: str
    action_names: tuple[str, ...]
    action_scale: float
    ee_low: tuple[float, float, float]
    ee_high: tuple[float, float, float]
    proprio: Mapping[str, tuple[int, int]]
    gripper_action: int
    gripper_command: str
    gripper_open: float
    gripper_closed: float
    gripper_unit: str
    holding: tuple[float, float]
    empty_below: float
    grasp_steps: int = 3
    motion_model: Mapping[str, float] = field(default_factory=dict)
    path_margin: float = 0.0
    delay_margin: float = 0.0
    notes: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.action_names[:3] != ("dx", "dy", "dz"):
            raise ValueError(f"{self.name}: the first three actions must be dx, dy, dz, got {self.action_names}")
        if not 0 <= self.gripper_action < len(self.action_names):
            raise ValueError(f"{self.name}: gripper_action {self.gripper_action} is not an action index")
        if self.gripper_command not in ("absolute", "relative"):
            raise ValueError(f"{self.name}: gripper_command must be absolute or relative, got {self.gripper_command!r}")
        if not self.action_scale > 0 or not all(lo < hi for lo, hi in zip(self.ee_low, self.ee_high, strict=True)):
            raise ValueError(f"{self.name}: needs action_scale > 0 and ee_low < ee_high")
        for key in ("ee_pos", "gripper"):
            if key not in self.proprio:
                raise ValueError(f"{self.name}: the proprio layout must name {key!r}, got {sorted(self.proprio)}")
        if not self.gripper_closed <= self.holding[0] < self.holding[1] <= self.gripper_open:
            raise ValueError(f"{self.name}: holding {self.holding} must lie inside closed..open")

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    @property
    def proprio_dim(self) -> int:
        return max(stop for _, stop in self.proprio.values())

    # ------------------------------------------------------------------------------------------- controller rule
    def commanded(self, ee: np.ndarray, action: np.ndarray) -> np.ndarray:
        """Where a command sends the hand: ``ee [..., 3]`` (measured), ``action [..., A]`` in ``[-1, 1]``."""
        a = np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0)
        return np.clip(np.asarray(ee) + self.action_scale * a[..., :3], self.ee_low, self.ee_high)

    def commanded_torch(self, ee: Tensor, action: Tensor) -> Tensor:
        """``commanded`` in torch, on ``ee``'s device and dtype: ``ee [..., 3]``, ``action [..., >= 3]``."""
        low = torch.tensor(self.ee_low, dtype=ee.dtype, device=ee.device)
        high = torch.tensor(self.ee_high, dtype=ee.dtype, device=ee.device)
        return torch.clamp(ee + self.action_scale * action[..., :3].to(ee).clamp(-1.0, 1.0), low, high)

    # ------------------------------------------------------------------------------------------- measurements
    def measured(self, proprio: Any) -> dict[str, Tensor]:
        """What the robot measures itself, as named float64 tensors: ``ee_pos [3]`` and ``gripper []``."""
        p = torch.as_tensor(np.asarray(proprio, dtype=np.float64)).reshape(-1)
        if p.shape[0] < self.proprio_dim:
            raise ValueError(f"{self.name}: proprio has {p.shape[0]} entries, the layout needs {self.proprio_dim}")
        if not torch.isfinite(p).all():
            raise ValueError("observation 'proprio' contains NaN or inf")
        return {"ee_pos": self.read(p, "ee_pos"), "gripper": self.read(p, "gripper").reshape(())}

    def read(self, proprio: Any, name: str) -> Any:
        """One named quantity of a proprio vector ``[..., P]`` (numpy or torch), e.g. ``read(p, "ee_pos")``."""
        start, stop = self.proprio[name]
        return proprio[..., start:stop]

    # ------------------------------------------------------------------------------------------- gripper
    def is_holding(self, goal_gripper: float) -> bool:
        """Whether a sub-goal with this gripper value holds an object between the fingers."""
        return self.holding[0] < float(goal_gripper) < self.holding[1]

    def hold_action(self, last_action: np.ndarray | None) -> Tensor:
        """The command that keeps the hand still and the gripper as it is ``[A]`` (float64)."""
        hold = torch.zeros(self.action_dim, dtype=torch.float64)
        if self.gripper_command == "absolute":
            hold[self.gripper_action] = 1.0 if last_action is None else float(last_action[self.gripper_action])
        return hold
