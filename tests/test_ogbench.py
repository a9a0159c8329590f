"""OGBench's cube-single (UR5e + Robotiq 2F-85) behind the project's env interface: registered, exact under the
oracle, and planned by the unchanged agent with guardrails to OGBench's own success."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("ogbench")

import envs  # noqa: E402
from world_models.oracle import SteppedOracleWorldModel, make_oracle  # noqa: E402


@pytest.fixture(scope="module")
def env():
    e = envs.make("cube_single_task1", pixels=False)
    yield e
    e.close()


def test_registered_with_ogbench_tasks_and_a_seed_gives_one_episode(env):
    assert envs.env_id("cube_single_task5") == "jepa_mpc/OGBenchCubeSingle-task5-v0"
    obs, info = env.reset(seed=3)
    again, _ = env.reset(seed=3)
    np.testing.assert_array_equal(obs["proprio"], again["proprio"])
    base = env.unwrapped
    assert obs["proprio"].shape == (base.embodiment.proprio_dim,) and env.action_space.shape == (5,)
    np.testing.assert_allclose(info["state"]["target_pos"], [0.425, -0.1, 0.02])  # OGBench's task 1 goal
    assert abs(info["state"]["cube_pos"][1] - 0.1) <= 0.01 and not info["is_success"]
    obs, _, terminated, truncated, info = env.step(np.zeros(5))
    assert info["substep_states"]["ee_pos"].shape == (base.n_substeps, 3) and not (terminated or truncated)
    with pytest.raises(ValueError, match="5 entries"):
        env.step(np.zeros(4))


def test_goal_observation_shows_the_cube_at_its_target_and_restores_the_episode():
    env = envs.make("cube_single_task4")  # with pixels
    obs, _ = env.reset(seed=2)
    base = env.unwrapped
    before = base.get_state()
    goal = base.goal_observation()
    np.testing.assert_array_equal(before, base.get_state())
    assert goal["pixels"].shape == obs["pixels"].shape == (64, 64, 3)
    assert np.abs(goal["pixels"].astype(int) - obs["pixels"]).mean() > 0.1  # the cube moved 36 cm across the view
    env.close()


def test_the_oracle_predicts_the_env_exactly(env):
    env.reset(seed=1)
    base = env.unwrapped
    wm = make_oracle(base.model, base.oracle_control())
    assert isinstance(wm, SteppedOracleWorldModel) and wm.action_dim == 5
    z0 = wm.encode({"sim_state": base.get_state()})
    actions = np.random.default_rng(0).uniform(-1, 1, (2, 3, 5))
    states = wm.decode(wm.rollout(z0, torch.as_tensor(actions)))
    saved = base.get_state()
    for n in range(2):
        base.set_state(saved)
        for k in range(3):
            _, _, _, _, info = env.step(actions[n, k])
            np.testing.assert_allclose(states["ee_pos"][n, k].numpy(), info["state"]["ee_pos"], atol=1e-9)
            np.testing.assert_allclose(states["cube_pos"][n, k].numpy(), info["state"]["cube_pos"], atol=1e-9)
            assert abs(float(states["gripper"][n, k]) - float(info["state"]["gripper"])) < 1e-9


def test_ogbench_success_is_reached_by_the_oracle_agent_without_violations(tmp_path):
    from hydra import compose, initialize_config_dir

    from planner.apps.factory import build_run
    from planner.cli import CONFIG_DIR

    overrides = [
        "env=ogbench_cube",
        "task=cube_single_task2",
        "guardrails=ur5e",
        "cost=ogbench_cube",
        "planner.num_samples=24",
        "planner.num_elites=6",
        "planner.iterations=2",
        "planner.horizon=3",
        "world_model.nthread=1",
        f"out={tmp_path}",
    ]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(config_name="benchmark", overrides=overrides)
    run = build_run(cfg)
    result = run.episode(seed=0)
    run.env.close()
    assert result.success and result.steps < 150, (result.steps, result.final_distance, result.final_phase)
    assert result.executed_violations == 0 and result.final_distance <= 0.04


def test_a_state_the_simulator_cannot_step_from_is_refused_and_the_old_one_kept(env):
    """The same set_state as the Panda's (envs.sim_env.TaskSceneEnv): a finite state that diverges is refused."""
    env.reset(seed=1)
    base = env.unwrapped
    saved = base.get_state()
    with pytest.raises(ValueError, match="finite vector"):
        base.set_state(np.full_like(saved, np.nan))
    for index in (1, base.model.nq + 3):  # a joint position, a joint velocity
        huge = saved.copy()
        huge[index] = 1e300
        with pytest.raises(ValueError, match="diverge"):
            base.set_state(huge)
        np.testing.assert_array_equal(base.get_state(), saved)
    obs = env.step(np.zeros(5))[0]
    assert np.all(np.isfinite(obs["proprio"]))
