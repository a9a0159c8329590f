#!/usr/bin/env bash
# The JEPA-planner benchmark quoted in BENCHMARKS.md (resumable: run it again after an interruption).
# CELLS picks a subset, e.g. CELLS="pick_place push" scripts/bench_jepa.sh.
source "$(dirname "$0")/bench_common.sh" bench_jepa 100
CELLS=${CELLS:-"pick_place push reach reach_keep_out reach_obs_noise pick_place_push_fault pick_place_obs_noise"}
# These tables are the privileged reference (the simulator's true cube and target fill the sub-goals); the
# perceived agent a real robot can run is scripts/bench_perceived.sh. SUBGOALS=perceived runs these cells with it.
BUDGET="$JEPA_CPU_BUDGET subgoals=${SUBGOALS:-privileged}"
for cell in $CELLS; do
  case $cell in
    pick_place) $J benchmark task=pick_place world_model=jepa episodes=$N out=$OUT append=true $BUDGET ;;
    push) $J benchmark task=push world_model=jepa episodes=$N out=$OUT append=true $BUDGET ;;
    reach) $J benchmark task=reach world_model=jepa episodes=$N out=$OUT append=true $BUDGET ;;
    reach_keep_out) $J benchmark task=reach world_model=jepa guardrails=keep_out episodes=$N out=$OUT append=true $BUDGET ;;
    reach_obs_noise) $J benchmark task=reach world_model=jepa faults=obs_noise episodes=$N out=$OUT append=true $BUDGET ;;
    pick_place_push_fault) $J benchmark task=pick_place world_model=jepa faults=push episodes=$N out=$OUT append=true $BUDGET ;;
    pick_place_obs_noise) $J benchmark task=pick_place world_model=jepa faults=obs_noise episodes=$N out=$OUT append=true $BUDGET ;;
    *) echo "unknown cell $cell" >&2; exit 2 ;;
  esac
done
