"""The MPC agent: encode, optimize a receding-horizon plan under hard guardrails, filter, act."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from planner.costs import CostFunction, GoalSchedule
from planner.estimation import PixelFilter, ProprioFilter
from planner.guardrails import GuardrailSet, widened_path_violation
from planner.optimizers.base import Optimizer
from planner.types import Plan
from world_models.base import Obs, WorldModel

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
    action_scale / ee_low / ee_high: the robot's controller (metres per action unit, and its clipping box), so
        the safety filter can check where a command sends the hand without trusting the model.
    fallback: ``"hold"`` keeps the hand still with the gripper unchanged when no feasible action exists.
    path_margin: metres around every commanded hand position that the command check (planner and safety filter)
        keeps clear of every hard guardrail, custom ones included: the hand's real path between two ticks curves
        away from the straight segment to its commanded position (it carries its velocity into the step). 5 mm:
        ``python -m planner.apps.tracking_check`` measured at most 2.9 mm over 1280 random steps in free space
        (uniform, full-scale, reversed and small commands). One earlier, smaller run saw 8.9 mm, cause not traced;
        contact (fingers pushing on the cube) is not covered by a margin on the command (BENCHMARKS.md).
    action_delay: commands in flight (the robot's known latency in control steps, 0 or 1). With 1, the filter
        checks the path of the command already sent (it executes now) and the chosen one's path from where that one
        ends, and uses ``delay_margin``.
    delay_margin: the path margin with a command in flight: the start of the checked segment is then a prediction
        too (the hand covers ~95 % of a commanded step). 2 cm: tracking_check measured at most 17.5 mm.
    estimate_sigmas: with the proprio filter on, this many standard deviations of its hand estimate (0 while the
        sensors read clean) are added to the margin, so sensor noise cannot talk the filter into a crossing.
    """

    replan_every: int = 1
    action_scale: float = 0.05
    ee_low: tuple[float, float, float] = (-math.inf, -math.inf, -math.inf)
    ee_high: tuple[float, float, float] = (math.inf, math.inf, math.inf)
    fallback: str = "hold"
    path_margin: float = 0.005
    action_delay: int = 0
    delay_margin: float = 0.02
    estimate_sigmas: float = 4.0
    regrasp_below: float | None = None  # restart the sub-goals when the fingers close on nothing (opening < this)
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
        self.guardrails = guardrails
        self.config = config
        self.measured_state = measured_state or proprio_state
        self.horizon = int(optimizer.horizon)
        self.action_dim = int(optimizer.action_dim)
        self.proprio_filter = (
            ProprioFilter(config.action_scale, config.ee_low, config.ee_high) if config.proprio_filter else None
        )
        self.pixel_filter = PixelFilter() if config.pixel_filter else None
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
        ok, reason = self._safe(z0, measured, action, info)
        if not ok or info.get("no_feasible_plan", False):
            now, now_per = self._violation_now(z0, measured)
            after = info.get("filter_violation", {})
            no_worse = all(after.get(name, 0.0) <= now_per.get(name, 0.0) + 1e-9 for name in now_per)
            if now > 0 and no_worse and info.get("filter_worst", math.inf) < now:
                # Recovery: the measured state already breaks a guardrail (holding still breaks it too), so the
                # least-violating plan is executed while it strictly reduces the violation.
                ok, reason = True, ""
                info["no_feasible_plan"] = False
                info["recovery"] = True
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
        holding = 0.02 < float(goal["gripper"]) < 0.07
        if holding and float(measured["gripper"]) < limit and self.steps - self.schedule.started_at >= 3:
            self.schedule.reset()
            self.schedule.started_at = self.steps
            self._plan = None
            return True
        return False

    def fallback_action(self, action: Tensor | None) -> Tensor:
        """Hold the hand where it is, gripper command unchanged."""
        if self.config.fallback != "hold":
            raise ValueError(f"unknown fallback {self.config.fallback!r}; known: hold")
        hold = torch.zeros(self.action_dim, dtype=torch.float64)
        if self.action_dim > 3:
            hold[3] = 1.0 if self._last_action is None else float(self._last_action[3])
            bounds = self.phase_bounds.get(self.schedule.phase)
            if bounds is not None:  # a phase that bounds the gripper (a squeeze while holding) keeps it bounded
                hold[3] = hold[3].clamp(float(bounds[0][3]), float(bounds[1][3]))
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

    def _states(self, z0: Tensor, z: Tensor) -> dict[str, Tensor]:
        """Decoded quantities ``[N, H+1, ...]`` (index 0: now) plus the latents themselves."""
        now = self.world_model.decode(z0)
        pred = self.world_model.decode(z)
        n = z.shape[0]
        states = {k: torch.cat([now[k].unsqueeze(1).expand(n, 1, *now[k].shape[1:]), pred[k]], dim=1) for k in pred}
        states["latent"] = torch.cat([z0.unsqueeze(1).expand(n, 1, *z0.shape[1:]), z], dim=1)
        return states

    def _cost_function(self, goal: Mapping[str, Any]) -> CostFunction:
        index = self.schedule.index
        if index not in self._costs:
            weights = {**self.cost_weights, **self.phase_weights.get(self.schedule.phase, {})}
            self._costs[index] = costs_for_goal(goal, weights)
        return self._costs[index]

    def _optimize(self, z0: Tensor, goal: Mapping[str, Any]) -> Plan:
        cost_fn = self._cost_function(goal)
        dtype = self.optimizer.dtype

        def objective(actions: Tensor) -> tuple[Tensor, Tensor]:
            z = self.world_model.rollout(z0, actions.to(z0.device))
            states = self._states(z0, z)
            a = actions.to(device=z.device, dtype=z.dtype)
            cost, _ = cost_fn(states, a, goal)
            hard, soft, _ = self.guardrails.evaluate(states, a)
            if len(self.guardrails) and "ee_pos" in states:
                # The safety filter also judges where each command sends the hand, widened by its path margin;
                # plan for the same test.
                commanded = self._commanded(states, a, self._in_flight(a))
                hard = hard + widened_path_violation(self.guardrails, commanded, a, self._path_margin())[0]
            return (cost + soft).to(device=actions.device, dtype=dtype), hard.to(device=actions.device, dtype=dtype)

        generator = torch.Generator(device=self.optimizer.device).manual_seed(1000 + self.steps)
        bounds = self.phase_bounds.get(self.schedule.phase)
        if bounds is None:
            return self.optimizer.optimize(objective, self._warm_start(), generator)
        own = self.optimizer.lower, self.optimizer.upper
        try:
            self.optimizer.lower, self.optimizer.upper = (
                torch.maximum(own[0], bounds[0]),
                torch.minimum(own[1], bounds[1]),
            )
            return self.optimizer.optimize(objective, self._warm_start(), generator)
        finally:
            self.optimizer.lower, self.optimizer.upper = own

    def _commanded(
        self, states: dict[str, Tensor], actions: Tensor, in_flight: Tensor | None = None
    ) -> dict[str, Tensor]:
        """``states`` with each predicted hand position replaced by the commanded one (previous + scale * a). With
        a command ``in_flight [A]`` (action delay), each action starts where that command ends instead."""
        ee = states["ee_pos"]
        actions = actions.to(ee.device)
        previous = ee[:, :-1]
        if in_flight is not None:
            first = self._clip(ee[:, :1] + self.config.action_scale * in_flight[:3].to(ee))
            previous, ee = previous + (first - ee[:, :1]), torch.cat([first, ee[:, 1:]], dim=1)
        target = self._clip(previous + self.config.action_scale * actions[..., :3])
        return {**states, "ee_pos": torch.cat([ee[:, :1], target], dim=1)}

    def _clip(self, position: Tensor) -> Tensor:
        """A commanded position clipped as the controller clips it."""
        low = torch.tensor(self.config.ee_low, dtype=position.dtype, device=position.device)
        high = torch.tensor(self.config.ee_high, dtype=position.dtype, device=position.device)
        return torch.clamp(position, low, high)

    def _in_flight(self, like: Tensor) -> Tensor | None:
        """The command sent last tick, which the robot executes now under a one-step delay (None without one;
        at an episode's first step, the hold the delayed robot executes)."""
        if self.config.action_delay <= 0:
            return None
        if self._last_action is None:
            return like.new_zeros(self.action_dim)
        return torch.as_tensor(self._last_action, dtype=like.dtype, device=like.device)

    def _path_margin(self) -> float:
        """Metres kept clear around each commanded hand position: the measured tracking deviation (with or without
        a command in flight) plus ``estimate_sigmas`` standard deviations of the proprio filter's hand estimate."""
        margin = self.config.delay_margin if self.config.action_delay > 0 else self.config.path_margin
        if self.proprio_filter is not None:
            margin += self.config.estimate_sigmas * self.proprio_filter.ee_std()
        return margin

    @torch.no_grad()
    def _explain(self, z0: Tensor, actions: Tensor, goal: Mapping[str, Any]) -> dict[str, Any]:
        """Per-term cost and per-guardrail predicted violation of the chosen plan (for logs and plots)."""
        a = actions[None].to(z0.device)
        z = self.world_model.rollout(z0, a)
        states = self._states(z0, z)
        _, per_term = self._cost_function(goal)(states, a.to(z.dtype), goal)
        _, _, per_guard = self.guardrails.evaluate(states, a.to(z.dtype))
        return {
            "cost_terms": {k: float(v[0]) for k, v in per_term.items()},
            "predicted_violation": {k: float(v[0].sum()) for k, v in per_guard.items()},
            "predicted_margin": {g.name: float(g.signed_margin(states, a.to(z.dtype)).min()) for g in self.guardrails},
        }

    @torch.no_grad()
    def _safe(self, z0: Tensor, measured: dict[str, Tensor], action: Tensor, info: dict[str, Any]) -> tuple[bool, str]:
        """The safety filter: the action must satisfy every hard guardrail on the measured state, judged both by
        the model's one-step prediction and by where the controller is commanded to put the hand."""
        if len(self.guardrails) == 0:
            return bool(torch.isfinite(action).all()), "non_finite_action"
        if not torch.isfinite(action).all():
            return False, "non_finite_action"
        a = action[None, None].to(device=z0.device, dtype=z0.dtype)
        predicted = self._states(z0, self.world_model.rollout(z0, a))
        now = {k: v.to(z0.dtype) for k, v in measured.items()}
        for key, value in now.items():  # the measured state replaces the model's estimate at index 0
            if key in predicted:
                predicted[key] = torch.cat(
                    [value.reshape(1, 1, *predicted[key].shape[2:]), predicted[key][:, 1:]], dim=1
                )
        worst = 0.0
        hard, _, per = self.guardrails.evaluate(predicted, a)
        if float(hard.sum()) > worst:
            worst = float(hard.sum())
            info["filter_violation"] = {k: float(v.sum()) for k, v in per.items()}
        if "ee_pos" in predicted:
            # Where the controller sends the hand, widened by the path margin; under a delay, the command in flight
            # (it runs now, from the measured hand) and then the chosen one from where that one ends.
            in_flight = self._in_flight(a)
            commanded, acts = self._commanded(predicted, a), a
            if in_flight is not None:
                first = self._clip(commanded["ee_pos"][:, :1] + self.config.action_scale * in_flight[:3])
                second = self._clip(first + self.config.action_scale * a[..., :3])
                commanded = {k: torch.cat([v[:, :1], v], dim=1) for k, v in predicted.items()}
                commanded["ee_pos"] = torch.cat([predicted["ee_pos"][:, :1], first, second], dim=1)
                acts = torch.cat([in_flight[None, None].to(a), a], dim=1)
            margin = self._path_margin()
            info["filter_margin"] = margin
            hard, per = widened_path_violation(self.guardrails, commanded, acts, margin)
            if in_flight is not None:
                info["in_flight_violation"] = float(sum(float(v[:, 0].sum()) for v in per.values()))
            if float(hard.sum()) > worst:
                worst = float(hard.sum())
                info["filter_violation"] = {k: float(v.sum()) for k, v in per.items()}
        info["filter_worst"] = worst
        if worst > 0:
            return False, "guardrail"
        return True, ""

    @torch.no_grad()
    def _violation_now(self, z0: Tensor, measured: dict[str, Tensor]) -> tuple[float, dict[str, float]]:
        """Hard violation of the measured state itself (holding still there), total and per guardrail."""
        if len(self.guardrails) == 0:
            return 0.0, {}
        hold = torch.zeros(1, 1, self.action_dim, dtype=z0.dtype, device=z0.device)
        states = self._states(z0, z0[:, None])
        for key, value in measured.items():
            if key in states:
                v = value.to(z0.dtype).reshape(1, 1, *states[key].shape[2:])
                states[key] = torch.cat([v, v], dim=1)
        hard, _, per = self.guardrails.evaluate(states, hold)
        return float(hard.sum()), {g.name: float(per[g.name].sum()) for g in self.guardrails if g.hard}


def _check_bounds(
    phase: str, lower: Sequence[float], upper: Sequence[float], optimizer: Optimizer
) -> tuple[Tensor, Tensor]:
    """Phase bounds as ``[A]`` tensors on the optimizer's device; they must leave room inside its own bounds."""
    if not all(hasattr(optimizer, name) for name in ("lower", "upper", "dtype", "device")):
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


def proprio_state(obs: Obs) -> dict[str, Tensor]:
    """What the robot measures itself: fingertip position ``proprio[:3]`` and gripper opening ``proprio[6]``."""
    p = torch.as_tensor(np.asarray(obs["proprio"], dtype=np.float64))
    if not torch.isfinite(p).all():
        raise ValueError("observation 'proprio' contains NaN or inf")
    return {"ee_pos": p[:3], "gripper": p[6]}


def stack_goals(goals: Sequence[Mapping[str, Any]]) -> list[dict[str, Tensor]]:
    """Sub-goal dicts of arrays -> dicts of float64 tensors."""
    return [{k: torch.as_tensor(np.asarray(v, dtype=np.float64)) for k, v in g.items()} for g in goals]
