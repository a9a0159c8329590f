"""The executed-violation audit (every guardrail, every substep, one path) and the safety filter's guarantee between
ticks and under a one-step action delay (issue 13)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import envs
from envs.panda_env import EE_HIGH, EE_LOW, PANDA
from planner.apps.episode import audit_step, run_episode
from planner.apps.faults import Faults
from planner.costs import GoalSchedule
from planner.guardrails import (
    Guardrail,
    GuardrailSet,
    MaxStepDisplacement,
    MinHeight,
    guardrail_from_function,
    widened_path_violation,
)
from planner.mpc import AgentConfig, MPCAgent
from planner.optimizers import CEM
from world_models.oracle import MocapControlSpec, OracleWorldModel


def make_oracle(env) -> OracleWorldModel:
    base = env.unwrapped
    spec = MocapControlSpec(base.n_substeps, base.action_scale, tuple(EE_LOW), tuple(EE_HIGH))
    return OracleWorldModel(base.model, spec, nthread=2)


def sim_obs(env, obs):
    return {**obs, "sim_state": env.unwrapped.get_state()}


def make_agent(wm, guardrails=(), samples=32, horizon=4, **cfg) -> MPCAgent:
    opt = CEM(horizon=horizon, action_dim=4, num_samples=samples, num_elites=6, iterations=2, init_std=0.5)
    config = AgentConfig(embodiment=PANDA, **cfg)
    return MPCAgent(wm, opt, {"ee_to_target": 1.0, "gripper": 5.0}, GuardrailSet(list(guardrails)), config)


class Floor(Guardrail):
    """MinHeight's formula as a custom guardrail (no built-in type, no margin)."""

    def __init__(self, z_min: float, **kwargs) -> None:
        super().__init__(**kwargs)
        self.z_min = z_min

    def violation(self, states, actions):
        return (self.z_min - states["ee_pos"][:, 1:, 2]).clamp_min(0.0)


def tick(z: float) -> dict[str, np.ndarray]:
    return {"ee_pos": np.array([0.5, 0.0, z]), "cube_pos": np.array([0.4, 0.1, 0.02]), "gripper": np.array(0.08)}


def dip(n: int = 20, low: float = 0.128) -> dict[str, np.ndarray]:
    """A substep path that starts and ends at z = 0.16 but dips to ``low`` in between."""
    z = 0.16 - (0.16 - low) * np.sin(np.linspace(0, np.pi, n + 1)[1:])
    ee = np.stack([np.full(n, 0.5), np.zeros(n), z], axis=1)
    return {"ee_pos": ee, "cube_pos": np.tile([0.4, 0.1, 0.02], (n, 1)), "gripper": np.full(n, 0.08)}


def test_a_custom_guardrail_is_audited_at_every_substep_like_the_built_in_one():
    guards = GuardrailSet([MinHeight(0.15, name="min_height"), Floor(0.15, name="floor")])
    found = audit_step(guards, tick(0.16), tick(0.16), np.zeros(4), dip())
    for name in ("min_height", "floor"):
        depth, substep = found[name]
        assert depth == pytest.approx(0.022, abs=1e-3) and 1 <= substep <= 20  # the dip, not the ticks
    assert audit_step(guards, tick(0.16), tick(0.16), np.zeros(4), None) == {"min_height": (0.0, 0), "floor": (0.0, 0)}


def test_non_finite_outputs_and_parameters_are_violations_never_passes():
    broken = MinHeight(0.05)
    broken.z_min = math.nan  # a parameter changed after the constructor's check
    nan_out = guardrail_from_function(lambda s, a: torch.full(a.shape[:2], math.nan, dtype=a.dtype), "nan_out")
    neg_inf = guardrail_from_function(lambda s, a: torch.full(a.shape[:2], -math.inf, dtype=a.dtype), "neg_inf")
    found = audit_step(GuardrailSet([broken, nan_out, neg_inf]), tick(0.2), tick(0.2), np.zeros(4), dip(low=0.19))
    assert all(math.isinf(depth) for depth, _ in found.values())
    with pytest.raises(ValueError, match="z_min must be a finite number"):
        MinHeight(math.nan)


