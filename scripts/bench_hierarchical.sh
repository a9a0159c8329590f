#!/usr/bin/env bash
# Hierarchical planning (BENCHMARKS.md, "Hierarchical sub-goals"): the JEPA agent given only the goal photo, flat
# (subgoals=none) and with the macro model's sub-goals (subgoals=hierarchical), beside the task program
# (subgoals=perceived), on the same seeds and the same low-level budget. Resumable; CELLS picks a subset.
# Seeds 20000-20039 were used to try the settings; report on fresh ones (50000+ for the first cut, 52000+ since the
# photo readout: the default).
source "$(dirname "$0")/bench_common.sh" bench_hierarchical 100 52000
# A mode ending in -latent pursues the goal photo's latent alone (perception.photo_readout=[]), without the hand and
# cube the detector reads off the photo.
CELLS=${CELLS:-"reach_hierarchical reach_none reach_hierarchical-latent reach_none-latent push_hierarchical push_none pick_place_hierarchical pick_place_none"}
J="$J benchmark world_model=jepa episodes=$N seed=$SEED out=$OUT append=true $JEPA_CPU_BUDGET"
for cell in $CELLS; do
  task=${cell%_*}
  mode=${cell##*_}
  case $mode in
    hierarchical|none|perceived) $J task="$task" subgoals="$mode" ;;
    hierarchical-latent|none-latent) $J task="$task" subgoals="${mode%-latent}" "perception.photo_readout=[]" ;;
    *) echo "unknown cell $cell" >&2; exit 2 ;;
  esac
done
