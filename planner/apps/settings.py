"""The run's config read once into small frozen settings, which the builders (planner.apps.factory) use.

The hydra ``cost`` group stays one group (its keys are a public contract: ``cost=state|latent|oracle|jepa``,
``cost.schedule.switch_distance=...``, ``cost.phase_action_bounds...``, ``+cost.use_latent_goal=false``); it is
parsed here, and only here, into four groups: the cost (weights per task and phase, latent goal), the sub-goal
schedule, the per-phase action bounds and the agent's loop settings. ``RunSettings.from_config`` builds all four.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from planner.costs import TERMS
from planner.mpc import AgentConfig


@dataclass(frozen=True)
class CostSettings:
    """weights: ``cost.weights`` with the task's ``cost.task_weights`` on top; phase_weights: per sub-goal phase,
    entries replacing those; use_latent_goal: a learned world model also pursues the encoded goal image."""

    weights: dict[str, Any]
    phase_weights: dict[str, dict[str, Any]] = field(default_factory=dict)
    use_latent_goal: bool = True


@dataclass(frozen=True)
class ScheduleSettings:
    """``cost.schedule``: advance to the next sub-goal when within ``switch_distance`` or after ``switch_steps``
    steps on one (None: never by count); ``regrasp_below`` overrides the robot's empty-grasp width (None: its own)."""

    switch_distance: float
    switch_steps: int | None = None
    regrasp_below: float | None = None


@dataclass(frozen=True)
class ActionBounds:
    """``cost.phase_action_bounds`` as full ``[A]`` lower/upper lists per phase, in the robot's action channels."""

    action_names: tuple[str, ...]
    per_phase: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)


@dataclass(frozen=True)
class AgentSettings:
    """The agent's loop: replanning period, the robot's command latency, the estimators and their margin."""

    replan_every: int = 1
    action_delay: int = 0
    proprio_filter: bool = False
    pixel_filter: bool = False
    estimate_sigmas: float = AgentConfig.estimate_sigmas


@dataclass(frozen=True)
class RunSettings:
    """Everything the builders read from the cost group and the agent's top-level keys, read once."""

    cost: CostSettings
    schedule: ScheduleSettings
    bounds: ActionBounds
    agent: AgentSettings

    @classmethod
    def from_config(cls, cfg: DictConfig) -> RunSettings:
        return cls(
            cost=cost_settings(cfg),
            schedule=schedule_settings(cfg),
            bounds=action_bounds(cfg),
            agent=agent_settings(cfg),
        )


def cost_settings(cfg: DictConfig) -> CostSettings:
    return CostSettings(
        weights=task_cost_weights(cfg),
        phase_weights=phase_weights(cfg),
        use_latent_goal=bool(cfg.cost.get("use_latent_goal", True)),
    )


def schedule_settings(cfg: DictConfig) -> ScheduleSettings:
    sched = cfg.cost.schedule
    regrasp = sched.get("regrasp_below")
    return ScheduleSettings(
        switch_distance=float(sched.switch_distance),
        switch_steps=int(sched.switch_steps) if sched.get("switch_steps") else None,
        regrasp_below=None if regrasp is None else float(regrasp),
    )


def action_bounds(cfg: DictConfig) -> ActionBounds:
    import envs

    return ActionBounds(tuple(envs.embodiment_of(str(cfg.task)).action_names), phase_bounds(cfg))


def agent_settings(cfg: DictConfig) -> AgentSettings:
    return AgentSettings(
        replan_every=int(cfg.replan_every),
        action_delay=int(cfg.faults.get("action_delay", 0)),
        proprio_filter=bool(cfg.get("proprio_filter", False)),
        pixel_filter=bool(cfg.get("pixel_filter", False)),
        estimate_sigmas=float(cfg.get("estimate_sigmas", AgentConfig.estimate_sigmas)),
    )


