"""The MPC agent: encode, optimize a receding-horizon plan under hard guardrails, filter, act."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from planner.costs import CostFunction, GoalSchedule
from planner.estimation import PixelFilter, ProprioFilter
from planner.guardrails import GuardrailSet
from planner.optimizers.base import Optimizer
from planner.safety import SafetyFilter, predicted_states
from planner.types import Plan
from world_models.base import Obs, WorldModel

if TYPE_CHECKING:
    from envs.embodiment import Embodiment

# Standard deviations of the filtered gripper opening by which it must be below the robot's empty-grasp width before
# a grasp counts as empty (0 with clean sensors, where the filter passes readings through).
REGRASP_SIGMAS = 2.0

# A goal's keys pick the cost terms that apply to it; each term's weight comes from the config.
TERM_FOR_KEY = {
    "ee_pos": "ee_to_target",
    "cube_pos": "cube_to_target",
    "gripper": "gripper",
    "latent": "latent_distance",
}


@dataclass(frozen=True)
class AgentConfig:
    """Receding-horizon settings.

    replan_every: steps executed from one plan before optimizing again (the safety filter runs every step).
    embodiment: the robot (``envs.embodiment.Embodiment``): its controller rule (where a command sends the hand, so
        the safety filter can check it without trusting the model), its proprio layout and gripper semantics. None:
        only for robot-free uses (a ``measured_state`` given, no guardrails to check commands against); the
        fallback is then all zeros and there is no regrasp rule.
    fallback: ``"hold"`` keeps the hand still with the gripper unchanged when no feasible action exists.
    path_margin: metres around every commanded hand position that the command check (planner and safety filter)
        keeps clear of every hard guardrail, custom ones included: the hand's real path between two ticks curves
        away from the straight segment to its commanded position. None: the robot's own (``Embodiment.path_margin``,
        measured by ``python -m planner.apps.tracking_check``).
    action_delay: commands in flight (the robot's known latency in control steps, 0 or 1). With 1, the filter
        checks the path of the command already sent (it executes now) and the chosen one's path from where that one
        ends, and uses ``delay_margin``.
    delay_margin: the path margin with a command in flight: the start of the checked segment is then a prediction
        too. None: the robot's own (``Embodiment.delay_margin``).
    estimate_sigmas: with the proprio filter on, this many standard deviations of its hand estimate (0 while the
        sensors read clean) are added to the margin, so sensor noise cannot talk the filter into a crossing.
    """

    replan_every: int = 1
    embodiment: Embodiment | None = None
    fallback: str = "hold"
    path_margin: float | None = None
    action_delay: int = 0
    delay_margin: float | None = None
    estimate_sigmas: float = 4.0
    regrasp_below: float | None = None  # restart the sub-goals when the fingers close on nothing (gripper < this)
    proprio_filter: bool = False  # estimate the proprio with planner.estimation.ProprioFilter before using it
    pixel_filter: bool = False  # denoise camera frames with planner.estimation.PixelFilter before encoding them


def costs_for_goal(goal: Mapping[str, Any], weights: Mapping[str, Any], **kwargs: Any) -> CostFunction:
    """A CostFunction with the goal-reaching terms the goal has keys for, plus the goal-free terms in ``weights``."""
    chosen: dict[str, Any] = {}
    for key, term in TERM_FOR_KEY.items():
        if key in goal and term in weights:
            chosen[term] = weights[term]
    for term in ("action_magnitude", "action_smoothness", "ee_to_cube"):
        if term in weights and (term != "ee_to_cube" or "cube_pos" not in goal):
            chosen[term] = weights[term]
    if not chosen:
        raise ValueError(f"no cost term applies to a goal with keys {sorted(goal)} given weights {sorted(weights)}")
    return CostFunction.from_weights(chosen, **kwargs)


class MPCAgent:
    """Plans with any ``WorldModel`` and any optimizer; guardrails are hard constraints.

    ``act(obs)`` returns an action ``[A]`` (numpy, finite, in bounds) and a step-info dict: cost terms of the
    chosen plan, predicted guardrail violations, planning ms, feasible-sample fraction, whether the safety
    filter replaced the action (``fallback``) and whether no feasible plan existed (``no_feasible_plan``).
    """

    def __init__(
        self,
        world_model: WorldModel,
        optimizer: Optimizer,
        cost_weights: Mapping[str, Any],
        guardrails: GuardrailSet,
        config: AgentConfig = AgentConfig(),
        measured_state: Callable[[Obs], dict[str, Tensor]] | None = None,
        phase_weights: Mapping[str, Mapping[str, Any]] | None = None,
        phase_bounds: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
    ) -> None:
        self.world_model = world_model
        self.optimizer = optimizer
        self.cost_weights = dict(cost_weights)
        # Per sub-goal phase (GoalSchedule.phase), entries replacing those of cost_weights: e.g. a hand held still
        # while the fingers close ({"close": {"ee_to_target": 20}}).
        self.phase_weights = {str(k): dict(v) for k, v in (phase_weights or {}).items()}
        # Per phase, action bounds [A] intersected with the optimizer's own for that phase's plans: e.g. a squeezing
        # gripper command while the cube is held ({"lift": ([-1, -1, -1, -1], [1, 1, 1, -0.5])}).
        self.phase_bounds = {
            str(k): _check_bounds(str(k), lo, hi, optimizer) for k, (lo, hi) in (phase_bounds or {}).items()
        }
        # One optimizer per bounded phase: a copy with the phase's bounds, built once (the configured one is untouched).
        self._phase_optimizers = {phase: optimizer.with_bounds(lo, hi) for phase, (lo, hi) in self.phase_bounds.items()}
        self.guardrails = guardrails
        self.config = config
        self.embodiment = config.embodiment
        if measured_state is None and self.embodiment is None:
            raise ValueError("MPCAgent needs config.embodiment (the robot's proprio layout) or a measured_state")
        self.measured_state = measured_state or (lambda obs: self.embodiment.measured(obs["proprio"]))
        self.horizon = int(optimizer.horizon)
        self.action_dim = int(optimizer.action_dim)
        if self.embodiment is not None and self.embodiment.action_dim != self.action_dim:
            raise ValueError(
                f"the optimizer plans {self.action_dim} actions but {self.embodiment.name} takes "
                f"{self.embodiment.action_dim} ({', '.join(self.embodiment.action_names)})"
            )
        if config.proprio_filter and self.embodiment is None:
            raise ValueError("proprio_filter needs config.embodiment")
        self.proprio_filter = ProprioFilter.for_embodiment(self.embodiment) if config.proprio_filter else None
        self.pixel_filter = PixelFilter() if config.pixel_filter else None
        self.safety = SafetyFilter(world_model, guardrails, config, self.action_dim, self.proprio_filter)
        # Optional: called every step as goal_source(obs, z0, last_action, step, schedule or None at the first step);
        # returns (a new GoalSchedule or None, step info). Set per episode by whoever builds the goals.
        self.goal_source: Callable[..., tuple[GoalSchedule | None, dict[str, Any]]] | None = None
        self.reset(GoalSchedule([{"ee_pos": torch.zeros(3)}]))

    def reset(self, schedule: GoalSchedule) -> None:
        """Start an episode toward ``schedule``'s goals (encoded already: tensors or latents)."""
        self.schedule = schedule
        self.steps = 0
        self._plan: Tensor | None = None  # [H, A] remaining actions of the current plan
        self._warm: Tensor | None = None
        self._since_plan = 0
        self._costs: dict[int, CostFunction] = {}
        self._last_action: np.ndarray | None = None  # the last command sent (its gripper is what "hold" keeps)
        if self.proprio_filter is not None:
            self.proprio_filter.reset()
        if self.pixel_filter is not None:
            self.pixel_filter.reset()

    # ------------------------------------------------------------------------------------------------- acting
    def act(self, obs: Obs) -> tuple[np.ndarray, dict[str, Any]]:
        info: dict[str, Any] = {"step": self.steps}
        if self.proprio_filter is not None:  # it refuses NaN/inf proprio itself
            obs = {**obs, "proprio": self.proprio_filter(obs["proprio"], self._last_action).astype(np.float32)}
        if self.pixel_filter is not None and "pixels" in obs:
            obs = {**obs, "pixels": self.pixel_filter(obs["pixels"])}
        with torch.no_grad():
            z0 = self.world_model.encode(obs)
        if self.goal_source is not None:  # sub-goals the agent perceives itself (planner.apps.goals)
            schedule = self.schedule if self.steps else None
            start = time.perf_counter()
            rebuilt, seen = self.goal_source(obs, z0, self._last_action, self.steps, schedule)
            info["goal_ms"] = 1000.0 * (time.perf_counter() - start)  # perception or high-level planning
            info.update(seen)
            if rebuilt is not None:
                rebuilt.started_at = self.steps
                self.schedule, self._plan, self._costs = rebuilt, None, {}
        measured = self.measured_state(obs)
        info["regrasp"] = self._maybe_regrasp(measured)
        before = self.schedule.index
        goal = self.schedule.update({k: v.cpu() for k, v in measured.items()}, self.steps)
        if self.schedule.index != before:
            self._plan = None  # a new sub-goal (and phase): plan for it now, not from the last one's leftovers
        info["subgoal"] = self.schedule.index
        info["phase"] = self.schedule.phase
        measured = {k: v.to(z0.device) for k, v in measured.items()}
        if self._plan is None or self._since_plan >= self.config.replan_every or len(self._plan) == 0:
            start = time.perf_counter()
            plan = self._optimize(z0, goal)
            info["plan_ms"] = 1000.0 * (time.perf_counter() - start)
            info.update(feasible_fraction=plan.feasible_fraction, plan_cost=plan.cost, plan_violation=plan.violation)
            info["no_feasible_plan"] = not plan.feasible
            info.update(self._explain(z0, plan.actions, goal))
            self._plan, self._since_plan = plan.actions.detach().clone(), 0
            self._warm = plan.mean.detach().clone() if plan.mean is not None else plan.actions.detach().clone()
        action = self._plan[0]
        self._plan = self._plan[1:]
        self._since_plan += 1
        ok, reason = self.safety.judge(z0, measured, action, info, self._last_action)  # filter, or recovery
        if not ok or info.get("no_feasible_plan", False):
            action = self.fallback_action(action)
            info["fallback"] = True
            info["fallback_reason"] = reason if not ok else "no_feasible_plan"
            self._plan = None  # replan next step from the new state
        else:
            info["fallback"] = False
        out = action.detach().to("cpu", torch.float64).numpy()
        if not np.all(np.isfinite(out)):  # cannot happen past the filter; a last guard against NaN commands
            out = self.fallback_action(None).numpy()
            info["fallback"], info["fallback_reason"] = True, "non_finite_action"
        self._last_action = out
        self.steps += 1
        return out.astype(np.float32), info

    def _maybe_regrasp(self, measured: dict[str, Tensor]) -> bool:
        """A sub-goal that holds an object (gripper goal between closed and open) with the fingers measured
        shut on nothing means the grasp failed or slipped: start the sub-goal sequence again (returns True)."""
        limit = self.config.regrasp_below
        goal = self.schedule.current()
        if limit is None or "gripper" not in goal or "gripper" not in measured or self.schedule.index == 0:
            return False
        robot = self.embodiment
        if robot is None:
            return False
        holding = robot.is_holding(float(goal["gripper"]))
        waited = self.steps - self.schedule.started_at >= robot.grasp_steps
        # With noisy sensors the filtered opening is still an average of a few readings just after the fingers
        # close: a false "empty" sends the robot back to the start, so it must be shut with confidence.
        doubt = REGRASP_SIGMAS * self.proprio_filter.gripper_std() if self.proprio_filter is not None else 0.0
        if holding and float(measured["gripper"]) + doubt < limit and waited:
            self.schedule.reset()
            self.schedule.started_at = self.steps
            self._plan = None
            return True
        return False

    def fallback_action(self, action: Tensor | None) -> Tensor:
        """Hold the hand where it is, gripper as it is (the robot's own hold command)."""
        if self.config.fallback != "hold":
            raise ValueError(f"unknown fallback {self.config.fallback!r}; known: hold")
        if self.embodiment is None:
            return torch.zeros(self.action_dim, dtype=torch.float64)
        hold = self.embodiment.hold_action(self._last_action)
        g = self.embodiment.gripper_action
        bounds = self.phase_bounds.get(self.schedule.phase)
        if bounds is not None:  # a phase that bounds the gripper (a squeeze while holding) keeps it bounded
            hold[g] = hold[g].clamp(float(bounds[0][g]), float(bounds[1][g]))
        return hold

    # ------------------------------------------------------------------------------------------------- internals
    def _warm_start(self) -> Tensor | None:
        if self._warm is None:
            return None
        shift = self._since_plan
        tail = self._warm[shift:]
        pad = (
            self._warm[-1:].expand(self.horizon - len(tail), -1)
            if len(tail)
            else self._warm[-1:].expand(self.horizon, -1)
        )
        return torch.cat([tail, pad], dim=0) if len(tail) else pad

    def _cost_function(self, goal: Mapping[str, Any]) -> CostFunction:
        index = self.schedule.index
        if index not in self._costs:
            weights = {**self.cost_weights, **self.phase_weights.get(self.schedule.phase, {})}
            self._costs[index] = costs_for_goal(goal, weights)
        return self._costs[index]

    def _optimize(self, z0: Tensor, goal: Mapping[str, Any]) -> Plan:
        cost_fn = self._cost_function(goal)
        dtype = self.optimizer.dtype
        now: dict[str, Tensor] = {}  # z0 decoded (per key, when first read), the same for every call

        def objective(actions: Tensor) -> tuple[Tensor, Tensor]:
            z = self.world_model.rollout(z0, actions.to(z0.device))
            states = predicted_states(self.world_model, z0, z, now)
            a = actions.to(device=z.device, dtype=z.dtype)
            cost, _ = cost_fn(states, a, goal)
            hard, soft, _ = self.guardrails.evaluate(states, a)
            if len(self.guardrails) and "ee_pos" in states:
                # The safety filter also judges where each command sends the hand, widened by its path margin;
                # plan for the same test.
                hard = hard + self.safety.path_violation(states, a, self._last_action)
            return (cost + soft).to(device=actions.device, dtype=dtype), hard.to(device=actions.device, dtype=dtype)

        generator = torch.Generator(device=self.optimizer.device).manual_seed(1000 + self.steps)
        optimizer = self._phase_optimizers.get(self.schedule.phase, self.optimizer)
        return optimizer.optimize(objective, self._warm_start(), generator)

    @torch.no_grad()
    def _explain(self, z0: Tensor, actions: Tensor, goal: Mapping[str, Any]) -> dict[str, Any]:
        """Per-term cost and per-guardrail predicted violation of the chosen plan (for logs and plots)."""
        a = actions[None].to(z0.device)
        z = self.world_model.rollout(z0, a)
        states = predicted_states(self.world_model, z0, z)
        _, per_term = self._cost_function(goal)(states, a.to(z.dtype), goal)
        _, _, per_guard = self.guardrails.evaluate(states, a.to(z.dtype))
        return {
            "cost_terms": {k: float(v[0]) for k, v in per_term.items()},
            "predicted_violation": {k: float(v[0].sum()) for k, v in per_guard.items()},
            "predicted_margin": {g.name: float(g.signed_margin(states, a.to(z.dtype)).min()) for g in self.guardrails},
        }


def _check_bounds(
    phase: str, lower: Sequence[float], upper: Sequence[float], optimizer: Optimizer
) -> tuple[Tensor, Tensor]:
    """Phase bounds as ``[A]`` tensors on the optimizer's device; they must leave room inside its own bounds."""
    if not all(hasattr(optimizer, name) for name in ("lower", "upper", "dtype", "device", "with_bounds")):
        raise TypeError(f"phase {phase!r}: phase action bounds need an optimizer with lower/upper bounds [H, A]")
    lo = torch.as_tensor(lower, dtype=optimizer.dtype, device=optimizer.device)
    hi = torch.as_tensor(upper, dtype=optimizer.dtype, device=optimizer.device)
    if lo.shape != (optimizer.action_dim,) or hi.shape != lo.shape:
        raise ValueError(
            f"phase {phase!r}: bounds need {optimizer.action_dim} entries each, got {list(lower)}, {list(upper)}"
        )
    own_lo, own_hi = optimizer.lower.amax(dim=0), optimizer.upper.amin(dim=0)
    if not bool((torch.maximum(lo, own_lo) < torch.minimum(hi, own_hi)).all()):
        raise ValueError(f"phase {phase!r}: bounds {list(lower)}..{list(upper)} leave no room inside the optimizer's")
    return lo, hi


def stack_goals(goals: Sequence[Mapping[str, Any]]) -> list[dict[str, Tensor]]:
    """Sub-goal dicts of arrays -> dicts of float64 tensors."""
    return [{k: torch.as_tensor(np.asarray(v, dtype=np.float64)) for k, v in g.items()} for g in goals]
