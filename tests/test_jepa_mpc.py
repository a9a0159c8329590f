"""The shipped JEPA world model inside the MPC agent: every planner runs a pixel-to-action episode on the real env."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from planner.apps import benchmark
from planner.cli import CONFIG_DIR

BUDGETS = {
    "cem": ["planner.num_samples=16", "planner.num_elites=4", "planner.iterations=1", "planner.horizon=3"],
    "mppi": ["planner.num_samples=16", "planner.iterations=1", "planner.horizon=3"],
    "gd": ["planner.horizon=3", "+planner.steps=3", "+planner.num_starts=2"],
    "cem_gd": [
        "planner.horizon=3",
        "+planner.num_samples=16",
        "+planner.num_elites=4",
        "+planner.iterations=1",
        "+planner.gd_steps=2",
        "+planner.gd_num_starts=1",
    ],
}


def run_cell(tmp_path: Path, planner: str, extra: tuple[str, ...] = ()) -> dict:
    overrides = ["task=reach", "world_model=jepa", f"planner={planner}", "episodes=1", f"out={tmp_path}"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(config_name="benchmark", overrides=[*overrides, *BUDGETS[planner], *extra])
    (row,) = benchmark.run(cfg)
    return row


@pytest.mark.parametrize("planner", sorted(BUDGETS))
def test_every_planner_plans_with_the_jepa(tmp_path: Path, planner: str) -> None:
    row = run_cell(tmp_path, planner)
    assert row["world_model"] == "jepa" and row["planner"] == planner, row
    assert row["episodes"] == 1 and row["executed_violations"] == 0
    (episode,) = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert episode["steps"] >= 1 and episode["plan_ms_p50"] > 0
    assert episode["final_phase"] == "goal" and episode["regrasps"] == 0  # reach: one phase, nothing to grasp


def test_bf16_weights_reach_the_model_and_plan(tmp_path: Path) -> None:
    import torch

    from planner.apps.factory import make_world_model

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(config_name="benchmark", overrides=["world_model=jepa", "world_model.bf16_weights=true"])
    model = make_world_model(cfg, None, torch.device("cpu"))
    assert model.bf16_weights and model.predictor.inp.weight.dtype == torch.bfloat16
    row = run_cell(tmp_path, "cem", ("world_model.bf16_weights=true",))
    assert row["episodes"] == 1 and row["executed_violations"] == 0


@pytest.mark.parametrize("planner", sorted(BUDGETS))
def test_phase_action_bounds_squeeze_the_gripper_in_held_phases(planner: str) -> None:
    import torch

    from planner.apps.factory import build_run, goal_schedule, phase_bounds

    overrides = ["task=pick_place", "world_model=jepa", f"planner={planner}", *BUDGETS[planner]]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(config_name="benchmark", overrides=overrides)
        typo = compose(
            config_name="benchmark",
            overrides=["task=pick_place", "world_model=jepa", "+cost.phase_action_bounds.lift.gripr=[-1,0]"],
        )
    assert phase_bounds(cfg)["lift"] == ([-1.0, -1.0, -1.0, -1.0], [1.0, 1.0, 1.0, -0.5])
    with pytest.raises(ValueError, match="gripr"):
        phase_bounds(typo)
    run = build_run(cfg, image_size=64)
    obs, _ = run.env.reset(seed=0)
    schedule = goal_schedule(cfg, run.env, run.world_model)
    run.agent.reset(schedule)
    schedule.index = schedule.phases.index("lift")  # far from the lift pose: the schedule stays there
    own = run.agent.optimizer.lower.clone(), run.agent.optimizer.upper.clone()
    for _ in range(2):
        action, info = run.agent.act(obs)
        assert info["phase"] == "lift"
        assert -1.0 <= action[3] <= -0.5  # a squeezing command, whatever the cost terms prefer (or the fallback)
        obs, *_ = run.env.step(action)
    assert torch.equal(run.agent.optimizer.lower, own[0]) and torch.equal(run.agent.optimizer.upper, own[1])


def test_phase_bounds_that_leave_no_room_are_refused() -> None:
    from planner.apps.factory import build_run

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(
            config_name="benchmark",
            overrides=["task=pick_place", "world_model=jepa", "cost.phase_action_bounds.lift.gripper=[2,3]"],
        )
    with pytest.raises(ValueError, match="no room"):
        build_run(cfg, image_size=64)