def task_cost_weights(cfg: DictConfig) -> dict[str, Any]:
    """``cost.weights`` with the task's entries of ``cost.task_weights`` (e.g. ``{push: {ee_to_target: 10}}``) on top."""
    import envs

    weights = OmegaConf.to_container(cfg.cost.weights, resolve=True)
    per_task = _cost_section(cfg, "task_weights")
    assert isinstance(weights, dict)
    for task in per_task:
        if task not in envs.ENV_IDS:
            raise ValueError(f"cost.task_weights names unknown task {task!r}; known tasks: {', '.join(envs.ENV_IDS)}")
        _check_terms(per_task[task], f"cost.task_weights.{task}")
    if str(cfg.get("subgoals")) != "hierarchical":  # hierarchical runs every task with the same settings
        weights.update(per_task.get(str(cfg.task), {}))
    return weights


def phase_weights(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """``cost.phase_weights`` (e.g. ``{close: {ee_to_target: 20}}``), checked against the tasks' phase names."""
    per_phase = _cost_section(cfg, "phase_weights")
    _check_phases(per_phase, "cost.phase_weights", example="{ee_to_target: 20}")
    for phase, weights in per_phase.items():
        _check_terms(weights, f"cost.phase_weights.{phase}")
    return per_phase


def phase_bounds(cfg: DictConfig) -> dict[str, tuple[list[float], list[float]]]:
    """``cost.phase_action_bounds`` (e.g. ``{lift: {gripper: [-1, -0.5]}}``) as full ``[A]`` lower/upper lists, in
    the action channels of the task's robot (``envs.embodiment_of``)."""
    import envs

    ACTION_NAMES = envs.embodiment_of(str(cfg.task)).action_names  # noqa: N806
    per_phase = _cost_section(cfg, "phase_action_bounds")
    _check_phases(per_phase, "cost.phase_action_bounds", example="{gripper: [-1, -0.5]}")
    out = {}
    for phase, channels in per_phase.items():
        lower, upper = [-1.0] * len(ACTION_NAMES), [1.0] * len(ACTION_NAMES)
        for name, pair in channels.items():
            if name not in ACTION_NAMES:
                raise ValueError(
                    f"cost.phase_action_bounds.{phase} names unknown action {name!r}; known: {', '.join(ACTION_NAMES)}"
                )
            if not (isinstance(pair, list) and len(pair) == 2):
                raise ValueError(f"cost.phase_action_bounds.{phase}.{name} must be [lower, upper], got {pair!r}")
            i = ACTION_NAMES.index(name)
            lower[i], upper[i] = float(pair[0]), float(pair[1])
        out[phase] = (lower, upper)
    return out


def _cost_section(cfg: DictConfig, key: str) -> dict[str, Any]:
    """``cfg.cost[key]`` as a plain dict (``{}`` when the cost config has no such section)."""
    node = cfg.cost.get(key)
    section = {} if node is None else OmegaConf.to_container(node, resolve=True)
    if not isinstance(section, dict):
        raise ValueError(f"cost.{key} must be a mapping, got {section!r}")
    return section


def _check_phases(per_phase: dict, where: str, example: str) -> None:
    import envs

    known = sorted(envs.phase_names())
    for phase, entry in per_phase.items():
        if phase not in known:
            raise ValueError(f"{where} names unknown phase {phase!r}; known phases: {', '.join(known)}")
        if not isinstance(entry, dict):
            raise ValueError(f"{where}.{phase} must be a mapping (e.g. {example}), got {entry!r}")


def _check_terms(weights: Any, where: str) -> None:
    """Per-task or per-phase weights must be a mapping of known cost-term names (a typo would be silently unused)."""
    if not isinstance(weights, dict):
        raise ValueError(f"{where} must be a mapping of cost terms to weights, got {weights!r}")
    for term in weights:
        if term not in TERMS:
            raise ValueError(f"{where} names unknown cost term {term!r}; known terms: {', '.join(sorted(TERMS))}")
