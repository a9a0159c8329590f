"""Collection with the real Panda env: seed-determined episodes, and a second run resumes without duplicates."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from world_models.jepa.data import completed_seeds, iter_episodes, read_meta

os.environ.setdefault("MUJOCO_GL", "egl")


def test_collect_resumes(tmp_path: Path, capsys) -> None:
    pytest.importorskip("envs")
    from world_models.jepa.collect import collect

    cfg = {
        "out_dir": str(tmp_path),
        "env_ids": ["jepa_mpc/PandaReach-v0"],
        "episodes_per_env": 2,
        "episode_len": 6,
        "image_size": 64,
        "seed": 7,
        "episodes_per_chunk": 2,
        "compress": True,
        "action_noise": 0.3,
        "explore_prob": 0.2,
        "explore_len": [2, 3],
        "random_episode_frac": 0.0,
        "gripper_flip_prob": 0.05,
    }
    try:
        collect(cfg)
    except Exception as e:  # no OpenGL on this machine: the env cannot render
        if "OpenGL" in str(e) or "EGL" in str(e) or "gl" in type(e).__name__.lower():
            pytest.skip(f"rendering unavailable: {e}")
        raise
    first = [ep["pixels"].copy() for ep in iter_episodes(tmp_path)]
    capsys.readouterr()
    collect({**cfg, "episodes_per_env": 3})
    assert f"collect: 3 episodes in {tmp_path} (" in capsys.readouterr().out  # the closing line: where they are
    assert completed_seeds(tmp_path) == {7, 8, 9}
    eps = list(iter_episodes(tmp_path))
    assert [int(e["episode_id"][0]) for e in eps] == [0, 1, 2]
    assert all(len(e["pixels"]) == 6 and not e["valid_action"][-1] for e in eps)
    assert (eps[0]["pixels"] == first[0]).all()  # untouched by the resumed run
    assert read_meta(tmp_path)["num_episodes"] == 3


def test_parallel_collection_writes_the_same_episodes(tmp_path: Path) -> None:
    pytest.importorskip("envs")
    from world_models.jepa.collect import collect

    cfg = {
        "env_ids": ["jepa_mpc/PandaPush-v0"],
        "episodes_per_env": 3,
        "episode_len": 5,
        "image_size": 64,
        "seed": 3,
        "episodes_per_chunk": 2,
    }
    try:
        collect({**cfg, "out_dir": str(tmp_path / "serial"), "workers": 1})
    except Exception as e:  # no OpenGL on this machine: the env cannot render
        if "OpenGL" in str(e) or "EGL" in str(e) or "gl" in type(e).__name__.lower():
            pytest.skip(f"rendering unavailable: {e}")
        raise
    collect({**cfg, "out_dir": str(tmp_path / "parallel"), "workers": 2})
    serial = {int(e["episode_id"][0]): e for e in iter_episodes(tmp_path / "serial")}
    parallel = {int(e["episode_id"][0]): e for e in iter_episodes(tmp_path / "parallel")}
    assert list(parallel) == list(serial) == [0, 1, 2]  # same storage order, not only the same episodes
    for i, ep in serial.items():
        np.testing.assert_array_equal(ep["pixels"], parallel[i]["pixels"])
        np.testing.assert_array_equal(ep["actions"], parallel[i]["actions"])
