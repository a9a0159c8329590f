"""Fault injection: each fault does what it says, and a faulty episode still never breaks a guardrail."""

from __future__ import annotations

import numpy as np
from omegaconf import OmegaConf

import envs
from planner.apps.faults import Faults, make_faults


def test_faults_transform_observations_and_actions():
    env = envs.make("push")
    obs, _ = env.reset(seed=0)
    faults = Faults(name="all", obs_noise=10.0, action_delay=1, seed=1)
    faults.reset(env)
    noisy = faults.obs_filter(0, obs)
    assert noisy["pixels"].dtype == np.uint8 and np.abs(noisy["pixels"].astype(int) - obs["pixels"]).mean() > 2
    first = faults.action_filter(0, np.array([1.0, 0, 0, -1], dtype=np.float32))
    np.testing.assert_array_equal(first, [0, 0, 0, -1])
    second = faults.action_filter(1, np.array([0, 1.0, 0, 1], dtype=np.float32))
    np.testing.assert_array_equal(second, [1.0, 0, 0, -1])


def test_frozen_and_dropped_frames():
    env = envs.make("reach")
    obs, _ = env.reset(seed=0)
    frozen = Faults(frozen_frame_prob=1.0)
    frozen.reset(env)
    a = frozen.obs_filter(0, obs)
    b = frozen.obs_filter(1, {**obs, "pixels": np.zeros_like(obs["pixels"])})
    np.testing.assert_array_equal(a["pixels"], b["pixels"])
    dropped = Faults(dropped_frame_prob=1.0)
    dropped.reset(env)
    assert dropped.obs_filter(0, obs)["pixels"].max() == 0


def test_push_moves_the_cube():
    env = envs.make("push", pixels=False)
    env.reset(seed=0)
    faults = make_faults(OmegaConf.create({"name": "push", "push_step": 0, "push_velocity": [0.0, 1.0]}))
    faults.reset(env)
    before = env.unwrapped.state()["cube_pos"].copy()
    faults.step_hook(0, env)
    env.step(np.array([0, 0, 0, 1.0]))
    moved = env.unwrapped.state()["cube_pos"][1] - before[1]
    assert moved > 0.01
    assert faults.events == [{"kind": "push", "step": 0, "moved_m": None}]  # measured at the next step's hook
    faults.step_hook(1, env)
    assert abs(faults.events[0]["moved_m"] - moved) < 1e-3
    faults.reset(env)
    assert faults.events == []  # one episode's events only


def test_a_pushed_episode_never_breaks_a_guardrail():
    import torch

    from envs.panda_env import EE_HIGH, EE_LOW
    from planner.apps.episode import run_episode
    from planner.costs import GoalSchedule
    from planner.guardrails import GuardrailSet, MaxStepDisplacement, MinHeight, WorkspaceBox
    from planner.mpc import AgentConfig, MPCAgent
    from planner.optimizers import CEM
    from world_models.oracle import MocapControlSpec, OracleWorldModel

    env = envs.make("push", pixels=False)
    base = env.unwrapped
    wm = OracleWorldModel(
        base.model, MocapControlSpec(base.n_substeps, base.action_scale, tuple(EE_LOW), tuple(EE_HIGH))
    )
    guards = GuardrailSet(
        [WorkspaceBox([0.25, -0.4, 0.045], [0.8, 0.4, 0.45]), MinHeight(0.045), MaxStepDisplacement(0.07)]
    )
    opt = CEM(horizon=3, action_dim=4, num_samples=16, num_elites=4, iterations=1)
    agent = MPCAgent(
        wm,
        opt,
        {"ee_to_target": 1.0, "cube_to_target": 3.0},
        guards,
        AgentConfig(ee_low=tuple(EE_LOW), ee_high=tuple(EE_HIGH)),
    )
    faults = Faults(name="push", push_step=2, push_velocity=(0.0, 1.5), action_delay=1)

    def prepare(e):
        goal = base.subgoals()[-1]
        agent.reset(GoalSchedule([{k: torch.as_tensor(v) for k, v in goal.items() if k != "phase"}]))
        faults.reset(e)

    result = run_episode(
        env,
        agent,
        guards,
        0,
        prepare,
        lambda o: {**o, "sim_state": base.get_state()},
        step_hook=faults.step_hook,
        action_filter=faults.action_filter,
    )
    assert result.executed_violations == 0 and result.steps > 2
