"""Hydra launcher plugins run benchmark cells in parallel into one out dir and end with one summary of all of them:
joblib (local processes), submitit's local executor (the SLURM launcher's local twin), Ray on a local cluster
(skipped when hydra-ray-launcher is not installed)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["planner.num_samples=16", "planner.iterations=1", "planner.horizon=2"]  # cem and mppi alike
ENV = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "OMP_NUM_THREADS": "1"}


def has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def sweep(out: Path, launcher: list[str], cells: list[str], episodes: int = 1) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "planner.cli", "benchmark", "-m", *launcher, "task=reach", *cells]
    args += [f"episodes={episodes}", f"out={out}", *TINY]
    done = subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-3000:])
    return done


def check_one_summary(out: Path, done: subprocess.CompletedProcess, rows: int, files: int, episodes: int) -> None:
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary) == rows and all(r["episodes"] == episodes for r in summary), summary
    assert len({(r["planner"], r["config"]) for r in summary}) == rows
    assert len(list((out / "results").glob("*.jsonl"))) == files
    assert f"(from {files} results file(s))" in done.stdout  # the callback's summary, after every job returned
    assert "Incomplete" not in (out / "summary.md").read_text()


@pytest.mark.slow
@pytest.mark.skipif(not has("hydra_plugins.hydra_joblib_launcher"), reason="hydra-joblib-launcher not installed")
def test_joblib_launcher_runs_a_2x2_sweep_in_two_workers_into_one_summary(tmp_path):
    launcher = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]
    done = sweep(tmp_path, launcher, ["planner=cem,mppi", "replan_every=1,2"])
    check_one_summary(tmp_path, done, rows=4, files=4, episodes=1)
    assert "n_jobs=2" in done.stdout + done.stderr


@pytest.mark.slow
@pytest.mark.skipif(not has("hydra_plugins.hydra_submitit_launcher"), reason="hydra-submitit-launcher not installed")
def test_submitit_local_executor_runs_the_shards_of_one_cell(tmp_path):
    done = sweep(tmp_path, ["hydra/launcher=submitit_local"], ["shard=0/2,1/2"], episodes=2)
    check_one_summary(tmp_path, done, rows=1, files=2, episodes=2)
    assert (tmp_path / ".submitit").is_dir()  # the jobs went through submitit


@pytest.mark.slow
@pytest.mark.skipif(not has("hydra_plugins.hydra_ray_launcher"), reason="hydra-ray-launcher (Ray) not installed")
def test_ray_launcher_on_a_local_cluster_runs_a_2x2_sweep_into_one_summary(tmp_path):
    launcher = [
        "hydra/launcher=ray",
        "+hydra.launcher.ray.init.num_cpus=2",
        "+hydra.launcher.ray.init.include_dashboard=false",
    ]
    done = sweep(tmp_path, launcher, ["planner=cem,mppi", "replan_every=1,2"])
    check_one_summary(tmp_path, done, rows=4, files=4, episodes=1)
