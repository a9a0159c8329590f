#!/usr/bin/env bash
# Issue 11's retraining recipe for one CUDA GPU (H100/H200) + 16 CPU cores, planned to finish in ~10 minutes:
#   1. collect 3,000 episodes rendering every camera in $CAMERAS (15 processes; ~2 min)
#   2. train new/: the new observation ($CAMERAS), the shipped model's recipe (flat VICReg); side by side on the same
#      GPU and data, with OLD=1 old/: the shipped observation (front camera alone) at the same budget, and with
#      SIGREG=1 sigreg/: the new observation with SIGReg (the model card's other collapse regularizer)
#   3. jepa-mpc eval-model on a fresh held-out collection (seeds 1,000,000+, never trained on) for each run
#   4. print every report against the issue's targets (scripts/check_targets.py); $RUN/REPORT.txt keeps it.
# Nothing is shipped automatically: copy new/model.pt to world_models/jepa/checkpoints/default.pt only after the
# CPU planning benchmarks hold (MODEL_CARD.md, "Next run"). Everything resumes: run it again after an interruption.
# The previous recipe (front camera, 2,500 + 7,000 steps, one run) is in git history and in MODEL_CARD.md.
# On the workplace's GPU machine: scripts/device_prep.sh here first (wheels + GL loaders), then the call in
# MODEL_CARD.md ("Next run"); RESULTS=$OUT copies the report and the models back. Do not name a variable OUT here:
# the device tool sets it.
set -euo pipefail
cd "$(dirname "$0")/.."
J=${JEPA_MPC:-.venv/bin/jepa-mpc}
PY=${PYTHON:-.venv/bin/python}
DATA=${DATA:-data/jepa_gpu_views}
RUN=${RUN:-runs/jepa_gpu_views}
CAMERAS=${CAMERAS:-[front,wrist]}            # what the new model sees
COLLECT_CAMERAS=${COLLECT_CAMERAS:-$CAMERAS}  # what the collection renders (a superset serves more ablations)
SEED=${SEED:-0}                               # first collection seed (eval-model's held-out set starts at 1,000,000)
EPISODES=${EPISODES:-1000}            # per task
STEPS=${STEPS:-1500}                  # pretraining steps per run
PROBE_STEPS=${PROBE_STEPS:-2500}
BATCH=${BATCH:-256}
HELDOUT=${HELDOUT:-20}                # held-out episodes per task for eval-model
# DEVICE=cpu PRECISION=fp32 LOADER=stream THREADS=1 run the same pipeline on a CPU (the pilot in MODEL_CARD.md)
DEVICE=${DEVICE:-cuda}
PRECISION=${PRECISION:-bf16}
LOADER=${LOADER:-memory}
THREADS=${THREADS:-0}
WORKERS=${WORKERS:-$(( $(nproc) > 1 ? $(nproc) - 1 : 1 ))}
export MUJOCO_GL=${MUJOCO_GL:-egl}
mkdir -p "$RUN"
START=$(date +%s)
stamp() { echo "[$(( $(date +%s) - START )) s] $*"; }
if [[ $DEVICE == cuda* ]]; then
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || { echo "no CUDA GPU (DEVICE=cpu for a pilot)"; exit 1; }
fi

stamp "collect: $EPISODES episodes per task, cameras $COLLECT_CAMERAS, $WORKERS workers"
$J collect out=$DATA episodes_per_env=$EPISODES workers=$WORKERS "cameras=$COLLECT_CAMERAS" seed=$SEED

COMMON=(data_dir=$DATA device=$DEVICE precision=$PRECISION loader=$LOADER threads=$THREADS steps=$STEPS
  probe_steps=$PROBE_STEPS batch_size=$BATCH warmup_steps=$(( STEPS < 2000 ? STEPS / 10 : 200 )) lr=1e-3
  probe_lr=2e-3 log_every=100 eval_every=1000 ckpt_every=500 eval.max_episodes=60 loss.vicreg_on=flat loss.var_weight=5 loss.cov_weight=1.0)
stamp "train: new ($CAMERAS)${OLD:+, old ([front])}${SIGREG:+, sigreg} side by side"
$J train "${COMMON[@]}" out=$RUN/new "cameras=$CAMERAS" loss.variant=vicreg > "$RUN/new.log" 2>&1 &
PIDS=("$!")
RUNS=(new)
if [[ -n "${OLD:-}" ]]; then
  $J train "${COMMON[@]}" out=$RUN/old "cameras=[front]" loss.variant=vicreg > "$RUN/old.log" 2>&1 &
  PIDS+=("$!")
  RUNS+=(old)
fi
if [[ -n "${SIGREG:-}" ]]; then
  $J train "${COMMON[@]}" out=$RUN/sigreg "cameras=$CAMERAS" loss.variant=sigreg > "$RUN/sigreg.log" 2>&1 &
  PIDS+=("$!")
  RUNS+=(sigreg)
fi
for pid in "${PIDS[@]}"; do
  wait "$pid" || { echo "a training run failed:"; tail -n 20 "$RUN"/*.log; kill "${PIDS[@]}" 2>/dev/null; exit 1; }
done
stamp "trained: ${RUNS[*]}"

for run in "${RUNS[@]}"; do
  $J eval-model eval.checkpoint=$RUN/$run/model.pt out=$RUN/$run/heldout device=$DEVICE heldout.workers=$WORKERS \
    heldout.episodes_per_task=$HELDOUT \
    > "$RUN/$run/heldout.log" 2>&1
done
stamp "evaluated on the held-out collection (data/heldout/)"
{
  echo "issue 11 GPU run: cameras $CAMERAS, $EPISODES episodes per task, $STEPS + $PROBE_STEPS steps, $(( $(date +%s) - START )) s"
  for run in "${RUNS[@]}"; do
    $PY scripts/check_targets.py "$RUN/$run/heldout/model_report.json"
  done
} | tee "$RUN/REPORT.txt"
if [[ -n "${RESULTS:-}" ]]; then  # the few files worth bringing back from a lent machine (the device tool's $OUT)
  mkdir -p "$RESULTS"
  cp "$RUN/REPORT.txt" "$RESULTS/"
  for run in "${RUNS[@]}"; do
    cp "$RUN/$run/model.pt" "$RESULTS/${run}_model.pt"
    cp "$RUN/$run/heldout/model_report.json" "$RESULTS/${run}_heldout_report.json"
  done
fi
echo "to ship after the CPU planning benchmarks: cp $RUN/new/model.pt world_models/jepa/checkpoints/default.pt"
