"""Hierarchical sub-goals (planner/apps/hierarchy.py) and the macro world model (world_models/jepa/macro.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from planner.apps.hierarchy import HierarchicalGoals, check_hierarchy
from planner.optimizers import make_optimizer


class LinearMacro:
    """A macro model in which each macro-action moves the latent by ``0.1 * B @ m``; its probe reads dims 0-2."""

    k = 5
    action_dim = 4

    def __init__(self, dim: int = 6) -> None:
        self.b = torch.zeros(dim, 4, dtype=torch.float64)
        self.b[:4, :4] = torch.eye(4) * 0.1
        self.base = self

    def rollout(self, z0: torch.Tensor, macros: torch.Tensor) -> torch.Tensor:
        steps = torch.cumsum(macros @ self.b.T, dim=1)  # [N, H, D]
        return z0[:, None] + steps

    def decode(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"ee_pos": z[..., :3], "gripper": z[..., 3], "cube_pos": z[..., :3]}


def make(goal: torch.Tensor) -> HierarchicalGoals:
    optimizer = make_optimizer(
        "cem", horizon=3, action_dim=4, num_samples=128, num_elites=8, iterations=4, dtype=torch.float64
    )
    mask = torch.ones_like(goal)
    mask[4:] = 0  # the photo's "proprio" part is not compared
    return HierarchicalGoals(LinearMacro(), {"latent": goal, "latent_mask": mask}, optimizer, replan_every=5)


def test_the_first_sub_goal_lies_on_a_path_toward_the_goal_and_is_replanned_every_macro_step() -> None:
    goal = torch.tensor([0.25, -0.2, 0.1, 0.0, 9.0, 9.0], dtype=torch.float64)
    source = make(goal)
    z0 = torch.zeros(1, 6, dtype=torch.float64)
    schedule, info = source({}, z0, None, 0, None)
    sub = schedule.current()
    before = float((z0[0, :4] - goal[:4]).norm())
    after = float((sub["latent"][:4] - goal[:4]).norm())
    assert after < before - 0.05, (before, after)  # one macro-step of at most 0.1 per dim toward the goal
    assert info["high_level_cost"] < 0.01  # three macro-steps reach it
    np.testing.assert_allclose(sub["ee_pos"].numpy(), sub["latent"][:3].numpy())  # the probes' reading of it
    assert float(sub["latent_mask"].sum()) == 6  # an imagined sub-goal has an imagined proprio: all of it counts
    for step in range(1, 5):
        assert source({}, z0, np.zeros(4), step, schedule) == (None, {})
    again, _ = source({}, z0, np.zeros(4), 5, schedule)
    assert again is not None


def test_the_goal_photo_readout_steers_the_path_where_the_latent_alone_cannot() -> None:
    # A goal latent that ranks nothing (all dimensions masked off) and the photo's readout of the hand: every
    # imagined macro-step is pulled toward the read position, so the first sub-goal already heads there.
    goal = torch.zeros(6, dtype=torch.float64)
    optimizer = make_optimizer(
        "cem", horizon=3, action_dim=4, num_samples=128, num_elites=8, iterations=4, dtype=torch.float64
    )
    target = torch.tensor([0.2, -0.15, 0.1], dtype=torch.float64)
    source = HierarchicalGoals(
        LinearMacro(),
        {"latent": goal, "latent_mask": torch.zeros(6, dtype=torch.float64)},
        optimizer,
        replan_every=5,
        readout={"ee_pos": target},
    )
    schedule, _ = source({}, torch.zeros(1, 6, dtype=torch.float64), None, 0, None)
    first = schedule.current()["ee_pos"]
    assert float((first - target).norm()) < float(target.norm()) - 0.08, first  # most of one macro-step's reach
    blind = make(goal)  # the same without a readout: nothing to pursue, no systematic progress toward the target
    blind.goal["latent_mask"] = torch.zeros(6, dtype=torch.float64)
    schedule, _ = blind({}, torch.zeros(1, 6, dtype=torch.float64), None, 0, None)
    assert float((schedule.current()["ee_pos"] - target).norm()) > float((first - target).norm()) + 0.03


def test_a_bad_photo_readout_is_one_error_naming_the_key() -> None:
    from planner.apps.goals import check_perception

    check_perception("none", "jepa", {"photo_readout": ["ee_pos", "cube_pos"]})
    for bad in ("ee_pos", ["hand"], 3):
        with pytest.raises(ValueError, match="perception.photo_readout"):
            check_perception("none", "jepa", {"photo_readout": bad})
    with pytest.raises(ValueError, match="perception.hand_correction"):
        check_perception("perceived", "jepa", {"hand_correction": "yes"})


def test_hierarchy_settings_are_checked_with_the_key_named() -> None:
    check_hierarchy({"horizon": 3, "num_samples": 64, "num_elites": 8, "iterations": 2, "planner": "cem"})
    with pytest.raises(ValueError, match="hierarchy.horizon"):
        check_hierarchy({"horizon": 0})
    with pytest.raises(ValueError, match="hierarchy.planner"):
        check_hierarchy({"planner": "gd"})
    with pytest.raises(ValueError, match="hierarchy.horizn"):
        check_hierarchy({"horizn": 3})
    with pytest.raises(ValueError, match="num_elites"):
        check_hierarchy({"num_samples": 4, "num_elites": 8})


def test_the_macro_model_learns_trains_saves_and_refuses_another_jepa(tmp_path) -> None:
    from world_models.jepa.checkpoint import DEFAULT_CHECKPOINT, load_world_model
    from world_models.jepa.macro import (
        MacroConfig,
        MacroWorldModel,
        encode_collection,
        evaluate_macro,
        file_sha1,
        load_macro,
        macro_windows,
        save_macro,
        train_macro,
    )
    from world_models.jepa.synthetic import write_synthetic_dataset

    torch.manual_seed(0)
    data = write_synthetic_dataset(tmp_path / "data", episodes=6, length=16, episodes_per_chunk=3)
    base = load_world_model()
    episodes = encode_collection(base, data)
    windows = macro_windows(episodes, k=3, steps=2)
    assert windows["z"].shape[1:] == (3, base.latent_dim) and windows["macros"].shape[1:] == (2, 4)
    model = MacroWorldModel(base, MacroConfig(k=3, width=16, blocks=1, cond_dim=16))
    losses = train_macro(model, windows, steps=60, batch=32)
    assert np.mean(losses[-10:]) < np.mean(losses[:10])
    report = evaluate_macro(model, windows, num_random=4)
    assert len(report["macro_latent_err_by_step"]) == 2 and 0.0 <= report["macro_energy_true_action_rate"] <= 1.0
    path = save_macro(tmp_path / "macro.pt", model, file_sha1(DEFAULT_CHECKPOINT), {"k": 3})
    loaded = load_macro(base, path)
    z = windows["z"][:2, 0]
    torch.testing.assert_close(loaded.rollout(z, windows["macros"][:2]), model.rollout(z, windows["macros"][:2]))
    save_macro(tmp_path / "other.pt", model, "0" * 40, {})
    with pytest.raises(ValueError, match="another JEPA"):
        load_macro(base, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="no macro model"):
        load_macro(base, tmp_path / "missing.pt")
