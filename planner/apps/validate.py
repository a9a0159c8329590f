"""Config validation for the apps: every value checked before anything runs, one line naming the key and what it
accepts (counts, weights, fault and guardrail parameters, unknown keys in any group), and guardrail ``_target_``s
resolved and type-checked before anything is instantiated."""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from planner.apps.goals import check_perception
from planner.apps.hierarchy import check_hierarchy
from planner.apps.plugins import LookupFailed, load_plugins, locate
from world_models.base import WORLD_MODELS

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
# Keys hydra adds to a composed config.
HYDRA_KEYS = {"hydra"}
GROUPS = ("env", "world_model", "planner", "guardrails", "cost", "faults")


class ConfigError(ValueError):
    """A config value out of its accepted range; the message names the key."""


# ------------------------------------------------------------------------------------------------ value checks
def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def integer(key: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    """``value`` as an int in ``[minimum, maximum]``; 2.7, "abc", True and NaN are refused, not rounded."""
    accepted = f"an integer >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    if not ok or (maximum is not None and value > maximum):
        raise ConfigError(f"{key} must be {accepted}, got {value!r}")
    return int(value)


def number(key: str, value: Any, low: float = -math.inf, high: float = math.inf, open_low: bool = False) -> float:
    """``value`` as a finite float in ``[low, high]`` (``(low, high]`` with ``open_low``)."""
    bound = (
        f" > {low:g}"
        if open_low
        else (f" >= {low:g}" if low > -math.inf else "") + (f" and <= {high:g}" if high < math.inf else "")
    )
    ok = _is_number(value) and math.isfinite(float(value))
    if ok:
        ok = (float(value) > low if open_low else float(value) >= low) and float(value) <= high
    if not ok:
        raise ConfigError(f"{key} must be a finite number{bound}, got {value!r}")
    return float(value)


def boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    return value


def known_keys(key: str, node: dict[str, Any], known: set[str] | list[str]) -> None:
    """Refuse a key not in ``known`` (a typo would otherwise be silently unused)."""
    for name in node:
        if name not in known:
            raise ConfigError(f"{key}.{name} is not a known key; known: {', '.join(sorted(known))}")


def _finite_tree(key: str, value: Any) -> None:
    """Every number inside ``value`` (lists, mappings) must be finite: NaN reads as "fine" in a comparison."""
    if isinstance(value, dict):
        for k, v in value.items():
            _finite_tree(f"{key}.{k}", v)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _finite_tree(f"{key}[{i}]", v)
    elif _is_number(value) and not math.isfinite(float(value)):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")


def _file_keys(group: str, choice: str) -> set[str]:
    """Keys of ``configs/<group>/<choice>.yaml`` (its own ``defaults`` included)."""
    path = CONFIG_DIR / group / f"{choice}.yaml"
    if not path.exists():
        return set()
    node = OmegaConf.load(path)
    keys = {str(k) for k in node if k != "defaults"}
    for entry in node.get("defaults", []) or []:
        if isinstance(entry, str) and entry != "_self_":
            keys |= _file_keys(group, entry)
    return keys


def _parameters(fn: Callable[..., Any]) -> tuple[set[str], bool]:
    """Keyword names ``fn`` accepts, and whether it takes ``**kwargs``."""
    params = inspect.signature(fn).parameters.values()
    return {p.name for p in params if p.kind != p.VAR_KEYWORD}, any(p.kind == p.VAR_KEYWORD for p in params)


# ------------------------------------------------------------------------------------------------ groups
def check_planner(node: dict[str, Any], action_dim: int = 1) -> None:
    """``action_dim``: the task's robot's (``envs.embodiment_of``), for the dry build of the optimizer."""
    from planner.optimizers import OPTIMIZERS, make_optimizer

    name = node.get("name")
    if name not in OPTIMIZERS:
        raise ConfigError(f"planner.name must be one of {', '.join(sorted(OPTIMIZERS))}, got {name!r}")
    accepted, _ = _parameters(OPTIMIZERS[name].__init__)
    settings = getattr(OPTIMIZERS[name], "Settings", None)  # its settings dataclass, given as keywords
    if settings is not None and dataclasses.is_dataclass(settings):
        accepted |= {f.name for f in dataclasses.fields(settings)}
    accepted -= {"self", "action_dim", "device", "dtype", "settings"}
    known_keys("planner", node, accepted | {"name"})
    kwargs = {k: v for k, v in node.items() if k != "name"}
    for k, v in kwargs.items():
        if k in ("horizon", "num_samples", "num_elites", "iterations", "steps", "num_starts", "min_samples"):
            integer(f"planner.{k}", v, 1)
        else:
            _finite_tree(f"planner.{k}", v)
    try:  # the optimizer's own range checks (num_elites <= num_samples, ...), on a CPU dry build
        make_optimizer(name, action_dim=action_dim, device="cpu", **kwargs)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"planner ({name}): {err}") from None


