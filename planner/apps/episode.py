"""One MPC episode in a real env: the loop the demo and the benchmark share, with true-state guardrail checks."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from planner.guardrails import GuardrailSet
from planner.mpc import MPCAgent

TRUE_KEYS = ("ee_pos", "cube_pos", "gripper")


@dataclass
class EpisodeResult:
    """What one episode measured. ``steps_info`` is kept only when ``record`` is on (the demo)."""

    seed: int
    success: bool
    steps: int
    plan_ms: list[float]
    executed_violations: int  # steps whose true simulator state broke a hard guardrail (at any physics substep)
    predicted_violations: int  # plans the model itself judged infeasible (the agent then fell back)
    fallbacks: int
    failure: str | None
    final_distance: float
    final_state: dict[str, list[float]]
    peak_rss_mb: float = 0.0
    final_phase: str | None = None  # the sub-goal phase the agent was in at the end ("close", "carry", ...)
    regrasps: int = 0  # times the agent found its fingers shut on nothing and started the sub-goals again
    # every executed crossing: {"step", "guardrail", "depth_m" (None when non-finite), "substep" (1..n, 0: per tick)}
    crossings: list[dict[str, Any]] = field(default_factory=list)
    success_first_touch: bool = False  # within the success distance at some step (the anchors' success)
    pred_errors: list[float] = field(default_factory=list)  # the world model's one-step surprise, per step
    surprises: list[int] = field(default_factory=list)  # steps the surprise monitor flagged
    reperceived: list[int] = field(default_factory=list)  # steps the perceived sub-goals were rebuilt
    goal_ms: list[float] = field(default_factory=list)  # per step, the sub-goal source's time (perceive, plan high)
    fault_events: list[dict[str, Any]] = field(default_factory=list)  # injected events (Faults.events), e.g. pushes
    cube_events: list[int] = field(default_factory=list)  # steps the true cube moved by itself (cube_moved_by_itself)
    steps_info: list[dict[str, Any]] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)


def audit_step(
    guardrails: GuardrailSet,
    before: dict[str, np.ndarray],
    after: dict[str, np.ndarray],
    action: np.ndarray,
    substeps: dict[str, np.ndarray] | None = None,
) -> dict[str, tuple[float, int]]:
    """The executed-violation audit of one step: every hard guardrail, built-in or custom, judged on the simulator's
    true state after every physics substep (``substeps``: the env's ``info["substep_states"]``, ``{key: [n, ...]}``;
    without it, as on a step the simulator rolled back, the tick's end state). A guardrail judged per tick
    (``Guardrail.judged_per_tick``, a per-step rate) sees the tick's two states instead. Each sees the executed action.

    Returns ``{name: (violation, substep)}``: the worst violation (metres for the built-ins; +inf when the guardrail
    returned NaN or inf, so a broken guardrail or parameter never passes) and where it was, 1..n (0: per tick).
    """
    hard = [g for g in guardrails if g.hard]
    if not hard:
        return {}
    tick = _true_states(before, after)
    path = tick
    if substeps:
        path = {
            k: torch.as_tensor(
                np.concatenate(
                    [np.asarray(before[k], dtype=np.float64)[None], np.asarray(substeps[k], dtype=np.float64)]
                )
            )[None]
            for k in TRUE_KEYS
        }
    a = torch.as_tensor(np.asarray(action, dtype=np.float64).reshape(-1))
    found: dict[str, tuple[float, int]] = {}
    for states, judged_per_tick in ((tick, True), (path, False)):
        group = [g for g in hard if g.judged_per_tick == judged_per_tick]
        if not group:
            continue
        n = states["ee_pos"].shape[1] - 1
        _, _, per = GuardrailSet(group).evaluate(states, a[None, None].expand(1, n, -1))
        for name, v in per.items():
            worst = int(torch.argmax(v[0]))
            found[name] = (float(v[0, worst]), 0 if judged_per_tick or states is tick else worst + 1)
    return {g.name: found[g.name] for g in hard}


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
    guardrails: GuardrailSet, before: dict[str, np.ndarray], after: dict[str, np.ndarray], action: np.ndarray
) -> dict[str, float]:
    """Signed margin (m) of each guardrail on one executed step's true states: > 0 is room left (judged as at
    rest: a zero action of ``action``'s size)."""
    states = _true_states(before, after)
    a = torch.zeros(1, 1, np.asarray(action).size, dtype=torch.float64)
    return {g.name: float(g.signed_margin(states, a)[0, 0]) for g in guardrails}


CUBE_EVENT_M = 0.02  # one step's cube motion, apart from the hand's, that counts as an event (knocked, dropped)


def cube_moved_by_itself(before: dict[str, Any], after: dict[str, Any], threshold: float = CUBE_EVENT_M) -> bool:
    """Whether the true cube moved more than ``threshold`` in one step other than along with the hand (carried, or
    pushed in front of it): knocked by the fingers or a fault, dropped, slid away. The ground truth the surprise
    monitor's flags are scored against (simulator state; never shown to the agent)."""
    if "cube_pos" not in before or "ee_pos" not in before:
        return False
    cube = np.asarray(after["cube_pos"], dtype=float) - np.asarray(before["cube_pos"], dtype=float)
    hand = np.asarray(after["ee_pos"], dtype=float) - np.asarray(before["ee_pos"], dtype=float)
    return bool(np.linalg.norm(cube) > threshold and np.linalg.norm(cube - hand) > threshold)


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
    on_step: Callable[[int, dict[str, Any]], None] | None = None,
) -> EpisodeResult:
    """Reset with ``seed``, let ``prepare`` set the goal schedule and episode guardrails, then act until success,
    failure or time-out. ``augment_obs`` adds what a world model needs beyond pixels and proprio (the oracle's
    simulator state); ``obs_filter``/``step_hook`` inject faults; ``on_step(steps, step_info)`` runs after every
    executed step (progress display)."""

    import resource

    obs, info = env.reset(seed=seed)
    prepare(env)
    truth = audited(guardrails)
    plan_ms: list[float] = []
    goal_ms: list[float] = []
    executed = predicted = fallbacks = steps = regrasps = 0
    crossings: list[dict[str, Any]] = []
    pred_errors: list[float] = []
    surprises: list[int] = []
    reperceived: list[int] = []
    cube_events: list[int] = []
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
        if cube_moved_by_itself(before, info["state"]):
            cube_events.append(steps - 1)
        audit = audit_step(truth, before, info["state"], action, info.get("substep_states"))
        crossed = {name: found for name, found in audit.items() if not found[0] <= 0.0}  # NaN never passes
        executed += int(bool(crossed))
        for name, (depth, substep) in crossed.items():
            finite = bool(np.isfinite(depth))
            crossings.append(
                {"step": steps - 1, "guardrail": name, "depth_m": depth if finite else None, "substep": substep}
            )
        violation = {name: depth for name, (depth, _) in audit.items()}
        step_info["executed_violation"] = violation
        step_info["executed_crossed"] = {name: {"depth_m": d, "substep": s} for name, (d, s) in crossed.items()}
        predicted += int(step_info.get("no_feasible_plan", False))
        fallbacks += int(step_info.get("fallback", False))
        regrasps += int(step_info.get("regrasp", False))
        if "pred_error" in step_info:
            pred_errors.append(float(step_info["pred_error"]))
        if step_info.get("surprise"):
            surprises.append(steps - 1)
        if step_info.get("reperceived"):
            reperceived.append(steps - 1)
        phase = step_info.get("phase", phase)
        if "plan_ms" in step_info:
            plan_ms.append(step_info["plan_ms"])
        if "goal_ms" in step_info:
            goal_ms.append(step_info["goal_ms"])
        if record:
            step_info.update(distance=info["distance"], action=action.tolist())
            step_info["true_margin"] = true_margins(truth, before, info["state"], action)
            steps_info.append(step_info)
            if frame_fn is not None:
                frames.append(frame_fn())
        if info.get("failure"):
            failure = info["failure"]
        if on_step is not None:
            on_step(steps, step_info)
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
        crossings=crossings,
        success_first_touch=bool(info.get("is_success_first_touch", info["is_success"])),
        pred_errors=pred_errors,
        surprises=surprises,
        reperceived=reperceived,
        goal_ms=goal_ms,
        cube_events=cube_events,
        steps_info=steps_info,
        frames=frames,
    )
