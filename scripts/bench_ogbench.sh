#!/usr/bin/env bash
# OGBench cube-single (UR5e + Robotiq 2F-85), oracle planner, its five evaluation tasks: the rows in BENCHMARKS.md
# (resumable: rerun to continue; needs the ogbench extra, installed by `make setup-dev`).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/bench_ogbench}
N=${EPISODES:-10}
export MUJOCO_GL=${MUJOCO_GL:-$(cat .venv/mujoco_gl 2>/dev/null || echo egl)}
J=.venv/bin/jepa-mpc
for t in 1 2 3 4 5; do
  $J benchmark env=ogbench_cube task=cube_single_task$t guardrails=ur5e cost=ogbench_cube proprio_filter=false \
    planner.num_samples=32 planner.num_elites=6 planner.horizon=4 planner.iterations=2 world_model.nthread=1 \
    episodes=$N seed=0 out=$OUT append=true
done
