# shellcheck shell=bash
# The preamble the scripts/bench_*.sh share; sourced, not run:
#   source "$(dirname "$0")/bench_common.sh" NAME EPISODES [SEED]
# Sets strict mode, moves to the repository root, and sets OUT (default runs/NAME), N (EPISODES, default the
# second argument), SEED (default the third, when given), MUJOCO_GL (the one setup found, else egl), J (the CLI)
# and JEPA_CPU_BUDGET: the JEPA tables' CPU budget, CEM 64 samples x horizon 4 x 2 iterations (the 128 x 6 x 3
# default is the GPU budget).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-runs/$1}
N=${EPISODES:-$2}
if [ $# -ge 3 ]; then SEED=${SEED:-$3}; fi
export MUJOCO_GL=${MUJOCO_GL:-$(cat .venv/mujoco_gl 2>/dev/null || echo egl)}
J=.venv/bin/jepa-mpc
JEPA_CPU_BUDGET="planner.num_samples=64 planner.num_elites=8 planner.horizon=4 planner.iterations=2"
