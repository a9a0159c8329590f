"""The oracle world model and the MPC agent on the real Panda tasks, at tiny budgets."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import envs
from envs.panda_env import EE_HIGH, EE_LOW, PANDA
from planner.costs import GoalSchedule
from planner.guardrails import GuardrailSet, KeepOutBox, MinHeight, guardrail_from_function
from planner.mpc import AgentConfig, MPCAgent
from planner.optimizers import CEM, GradientDescent, NotDifferentiableError
from world_models.base import WorldModel
from world_models.oracle import MocapControlSpec, OracleWorldModel


def make_oracle(env) -> OracleWorldModel:
    base = env.unwrapped
    return OracleWorldModel(
        base.model, MocapControlSpec(base.n_substeps, base.action_scale, tuple(EE_LOW), tuple(EE_HIGH)), nthread=2
    )


def sim_obs(env, obs):
    return {**obs, "sim_state": env.unwrapped.get_state()}


def make_agent(wm, guardrails=(), samples=32, horizon=4, **cfg) -> MPCAgent:
    opt = CEM(horizon=horizon, action_dim=4, num_samples=samples, num_elites=6, iterations=2, init_std=0.5)
    config = AgentConfig(embodiment=PANDA, **cfg)
    return MPCAgent(
        wm, opt, {"ee_to_target": 1.0, "cube_to_target": 3.0, "gripper": 5.0}, GuardrailSet(list(guardrails)), config
    )


def test_oracle_is_a_world_model_and_predicts_the_env_exactly():
    env = envs.make("pick_place", pixels=False)
    obs, _ = env.reset(seed=3)
    wm = make_oracle(env)
    assert isinstance(wm, WorldModel)
    z0 = wm.encode(sim_obs(env, obs))
    actions = torch.as_tensor(np.random.default_rng(0).uniform(-1, 1, (5, 4, 4)))
    z = wm.rollout(z0, actions)
    assert z.shape == (5, 4, wm.latent_dim)
    saved = env.unwrapped.get_state()
    for i in (0, 4):
        env.unwrapped.set_state(saved)
        for k in range(4):
            _, _, _, _, info = env.step(actions[i, k].numpy())
        decoded = wm.decode(z[i, -1])
        np.testing.assert_allclose(decoded["ee_pos"].numpy(), info["state"]["ee_pos"], atol=1e-9)
        np.testing.assert_allclose(decoded["cube_pos"].numpy(), info["state"]["cube_pos"], atol=1e-9)
        np.testing.assert_allclose(float(decoded["gripper"]), float(info["state"]["gripper"]), atol=1e-9)


def test_oracle_rejects_missing_or_nan_state():
    env = envs.make("reach", pixels=False)
    obs, _ = env.reset(seed=0)
    wm = make_oracle(env)
    with pytest.raises(KeyError, match="sim_state"):
        wm.encode(obs)
    with pytest.raises(ValueError, match="NaN"):
        wm.encode({**obs, "sim_state": np.full_like(env.unwrapped.get_state(), np.nan)})


def test_gradient_planner_refuses_the_oracle_clearly():
    env = envs.make("reach", pixels=False)
    obs, _ = env.reset(seed=0)
    wm = make_oracle(env)
    agent = MPCAgent(
        wm,
        GradientDescent(horizon=3, action_dim=4, steps=2),
        {"ee_to_target": 1.0},
        GuardrailSet(),
        AgentConfig(embodiment=PANDA),
    )
    agent.reset(GoalSchedule([{"ee_pos": torch.tensor([0.5, 0.1, 0.2], dtype=torch.float64)}]))
    with pytest.raises(NotDifferentiableError, match="'cem' or 'mppi'"):
        agent.act(sim_obs(env, obs))


def test_agent_reaches_a_target_and_reports_step_info():
    env = envs.make("reach", pixels=False)
    obs, _ = env.reset(seed=1)
    wm = make_oracle(env)
    agent = make_agent(wm, [MinHeight(0.045)])
    target = torch.as_tensor(env.unwrapped.state()["target_pos"])
    agent.reset(GoalSchedule([{"ee_pos": target}]))
    for _ in range(25):
        action, info = agent.act(sim_obs(env, obs))
        assert np.all(np.isfinite(action)) and np.all(np.abs(action) <= 1)
        obs, _, _, _, step = env.step(action)
        if step["is_success"]:
            break
    assert step["is_success"], step["distance"]
    assert {"plan_ms", "feasible_fraction", "cost_terms", "predicted_violation", "fallback"} <= set(info)


def test_keep_out_box_is_never_entered_even_though_it_blocks_the_straight_path():
    env = envs.make("reach", pixels=False)
    obs, _ = env.reset(seed=2)
    base = env.unwrapped
    start, target = base.state()["ee_pos"], base.state()["target_pos"]
    centre = (start + target) / 2
    box = KeepOutBox((centre - 0.03).tolist(), (centre + 0.03).tolist(), bodies=["ee_pos"])
    agent = make_agent(make_oracle(env), [box], samples=48, horizon=5)
    agent.reset(GoalSchedule([{"ee_pos": torch.as_tensor(target)}]))
    for _ in range(30):
        action, _ = agent.act(sim_obs(env, obs))
        obs, _, _, _, step = env.step(action)
        for ee in [*step["ee_path"], step["state"]["ee_pos"]]:  # every physics substep, not just the ticks
            inside = np.all(ee > centre - 0.03) and np.all(ee < centre + 0.03)
            assert not inside, f"entered the keep-out box at {ee}"
        if step["is_success"]:
            break
    assert step["distance"] < 0.6 * np.linalg.norm(target - start), "it held still instead of going round"


def test_no_feasible_plan_holds_still_and_says_so():
    env = envs.make("reach", pixels=False)
    obs, _ = env.reset(seed=0)
    never = guardrail_from_function(lambda states, actions: torch.ones(actions.shape[:2], dtype=actions.dtype), "never")
    agent = make_agent(make_oracle(env), [never])
    agent.reset(GoalSchedule([{"ee_pos": torch.tensor([0.6, 0.2, 0.2], dtype=torch.float64)}]))
    action, info = agent.act(sim_obs(env, obs))
    assert info["no_feasible_plan"] and info["fallback"]
    np.testing.assert_array_equal(action[:3], 0.0)


@pytest.mark.parametrize("proprio_filter", [False, True])
def test_nan_proprio_is_a_clear_error_not_a_nan_command(proprio_filter):
    env = envs.make("reach", pixels=False)
    obs, _ = env.reset(seed=0)
    agent = make_agent(make_oracle(env), proprio_filter=proprio_filter)
    agent.reset(GoalSchedule([{"ee_pos": torch.tensor([0.6, 0.2, 0.2], dtype=torch.float64)}]))
    bad = {**sim_obs(env, obs), "proprio": np.full(8, np.nan, dtype=np.float32)}
    with pytest.raises(ValueError, match="NaN"):
        agent.act(bad)


def test_proprio_filter_smooths_what_the_agent_measures():
    env = envs.make("reach", pixels=False)
    obs, _ = env.reset(seed=0)
    agent = make_agent(make_oracle(env), proprio_filter=True)
    agent.reset(GoalSchedule([{"ee_pos": torch.tensor([0.6, 0.2, 0.2], dtype=torch.float64)}]))
    rng = np.random.default_rng(0)
    raw, seen = [], []
    real_measure = agent.measured_state
    agent.measured_state = lambda o: seen.append(o["proprio"][:3].copy()) or real_measure(o)
    for _ in range(12):
        noisy = obs["proprio"] + rng.normal(0.0, 0.03, 8).astype(np.float32)
        raw.append(noisy[:3] - obs["proprio"][:3])
        truth = obs["proprio"][:3].copy()
        action, _ = agent.act({**sim_obs(env, obs), "proprio": noisy})
        seen[-1] = seen[-1] - truth
        obs, *_ = env.step(action)
    assert np.sqrt(np.mean(np.square(seen[4:]))) < 0.7 * np.sqrt(np.mean(np.square(raw[4:])))


def test_starting_outside_a_guardrail_recovers_instead_of_freezing():
    env = envs.make("reach", pixels=False)
    obs, _ = env.reset(seed=0)
    z_start = env.unwrapped.state()["ee_pos"][2]
    ceiling = guardrail_from_function(lambda s, a: (s["ee_pos"][:, 1:, 2] - (z_start - 0.08)).clamp_min(0), "ceiling")
    agent = make_agent(make_oracle(env), [ceiling])
    agent.reset(GoalSchedule([{"ee_pos": torch.tensor([0.5, 0.0, 0.1], dtype=torch.float64)}]))
    heights = [z_start]
    for _ in range(4):
        action, info = agent.act(sim_obs(env, obs))
        obs, _, _, _, step = env.step(action)
        heights.append(step["state"]["ee_pos"][2])
    assert heights[-1] < z_start - 0.08, heights  # it came down under the ceiling rather than holding above it
    assert all(b <= a + 1e-3 for a, b in zip(heights, heights[1:], strict=False)), heights
