"""Progress on the long commands: within seconds of an episode starting, sane in a log (no carriage returns),
rewritten in place on a terminal, and a closing line saying where the outputs are."""

from __future__ import annotations

import io
import subprocess
import sys

from planner.progress import Progress


def test_in_a_log_progress_is_whole_lines_throttled_but_the_first_step_always_shows():
    stream = io.StringIO()
    progress = Progress("demo", episodes=2, stream=stream, every_s=3600.0, tty=False)
    progress.start(seed=7, max_steps=40)
    for step in range(1, 30):
        progress.step(step, {"plan_ms": 100.0 + step, "phase": "above"})
    progress.end(success=True, steps=29)
    progress.close("runs/x/video.mp4")
    text = stream.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 4  # start, the first step (the rest throttled), the end, the closing line
    assert "episode 1/2 (seed 7) step 1/40 above (plan 101 ms)" in lines[1]
    assert "success in 29 steps" in lines[2] and "success 1/1 so far" in lines[2] and "plan 115 ms p50" in lines[2]
    assert lines[3].endswith("outputs: runs/x/video.mp4")


def test_on_a_terminal_one_line_is_rewritten_in_place():
    stream = io.StringIO()
    progress = Progress("benchmark", episodes=1, stream=stream, every_s=0.0, tty=True)
    progress.start(seed=0)
    progress.step(1, {"plan_ms": 5.0})
    progress.step(2, {"plan_ms": 5.0})
    progress.end(success=False, steps=2)
    text = stream.getvalue()
    assert text.count("\r") == 4 and text.count("\n") == 1 and "no success in 2 steps" in text


def test_the_benchmark_cli_shows_episodes_steps_and_where_the_outputs_are(tmp_path):
    tiny = ["planner.num_samples=16", "planner.num_elites=4", "planner.iterations=1", "planner.horizon=3"]
    result = subprocess.run(
        [sys.executable, "-m", "planner.cli", "benchmark", "task=reach", "episodes=2", f"out={tmp_path}", *tiny],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    err = result.stderr
    assert "\r" not in err  # not a terminal: no carriage-return updates in the log
    assert "episode 1/2 (seed 0) step 1/40" in err and "episode 2/2 (seed 1)" in err
    assert "success 2/2 so far" in err or "success 1/2 so far" in err or "success 0/2 so far" in err
    assert f"outputs: {tmp_path / 'results.jsonl'}" in err
