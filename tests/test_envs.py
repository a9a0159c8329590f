"""Every registered task (the Panda's and OGBench's): registration, Gymnasium compliance, determinism, bad input, goal rendering, experts."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
from envs.panda_env import EE_HIGH, EE_LOW

TASK_NAMES = list(envs.ENV_IDS)
PANDA_TASKS = list(envs.TASKS)  # goal scenes with the hand posed, and scripted experts: the Panda tasks'


@pytest.fixture(params=TASK_NAMES)
def env(request):
    env = envs.make(request.param)
    yield env
    env.close()


def test_ids_registered_on_import():
    for env_id in ("jepa_mpc/PandaReach-v0", "jepa_mpc/PandaPush-v0", "jepa_mpc/PandaPickPlace-v0"):
        assert env_id in gym.registry


def test_unknown_env_lists_known_names():
    with pytest.raises(ValueError, match="known: .*pick_place"):
        envs.make("pick_and_place")


def test_check_env(env):
    check_env(env.unwrapped, skip_render_check=True)


def test_random_steps_finite_and_images_vary(env):
    obs, info = env.reset(seed=3)
    frames = [obs["pixels"]]
    rng = np.random.default_rng(0)
    for _ in range(15):
        obs, reward, terminated, truncated, info = env.step(
            rng.uniform(-1, 1, env.action_space.shape).astype(np.float32)
        )
        assert np.all(np.isfinite(obs["proprio"])) and np.isfinite(reward)
        assert obs["pixels"].dtype == np.uint8 and obs["pixels"].shape == (64, 64, 3)
        assert isinstance(info["is_success"], bool)
        assert {"ee_pos", "cube_pos", "target_pos", "gripper"} <= set(info["state"])
        frames.append(obs["pixels"])
    assert frames[0].std() > 10, "image is nearly constant"
    assert np.abs(frames[-1].astype(int) - frames[0]).mean() > 0.5, "moving the arm did not change the image"


def test_same_seed_same_trajectory():
    def rollout() -> np.ndarray:
        env = envs.make("push", pixels=False)
        obs, _ = env.reset(seed=11)
        rng = np.random.default_rng(1)
        out = [obs["proprio"]]
        for _ in range(10):
            obs, *_ = env.step(rng.uniform(-1, 1, 4))
            out.append(obs["proprio"])
        return np.stack(out)

    np.testing.assert_array_equal(rollout(), rollout())


@pytest.mark.parametrize("bad", [[np.nan, 0, 0, 0], [0, np.inf, 0, 0], [0, 0, -np.inf, 1]])
def test_nan_or_inf_action_raises(bad):
    env = envs.make("reach", pixels=False)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="NaN or inf"):
        env.step(np.array(bad, dtype=np.float32))


def test_wrong_action_shape_raises():
    env = envs.make("reach", pixels=False)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="4 entries"):
        env.step(np.zeros(3))


def test_out_of_range_action_is_clipped():
    a, b = envs.make("reach", pixels=False), envs.make("reach", pixels=False)
    a.reset(seed=5)
    b.reset(seed=5)
    oa, *_ = a.step(np.array([7.0, -3.0, 2.0, 9.0]))
    ob, *_ = b.step(np.array([1.0, -1.0, 1.0, 1.0]))
    np.testing.assert_allclose(oa["proprio"], ob["proprio"])


def test_hand_stays_inside_controller_envelope():
    env = envs.make("reach", pixels=False)
    env.reset(seed=0)
    for _ in range(20):
        _, _, _, _, info = env.step(np.array([0.0, 0.0, -1.0, 1.0]))
    assert info["state"]["ee_pos"][2] >= EE_LOW[2] - 0.01
    for _ in range(20):
        _, _, _, _, info = env.step(np.array([1.0, 1.0, 1.0, 1.0]))
    assert np.all(info["state"]["ee_pos"] <= EE_HIGH + 0.01)


def test_instability_ends_episode_without_nan():
    env = envs.make("reach", pixels=False)
    env.reset(seed=0)
    base = env.unwrapped
    base.data.qvel[:] = 1e12  # a diverging simulator
    obs, reward, terminated, truncated, info = env.step(np.zeros(4))
    assert terminated and info["failure"] == "unstable"
    assert np.all(np.isfinite(obs["proprio"])) and np.isfinite(reward)


def test_state_roundtrip_reproduces_the_future():
    env = envs.make("pick_place", pixels=False)
    env.reset(seed=2)
    base = env.unwrapped
    saved = base.get_state()
    first = [env.step(np.array([0.3, -0.2, -0.5, -1.0]))[0]["proprio"] for _ in range(3)]
    base.set_state(saved)
    second = [env.step(np.array([0.3, -0.2, -0.5, -1.0]))[0]["proprio"] for _ in range(3)]
    np.testing.assert_allclose(np.stack(first), np.stack(second))
    with pytest.raises(ValueError, match="finite vector"):
        base.set_state(np.full_like(saved, np.nan))
    before = base.get_state()
    for index in (1, 20):  # a joint position, a joint velocity: finite, but the simulator diverges from them
        huge = saved.copy()
        huge[index] = 1e300
        with pytest.raises(ValueError, match="diverge"):
            base.set_state(huge)
        np.testing.assert_array_equal(base.get_state(), before)  # the state before is kept
    obs = env.step(np.zeros(4))[0]
    assert np.all(np.isfinite(obs["proprio"]))


@pytest.mark.parametrize("task", PANDA_TASKS)
def test_goal_observation_shows_the_goal_and_leaves_episode_untouched(task):
    env = envs.make(task)
    obs, info = env.reset(seed=4)
    base = env.unwrapped
    before = base.get_state()
    goal_obs = base.goal_observation()
    np.testing.assert_array_equal(before, base.get_state())
    assert goal_obs["pixels"].shape == obs["pixels"].shape
    assert np.abs(goal_obs["pixels"].astype(int) - obs["pixels"]).mean() > 0.5
    goal = base.goal_state()
    np.testing.assert_allclose(goal_obs["proprio"][:3], goal["ee_pos"], atol=0.02)


@pytest.mark.parametrize("task", PANDA_TASKS)
def test_scripted_expert_succeeds(task):
    from planner.apps.experts import expert_success

    result = expert_success(task, episodes=5, seed=1000)
    assert result["success_rate"] >= 0.8, result


def test_cube_knocked_off_the_table_ends_the_episode():
    env = envs.make("push", pixels=False)
    env.reset(seed=0)
    base = env.unwrapped
    base.data.qpos[base.cube_qpos][:3] = [1.3, 0.0, 0.3]  # beyond the table's edge, in the air
    base.data.qvel[base.cube_qvel] = 0.0
    for _ in range(10):
        _, _, terminated, _, info = env.step(np.zeros(4))
        if terminated:
            break
    assert terminated and info["failure"] == "cube_off_table"
    assert info["state"]["cube_pos"][2] > -1.0, "the floor catches the cube"


def test_subgoals_name_their_phases_and_pick_place_lifts_straight_up_before_carrying():
    from envs.tasks import GRASP_HEIGHT, TASKS, PickPlaceTask

    for task_cls in TASKS.values():
        task = task_cls()
        goals = task.subgoals(task.sample(np.random.default_rng(0)))
        assert all(g["phase"] in task.phases for g in goals)
        assert goals[-1]["phase"] in task.phases[-2:]
    task = PickPlaceTask()
    samples = [task.sample(np.random.default_rng(s)) for s in range(20)]
    table = next(s for s in samples if task.on_table(s.target_pos))
    air = next(s for s in samples if not task.on_table(s.target_pos))
    # a table target ends by letting go of the cube there; an air target ends holding it at the target
    assert [g["phase"] for g in task.subgoals(table)] == list(task.phases)
    assert [g["phase"] for g in task.subgoals(air)] == list(task.phases[:-1])
    assert task.subgoals(table)[-1]["gripper"] == 0.08 and task.subgoals(air)[-1]["gripper"] == task.hold_opening
    sample = task.sample(np.random.default_rng(3))
    goals = {g["phase"]: g for g in task.subgoals(sample)}
    close, lift = goals["close"], goals["lift"]
    assert close["ee_pos"][2] == pytest.approx(GRASP_HEIGHT)  # the fingertips around a cube resting on the table
    np.testing.assert_allclose(lift["ee_pos"] - close["ee_pos"], [0.0, 0.0, task.lift_height])
    np.testing.assert_allclose(lift["cube_pos"] - close["cube_pos"], [0.0, 0.0, task.lift_height])
    assert lift["gripper"] == close["gripper"] == task.hold_opening


def test_push_subgoals_walk_the_push_line_with_the_cube_ahead_of_the_hand():
    from envs.tasks import PUSH_HEIGHT, PushTask

    task = PushTask()
    for seed in range(5):
        sample = task.sample(np.random.default_rng(seed))
        goals = task.subgoals(sample)
        direction = sample.target_pos[:2] - sample.cube_pos[:2]
        length = np.linalg.norm(direction)
        assert length / task.push_step <= len(goals) - 2 <= length / task.push_step + 1  # waypoints + the goal
        np.testing.assert_allclose(goals[-1]["cube_pos"], sample.target_pos)
        pushing = goals[2:]
        for before, after in zip(goals[1:], pushing, strict=False):
            step = after["ee_pos"][:2] - before["ee_pos"][:2]
            assert np.linalg.norm(step) <= task.push_step + task.approach_behind - task.hand_behind + 1e-3
            assert np.dot(step, direction) > 0  # always forward along the line
        for goal in pushing:
            assert goal["ee_pos"][2] == PUSH_HEIGHT
            ahead = goal["cube_pos"][:2] - goal["ee_pos"][:2]
            np.testing.assert_allclose(ahead, task.hand_behind * direction / length, atol=1e-9)


def test_a_push_replanned_from_behind_the_cube_steers_instead_of_approaching_again():
    from dataclasses import replace

    from envs.tasks import PUSH_HEIGHT, PushTask

    task = PushTask()
    sample = task.sample(np.random.default_rng(3))
    direction = (sample.target_pos[:2] - sample.cube_pos[:2]) / np.linalg.norm(
        sample.target_pos[:2] - sample.cube_pos[:2]
    )
    side = np.array([-direction[1], direction[0]])
    behind = np.r_[sample.cube_pos[:2] - task.hand_behind * direction + 0.02 * side, PUSH_HEIGHT]  # 2 cm off the line
    steered = task.subgoals(replace(sample, ee_start=behind))
    assert {g["phase"] for g in steered} == {"push"}  # no above/down: the push goes on from where the hand is
    np.testing.assert_allclose(steered[-1]["cube_pos"], sample.target_pos)
    assert steered[0]["ee_pos"][2] == PUSH_HEIGHT
    for far in (behind + [0, 0, 0.05], np.r_[sample.cube_pos[:2] + 0.06 * direction, PUSH_HEIGHT]):  # above; ahead
        assert [g["phase"] for g in task.subgoals(replace(sample, ee_start=far))][:2] == ["above", "down"]


def _pick_place_with_table_target(seed: int = 0):
    env = envs.make("pick_place", pixels=False)
    for s in range(seed, seed + 50):  # a seed whose target lies on the table
        env.reset(seed=s)
        if env.unwrapped.task.on_table(env.unwrapped.sample.target_pos):
            return env
    raise AssertionError("no table target in 50 seeds")


def test_a_cube_held_above_a_table_target_is_not_placed():
    env = _pick_place_with_table_target()
    base = env.unwrapped
    task, state = base.task, base.state()
    held = {**state, "cube_pos": state["target_pos"] + [0, 0, 0.045], "grasped": np.array(True)}
    assert task.is_success(held), "within 5 cm: success at first touch"
    assert not task.is_placed(held), "but held 4.5 cm above a table target: not placed"
    resting = {**state, "cube_pos": state["target_pos"].copy(), "cube_vel": np.zeros(3), "grasped": np.array(False)}
    assert task.is_placed(resting)
    assert not task.is_placed({**resting, "grasped": np.array(True)}), "still in the hand: not released"
    assert not task.is_placed({**resting, "cube_vel": np.array([0.1, 0, 0])}), "sliding: not settled"


def test_success_needs_the_cube_to_stay_placed_for_settle_steps():
    env = _pick_place_with_table_target()
    base = env.unwrapped
    base.data.qpos[base.cube_qpos] = np.r_[base.sample.target_pos, 1.0, 0.0, 0.0, 0.0]  # drop it onto the target
    hold = np.array([0.0, 0.0, 0.0, 1.0], dtype=np.float32)
    flags = []
    for _ in range(base.task.settle_steps + 2):
        _, _, _, _, info = env.step(hold)
        flags.append((info["is_success"], info["is_success_first_touch"]))
    assert flags[0] == (False, True), "placed on the first step: first touch, not yet settled"
    assert flags[-1] == (True, True)
    assert sum(s for s, _ in flags) <= 3, "settled only after settle_steps steps in place"
