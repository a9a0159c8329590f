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
    assert env.unwrapped.state()["cube_pos"][1] - before[1] > 0.01
