"""Builds the parts of a run from hydra configs: world model, optimizer, guardrails, agent, goal schedule."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from planner.apps.contract import RobotView
from planner.apps.episode import EpisodeResult, run_episode
from planner.apps.faults import Faults, make_faults
from planner.apps.goals import (
    PerceivedGoals,
    check_mode,
    detector_perception,
    goal_only_schedule,
    photo_goal,
    photo_readout,
    probe_perception,
)
from planner.apps.settings import (  # noqa: F401  (phase_bounds, phase_weights, task_cost_weights: re-exported)
    RunSettings,
    phase_bounds,
    phase_weights,
    task_cost_weights,
)
from planner.apps.validate import ConfigError, guardrail_class
from planner.costs import GoalSchedule
from planner.guardrails import Guardrail, GuardrailSet
from planner.mpc import AgentConfig, MPCAgent
from planner.optimizers import make_optimizer
from world_models.base import world_model_class
from world_models.oracle import make_oracle


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available else cpu; anything else as given (with a clear error if unavailable)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda was asked for but torch sees no CUDA device; use device=cpu or device=auto")
    return device


def _oracle(node: DictConfig, env: gym.Env, device: torch.device) -> Any:
    """The simulator itself; the env says how its controller drives it (envs: ``oracle_control``)."""
    base = env.unwrapped
    return make_oracle(base.model, base.oracle_control(), nthread=node.get("nthread"))


def _jepa(node: DictConfig, env: gym.Env, device: torch.device) -> Any:
    """A JEPA checkpoint (``node.checkpoint``; null: the shipped one) on ``device``."""
    from world_models.jepa.checkpoint import load_world_model

    return load_world_model(
        node.get("checkpoint"),
        device=str(device),
        autocast_bf16=bool(node.get("autocast_bf16", False)),
        bf16_weights=bool(node.get("bf16_weights", False)),
    )


WORLD_MODEL_BUILDERS: dict[str, Callable[[DictConfig, gym.Env, torch.device], Any]] = {"oracle": _oracle, "jepa": _jepa}


def make_world_model(cfg: DictConfig, env: gym.Env, device: torch.device) -> Any:
    """The world model named by ``cfg.world_model.name`` (one of ``WORLD_MODEL_BUILDERS``)."""
    name = str(cfg.world_model.name)
    if name not in WORLD_MODEL_BUILDERS:
        raise ValueError(f"unknown world_model {name!r}; known: {', '.join(WORLD_MODEL_BUILDERS)}")
    return WORLD_MODEL_BUILDERS[name](cfg.world_model, env, device)


def make_guardrails(cfg: DictConfig) -> GuardrailSet:
    """Instantiate every entry of ``cfg.guardrails`` that has a ``_target_`` (``guardrails=none`` gives none)."""
    items: list[Guardrail] = []
    for name, node in (cfg.get("guardrails") or {}).items():
        if not isinstance(node, DictConfig) or "_target_" not in node:
            continue
        try:  # resolved and type-checked before anything is called: only a Guardrail class is ever instantiated
            guardrail_class(f"guardrails.{name}", OmegaConf.to_container(node, resolve=True))
        except ConfigError as err:
            raise TypeError(str(err)) from None
        guard = instantiate(node)
        if not isinstance(guard, Guardrail):
            raise TypeError(f"guardrail {name!r}: its _target_ must build a Guardrail, got {type(guard).__name__}")
        if guard.name in (type(guard).__name__, getattr(type(guard), "registry_name", "")):
            guard.name = name
        items.append(guard)
    return GuardrailSet(items)


def make_agent(
    cfg: DictConfig,
    world_model: Any,
    guardrails: GuardrailSet,
    device: torch.device,
    env: gym.Env,
    settings: RunSettings | None = None,
) -> MPCAgent:
    """The MPC agent: ``cfg.planner``'s optimizer in the env robot's action space, with ``settings`` (read from
    ``cfg`` when not given) for its costs, per-phase bounds and loop."""
    s = RunSettings.from_config(cfg) if settings is None else settings
    kwargs = OmegaConf.to_container(cfg.planner, resolve=True)
    assert isinstance(kwargs, dict)
    name = kwargs.pop("name")
    robot = env.unwrapped.embodiment  # the env's robot (envs.embodiment), at the env's controller settings
    optimizer = make_optimizer(name, action_dim=robot.action_dim, device=device, **kwargs)
    empty_below = s.schedule.regrasp_below  # an override; by default the robot's own
    agent_cfg = AgentConfig(
        replan_every=s.agent.replan_every,
        embodiment=robot,
        regrasp_below=(robot.empty_below if empty_below is None else empty_below)
        if env.unwrapped.task.holds_object
        else None,
        # the robot's command latency is a known property of the robot: the safety filter checks the command in
        # flight and starts the chosen one's path where that one ends (planner.mpc.AgentConfig)
        action_delay=s.agent.action_delay,
        proprio_filter=s.agent.proprio_filter,
        pixel_filter=s.agent.pixel_filter,
        estimate_sigmas=s.agent.estimate_sigmas,
    )
    return MPCAgent(
        world_model,
        optimizer,
        s.cost.weights,
        guardrails,
        agent_cfg,
        phase_weights=s.cost.phase_weights,
        phase_bounds=s.bounds.per_phase,
    )


def goal_schedule(cfg: DictConfig, env: gym.Env, world_model: Any, settings: RunSettings | None = None) -> GoalSchedule:
    """The episode's sub-goals as the planner sees them: states for the oracle, encoded images for the JEPA."""
    s = RunSettings.from_config(cfg) if settings is None else settings
    base = env.unwrapped
    subgoals = base.subgoals()
    goals: list[dict[str, torch.Tensor]] = []
    keys = base.task.cost_keys
    for sub in subgoals:
        goal = {k: torch.as_tensor(np.asarray(v, dtype=np.float64)) for k, v in sub.items() if k in keys}
        # A world model that reads the simulator's state has no image to encode a goal from; a learned one does.
        if not world_model.reads_sim_state and s.cost.use_latent_goal:
            with torch.no_grad():
                goal["latent"] = world_model.encode(base.goal_observation(sub))[0]
        goals.append(goal)
    every = s.schedule.switch_steps
    return GoalSchedule(
        goals,
        switch_distance=s.schedule.switch_distance,
        switch_steps=None if every is None else [every] * (len(goals) - 1),
        keys=[k for k in ("ee_pos", "gripper") if k in goals[0]],
        phases=[str(sub.get("phase", "goal")) for sub in subgoals],
    )


