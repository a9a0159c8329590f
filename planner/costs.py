"""Named, weighted planning cost terms, their combination with time weighting, and goal schedules.

A term is ``term(states, actions, goal) -> [N, H]`` per-step cost. ``states`` follows the guardrail convention
(values ``[N, H+1, ...]``, index 0 the current state, ``1..H`` the predictions; latents under ``"latent"`` as
``[N, H+1, *latent]``); ``actions`` is ``[N, H, A]``; ``goal`` maps names to targets broadcastable to the
predictions (``goal["ee_pos"]`` ``[3]``, ``goal["latent"]`` ``[*latent]`` or ``[1, *latent]``, ...).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

States = Mapping[str, Tensor]
Goal = Mapping[str, Any]
CostTerm = Callable[[States, Tensor, Goal], Tensor]


def _pred(states: States, key: str, term: str) -> Tensor:
    """Predicted ``states[key][:, 1:]`` ``[N, H, ...]``, or a KeyError naming the key and the term."""
    if key not in states:
        raise KeyError(f"cost term {term!r} needs state {key!r}, but states only has {sorted(states)}")
    return states[key][:, 1:]


def _target(goal: Goal, key: str, like: Tensor, term: str) -> Tensor:
    """``goal[key]`` as a tensor on ``like``'s device/dtype, or a KeyError naming the key and the term."""
    if key not in goal:
        raise KeyError(f"cost term {term!r} needs goal {key!r}, but the goal only has {sorted(goal)}")
    return torch.as_tensor(goal[key], device=like.device, dtype=like.dtype)


def ee_to_target(states: States, actions: Tensor, goal: Goal) -> Tensor:
    """Distance (m) from the end effector to ``goal["ee_pos"]``: ``[N, H]``."""
    ee = _pred(states, "ee_pos", "ee_to_target")
    return torch.linalg.vector_norm(ee - _target(goal, "ee_pos", ee, "ee_to_target"), dim=-1)


def cube_to_target(states: States, actions: Tensor, goal: Goal) -> Tensor:
    """Distance (m) from the cube to ``goal["cube_pos"]``: ``[N, H]``."""
    cube = _pred(states, "cube_pos", "cube_to_target")
    return torch.linalg.vector_norm(cube - _target(goal, "cube_pos", cube, "cube_to_target"), dim=-1)


def ee_to_cube(states: States, actions: Tensor, goal: Goal) -> Tensor:
    """Distance (m) from the end effector to the cube: ``[N, H]``."""
    ee, cube = _pred(states, "ee_pos", "ee_to_cube"), _pred(states, "cube_pos", "ee_to_cube")
    return torch.linalg.vector_norm(ee - cube, dim=-1)


def latent_distance(states: States, actions: Tensor, goal: Goal, p: int = 1) -> Tensor:
    """Distance between predicted latents ``states["latent"] [N, H+1, *latent]`` and ``goal["latent"]``: ``[N, H]``.

    ``p = 1``: mean absolute difference over the latent dimensions (V-JEPA 2's L1); ``p = 2``: mean squared.
    With ``goal["latent_mask"]`` (``[D]``, 1 = compared) only the masked dimensions count: a goal photo has no
    proprio, so its latent's proprio part says nothing and is left out.
    """
    if p not in (1, 2):
        raise ValueError(f"latent_distance: p must be 1 or 2, got {p!r}")
    z = _pred(states, "latent", "latent_distance")
    diff = (z - _target(goal, "latent", z, "latent_distance")).flatten(2)  # [N, H, D]
    err = diff.abs() if p == 1 else diff.square()
    if "latent_mask" not in goal:
        return err.mean(dim=-1)
    mask = _target(goal, "latent_mask", z, "latent_distance").flatten()
    return (err * mask).sum(dim=-1) / mask.sum().clamp_min(1.0)


def gripper(states: States, actions: Tensor, goal: Goal) -> Tensor:
    """Absolute difference (m) between the finger opening and ``goal["gripper"]``: ``[N, H]``."""
    g = _pred(states, "gripper", "gripper")
    return (g - _target(goal, "gripper", g, "gripper")).abs()


