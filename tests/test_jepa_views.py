"""Camera views: the env renders `pixels` + `pixels_<camera>`, the JEPA encodes the views its checkpoint names, and
checkpoints from before multi-view load as the front camera alone."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

import envs
from world_models.jepa.checkpoint import DEFAULT_CHECKPOINT, load_world_model, save_checkpoint
from world_models.jepa.data import iter_episodes, read_meta
from world_models.jepa.encoder import ConvEncoder, MultiViewEncoder
from world_models.jepa.model import JEPAConfig, JEPAWorldModel

os.environ.setdefault("MUJOCO_GL", "egl")
TINY = {"enc_width": 8, "latent_channels": 8, "pred_width": 16, "pred_blocks": 1, "cond_dim": 32, "probe_hidden": 32}


def _render_or_skip(fn):  # type: ignore[no-untyped-def]
    try:
        return fn()
    except Exception as e:  # no OpenGL on this machine: the env cannot render
        if "OpenGL" in str(e) or "EGL" in str(e) or "gl" in type(e).__name__.lower():
            pytest.skip(f"rendering unavailable: {e}")
        raise


def test_env_renders_one_key_per_camera_and_the_first_view_is_unchanged() -> None:
    single = envs.make("pick_place")
    multi = envs.make("pick_place", cameras=["front", "wrist"])
    obs1, _ = _render_or_skip(lambda: single.reset(seed=4))
    obs2, _ = multi.reset(seed=4)
    assert set(obs2) == {"pixels", "pixels_wrist", "proprio"}
    assert set(multi.observation_space.spaces) == set(obs2)
    np.testing.assert_array_equal(obs1["pixels"], obs2["pixels"])  # the front view does not depend on other views
    assert obs2["pixels_wrist"].shape == (64, 64, 3) and not np.array_equal(obs2["pixels_wrist"], obs2["pixels"])
    goal = multi.unwrapped.goal_observation()
    assert set(goal) == {"pixels", "pixels_wrist", "proprio"}
    with pytest.raises(ValueError, match="wrist"):
        envs.make("reach", cameras=["front", "fisheye"])


def test_two_view_model_encodes_both_and_names_a_missing_view(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = JEPAWorldModel(JEPAConfig.from_dict({**TINY, "cameras": ["front", "wrist"]}))
    assert isinstance(model.encoder, MultiViewEncoder) and model.pixel_keys == ["pixels", "pixels_wrist"]
    assert model.latent_dim == 2 * 8 * 8 * 8 + 8
    rng = np.random.default_rng(0)
    obs = {
        "pixels": rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
        "pixels_wrist": rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
        "proprio": np.zeros(8, np.float32),
    }
    z = model.encode(obs)
    assert z.shape == (1, model.latent_dim)
    changed = model.encode({**obs, "pixels_wrist": np.zeros((64, 64, 3), np.uint8)})
    assert not torch.allclose(z, changed)  # the wrist view reaches the latent
    with pytest.raises(ValueError, match="pixels_wrist"):
        model.encode({"pixels": obs["pixels"], "proprio": obs["proprio"]})
    assert model.rollout(z, torch.zeros(3, 2, 4)).shape == (3, 2, model.latent_dim)
    save_checkpoint(tmp_path / "m.pt", model)
    loaded = load_world_model(tmp_path / "m.pt")
    assert loaded.cameras == ("front", "wrist")
    torch.testing.assert_close(loaded.encode(obs), z)


def test_checkpoints_without_cameras_see_the_front_camera_alone() -> None:
    model = load_world_model(DEFAULT_CHECKPOINT)
    assert model.cameras == ("front",) and model.pixel_keys == ["pixels"]
    assert isinstance(model.encoder, ConvEncoder) and model.latent_dim == 1032
    with pytest.raises(ValueError, match="distinct"):
        JEPAConfig.from_dict({"cameras": ["front", "front"]})


def test_two_view_collection_trains_a_two_view_model(tmp_path: Path) -> None:
    from world_models.jepa.collect import collect
    from world_models.jepa.train import train

    cfg = {
        "out": str(tmp_path / "data"),
        "env_ids": ["jepa_mpc/PandaPickPlace-v0"],
        "episodes_per_env": 3,
        "episode_len": 7,
        "image_size": 64,
        "cameras": ["front", "wrist"],
        "seed": 11,
        "episodes_per_chunk": 2,
    }
    _render_or_skip(lambda: collect(cfg))
    assert read_meta(tmp_path / "data")["cameras"] == ["front", "wrist"]
    ep = next(iter_episodes(tmp_path / "data"))
    assert ep["pixels_wrist"].shape == ep["pixels"].shape == (7, 64, 64, 3)
    cfg = {
        "data_dir": str(tmp_path / "data"),
        "out": str(tmp_path / "run"),
        "device": "cpu",
        "precision": "fp32",
        "seed": 0,
        "steps": 3,
        "probe_steps": 2,
        "batch_size": 4,
        "lr": 1e-3,
        "probe_lr": 1e-3,
        "weight_decay": 0.0,
        "warmup_steps": 1,
        "grad_clip": 1.0,
        "rollout_k": 2,
        "num_workers": 0,
        "shuffle_buffer": 8,
        "val_every": 3,
        "log_every": 1,
        "eval_every": 100,
        "eval_batches": 1,
        "ckpt_every": 100,
        "loss": {"variant": "vicreg"},
        "model": TINY,
        "eval": {"max_episodes": 2, "horizon": 4, "num_random_actions": 4, "plots": False},
    }
    report = train(cfg)
    assert "probe_err_cube_held_cm" in report
    assert load_world_model(tmp_path / "run" / "model.pt").cameras == ("front", "wrist")
    # one view of the same collection (the ablation the GPU recipe runs): its own model, its own view in evaluation
    train({**cfg, "out": str(tmp_path / "wrist"), "cameras": ["wrist"], "loader": "memory"})
    wrist = load_world_model(tmp_path / "wrist" / "model.pt")
    assert wrist.cameras == ("wrist",) and wrist.latent_dim == 8 * 8 * 8 + 8
    with pytest.raises(ValueError, match="side"):
        train({**cfg, "out": str(tmp_path / "side"), "cameras": ["side"]})


def test_a_run_renders_the_views_its_checkpoint_sees(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_dir

    from planner.apps.factory import build_run

    torch.manual_seed(0)
    ckpt = save_checkpoint(
        tmp_path / "m.pt", JEPAWorldModel(JEPAConfig.from_dict({**TINY, "cameras": ["front", "wrist"]}))
    )
    root = Path(__file__).resolve().parents[1] / "configs"
    with initialize_config_dir(config_dir=str(root), version_base=None):
        cfg = compose("benchmark", overrides=["task=reach", "world_model=jepa", f"world_model.checkpoint={ckpt}"])
        clash = compose(
            "benchmark",
            overrides=["task=reach", "world_model=jepa", f"world_model.checkpoint={ckpt}", "env.cameras=[front]"],
        )
    run = _render_or_skip(lambda: build_run(cfg))
    obs, _ = run.env.reset(seed=0)
    assert {"pixels", "pixels_wrist"} <= set(obs)
    assert run.world_model.encode(obs).shape == (1, run.world_model.latent_dim)
    run.env.close()
    with pytest.raises(ValueError, match="env.cameras"):
        build_run(clash)


def test_a_finer_latent_map_keeps_the_model_protocol() -> None:
    torch.manual_seed(0)
    model = JEPAWorldModel(JEPAConfig.from_dict({**TINY, "downsample": 4}))
    assert model.vis_shape == (8, 16, 16) and model.latent_dim == 8 * 16 * 16 + 8
    obs = {"pixels": np.zeros((2, 64, 64, 3), np.uint8), "proprio": np.zeros((2, 8), np.float32)}
    z = model.encode(obs)
    assert model.decode(model.rollout(z, torch.zeros(2, 3, 4)))["cube_pos"].shape == (2, 3, 3)
    with pytest.raises(ValueError, match="downsample"):
        JEPAWorldModel(JEPAConfig.from_dict({**TINY, "downsample": 2}))
