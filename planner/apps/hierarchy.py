"""``subgoals=hierarchical``: sub-goals the agent plans itself from the goal photo, with no task program.

A high-level planner (one of the four optimizers) searches macro-action sequences ``[H, A]`` in the macro world model
(world_models/jepa/macro.py: one macro-step is ``k`` env steps) for the latent path whose end comes closest to the goal
photo's latent; the first latent of that path becomes the low-level planner's sub-goal, pursued under the same hard
guardrails. The high level re-plans every macro-step (warm-started from its last plan, shifted by one), the low level
every env step. The same settings serve every task: nothing here knows the task's name, phases or objects.

The imagined path is judged by the region guardrails (the probes' reading of each macro-step's latent; rate limits such
as a maximum step do not apply to a macro-step), so the high level never proposes a sub-goal outside them.

The sub-goal is an imagined latent, so it has an imagined proprio part (the hand and fingers the macro model expects
after one macro-step), unlike the goal photo: the low level tracks all of it (``latent_mask`` of ones), and, with
``probe_targets``, the hand position and finger opening the JEPA's probes read off it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from planner.costs import GoalSchedule, latent_distance


@dataclass
class HierarchicalGoals:
    """Called by the agent every step like ``PerceivedGoals``: ``(obs, z [1, D], last_action, step, schedule)`` ->
    ``(GoalSchedule or None, info)``; info carries ``high_level_cost`` (the plan's end distance to the goal, mean
    squared over the photo's visual dimensions), ``goal_distance`` (the current latent's) and ``subgoal_decoded``
    (the sub-goal's hand position and finger opening as the probes read them) on the steps it re-plans."""

    macro: Any  # MacroWorldModel: rollout(z0 [1, D], macros [N, H, A]) -> [N, H, D], .base, .k
    goal: dict[str, Tensor]  # the goal photo's latent and mask (planner.apps.goals.photo_goal)
    optimizer: Any  # over [H, A] macro-action sequences
    replan_every: int  # env steps between high-level plans (the macro-step's k)
    probe_targets: bool = True  # also give the low level the probes' reading of the sub-goal (hand, fingers)
    guardrails: Any = None  # a GuardrailSet of region guardrails: sub-goal paths leaving them are ranked infeasible
    readout: dict[str, Tensor] = field(default_factory=dict)  # goal photo read by the detector (goals.photo_readout)
    readout_weight: float = 400.0  # per m^2 of the path end's probe reading off ``readout`` (5 cm counts 1.0)
    seed: int = 0
    _planned_at: int = -(10**9)
    _mean: Tensor | None = None
    _generator: torch.Generator = field(default_factory=torch.Generator)

    def __post_init__(self) -> None:
        self._generator.manual_seed(self.seed)

    def __call__(
        self, obs: dict[str, Any], z: Tensor, last_action: np.ndarray | None, step: int, schedule: GoalSchedule | None
    ) -> tuple[GoalSchedule | None, dict[str, Any]]:
        if schedule is not None and step - self._planned_at < self.replan_every:
            return None, {}

        def objective(macros: Tensor) -> tuple[Tensor, Tensor]:
            path = self.macro.rollout(z, macros.to(z.dtype))  # [N, H, D]
            latents = torch.cat([z.expand(len(path), 1, -1), path], 1)  # the costs' layout: index 0 is now
            end = latent_distance({"latent": latents}, macros, self.goal, p=2)[:, -1]
            states = self.macro.base.decode(latents) if self.readout or self.guardrails else {}
            for key, target in self.readout.items():  # every imagined macro-step, so the first one heads there too
                end = end + self.readout_weight * (states[key][:, 1:] - target.to(end)).pow(2).sum(-1).mean(-1)
            if self.guardrails is None or not len(self.guardrails):
                return end, torch.zeros_like(end)
            # The probes' reading of the imagined path must stay inside the guardrails: a sub-goal the low level may
            # not reach is no sub-goal (and the search would otherwise exploit the model where it never trained).
            _, _, per = self.guardrails.evaluate(states, macros.to(z.dtype))
            return end, sum(per.values()).sum(-1)

        with torch.no_grad():
            init = None if self._mean is None else torch.cat([self._mean[1:], self._mean[-1:]])
            plan = self.optimizer.optimize(objective, init, self._generator)
            self._mean = plan.mean if plan.mean is not None else plan.actions
            first = self.macro.rollout(z, plan.actions[None].to(z.dtype))[0, 0]
            decoded = self.macro.base.decode(first[None])
            now = float(latent_distance({"latent": torch.stack([z, z], 1)}, None, self.goal, p=2)[0, 0])
        self._planned_at = step
        sub: dict[str, Tensor] = {"latent": first, "latent_mask": torch.ones_like(first)}
        if self.probe_targets:
            sub["ee_pos"] = decoded["ee_pos"][0].double()
            sub["gripper"] = decoded["gripper"].reshape(-1)[0].double()
        info = {
            "high_level_cost": round(float(plan.cost), 5),
            "goal_distance": round(now, 5),
            "subgoal_decoded": {
                "ee_pos": decoded["ee_pos"][0].double().round(decimals=4).tolist(),
                "cube_pos": decoded["cube_pos"][0].double().round(decimals=4).tolist(),
                "gripper": round(float(decoded["gripper"].reshape(-1)[0]), 4),
            },
        }
        return GoalSchedule([sub], phases=["subgoal"]), info


HIERARCHY_KEYS = {"macro", "planner", "horizon", "num_samples", "num_elites", "iterations", "probe_targets"}


def check_hierarchy(node: dict[str, Any]) -> None:
    """The ``hierarchy`` group, checked before anything runs (ValueError naming the key)."""
    unknown = sorted(set(node) - HIERARCHY_KEYS)
    if unknown:
        raise ValueError(f"hierarchy.{unknown[0]} is not a known key; known: {', '.join(sorted(HIERARCHY_KEYS))}")
    for key in ("horizon", "num_samples", "num_elites", "iterations"):
        value = node.get(key, 1)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"hierarchy.{key} must be an integer >= 1, got {value!r}")
    if node.get("num_elites", 1) > node.get("num_samples", 1 << 30):
        raise ValueError(f"hierarchy.num_elites ({node['num_elites']}) must be <= hierarchy.num_samples")
    if node.get("planner", "cem") not in ("cem", "mppi"):
        raise ValueError(f"hierarchy.planner must be cem or mppi (sampling planners), got {node.get('planner')!r}")
    if node.get("macro") is not None and not isinstance(node["macro"], str):
        raise ValueError(f"hierarchy.macro must be a file path or null, got {node['macro']!r}")
    if not isinstance(node.get("probe_targets", True), bool):
        raise ValueError(f"hierarchy.probe_targets must be true or false, got {node['probe_targets']!r}")