def action_magnitude(states: States, actions: Tensor, goal: Goal) -> Tensor:
    """Squared action norm ``|a_t|^2``: ``[N, H]``."""
    return actions.square().sum(dim=-1)


def action_smoothness(states: States, actions: Tensor, goal: Goal) -> Tensor:
    """Squared change between consecutive actions ``|a_t - a_{t-1}|^2`` (0 at t = 0): ``[N, H]``."""
    diff = actions[:, 1:] - actions[:, :-1]
    return torch.cat([actions.new_zeros(actions.shape[0], 1), diff.square().sum(dim=-1)], dim=1)


TERMS: dict[str, CostTerm] = {
    "ee_to_target": ee_to_target,
    "cube_to_target": cube_to_target,
    "ee_to_cube": ee_to_cube,
    "latent_distance": latent_distance,
    "gripper": gripper,
    "action_magnitude": action_magnitude,
    "action_smoothness": action_smoothness,
}


def make_term(name: str, **kwargs: Any) -> CostTerm:
    """The built-in term ``name`` with keyword parameters bound (e.g. ``p=2``); the error lists known names."""
    try:
        fn = TERMS[name]
    except KeyError:
        raise KeyError(f"unknown cost term {name!r}; known terms: {', '.join(sorted(TERMS))}") from None
    return functools.partial(fn, **kwargs) if kwargs else fn


class CostFunction:
    """A weighted sum of named terms, each summed over the horizon with time weights.

    Time weight of step t (0-based, ``t < H``): ``discount**t``, times ``terminal_weight`` at ``t = H - 1``.
    A term weighted 0 is not evaluated (its contribution is 0), so the states only it reads are never decoded.

    Args:
        terms: ``{name: (fn, weight)}``; ``fn(states, actions, goal) -> [N, H]``.
        discount: per-step factor in ``(0, 1]``.
        terminal_weight: extra factor >= 0 on the last step.
    """

    def __init__(
        self, terms: Mapping[str, tuple[CostTerm, float]], discount: float = 1.0, terminal_weight: float = 1.0
    ) -> None:
        if not terms:
            raise ValueError("CostFunction needs at least one term")
        for name, (fn, weight) in terms.items():
            if not callable(fn) or not math.isfinite(float(weight)):
                raise ValueError(f"cost term {name!r} needs a callable and a finite weight, got {(fn, weight)!r}")
        if not 0.0 < discount <= 1.0:
            raise ValueError(f"discount must be in (0, 1], got {discount!r}")
        if not terminal_weight >= 0.0:
            raise ValueError(f"terminal_weight must be >= 0, got {terminal_weight!r}")
        self.terms = {name: (fn, float(w)) for name, (fn, w) in terms.items()}
        self.discount, self.terminal_weight = float(discount), float(terminal_weight)

    @classmethod
    def from_weights(
        cls, weights: Mapping[str, float | Mapping[str, Any]], discount: float = 1.0, terminal_weight: float = 1.0
    ) -> CostFunction:
        """Built-in terms by name, e.g. ``{"ee_to_target": 1.0, "latent_distance": {"weight": 1.0, "p": 2}}``."""
        terms: dict[str, tuple[CostTerm, float]] = {}
        for name, spec in weights.items():
            if isinstance(spec, Mapping):
                params = dict(spec)
                weight = float(params.pop("weight", 1.0))
                terms[name] = (make_term(name, **params), weight)
            else:
                terms[name] = (make_term(name), float(spec))
        return cls(terms, discount=discount, terminal_weight=terminal_weight)

    def time_weights(self, horizon: int, like: Tensor) -> Tensor:
        """Time weights ``[H]`` on ``like``'s device/dtype."""
        w = self.discount ** torch.arange(horizon, device=like.device, dtype=like.dtype)
        w[-1] = w[-1] * self.terminal_weight
        return w

    def __call__(self, states: States, actions: Tensor, goal: Goal) -> tuple[Tensor, dict[str, Tensor]]:
        """Return ``total [N]`` and the weighted contribution ``[N]`` of each term (they add up to the total)."""
        n, h = actions.shape[0], actions.shape[1]
        tw = self.time_weights(h, actions)
        total = actions.new_zeros(n)
        per: dict[str, Tensor] = {}
        for name, (fn, weight) in self.terms.items():
            if weight == 0.0:  # adds nothing: not evaluated, so what only it reads is never decoded (the cube)
                per[name] = actions.new_zeros(n)
                continue
            c = fn(states, actions, goal)
            if c.shape != (n, h):
                raise ValueError(f"cost term {name!r} returned shape {tuple(c.shape)}, expected [N, H] = [{n}, {h}]")
            per[name] = weight * (c * tw).sum(dim=1)
            total = total + per[name]
        return total, per