def _check_weight(key: str, value: Any) -> None:
    """A cost weight: a number >= 0, or ``{weight: >= 0, ...term parameters}``."""
    if isinstance(value, dict):
        if "weight" not in value:
            raise ConfigError(f"{key} must be a number >= 0 or a mapping with a 'weight', got {value!r}")
        number(f"{key}.weight", value["weight"], 0.0)
        _finite_tree(key, value)
    else:
        number(key, value, 0.0)


def check_cost(node: dict[str, Any]) -> None:
    from planner.costs import TERMS

    known = set().union(*(_file_keys("cost", p.stem) for p in (CONFIG_DIR / "cost").glob("*.yaml")))
    known_keys("cost", node, known)
    weights = node.get("weights")
    if not isinstance(weights, dict) or not weights:
        raise ConfigError(f"cost.weights must be a non-empty mapping of cost terms to weights, got {weights!r}")
    sections = {"cost.weights": weights}
    for section in ("task_weights", "phase_weights"):
        for name, entry in (node.get(section) or {}).items():
            if not isinstance(entry, dict):
                raise ConfigError(f"cost.{section}.{name} must be a mapping of cost terms to weights, got {entry!r}")
            sections[f"cost.{section}.{name}"] = entry
    for where, entry in sections.items():
        for term, value in entry.items():
            if term not in TERMS:
                raise ConfigError(f"{where}.{term} is not a known cost term; known terms: {', '.join(sorted(TERMS))}")
            _check_weight(f"{where}.{term}", value)
    schedule = node.get("schedule") or {}
    known_keys("cost.schedule", schedule, {"switch_distance", "switch_steps", "regrasp_below"})
    if "switch_distance" in schedule:
        number("cost.schedule.switch_distance", schedule["switch_distance"], 0.0, open_low=True)
    if schedule.get("switch_steps") is not None:
        integer("cost.schedule.switch_steps", schedule["switch_steps"], 1)
    if schedule.get("regrasp_below") is not None:
        number("cost.schedule.regrasp_below", schedule["regrasp_below"], 0.0)
    if "use_latent_goal" in node:
        boolean("cost.use_latent_goal", node["use_latent_goal"])
    _finite_tree("cost.phase_action_bounds", node.get("phase_action_bounds") or {})


def check_faults(node: dict[str, Any]) -> None:
    from planner.apps.faults import Faults

    known_keys("faults", node, {f.name for f in dataclasses.fields(Faults)})
    if "obs_noise" in node:
        number("faults.obs_noise", node["obs_noise"], 0.0)
    for key in ("frozen_frame_prob", "dropped_frame_prob"):
        if key in node:
            number(f"faults.{key}", node[key], 0.0, 1.0)
    if "push_step" in node:
        integer("faults.push_step", node["push_step"], -1)
    if "push_velocity" in node:
        velocity = node["push_velocity"]
        if not (isinstance(velocity, list) and len(velocity) == 2):
            raise ConfigError(f"faults.push_velocity must be [vx, vy] in m/s, got {velocity!r}")
        for i, v in enumerate(velocity):
            number(f"faults.push_velocity[{i}]", v)
    if "action_delay" in node:
        integer("faults.action_delay", node["action_delay"], 0, 1)
    if "seed" in node:
        integer("faults.seed", node["seed"], 0)


def check_env(node: dict[str, Any]) -> None:
    from envs.panda_env import PandaEnv

    accepted, _ = _parameters(PandaEnv.__init__)
    in_files = set().union(*(_file_keys("env", p.stem) for p in (CONFIG_DIR / "env").glob("*.yaml")))
    known_keys("env", node, (accepted | in_files) - {"self", "task", "render_mode", "pixels"})
    if "image_size" in node:
        integer("env.image_size", node["image_size"], 8, 1024)
    if "control_hz" in node:
        number("env.control_hz", node["control_hz"], 0.0, 200.0, open_low=True)
    if "action_scale" in node:
        number("env.action_scale", node["action_scale"], 0.0, 0.2, open_low=True)
    _finite_tree("env", node)


def check_world_model(node: dict[str, Any]) -> None:
    name = node.get("name")
    if name not in WORLD_MODELS:
        raise ConfigError(f"world_model.name must be {' or '.join(WORLD_MODELS)}, got {name!r}")
    known_keys("world_model", node, _file_keys("world_model", name) | {"name"})
    if node.get("nthread") is not None:  # a key of the world models that simulate (their files declare it)
        integer("world_model.nthread", node["nthread"], 1)
    for key in ("autocast_bf16", "bf16_weights"):
        if key in node:
            boolean(f"world_model.{key}", node[key])