def test_a_guardrail_returning_numpy_is_a_clear_type_error():
    class Numpy(Guardrail):
        def violation(self, states, actions):
            return np.zeros(actions.shape[:2])

    with pytest.raises(TypeError, match="'Numpy' returned ndarray"):
        audit_step(GuardrailSet([Numpy()]), tick(0.2), tick(0.2), np.zeros(4), dip())


def test_a_per_tick_guardrail_is_judged_on_the_tick_states():
    step = MaxStepDisplacement(0.05)
    before, after = tick(0.30), tick(0.20)  # 10 cm in one tick; each substep moves far less
    path = {**dip(), "ee_pos": np.linspace(before["ee_pos"], after["ee_pos"], 21)[1:]}
    depth, substep = audit_step(GuardrailSet([step]), before, after, np.zeros(4), path)["max_step_displacement"]
    assert depth == pytest.approx(0.05) and substep == 0


def test_the_widened_path_check_keeps_every_guardrail_a_margin_away():
    ee = torch.tensor([[[0.5, 0.0, 0.20], [0.5, 0.0, 0.156]]], dtype=torch.float64)  # ends 6 mm above the floor
    states, actions = {"ee_pos": ee}, torch.zeros(1, 1, 4, dtype=torch.float64)
    for guard in (MinHeight(0.15), Floor(0.15)):
        assert float(widened_path_violation([guard], states, actions, 0.005)[0]) == 0.0
        assert float(widened_path_violation([guard], states, actions, 0.01)[0]) == pytest.approx(0.004)
    # a per-step rate is not widened (it is not a region the hand could stray into)
    assert float(widened_path_violation([MaxStepDisplacement(0.045)], states, actions, 0.05)[0]) == 0.0


def test_under_delay_the_filter_checks_the_command_in_flight():
    env = envs.make("reach", pixels=False)
    obs, _ = env.reset(seed=0)
    z = float(env.unwrapped.state()["ee_pos"][2])
    floor = Floor(z - 0.06, name="floor")
    agent = make_agent(make_oracle(env), [floor], action_delay=1)
    agent.reset(GoalSchedule([{"ee_pos": torch.tensor([0.5, 0.0, z - 0.05], dtype=torch.float64)}]))
    in_flight = np.array([0.0, 0.0, -1.0, 1.0])  # 5 cm down is already on its way
    ok, _ = agent.safety.check(*_filter_inputs(agent, env, obs, [0.0, 0.0, -0.5, 1.0]), in_flight)
    assert not ok  # 5 + 2.5 cm down crosses the floor 6 cm below, though 2.5 cm alone would not
    agent.safety.config = type(agent.config)(**{**agent.config.__dict__, "action_delay": 0})
    ok, _ = agent.safety.check(*_filter_inputs(agent, env, obs, [0.0, 0.0, -0.5, 1.0]), in_flight)
    assert ok


def _filter_inputs(agent, env, obs, action):
    seen = sim_obs(env, obs)
    measured = agent.measured_state(seen)
    z0 = agent.world_model.encode(seen)
    return z0, {k: v.to(z0.device) for k, v in measured.items()}, torch.tensor(action, dtype=torch.float64), {}


@pytest.mark.parametrize("seed", [3, 5])
def test_a_custom_floor_holds_under_action_delay(seed):
    """The issue's case: a custom floor at 0.15 m under a one-step delay (12 violating steps before)."""
    env = envs.make("reach", pixels=False)
    floor = Floor(0.15, name="floor")
    guards = GuardrailSet([floor])
    agent = make_agent(make_oracle(env), [floor], samples=32, horizon=4, action_delay=1)
    faults = Faults(name="action_delay", action_delay=1)

    def prepare(e):
        agent.reset(GoalSchedule([{"ee_pos": torch.as_tensor(e.unwrapped.goal_state()["ee_pos"])}]))
        faults.reset(e)

    result = run_episode(
        env, agent, guards, seed, prepare, lambda o: sim_obs(env, o), action_filter=faults.action_filter
    )
    assert result.executed_violations == 0, result.crossings