class GoalSchedule:
    """A sequence of sub-goals, advanced by measured progress or by time spent on each.

    Args:
        goals: sub-goal dicts (targets, e.g. ``{"ee_pos": [..], "cube_pos": [..]}`` or ``{"latent": z}``).
        switch_distance: advance when, for every key shared by the sub-goal and the measured state (or only
            ``keys``), the Euclidean distance is below this.
        switch_steps: steps to spend on each sub-goal (V-JEPA 2 used 4, 10, 4); one per sub-goal but the last may
            be omitted. Either criterion advances; with neither given the schedule never advances.
        keys: which goal keys the distance criterion looks at (default: every key the state also has).
        phases: a name per sub-goal (``Task.phases``: "above", "close", ...), for per-phase cost weights and logs;
            every sub-goal is a ``"goal"`` phase when not given.
    """

    def __init__(
        self,
        goals: Sequence[Goal],
        switch_distance: float | None = None,
        switch_steps: Sequence[int] | None = None,
        keys: Sequence[str] | None = None,
        phases: Sequence[str] | None = None,
    ) -> None:
        if len(goals) == 0:
            raise ValueError("GoalSchedule needs at least one goal")
        if switch_distance is not None and not switch_distance > 0:
            raise ValueError(f"switch_distance must be > 0, got {switch_distance!r}")
        if switch_steps is not None and (len(switch_steps) < len(goals) - 1 or any(int(s) < 1 for s in switch_steps)):
            raise ValueError(f"switch_steps needs >= {len(goals) - 1} positive entries, got {switch_steps!r}")
        if phases is not None and len(phases) != len(goals):
            raise ValueError(f"GoalSchedule got {len(phases)} phase names for {len(goals)} sub-goals")
        self.goals = list(goals)
        self.phases = [str(p) for p in phases] if phases is not None else ["goal"] * len(goals)
        self.switch_distance = switch_distance
        self.switch_steps = None if switch_steps is None else [int(s) for s in switch_steps]
        self.keys = None if keys is None else tuple(keys)
        self.reset()

    def reset(self) -> None:
        """Back to the first sub-goal."""
        self.index, self.started_at = 0, 0

    def current(self) -> Goal:
        """The active sub-goal."""
        return self.goals[self.index]

    @property
    def phase(self) -> str:
        """The active sub-goal's phase name."""
        return self.phases[self.index]

    def distance(self, state: Mapping[str, Any]) -> float:
        """Largest distance between the measured ``state`` and the active sub-goal over the compared keys."""
        goal = self.current()
        keys = self.keys if self.keys is not None else [k for k in goal if k in state]
        if not keys:
            return math.inf
        dists = []
        for k in keys:
            if k not in state or k not in goal:
                raise KeyError(f"GoalSchedule compares {k!r}, missing from the state or the sub-goal")
            diff = torch.as_tensor(state[k], dtype=torch.float64) - torch.as_tensor(goal[k], dtype=torch.float64)
            dists.append(float(torch.linalg.vector_norm(diff.flatten())))
        return max(dists)

    def update(self, state: Mapping[str, Any], step: int) -> Goal:
        """Advance (at most one sub-goal per call) if the measured state is close enough or the time is up."""
        if self.index < len(self.goals) - 1:
            close = self.switch_distance is not None and self.distance(state) < self.switch_distance
            timed = self.switch_steps is not None and step - self.started_at >= self.switch_steps[self.index]
            if close or timed:
                self.index, self.started_at = self.index + 1, step
        return self.current()
