#!/usr/bin/env bash
# OGBench cube-single (UR5e + Robotiq 2F-85), oracle planner, its five evaluation tasks: the rows in BENCHMARKS.md
# (resumable: rerun to continue; needs the ogbench extra, installed by `make setup-dev`).
source "$(dirname "$0")/bench_common.sh" bench_ogbench 10
for t in 1 2 3 4 5; do
  $J benchmark env=ogbench_cube task=cube_single_task$t guardrails=ur5e cost=ogbench_cube proprio_filter=false \
    planner.num_samples=32 planner.num_elites=6 planner.horizon=4 planner.iterations=2 world_model.nthread=1 \
    episodes=$N seed=0 out=$OUT append=true
done