def subgoal_mode(cfg: DictConfig) -> str:
    """The ``subgoals`` choice, checked (the oracle is always privileged)."""
    return check_mode(str(cfg.get("subgoals", "privileged")), str(cfg.world_model.name))


def perceived_goals(
    cfg: DictConfig, view: RobotView, world_model: Any, settings: RunSettings | None = None
) -> PerceivedGoals:
    """``subgoals=perceived``: the task's phase program (task knowledge) filled from perception."""
    import envs
    from envs.tasks import TASKS, TaskSample

    task = TASKS[view.task_name]()

    def program(ee: np.ndarray, cube: np.ndarray, target: np.ndarray) -> list[dict[str, Any]]:
        return task.subgoals(TaskSample(ee_start=ee, cube_pos=cube, target_pos=target))

    s = RunSettings.from_config(cfg) if settings is None else settings
    perception = cfg.get("perception") or {}
    photo = view.goal_photo()
    goal = photo_goal(photo, world_model)
    source = str(perception.get("source", "detector"))
    correction: dict[str, Any] = {}
    if source == "detector":
        detector = cube_detector(perception.get("detector"))
        locate, target, seen = detector_perception(detector, photo, task.target_from_goal_photo)
        if perception.get("hand_correction", False) and task.hand_as_in_goal_photo:
            correction = {
                "read_hand": lambda obs: detector.locate(obs["pixels"], "ee_pos")[0],
                "photo_seen": seen,
                "target_from_photo": task.target_from_goal_photo,
            }
    elif source == "probe":
        locate, target = probe_perception(world_model, goal["latent"])
    else:
        raise ValueError(f"perception.source={source!r} is unknown; choose detector or probe")
    return PerceivedGoals(
        world_model,
        program,
        goal,
        target,
        locate,
        switch_distance=s.schedule.switch_distance,
        switch_every=s.schedule.switch_steps,
        hold_phases=task.moves_object_in,
        # a pushed cube seen leaving the line is re-perceived and the push steered along the new line (push only)
        watch_phases=task.watches_object_in if perception.get("watch_moved", False) else (),
        jump_distance=float(perception.get("jump_distance", 0.04)),
        knock_distance=float(perception.get("knock_distance", 0.02)),
        use_photo_latent=s.cost.use_latent_goal,
        surprise_threshold=float(perception.get("surprise_threshold", float("inf"))),
        reperceive_distance=float(perception.get("reperceive_distance", 0.03)),
        locate_hand=lambda proprio: envs.embodiment_of(view.task_name).read(proprio, "ee_pos"),
        **correction,
    )


