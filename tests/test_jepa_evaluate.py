"""eval-model as a user runs it: `out=` (alias `out_dir`), a held-out set collected when no data is given, the
held-cube metric, and the seed check against the checkpoint's training data."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from world_models.jepa.checkpoint import save_checkpoint
from world_models.jepa.evaluate import cube_held_mask, evaluate
from world_models.jepa.model import JEPAConfig, JEPAWorldModel
from world_models.jepa.train import out_path

os.environ.setdefault("MUJOCO_GL", "egl")
ROOT = Path(__file__).resolve().parents[1]
TINY = {"enc_width": 8, "latent_channels": 8, "pred_width": 16, "pred_blocks": 1, "cond_dim": 32, "probe_hidden": 32}


def test_out_is_the_key_and_out_dir_its_alias(tmp_path: Path) -> None:
    assert out_path({"out": None, "out_dir": None}, "runs/x") == Path("runs/x")
    assert out_path({"out": str(tmp_path)}, "runs/x") == tmp_path
    assert out_path({"out": None, "out_dir": str(tmp_path)}, "runs/x") == tmp_path
    assert out_path({"out": str(tmp_path), "out_dir": str(tmp_path)}, "runs/x") == tmp_path
    with pytest.raises(ValueError, match="out_dir"):
        out_path({"out": "a", "out_dir": "b"}, "runs/x")


@pytest.mark.parametrize("name", ["eval_model", "train", "collect"])
def test_every_jepa_config_takes_out_and_out_dir(name: str) -> None:
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
        assert compose(name, overrides=["out=runs/a"]).out == "runs/a"
        assert compose(name, overrides=["out_dir=runs/b"]).out_dir == "runs/b"


def test_every_subcommand_writes_to_out() -> None:
    """One spelling across subcommands: every hydra subcommand's config has ``out``."""
    from planner.cli import SUBCOMMANDS

    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
        for _, config_name, _ in SUBCOMMANDS.values():
            assert compose(config_name, overrides=["out=runs/a"]).out == "runs/a", config_name


def test_eval_out_dir_that_disagrees_with_out_is_one_error(tmp_path: Path) -> None:
    cfg = {"out": str(tmp_path / "a"), "out_dir": None, "eval": {"out_dir": str(tmp_path / "b")}}
    with pytest.raises(ValueError, match="eval.out_dir is an alias of out"):
        evaluate(cfg)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before anything is written


def test_held_mask_needs_the_cube_between_closed_fingers() -> None:
    ee = np.array([[0.5, 0.0, 0.055]] * 4)
    cube = np.array([[0.5, 0.0, 0.02], [0.5, 0.0, 0.02], [0.55, 0.0, 0.02], [0.5, 0.0, 0.2]])
    gripper = np.array([0.04, 0.08, 0.04, 0.04])  # closed on it, open, beside it, far below the hand
    np.testing.assert_array_equal(cube_held_mask(ee, cube, gripper), [True, False, False, False])


def _tiny_checkpoint(path: Path, base_seed: int, episodes: int) -> Path:
    torch.manual_seed(0)
    model = JEPAWorldModel(JEPAConfig.from_dict(TINY))
    return save_checkpoint(path, model, metadata={"data": {"base_seed": base_seed, "num_episodes": episodes}})


def _cfg(tmp_path: Path, ckpt: Path, **heldout: int) -> dict:
    return {
        "out": str(tmp_path / "report"),
        "out_dir": None,
        "data_dir": None,
        "val_every": 10,
        "device": "cpu",
        "heldout": {"dir": str(tmp_path / "heldout"), "seed": 1000, "episodes_per_task": 1, "workers": 1, **heldout},
        "eval": {"checkpoint": str(ckpt), "max_episodes": 10, "horizon": 10, "num_random_actions": 4, "plots": False},
    }


def test_eval_model_without_data_collects_a_heldout_set_and_reports_the_new_keys(tmp_path: Path, capsys) -> None:
    pytest.importorskip("envs")
    ckpt = _tiny_checkpoint(tmp_path / "m.pt", base_seed=0, episodes=30)
    try:
        report = evaluate(_cfg(tmp_path, ckpt))
    except Exception as e:  # no OpenGL on this machine: the env cannot render
        if "OpenGL" in str(e) or "EGL" in str(e) or "gl" in type(e).__name__.lower():
            pytest.skip(f"rendering unavailable: {e}")
        raise
    saved = json.loads((tmp_path / "report" / "model_report.json").read_text())
    for key in (
        "probe_err_cube_cm",
        "probe_err_cube_cm_median",
        "probe_err_cube_cm_p90",
        "probe_err_cube_held_cm",
        "rollout10_cube_err_cm",
        "probe_err_ee_cm",
        "effective_rank_ratio",
        "energy_true_action_rate",
    ):
        assert key in saved and key in report
    assert report["split"] == "all" and report["n_episodes"] == 3  # one per task, every one held out by its seed
    (cache,) = (tmp_path / "heldout").iterdir()
    meta = json.loads((cache / "meta.json").read_text())
    assert meta["base_seed"] == 1000 and meta["cameras"] == ["front"]
    capsys.readouterr()
    evaluate(_cfg(tmp_path, ckpt))  # a second run reuses the cache: nothing re-collected
    printed = capsys.readouterr()
    assert "eval-model: held-out episodes" in printed.err and "3/3" in printed.err  # progress over the episodes
    assert "wrote " in printed.out  # and where the report is
    assert json.loads((cache / "meta.json").read_text())["num_episodes"] == 3


def test_heldout_seeds_that_overlap_training_are_refused(tmp_path: Path) -> None:
    ckpt = _tiny_checkpoint(tmp_path / "m.pt", base_seed=0, episodes=3000)
    with pytest.raises(ValueError, match="heldout.seed=1000.*overlap"):
        evaluate(_cfg(tmp_path, ckpt))
    assert not (tmp_path / "heldout").exists()  # refused before anything is written
