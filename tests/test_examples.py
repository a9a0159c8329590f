"""Every example script runs (tiny budgets), so the examples never rot."""

from __future__ import annotations

import json
import math
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
    assert "| default+ceiling(z_max=0.3) |" in out.stdout  # labelled as the same command line would label it


def test_compare_planners_example(tmp_path):
    out = run("compare_planners.py", "--episodes", "1", "--out", str(tmp_path), "--overrides", *TINY)
    assert "cem" in out.stdout and "mppi" in out.stdout


@pytest.mark.slow
def test_pick_and_place_demo_example(tmp_path):
    out = run("pick_and_place_demo.py", f"out={tmp_path}", *TINY)  # the default world model: the shipped JEPA
    assert (tmp_path / "demo_summary.json").exists() and list(tmp_path.glob("*.mp4")) and list(tmp_path.glob("*.png"))
    assert "->" in out.stdout
    summary = json.loads((tmp_path / "demo_summary.json").read_text())
    assert summary["video_seconds"] >= summary["steps"] / 10 + 3  # real time (10 Hz) or slower, start and end held
    assert "step 1/80" in out.stderr and "outputs: video" in out.stderr  # progress, and where the outputs are


def test_demo_plot_marks_where_each_phase_starts():
    from planner.apps.demo import phase_starts

    steps = [{"step": i, "phase": p} for i, p in enumerate(["above", "above", "around", "close", "above", "above"])]
    assert phase_starts(steps) == [(0, "above"), (2, "around"), (3, "close"), (4, "above")]  # a regrasp re-enters
    assert phase_starts([{"step": 0}]) == []


def test_demo_overlay_never_prints_nan_or_inf_and_names_step_and_phase():
    from planner.apps.demo import overlay_lines

    phases = ("above", "around", "close")
    start = " ".join(overlay_lines({}, 0, 80, phases))
    assert "step 0/80" in start and "nan" not in start and "inf" not in start
    info = {"phase": "around", "plan_cost": math.nan, "feasible_fraction": 0.5, "true_margin": {"a": math.inf}}
    text = " ".join(overlay_lines(info, 7, 80, phases))
    assert "step 7/80" in text and "phase 2/3: around" in text and "feasible 50%" in text
    assert "nan" not in text and "inf" not in text
    info["true_margin"] = {"workspace": 0.02, "min_height": 0.05}
    assert "nearest workspace 2.0 cm" in " ".join(overlay_lines(info, 7, 80, phases))


def test_demo_plots_have_integer_steps_legends_outside_and_distinct_lines(tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from planner.apps import demo

    figures = []
    monkeypatch.setattr(plt, "close", figures.append)
    margins = {"min_height": 0.1, "workspace": 0.1, "ceiling": 0.05}  # two lines on top of each other
    steps = [
        {"step": i, "phase": "above", "plan_ms": 10.0, "cost_terms": {"a": 1.0}, "true_margin": margins}
        for i in range(3)
    ]
    demo.plot_episode(steps, tmp_path / "plot.png")
    (fig,) = figures
    axes = fig.axes
    assert all(float(t).is_integer() for t in axes[-1].get_xticks())  # no half steps
    for ax in axes[:2]:
        legend = ax.get_legend()
        anchor = legend.get_bbox_to_anchor().transformed(ax.transAxes.inverted())
        assert anchor.x0 >= 1.0  # right of the axes, never over the lines
    lines = axes[1].get_lines()[:3]
    assert len({(line.get_linestyle(), line.get_marker()) for line in lines}) == 3  # overlapping lines stay distinct
    assert (tmp_path / "plot.png").exists()