def hierarchical_goals(cfg: DictConfig, view: RobotView, world_model: Any, guardrails: GuardrailSet) -> Any:
    """``subgoals=hierarchical``: the goal photo and the macro model; nothing about the task but its photo. The
    episode's (placed) region guardrails also bound the imagined sub-goal paths."""
    from planner.apps.hierarchy import HierarchicalGoals

    h = cfg.get("hierarchy") or {}
    macro = macro_model(world_model, h.get("macro"), cfg.world_model.get("checkpoint"))
    optimizer = make_optimizer(
        str(h.get("planner", "cem")),
        horizon=int(h.get("horizon", 3)),
        action_dim=macro.action_dim,
        num_samples=int(h.get("num_samples", 256)),
        num_elites=int(h.get("num_elites", 16)),
        iterations=int(h.get("iterations", 3)),
        device=world_model.device,
    )
    photo = view.goal_photo()
    goal = photo_goal(photo, world_model)
    regions = GuardrailSet([g for g in guardrails if g.hard and not g.judged_per_tick])
    return HierarchicalGoals(
        macro,
        goal,
        optimizer,
        replan_every=macro.k,
        probe_targets=bool(h.get("probe_targets", True)),
        guardrails=regions,
        readout=goal_photo_readout(cfg, photo),
    )


def goal_photo_readout(cfg: DictConfig, photo: dict[str, Any]) -> dict[str, Any]:
    """``perception.photo_readout``: the hand and/or cube the detector reads off the goal photo (``subgoals=none``
    and ``hierarchical``); ``[]`` gives none: the photo's latent alone."""
    keys = list((cfg.get("perception") or {}).get("photo_readout") or [])
    if not keys:
        return {}
    return photo_readout(cube_detector((cfg.get("perception") or {}).get("detector")), photo, keys)


@functools.cache
def macro_model(world_model: Any, path: str | None, base_path: str | None) -> Any:
    """The macro model for ``world_model`` (loaded once per process and JEPA)."""
    from world_models.jepa.macro import load_macro

    return load_macro(world_model, path, base_path)


@functools.cache
def cube_detector(path: str | None = None) -> Any:
    """The cube detector perceived sub-goals read (loaded once per process)."""
    from world_models.detector import load_detector

    return load_detector(path)


def place_episode_guardrails(guardrails: GuardrailSet, env: gym.Env) -> None:
    """Let episode-aware guardrails (those with ``place``) position themselves from the start and the goal."""
    base = env.unwrapped
    start = base.state()["ee_pos"]
    goal = base.goal_state()["ee_pos"]
    for guard in guardrails:
        if hasattr(guard, "place"):
            guard.place(start, goal)


def check_task(cfg: DictConfig, app: str) -> None:
    """Fail in one line, before anything is written, when the task name is unknown."""
    import envs

    try:
        envs.env_id(str(cfg.task))
    except ValueError as err:
        raise SystemExit(f"jepa-mpc {app}: {err}") from None


