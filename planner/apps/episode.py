"""One MPC episode in a real env: the loop the demo and the benchmark share, with true-state guardrail checks."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from planner.guardrails import GuardrailSet, KeepOutBox, MinHeight, WorkspaceBox
from planner.mpc import MPCAgent

POSITIONAL = (KeepOutBox, MinHeight, WorkspaceBox)  # judged on positions alone, so a substep path can be audited
TRUE_KEYS = ("ee_pos", "cube_pos", "gripper")


@dataclass
class EpisodeResult:
    """What one episode measured. ``steps_info`` is kept only when ``record`` is on (the demo)."""

    seed: int
    success: bool
    steps: int
    plan_ms: list[float]
    executed_violations: int  # steps whose true simulator state broke a hard guardrail
    predicted_violations: int  # plans the model itself judged infeasible (the agent then fell back)
    fallbacks: int
    failure: str | None
    final_distance: float
    final_state: dict[str, list[float]]
    peak_rss_mb: float = 0.0
    final_phase: str | None = None  # the sub-goal phase the agent was in at the end ("close", "carry", ...)
    regrasps: int = 0  # times the agent found its fingers shut on nothing and started the sub-goals again
    steps_info: list[dict[str, Any]] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)


def _path_violation(
    guardrails: GuardrailSet, before: dict[str, np.ndarray], after: dict[str, np.ndarray], path: np.ndarray
) -> dict[str, float]:
    """Position guardrails judged at every physics substep of the hand's path (so a step cannot cut a corner)."""
    positional = [g for g in guardrails if g.hard and isinstance(g, POSITIONAL)]
    if not positional or path is None or len(path) == 0:
        return {}
    n = len(path)
    states = {k: torch.as_tensor(np.stack([np.asarray(after[k], dtype=np.float64)] * (n + 1)))[None] for k in TRUE_KEYS}
    states["ee_pos"] = torch.as_tensor(np.vstack([np.asarray(before["ee_pos"], dtype=np.float64), path]))[None]
    a = torch.zeros(1, n, 4, dtype=torch.float64)
    return {g.name: float(g.violation(states, a).max()) for g in positional}


def true_violation(
    guardrails: GuardrailSet,
    before: dict[str, np.ndarray],
    after: dict[str, np.ndarray],
    action: np.ndarray,
    path: np.ndarray | None = None,
) -> dict[str, float]:
    """Hard-guardrail violations of one executed step, judged on the simulator's true states (and, with ``path``,
    on the hand's position at every physics substep in between)."""
    a = torch.as_tensor(np.asarray(action, dtype=np.float64))[None, None]
    _, _, per = guardrails.evaluate(_true_states(before, after), a)
    out = {g.name: float(per[g.name].sum()) for g in guardrails if g.hard}
    # Position guardrails are judged on the hand's real path (every substep), which replaces the straight segment
    # between the two tick states: that segment can cut a corner the hand went round.
    out.update(_path_violation(guardrails, before, after, path))
    return out


def audited(guardrails: GuardrailSet) -> GuardrailSet:
    """The guardrails as the world defines them: planning margins (``margin``) removed, so executed violations
    count real entries into the region, not entries into the safety band the planner keeps around it."""
    out = []
    for g in guardrails:
        if getattr(g, "margin", 0.0):
            g = copy.copy(g)
            g.margin = 0.0
        out.append(g)
    return GuardrailSet(out)


def _true_states(before: dict[str, np.ndarray], after: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Two consecutive true states as guardrail inputs: values ``[1, 2, ...]``."""
    return {
        k: torch.as_tensor(np.stack([np.asarray(before[k], dtype=np.float64), np.asarray(after[k], dtype=np.float64)]))[
            None
        ]
        for k in TRUE_KEYS
    }


def true_margins(
    guardrails: GuardrailSet, before: dict[str, np.ndarray], after: dict[str, np.ndarray]
) -> dict[str, float]:
    """Signed margin (m) of each guardrail on one executed step's true states: > 0 is room left."""
    states = _true_states(before, after)
    a = torch.zeros(1, 1, 4, dtype=torch.float64)
    return {g.name: float(g.signed_margin(states, a)[0, 0]) for g in guardrails}


def run_episode(
    env: gym.Env,
    agent: MPCAgent,
    guardrails: GuardrailSet,
    seed: int,
    prepare: Callable[[gym.Env], None],
    augment_obs: Callable[[dict[str, Any]], dict[str, Any]],
    record: bool = False,
    frame_fn: Callable[[], np.ndarray] | None = None,
    step_hook: Callable[[int, gym.Env], None] | None = None,
    obs_filter: Callable[[int, dict[str, Any]], dict[str, Any]] | None = None,
    action_filter: Callable[[int, np.ndarray], np.ndarray] | None = None,
) -> EpisodeResult:
    """Reset with ``seed``, let ``prepare`` set the goal schedule and episode guardrails, then act until success,
    failure or time-out. ``augment_obs`` adds what a world model needs beyond pixels and proprio (the oracle's
    simulator state); ``obs_filter``/``step_hook`` inject faults."""

    import resource

    obs, info = env.reset(seed=seed)
    prepare(env)
    truth = audited(guardrails)
    plan_ms: list[float] = []
    executed = predicted = fallbacks = steps = regrasps = 0
    phase = None
    failure = None
    steps_info: list[dict[str, Any]] = []
    frames: list[np.ndarray] = []
    if record and frame_fn is not None:
        frames.append(frame_fn())
    while True:
        seen = obs_filter(steps, obs) if obs_filter else obs
        action, step_info = agent.act(augment_obs(seen))
        before = info["state"]
        if step_hook:
            step_hook(steps, env)
        if action_filter:
            action = action_filter(steps, action)
        obs, _, terminated, truncated, info = env.step(action)
        steps += 1
        violation = true_violation(truth, before, info["state"], action, info.get("ee_path")) if len(truth) else {}
        executed += int(any(v > 0 for v in violation.values()))
        predicted += int(step_info.get("no_feasible_plan", False))
        fallbacks += int(step_info.get("fallback", False))
        regrasps += int(step_info.get("regrasp", False))
        phase = step_info.get("phase", phase)
        if "plan_ms" in step_info:
            plan_ms.append(step_info["plan_ms"])
        if record:
            step_info.update(executed_violation=violation, distance=info["distance"], action=action.tolist())
            step_info["true_margin"] = true_margins(truth, before, info["state"])
            steps_info.append(step_info)
            if frame_fn is not None:
                frames.append(frame_fn())
        if info.get("failure"):
            failure = info["failure"]
        if info["is_success"] or terminated or truncated:
            break
    state = info["state"]
    return EpisodeResult(
        seed=seed,
        success=bool(info["is_success"]),
        steps=steps,
        plan_ms=plan_ms,
        executed_violations=executed,
        predicted_violations=predicted,
        fallbacks=fallbacks,
        failure=failure,
        final_distance=float(info["distance"]),
        final_state={
            k: np.asarray(state[k], dtype=float).reshape(-1).tolist() for k in ("ee_pos", "cube_pos", "target_pos")
        },
        peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        final_phase=phase,
        regrasps=regrasps,
        steps_info=steps_info,
        frames=frames,
    )
