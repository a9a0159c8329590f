"""The information contract: with a learned world model and perceived (or goal-only) sub-goals, the agent's side of an
episode sees the camera, the proprio, the task name and one goal photo, and nothing else."""

from __future__ import annotations

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

import envs
from planner.apps import factory
from planner.apps.contract import ContractViolation, RobotView
from planner.cli import CONFIG_DIR

TINY = ["planner.num_samples=8", "planner.num_elites=2", "planner.iterations=1", "planner.horizon=2"]


def test_robot_view_refuses_privileged_access() -> None:
    env = envs.make("pick_place")
    env.reset(seed=0)
    view = RobotView(env)
    assert view.task_name == "pick_place"
    for name in ("unwrapped", "state", "sample", "subgoals", "goal_state", "get_state", "set_state", "data"):
        with pytest.raises(ContractViolation, match=name):
            getattr(view, name)
    with pytest.raises(ContractViolation):
        view.sample = None
    photo = view.goal_photo()
    assert set(photo) == {"pixels"}, "a goal photo has no proprio"
    assert photo["pixels"].dtype == np.uint8 and photo["pixels"].shape == (64, 64, 3)
    with pytest.raises(ContractViolation, match="once"):
        view.goal_photo()
    obs = {"pixels": photo["pixels"], "proprio": np.zeros(8, np.float32), "sim_state": np.zeros(3)}
    assert set(RobotView.observation(obs)) == {"pixels", "proprio"}


def test_the_oracle_cannot_pretend_to_perceive() -> None:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(config_name="benchmark", overrides=["world_model=oracle", "subgoals=perceived"])
    with pytest.raises(ValueError, match="privileged reference"):
        factory.subgoal_mode(cfg)
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(config_name="benchmark", overrides=["world_model=jepa", "subgoals=perceivd"])
    with pytest.raises(ValueError, match="subgoals='perceivd'"):
        factory.subgoal_mode(cfg)


@pytest.mark.parametrize("mode", ["perceived", "none", "hierarchical"])
@pytest.mark.parametrize("task", ["reach", "push", "pick_place"])
def test_a_jepa_episode_runs_under_the_contract(task: str, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The flat goal-photo mode also reads the photo with the detector (perception.photo_readout): still the photo only.
    readout = ["perception.photo_readout=[ee_pos,cube_pos]"] if mode == "none" else []
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(
            config_name="benchmark", overrides=[f"task={task}", "world_model=jepa", f"subgoals={mode}", *TINY, *readout]
        )
    run = factory.build_run(cfg, max_episode_steps=4)
    base = run.env.unwrapped
    reads: list[str] = []

    def forbidden(name: str):
        def call(*args, **kwargs):
            reads.append(name)
            raise AssertionError(f"the agent side read the privileged {name}")

        return call

    # The privileged paths: the task's true sub-goals and the sub-goal renderer built from them.
    monkeypatch.setattr(base, "subgoals", forbidden("subgoals"))
    monkeypatch.setattr(factory, "goal_schedule", forbidden("goal_schedule"))
    seen_keys: set[str] = set()
    act = run.agent.act

    def spy(obs):
        seen_keys.update(obs)
        return act(obs)

    monkeypatch.setattr(run.agent, "act", spy)
    result = run.episode(seed=3)
    assert not reads and result.steps >= 1
    assert seen_keys == {"pixels", "proprio"}, seen_keys
    if mode == "perceived":
        assert len(result.pred_errors) == result.steps and np.isfinite(result.pred_errors).all()


def test_the_privileged_reference_is_caught_by_the_same_spies(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check above can fail: the privileged mode reads the true sub-goals, and the same spy stops it."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(
            config_name="benchmark", overrides=["task=reach", "world_model=jepa", "subgoals=privileged", *TINY]
        )
    run = factory.build_run(cfg, max_episode_steps=2)

    def forbidden(*args, **kwargs):
        raise AssertionError("privileged read")

    monkeypatch.setattr(run.env.unwrapped, "subgoals", forbidden)
    with pytest.raises(AssertionError, match="privileged read"):
        run.episode(seed=3)
