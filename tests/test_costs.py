"""Cost term values on hand-made states, their weighted combination, and goal schedules."""

from __future__ import annotations

import math

import pytest
import torch

from planner.costs import (
    CostFunction,
    GoalSchedule,
    action_magnitude,
    action_smoothness,
    cube_to_target,
    ee_to_cube,
    ee_to_target,
    gripper,
    latent_distance,
    make_term,
)

# N = 2 trajectories, H = 2 steps; index 0 is the current state.
EE = torch.tensor([[[0.0, 0.0, 0.0], [3.0, 4.0, 0.0], [0.0, 0.0, 1.0]]]).repeat(2, 1, 1)
CUBE = torch.zeros(2, 3, 3)
STATES = {
    "ee_pos": EE,
    "cube_pos": CUBE,
    "gripper": torch.tensor([[0.08, 0.02, 0.04]]).repeat(2, 1),
    "latent": torch.stack([torch.zeros(3, 4, 5), torch.ones(3, 4, 5)]),  # [N, H+1, 4, 5]
}
ACTIONS = torch.tensor([[[1.0, 0.0], [1.0, 2.0]], [[0.0, 0.0], [0.0, 0.0]]])  # [2, 2, 2]
GOAL = {
    "ee_pos": [0.0, 0.0, 1.0],
    "cube_pos": torch.tensor([0.0, 3.0, 4.0]),
    "gripper": 0.04,
    "latent": torch.ones(4, 5),
}


def test_term_values() -> None:
    assert torch.allclose(ee_to_target(STATES, ACTIONS, GOAL), torch.tensor([[math.sqrt(26), 0.0]] * 2))
    assert torch.allclose(cube_to_target(STATES, ACTIONS, GOAL), torch.full((2, 2), 5.0))
    assert torch.allclose(ee_to_cube(STATES, ACTIONS, GOAL), torch.tensor([[5.0, 1.0]] * 2))
    assert torch.allclose(gripper(STATES, ACTIONS, GOAL), torch.tensor([[0.02, 0.0]] * 2))
    assert torch.allclose(latent_distance(STATES, ACTIONS, GOAL), torch.tensor([[1.0, 1.0], [0.0, 0.0]]))
    two = {"latent": 3.0 * torch.ones(2, 3, 4, 5)}
    assert torch.allclose(latent_distance(two, ACTIONS, GOAL, p=2), torch.full((2, 2), 4.0))
    assert torch.allclose(action_magnitude(STATES, ACTIONS, GOAL), torch.tensor([[1.0, 5.0], [0.0, 0.0]]))
    assert torch.allclose(action_smoothness(STATES, ACTIONS, GOAL), torch.tensor([[0.0, 4.0], [0.0, 0.0]]))


def test_missing_keys_name_key_and_term() -> None:
    with pytest.raises(KeyError, match="ee_to_target.*ee_pos"):
        ee_to_target({"cube_pos": CUBE}, ACTIONS, GOAL)
    with pytest.raises(KeyError, match="latent_distance.*latent"):
        latent_distance(STATES, ACTIONS, {"ee_pos": [0, 0, 0]})
    with pytest.raises(KeyError, match="known terms"):
        make_term("reward")


def test_cost_function_weights_time_and_per_term() -> None:
    cf = CostFunction({"ee": (ee_to_target, 2.0), "act": (action_magnitude, 0.5)}, discount=0.5, terminal_weight=3.0)
    total, per = cf(STATES, ACTIONS, GOAL)
    assert torch.allclose(cf.time_weights(2, ACTIONS), torch.tensor([1.0, 1.5]))
    assert torch.allclose(per["ee"], torch.full((2,), 2.0 * math.sqrt(26)))
    assert torch.allclose(per["act"], torch.tensor([0.5 * (1.0 + 1.5 * 5.0), 0.0]))
    assert torch.allclose(total, per["ee"] + per["act"])
    cf2 = CostFunction.from_weights({"latent_distance": {"weight": 2.0, "p": 2}, "gripper": 1.0})
    total2, per2 = cf2(STATES, ACTIONS, GOAL)
    assert torch.allclose(per2["latent_distance"], torch.tensor([4.0, 0.0]))
    assert torch.allclose(total2, torch.tensor([4.02, 0.02]))
    with pytest.raises(ValueError, match="discount"):
        CostFunction({"ee": (ee_to_target, 1.0)}, discount=0.0)


