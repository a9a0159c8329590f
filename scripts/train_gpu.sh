#!/usr/bin/env bash
# The recipe of the shipped JEPA checkpoint (world_models/jepa/MODEL_CARD.md), for a machine with a CUDA GPU.
# Collection renders in parallel processes; training holds the whole split in GPU memory (loader=memory).
# Measured on one H100 + 16 CPU cores: collection 65 s (3,000 episodes, 160,552 frames), pretraining + probes
# ~8 min. Everything resumes: run it again after an interruption.
set -euo pipefail
cd "$(dirname "$0")/.."
J=${JEPA_MPC:-.venv/bin/jepa-mpc}
DATA=${DATA:-data/jepa_gpu}
OUT=${OUT:-runs/jepa_gpu}
WORKERS=${WORKERS:-$(( $(nproc) > 1 ? $(nproc) - 1 : 1 ))}
export MUJOCO_GL=${MUJOCO_GL:-egl}
$J collect out_dir=$DATA episodes_per_env=1000 workers=$WORKERS
$J train data_dir=$DATA out_dir=$OUT device=cuda precision=bf16 loader=memory \
  steps=2500 probe_steps=7000 batch_size=256 warmup_steps=200 lr=1e-3 probe_lr=2e-3 \
  log_every=100 eval_every=1000 ckpt_every=500 eval.max_episodes=150 \
  loss.variant=vicreg loss.vicreg_on=flat loss.var_weight=5 loss.cov_weight=1.0
echo "cp $OUT/model.pt world_models/jepa/checkpoints/default.pt  # to ship it"
