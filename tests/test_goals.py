"""Perceived sub-goals (planner/apps/goals.py): when the phase program is rebuilt from what the robot sees."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from envs.panda_env import PANDA
from planner.apps.goals import PerceivedGoals

TARGET = np.array([0.6, 0.1, 0.02])


def program(ee: np.ndarray, cube: np.ndarray, target: np.ndarray) -> list[dict]:
    """A three-phase pick-and-place: reach the cube, carry it (the robot moves it), let go of it on the target."""
    return [
        {"ee_pos": cube + [0, 0, 0.05], "cube_pos": cube, "gripper": 0.08, "phase": "reach"},
        {"ee_pos": target + [0, 0, 0.05], "cube_pos": target, "gripper": 0.04, "phase": "carry"},
        {"ee_pos": target + [0, 0, 0.05], "cube_pos": target, "gripper": 0.08, "phase": "release"},
    ]


class StillWorld:
    """A world model that predicts no change: its prediction error is the latent's own change."""

    def rollout(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return z[:, None].expand(-1, actions.shape[1] + 1, -1)


def hand(proprio: np.ndarray) -> np.ndarray:
    """The Panda's hand reader (what the factory passes)."""
    return PANDA.read(proprio, "ee_pos")


class Camera:
    """Cube readings the test sets step by step."""

    def __init__(self, cube: np.ndarray) -> None:
        self.cube = np.asarray(cube, dtype=float)

    def __call__(self, obs, z) -> np.ndarray:
        return self.cube.copy()


def make(camera: Camera, knock_distance: float = float("inf")) -> PerceivedGoals:
    goal = {"latent": torch.zeros(4, dtype=torch.float64), "latent_mask": torch.ones(4, dtype=torch.float64)}
    return PerceivedGoals(
        StillWorld(),
        program,
        goal,
        TARGET,
        camera,
        switch_distance=0.02,
        hold_phases=("carry",),
        locate_hand=hand,
        knock_distance=knock_distance,
    )


def step(goals: PerceivedGoals, schedule, i: int):
    obs = {"proprio": np.r_[0.5, 0.0, 0.2, np.zeros(5)].astype(np.float32)}
    z = torch.zeros(1, 4, dtype=torch.float64)
    return goals(obs, z, None if i == 0 else np.zeros(4), i, schedule)


def test_the_program_is_built_from_the_first_reading_and_kept_while_the_cube_stays() -> None:
    camera = Camera([0.4, -0.1, 0.02])
    goals = make(camera)
    schedule, info = step(goals, None, 0)
    assert schedule.phases == ["reach", "carry", "release"] and not info["reperceived"]
    np.testing.assert_allclose(schedule.goals[0]["ee_pos"].numpy(), [0.4, -0.1, 0.07])
    for i in range(1, 4):
        camera.cube = np.array([0.4, -0.1, 0.02]) + 0.005 * (-1) ** i  # reading noise under the thresholds
        rebuilt, info = step(goals, schedule, i)
        assert rebuilt is None and not info["surprise"]


def test_a_jump_of_the_cube_is_a_surprise_and_rebuilds_from_where_it_is_seen() -> None:
    camera = Camera([0.4, -0.1, 0.02])
    goals = make(camera)
    schedule, _ = step(goals, None, 0)
    step(goals, schedule, 1)
    camera.cube = np.array([0.4, -0.03, 0.02])  # knocked 7 cm
    rebuilt, info = step(goals, schedule, 2)
    assert info["surprise"] and info["surprise_kind"] == "object" and info["reperceived"]
    np.testing.assert_allclose(rebuilt.goals[0]["ee_pos"].numpy(), [0.4, -0.03, 0.07])


def test_while_the_robot_carries_the_cube_its_readings_are_ignored() -> None:
    camera = Camera([0.4, -0.1, 0.02])
    goals = make(camera)
    schedule, _ = step(goals, None, 0)
    schedule.index = 1  # carry
    camera.cube = np.array([0.5, 0.0, 0.1])
    rebuilt, info = step(goals, schedule, 1)
    assert rebuilt is None and not info["surprise"]


def seen_still(start: np.ndarray, knock_distance: float = 0.02):
    """Goals built for a cube read at ``start`` on four frames (reading noise of 3 mm), still in the first phase."""
    camera = Camera(start)
    goals = make(camera, knock_distance)
    schedule, _ = step(goals, None, 0)
    for i in range(1, 4):
        camera.cube = start + [0.003 * (-1) ** i, 0.0, 0.0]
        rebuilt, info = step(goals, schedule, i)
        assert rebuilt is None and not info["surprise"]
    return camera, goals, schedule


def test_a_knock_under_the_jump_distance_is_a_surprise_on_its_second_frame() -> None:
    start = np.array([0.4, -0.1, 0.02])
    camera, goals, schedule = seen_still(start)
    camera.cube = start + [0.0, 0.025, 0.0]  # knocked 2.5 cm before the hand touched it (jump_distance: 4 cm)
    rebuilt, info = step(goals, schedule, 4)
    assert rebuilt is None and not info["surprise"], "one frame off is not enough: a finger may hide the cube"
    rebuilt, info = step(goals, schedule, 5)
    assert info["surprise"] and info["surprise_kind"] == "object"
    # the estimate starts again from the knocked cube; under reperceive_distance (3 cm) the sub-goals are kept
    np.testing.assert_allclose(info["cube_seen"], start + [0.0, 0.025, 0.0])
    assert rebuilt is None and not info["reperceived"]


def test_a_knock_that_moves_the_cube_off_its_sub_goals_rebuilds_them() -> None:
    start = np.array([0.4, -0.1, 0.02])
    camera, goals, schedule = seen_still(start)
    camera.cube = start + [0.0, 0.035, 0.0]  # 3.5 cm: under the jump distance, over the reperceive distance
    rebuilt, info = step(goals, schedule, 4)
    assert rebuilt is None and not info["surprise"]
    rebuilt, info = step(goals, schedule, 5)
    assert info["surprise"] and info["reperceived"]
    np.testing.assert_allclose(rebuilt.goals[0]["ee_pos"].numpy(), start + [0.0, 0.035, 0.05])


def test_a_single_misread_frame_is_not_a_knock() -> None:
    start = np.array([0.4, -0.1, 0.02])
    camera, goals, schedule = seen_still(start)
    camera.cube = start + [0.0, 0.025, 0.0]
    step(goals, schedule, 4)
    camera.cube = start + [0.0, 0.005, 0.0]  # back where it was: the frame before was misread
    for i in range(5, 8):
        rebuilt, info = step(goals, schedule, i)
        assert rebuilt is None and not info["surprise"]


def test_the_knock_rule_is_silent_once_the_robot_has_touched_the_cube() -> None:
    start = np.array([0.4, -0.1, 0.02])
    camera, goals, schedule = seen_still(start)
    schedule.index = 1  # carry: the robot moves the cube
    step(goals, schedule, 4)
    schedule.index = 2  # release: let go of on the target, where it may still settle
    for i, off in enumerate([0.0, 0.0, 0.0, 0.025, 0.025]):
        camera.cube = TARGET + [0.0, off, 0.0]
        rebuilt, info = step(goals, schedule, 5 + i)
        assert not info["surprise"] and not info["reperceived"]


def carried_to_release(camera: Camera) -> tuple[PerceivedGoals, object]:
    """Goals built for the camera's cube, carried (one step) and now in the release phase."""
    goals = make(camera)
    schedule, _ = step(goals, None, 0)
    schedule.index = 1
    step(goals, schedule, 1)
    schedule.index = 2  # release: the cube is expected on the target
    return goals, schedule


def test_a_cube_let_go_of_off_the_target_is_picked_up_again() -> None:
    camera = Camera([0.4, -0.1, 0.02])
    goals, schedule = carried_to_release(camera)
    camera.cube = TARGET + [0.06, 0.0, 0.0]  # but it lies 6 cm from it
    rebuilt, info = step(goals, schedule, 2)
    assert rebuilt is None, "one reading is not enough to give up the plan"
    rebuilt, info = step(goals, schedule, 3)
    assert info["reperceived"] and rebuilt.phases[0] == "reach"
    np.testing.assert_allclose(rebuilt.goals[0]["ee_pos"].numpy(), TARGET + [0.06, 0.0, 0.05])


def test_a_cube_let_go_of_on_the_target_keeps_the_plan() -> None:
    camera = Camera([0.4, -0.1, 0.02])
    goals, schedule = carried_to_release(camera)
    camera.cube = TARGET + [0.01, 0.0, 0.0]
    for i in range(2, 6):
        rebuilt, info = step(goals, schedule, i)
        assert rebuilt is None and not info["reperceived"]


def push_program(ee: np.ndarray, cube: np.ndarray, target: np.ndarray) -> list[dict]:
    """Behind the cube, then waypoints along the line to the target with the cube ahead of the hand."""
    line = [cube + f * (target - cube) for f in (0.0, 0.5, 1.0)]
    return [
        {"ee_pos": c - [0.06, 0, 0], "cube_pos": c, "gripper": 0.0, "phase": "push" if i else "down"}
        for i, c in enumerate(line)
    ]


def test_a_pushed_cube_that_slides_off_the_line_is_approached_again() -> None:
    start = np.array([0.4, 0.1, 0.02])
    camera = Camera(start)
    goal = {"latent": torch.zeros(4, dtype=torch.float64), "latent_mask": torch.ones(4, dtype=torch.float64)}
    goals = PerceivedGoals(
        StillWorld(),
        push_program,
        goal,
        TARGET,
        camera,
        0.02,
        hold_phases=("push",),
        watch_phases=("push",),
        locate_hand=hand,
    )
    schedule, _ = step(goals, None, 0)
    schedule.index = 1
    for i in range(1, 4):  # moved along the line: followed, not questioned
        camera.cube = start + 0.03 * i * (TARGET - start) / np.linalg.norm(TARGET - start)
        rebuilt, info = step(goals, schedule, i)
        assert rebuilt is None and not info["off_path"]
    camera.cube = camera.cube + [0.0, 0.05, 0.0]  # slid 5 cm sideways
    rebuilt, info = step(goals, schedule, 4)
    assert rebuilt is None, "one frame off the line is not enough"
    rebuilt, info = step(goals, schedule, 5)
    assert rebuilt is not None and info["off_path"] and info["reperceived"]
    assert rebuilt.phases[0] == "down"
    np.testing.assert_allclose(rebuilt.goals[0]["ee_pos"].numpy(), camera.cube - [0.06, 0, 0], atol=0.02)


def test_the_goal_photo_hand_is_corrected_by_the_detector_offset_where_the_hand_is() -> None:
    # A detector that reads every hand 8 cm too far in +x (a misreading at the workspace's edge): the goal photo's
    # hand, and so the target, come out 8 cm off; proprio says where the hand really is, the frame's reading is off by
    # the same 8 cm, and the last sub-goal's hand moves back by that much.
    bias = np.array([0.08, 0.0, 0.0])
    true_target_hand = TARGET + [0, 0, 0.05]
    photo_seen = {"cube_pos": TARGET.copy(), "ee_pos": true_target_hand + bias}
    goal = {"latent": torch.zeros(4, dtype=torch.float64), "latent_mask": torch.ones(4, dtype=torch.float64)}
    goals = PerceivedGoals(
        StillWorld(),
        program,
        goal,
        photo_seen["ee_pos"] - [0, 0, 0.05],  # the task's rule: the target sits 5 cm below the hand in the photo
        Camera([0.4, -0.1, 0.02]),
        switch_distance=0.02,
        hold_phases=("carry",),
        locate_hand=hand,
        read_hand=lambda obs: hand(obs["proprio"]) + bias,
        photo_seen=photo_seen,
        target_from_photo=lambda seen: seen["ee_pos"] - [0, 0, 0.05],
    )
    schedule, info = step(goals, None, 0)
    # built off the misreading, and corrected on the same step (a rebuilt program starts corrected)
    np.testing.assert_allclose(info["target_shift"], -bias, atol=1e-6)
    np.testing.assert_allclose(schedule.goals[-1]["ee_pos"].numpy(), true_target_hand, atol=1e-6)
    _, info = step(goals, schedule, 1)
    np.testing.assert_allclose(info["target_shift"], -bias, atol=1e-6)
    np.testing.assert_allclose(schedule.goals[-1]["ee_pos"].numpy(), true_target_hand, atol=1e-6)
    np.testing.assert_allclose(schedule.goals[0]["ee_pos"].numpy(), [0.4, -0.1, 0.07])  # the cube's phases: unchanged


def test_a_bad_knock_distance_is_one_error_naming_the_key() -> None:
    from planner.apps.goals import check_perception

    check_perception("perceived", "jepa", {"knock_distance": float("inf")})
    for bad in (0, -0.02, "2cm", True):
        with pytest.raises(ValueError, match="perception.knock_distance"):
            check_perception("perceived", "jepa", {"knock_distance": bad})
