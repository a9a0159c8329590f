#!/usr/bin/env bash
# The JEPA-planner benchmark quoted in BENCHMARKS.md, with oracle reach cells beside it (resumable).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/bench_jepa}
N=${EPISODES:-100}
export MUJOCO_GL=${MUJOCO_GL:-$(cat .venv/mujoco_gl 2>/dev/null || echo egl)}
BUDGET="planner.num_samples=64 planner.num_elites=8 planner.horizon=4 planner.iterations=2"
J=.venv/bin/jepa-mpc
$J benchmark task=reach world_model=jepa episodes=$N out=$OUT $BUDGET
$J benchmark task=reach world_model=jepa guardrails=keep_out episodes=$N out=$OUT $BUDGET
$J benchmark task=reach guardrails=keep_out episodes=50 out=$OUT
$J benchmark task=reach world_model=jepa faults=obs_noise episodes=$N out=$OUT $BUDGET
$J benchmark task=reach episodes=50 out=$OUT
