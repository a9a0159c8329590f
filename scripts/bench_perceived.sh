#!/usr/bin/env bash
# The information-contract benchmark (BENCHMARKS.md, "What the agent knows"): the JEPA agent with sub-goals from
# perception (the default a real robot can run), against the privileged reference and the goal photo alone, on the
# same seeds. Resumable: run it again after an interruption. CELLS picks a subset; SEED and EPISODES the seeds.
# Seeds 20000-20039 were used to trace failures and tune; 30000-30037 reported an earlier version and their failures
# were read (final states only); report on fresh ones (the default SEED=40000).
source "$(dirname "$0")/bench_common.sh" bench_perceived 100 40000
CELLS=${CELLS:-"pick_place push reach pick_place_push_fault pick_place_push_early pick_place_obs_noise pick_place_privileged push_privileged pick_place_none"}
J="$J benchmark world_model=jepa episodes=$N seed=$SEED out=$OUT append=true $JEPA_CPU_BUDGET"
for cell in $CELLS; do
  case $cell in
    pick_place) $J task=pick_place subgoals=perceived ;;
    push) $J task=push subgoals=perceived ;;
    reach) $J task=reach subgoals=perceived ;;
    pick_place_push_fault) $J task=pick_place subgoals=perceived faults=push ;;
    pick_place_push_early) $J task=pick_place subgoals=perceived faults=push_early ;;
    pick_place_obs_noise) $J task=pick_place subgoals=perceived faults=obs_noise ;;
    pick_place_privileged) $J task=pick_place subgoals=privileged ;;
    push_privileged) $J task=push subgoals=privileged ;;
    pick_place_none) $J task=pick_place subgoals=none ;;
    pick_place_probe) $J task=pick_place subgoals=perceived perception.source=probe ;;
    pick_place_no_image) $J task=pick_place subgoals=perceived cost.use_latent_goal=false ;;
    *) echo "unknown cell $cell" >&2; exit 2 ;;
  esac
done
