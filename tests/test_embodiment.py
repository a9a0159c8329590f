"""One definition per robot: the controller rule in numpy and torch agrees with the env, the proprio layout and the
gripper semantics are read from it, and the agent uses it instead of constants of its own."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

import envs
from envs.embodiment import Embodiment
from envs.panda_env import PANDA


def test_numpy_and_torch_controller_rules_agree():
    rng = np.random.default_rng(0)
    ee = rng.uniform(-0.2, 1.0, (64, 3))
    actions = rng.uniform(-1.5, 1.5, (64, 4))
    expected = PANDA.commanded(ee, actions)
    got = PANDA.commanded_torch(torch.as_tensor(ee), torch.as_tensor(actions)).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-12)
    assert np.all(expected >= np.array(PANDA.ee_low) - 1e-12) and np.all(expected <= np.array(PANDA.ee_high) + 1e-12)


def test_panda_env_sends_the_hand_where_its_embodiment_says():
    env = envs.make("reach", pixels=False)
    env.reset(seed=0)
    base = env.unwrapped
    ee = base.state()["ee_pos"].copy()
    action = np.array([1.0, -0.4, 0.3, 0.5])
    env.step(action)
    np.testing.assert_allclose(base.data.mocap_pos[base.ee_mocap], base.embodiment.commanded(ee, action))
    scaled = envs.make("reach", pixels=False, action_scale=0.03).unwrapped
    assert scaled.embodiment.action_scale == 0.03 and scaled.embodiment.ee_low == PANDA.ee_low


def test_proprio_layout_and_gripper_semantics():
    proprio = np.arange(8, dtype=np.float32)
    measured = PANDA.measured(proprio)
    assert measured["ee_pos"].tolist() == [0.0, 1.0, 2.0] and float(measured["gripper"]) == 6.0
    with pytest.raises(ValueError, match="NaN"):
        PANDA.measured(np.full(8, np.nan))
    assert PANDA.is_holding(0.04) and not PANDA.is_holding(0.08) and not PANDA.is_holding(0.0)
    assert PANDA.hold_action(None).tolist() == [0, 0, 0, 1.0]  # absolute gripper: keep the last command (open)
    assert PANDA.hold_action(np.array([0.3, 0.1, 0.2, -0.7])).tolist() == [0, 0, 0, -0.7]
    relative = replace(PANDA, name="relative", gripper_command="relative")
    assert relative.hold_action(np.array([0.3, 0.1, 0.2, -0.7])).tolist() == [0, 0, 0, 0]  # 0 keeps the opening


def test_a_definition_that_contradicts_itself_is_refused():
    with pytest.raises(ValueError, match="gripper_command"):
        replace(PANDA, gripper_command="sometimes")
    with pytest.raises(ValueError, match="ee_pos"):
        replace(PANDA, proprio={"gripper": (6, 7)})
    with pytest.raises(ValueError, match="holding"):
        replace(PANDA, holding=(0.05, 0.2))
    assert isinstance(envs.embodiment_of("pick_place"), Embodiment)
    assert envs.embodiment_of("jepa_mpc/PandaReach-v0").name == "franka_panda"
    assert envs.embodiment_of("cube_single_task3").action_names == ("dx", "dy", "dz", "dyaw", "gripper")
