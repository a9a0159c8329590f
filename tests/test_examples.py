"""Every example script runs (tiny budgets), so the examples never rot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TINY = ["planner.num_samples=16", "planner.iterations=1", "planner.horizon=3"]


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_custom_guardrail_example(tmp_path):
    out = run("custom_guardrail.py", "--episodes", "1", "--out", str(tmp_path), "--overrides", *TINY)
    assert "ceiling" in out.stdout


def test_compare_planners_example(tmp_path):
    out = run("compare_planners.py", "--episodes", "1", "--out", str(tmp_path), "--overrides", *TINY)
    assert "cem" in out.stdout and "mppi" in out.stdout


@pytest.mark.slow
def test_pick_and_place_demo_example(tmp_path):
    out = run("pick_and_place_demo.py", f"out={tmp_path}", *TINY)  # the default world model: the shipped JEPA
    assert (tmp_path / "demo_summary.json").exists() and list(tmp_path.glob("*.mp4")) and list(tmp_path.glob("*.png"))
    assert "->" in out.stdout


def test_demo_plot_marks_where_each_phase_starts():
    from planner.apps.demo import phase_starts

    steps = [{"step": i, "phase": p} for i, p in enumerate(["above", "above", "around", "close", "above", "above"])]
    assert phase_starts(steps) == [(0, "above"), (2, "around"), (3, "close"), (4, "above")]  # a regrasp re-enters
    assert phase_starts([{"step": 0}]) == []