@dataclass
class Run:
    """Everything one app run needs, built once from the config: env, world model, guardrails, agent, faults, and
    the config's cost, schedule, bounds and agent groups read once (``settings``)."""

    cfg: DictConfig
    env: gym.Env
    world_model: Any
    guardrails: GuardrailSet
    agent: MPCAgent
    faults: Faults
    device: torch.device
    settings: RunSettings

    @property
    def subgoals(self) -> str:
        return subgoal_mode(self.cfg)

    def prepare(self, env: gym.Env) -> None:
        """Episode start: place episode guardrails (the user's geometry), build the sub-goals, reset the faults.

        Only ``subgoals=privileged`` (and the oracle) read the simulator here; the other modes see the env through
        ``RobotView``: the task name and one goal photo.
        """
        place_episode_guardrails(self.guardrails, env)
        mode = self.subgoals
        self.agent.goal_source = None
        if mode == "privileged":
            self.agent.reset(goal_schedule(self.cfg, env, self.world_model, self.settings))
        elif mode == "none":
            photo = RobotView(env).goal_photo()
            self.agent.reset(goal_only_schedule(photo, self.world_model, goal_photo_readout(self.cfg, photo)))
        else:  # sub-goals the agent builds itself each step from what it sees
            view = RobotView(env)
            if mode == "hierarchical":
                source = hierarchical_goals(self.cfg, view, self.world_model, self.guardrails)
            else:
                source = perceived_goals(self.cfg, view, self.world_model, self.settings)
            self.agent.reset(GoalSchedule([source.goal], phases=["goal"]))  # replaced at the first step
            self.agent.goal_source = source
        self.faults.reset(env)

    @property
    def max_steps(self) -> int | None:
        """The env's time limit in steps (None when it has none)."""
        spec = getattr(self.env, "spec", None)
        return getattr(spec, "max_episode_steps", None)

    def augment(self, obs: dict[str, Any]) -> dict[str, Any]:
        """What the world model reads: the oracle gets the simulator state; a learned model only the robot's own
        measurements (pixels, proprio)."""
        if self.world_model.reads_sim_state:
            return {**obs, "sim_state": self.env.unwrapped.get_state()}
        return RobotView.observation(obs)

    def episode(
        self,
        seed: int,
        record: bool = False,
        frame_fn: Callable[[], np.ndarray] | None = None,
        prepare: Callable[[gym.Env], None] | None = None,
        on_step: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> EpisodeResult:
        result = run_episode(
            self.env,
            self.agent,
            self.guardrails,
            seed,
            prepare or self.prepare,
            self.augment,
            record=record,
            frame_fn=frame_fn,
            step_hook=self.faults.step_hook,
            obs_filter=self.faults.obs_filter,
            action_filter=self.faults.action_filter,
            on_step=on_step,
        )
        result.fault_events = list(self.faults.events)
        return result


def build_run(cfg: DictConfig, world_model: Any = None, **env_kwargs: Any) -> Run:
    """Env from ``cfg.task`` and ``cfg.env``, then the world model (``world_model`` when given: lanes of
    ``batch_episodes`` share one), guardrails, agent and faults."""
    import envs

    device = resolve_device(str(cfg.device))
    settings = RunSettings.from_config(cfg)
    kwargs = dict(OmegaConf.to_container(cfg.get("env") or {}, resolve=True))
    kwargs.update(env_kwargs)
    reads_pixels = world_model_class(str(cfg.world_model.name)).reads_pixels
    env = envs.make(str(cfg.task), pixels=reads_pixels, **kwargs)
    if world_model is None:
        world_model = make_world_model(cfg, env, device)
    cameras = tuple(getattr(world_model, "cameras", ()))  # the views a JEPA checkpoint was trained on
    if cameras and cameras != tuple(env.unwrapped.cameras):
        if kwargs.get("cameras"):
            raise ValueError(f"env.cameras={list(kwargs['cameras'])} but the checkpoint sees cameras {list(cameras)}")
        env.close()  # env.cameras unset: render what the checkpoint sees (pixels, pixels_<camera>, ...)
        env = envs.make(str(cfg.task), pixels=True, **{**kwargs, "cameras": list(cameras)})
    guardrails = make_guardrails(cfg)
    agent = make_agent(cfg, world_model, guardrails, device, env, settings)
    return Run(cfg, env, world_model, guardrails, agent, make_faults(cfg.faults), device, settings)
