#!/usr/bin/env bash
# The oracle-planner benchmark quoted in BENCHMARKS.md (resumable: rerun to continue).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/bench_oracle}
N=${EPISODES:-50}
export MUJOCO_GL=${MUJOCO_GL:-$(cat .venv/mujoco_gl 2>/dev/null || echo egl)}
J=.venv/bin/jepa-mpc
$J benchmark task=reach episodes=$N out=$OUT append=true
$J benchmark task=reach guardrails=keep_out episodes=$N out=$OUT append=true
$J benchmark task=push episodes=$N out=$OUT append=true
$J benchmark task=pick_place episodes=$N out=$OUT append=true
$J benchmark task=reach planner=mppi episodes=$N out=$OUT append=true
$J benchmark task=push planner=mppi episodes=$N out=$OUT append=true
$J benchmark task=pick_place planner=mppi episodes=$N out=$OUT append=true