def guardrail_class(key: str, node: dict[str, Any]) -> type:
    """The class a guardrail's ``_target_`` names, resolved (its module imported) but not called: it must be a
    :class:`~planner.guardrails.Guardrail` subclass, so no other callable ever runs from a config."""
    from planner.guardrails import Guardrail

    target = node.get("_target_")
    if not isinstance(target, str) or not target:
        raise ConfigError(f"{key}._target_ must name a Guardrail class (module.Class), got {target!r}")
    try:
        cls = locate(target)
    except LookupFailed as err:
        raise ConfigError(f"{key}._target_ {target!r}: {err}") from None
    if not (isinstance(cls, type) and issubclass(cls, Guardrail)):
        raise ConfigError(f"{key}._target_ {target!r} is not a Guardrail subclass (planner.guardrails.Guardrail)")
    return cls


def check_guardrails(node: dict[str, Any]) -> None:
    """Each entry: a Guardrail subclass, known constructor keys, finite numbers, and its constructor's own checks
    (a dry build: guardrails are small objects with no side effects once their class is known to be one)."""
    for name, entry in node.items():
        key = f"guardrails.{name}"
        if not isinstance(entry, dict) or "_target_" not in entry:
            raise ConfigError(f"{key} must be a mapping with a _target_ (a Guardrail class), got {entry!r}")
        cls = guardrail_class(key, entry)
        params = {k: v for k, v in entry.items() if k != "_target_"}
        accepted, any_kwargs = _parameters(cls.__init__)
        if not any_kwargs:
            known_keys(key, params, accepted - {"self"})
        _finite_tree(key, params)
        if "weight" in params:
            number(f"{key}.weight", params["weight"], 0.0)
        if "hard" in params:
            boolean(f"{key}.hard", params["hard"])
        try:
            cls(**params)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"{key}: {err}") from None


def _top_level_keys(app: str) -> set[str]:
    path = CONFIG_DIR / f"{app}.yaml"
    node = OmegaConf.load(path) if path.exists() else OmegaConf.create()
    return {str(k) for k in node if k != "defaults"} | set(GROUPS) | HYDRA_KEYS


def check(cfg: DictConfig, app: str) -> None:
    """Raise :class:`ConfigError` for the first value out of range (``app``: benchmark or demo)."""
    plain = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(plain, dict)
    for name in plain:
        if name not in _top_level_keys(app):
            raise ConfigError(f"{name} is not a known key; known: {', '.join(sorted(_top_level_keys(app)))}")
    if "episodes" in cfg:
        integer("episodes", cfg.episodes, 1)
    integer("seed", cfg.seed, 0)
    integer("replan_every", cfg.replan_every, 1)
    if "batch_episodes" in cfg:
        integer("batch_episodes", cfg.batch_episodes, 1)
    for key in ("proprio_filter", "pixel_filter", "append"):
        if key in cfg:
            boolean(key, cfg[key])
    if "estimate_sigmas" in cfg:
        number("estimate_sigmas", cfg.estimate_sigmas, 0.0)
    if not isinstance(cfg.get("out"), str) or not cfg.out:
        raise ConfigError(f"out must be a directory path, got {cfg.get('out')!r}")
    if app == "demo":
        integer("video_size", cfg.get("video_size", 256), 16, 4096)
        integer("fps", cfg.get("fps", 10), 1, 240)

    def section(name: str) -> dict[str, Any]:
        value = OmegaConf.to_container(cfg[name], resolve=True) if cfg.get(name) is not None else {}
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be a mapping, got {value!r}")
        return value

    try:  # the user's modules (plugins=[...]) first: their guardrails are checked below like the built-ins
        load_plugins(OmegaConf.to_container(cfg.plugins, resolve=True) if cfg.get("plugins") is not None else None)
    except LookupFailed as err:
        raise ConfigError(str(err)) from None
    check_env(section("env"))
    check_world_model(section("world_model"))
    check_planner(section("planner"), _action_dim(str(cfg.get("task", ""))))
    check_cost(section("cost"))
    check_faults(section("faults"))
    check_guardrails(section("guardrails"))
    try:  # where sub-goals come from, and how the robot perceives (planner/apps/goals.py)
        check_perception(str(cfg.get("subgoals", "privileged")), str(cfg.world_model.name), section("perception"))
        if str(cfg.get("subgoals")) == "hierarchical":
            check_hierarchy(section("hierarchy"))
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _action_dim(task: str) -> int:
    """The action size of the robot ``task`` runs on (1 for an unknown task: its name is reported elsewhere)."""
    import envs

    try:
        return envs.embodiment_of(task).action_dim
    except ValueError:
        return 1


def validate(cfg: DictConfig, app: str) -> None:
    """:func:`check`, ending the run in one line (``jepa-mpc <app>: <key> must be ..., got ...``)."""
    try:
        check(cfg, app)
    except ConfigError as err:
        raise SystemExit(f"jepa-mpc {app}: {err}") from None