def test_a_zero_weight_term_is_not_evaluated_and_changes_no_total() -> None:
    def never(states, actions, goal):
        raise AssertionError("a term weighted 0 was evaluated")

    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        states = {"ee_pos": torch.rand(6, 4, 3, generator=gen), "cube_pos": torch.rand(6, 4, 3, generator=gen)}
        actions = torch.rand(6, 3, 4, generator=gen) * 2 - 1
        goal = {"ee_pos": torch.rand(3, generator=gen), "cube_pos": torch.rand(3, generator=gen)}
        weights = {"ee_to_target": 1.0, "cube_to_target": 0.0, "action_magnitude": 0.001}
        reference = CostFunction.from_weights({k: w for k, w in weights.items() if w})(states, actions, goal)[0]
        reference = reference + 0.0 * CostFunction.from_weights({"cube_to_target": 1.0})(states, actions, goal)[0]
        total, per = CostFunction.from_weights(weights)(states, actions, goal)
        assert torch.equal(total, reference) and torch.equal(per["cube_to_target"], torch.zeros(6))
    total, _ = CostFunction({"ee": (ee_to_target, 1.0), "off": (never, 0.0)})(STATES, ACTIONS, GOAL)
    assert torch.equal(total, CostFunction({"ee": (ee_to_target, 1.0)})(STATES, ACTIONS, GOAL)[0])


def test_cost_function_is_differentiable() -> None:
    actions = ACTIONS.clone().requires_grad_(True)
    total, _ = CostFunction.from_weights({"action_smoothness": 1.0, "action_magnitude": 1.0})(STATES, actions, GOAL)
    total.sum().backward()
    assert actions.grad is not None and torch.isfinite(actions.grad).all()


def test_goal_schedule_by_distance_and_by_steps() -> None:
    goals = [{"ee_pos": [0.0, 0.0, 0.1]}, {"ee_pos": [0.5, 0.0, 0.1]}, {"ee_pos": [0.5, 0.5, 0.1]}]
    sched = GoalSchedule(goals, switch_distance=0.05)
    assert sched.update({"ee_pos": [0.0, 0.0, 0.3]}, 0) is goals[0]
    assert sched.update({"ee_pos": [0.0, 0.01, 0.1], "cube_pos": [9.0, 9.0, 9.0]}, 1) is goals[1]
    assert sched.update({"ee_pos": [0.5, 0.5, 0.1]}, 2) is goals[1]  # at most one switch per call
    assert sched.update({"ee_pos": [0.5, 0.0, 0.1]}, 3) is goals[2]
    assert sched.update({"ee_pos": [0.5, 0.5, 0.1]}, 4) is goals[2]  # stays on the last
    timed = GoalSchedule(goals, switch_steps=[4, 10, 4])
    seen = [goals.index(timed.update({}, t)) for t in range(20)]
    assert seen == [0] * 4 + [1] * 10 + [2] * 6
    timed.reset()
    assert timed.current() is goals[0]
    with pytest.raises(ValueError, match="switch_steps"):
        GoalSchedule(goals, switch_steps=[4])


def test_goal_schedule_names_its_phases() -> None:
    goals = [{"ee_pos": [0.0, 0.0, 0.1]}, {"ee_pos": [0.5, 0.0, 0.1]}]
    sched = GoalSchedule(goals, switch_distance=0.05, phases=["above", "close"])
    assert sched.phase == "above"
    sched.update({"ee_pos": [0.0, 0.0, 0.1]}, 0)
    assert sched.phase == "close"
    assert GoalSchedule(goals).phase == "goal"  # unnamed sub-goals
    with pytest.raises(ValueError, match="phase names"):
        GoalSchedule(goals, phases=["above"])
