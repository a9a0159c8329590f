#!/usr/bin/env bash
# Issue 16's GPU measurement: episodes per second of 100 JEPA reach episodes, serial against batched (all 100 in
# lockstep lanes, batch_episodes=100), on one GPU, in one process; prints the figures and writes OUT/figures.json.
# On CPU with a small cell: DEVICE=cpu EPISODES=8 LANES=8 BUDGET="planner.num_samples=12 planner.num_elites=3
# planner.horizon=2 planner.iterations=1" scripts/bench_batched.sh
source "$(dirname "$0")/bench_common.sh" bench_batched 100
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
# The GPU budget is configs/planner/cem.yaml's default; the CPU one is the JEPA tables' 64 x 4 x 2.
BUDGET=${BUDGET:-""}
# shellcheck disable=SC2086
.venv/bin/python scripts/bench_batched.py --episodes "$N" --lanes "${LANES:-$N}" --device "${DEVICE:-cuda}" \
  --out "$OUT" -- $BUDGET
