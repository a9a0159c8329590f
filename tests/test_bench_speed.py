"""Smoke test of the speed benchmark at a toy size (seconds): it runs, its rows are complete and self-consistent."""

from __future__ import annotations

import json
import math

import pytest
import torch

from planner.bench_speed import MixedPrecisionMLPDynamics, MLPDynamics, main


@pytest.fixture
def one_thread():
    """Tiny ops on a shared machine: one thread avoids OpenMP spin-waiting; restored afterwards."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_bench_speed_toy_size(tmp_path, capsys, one_thread) -> None:
    out = tmp_path / "rows.json"
    argv = ["--samples", "32", "--horizon", "3", "--iterations", "2", "--hidden", "16", "--warmup", "0",
            "--repeats", "1", "--cost-seeds", "1", "--device", "cpu", "--bf16", "on", "--threads", "1",
            "--out", str(out)]  # fmt: skip
    rows = main(argv)
    captured = capsys.readouterr()
    printed = captured.out
    names = {r["planner"] for r in rows}
    assert {"ours_cem", "ours_icem", "ours_mppi", "ours_mppi_decay", "ours_cem_bf16"} <= names
    # pytorch_mppi is a dependency (scripts/setup.sh installs it): its rows are there, and ratios against them
    assert {"pytorch_mppi", "pytorch_mppi_bf16"} <= names
    assert all(r["ratio_vs_pytorch_mppi"] is not None for r in rows)
    # progress while it runs (which planner, which repeat) and a closing line saying where the rows are
    assert "[bench-speed] cpu: 10 planners" in captured.err and "timing repeat 1/1" in captured.err
    assert f"done; rows: {out}" in printed
    by = {r["planner"]: r for r in rows}
    assert by["ours_cem"]["rollouts"] == 2 * 32  # same budget as pytorch_mppi: iterations * N
    assert by["ours_icem"]["rollouts"] < by["ours_cem"]["rollouts"]  # population decay: fewer rollouts
    for r in rows:
        assert r["device"] == "cpu" and r["ms_per_plan"] > 0 and math.isfinite(r["final_cost"])
        assert r["planner"] in printed
    assert json.loads(out.read_text())["rows"][0]["planner"] == rows[0]["planner"]


def test_mixed_precision_dynamics_close_to_fp32() -> None:
    torch.manual_seed(0)
    dyn = MLPDynamics(hidden=64).eval()
    low = MixedPrecisionMLPDynamics(dyn, torch.bfloat16)
    s, a = torch.randn(8, 32), torch.rand(8, 4) * 2 - 1
    with torch.no_grad():
        ref, got = dyn(s, a), low(s, a)
    assert got.dtype == torch.float32
    assert torch.allclose(got, ref, atol=0.02)
