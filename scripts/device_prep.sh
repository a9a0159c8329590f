#!/usr/bin/env bash
# Prepares, on this (CPU) machine, what the workplace's GPU machine lacks to run scripts/train_gpu.sh: the project's
# Python packages as wheels in .whl/ (the GPU image has Python 3.12 with torch, numpy, scipy, tqdm, imageio and
# matplotlib, but no MuJoCo, gymnasium or hydra, and it cannot download) and the EGL/GL loader packages in .gl/.
# Both folders are git-ignored and travel with the device tool's `carry`; MODEL_CARD.md ("Next run") has the call.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP=${PIP:-.venv/bin/python -m pip}
PLAT=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
mkdir -p .whl
$PIP download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${PLAT[@]}" -d .whl \
  mujoco==4.0.0 mujoco-core==4.0.0 mujoco-studio==4.0.0 glfw==2.11.0 PyOpenGL==3.1.10 gymnasium==1.4.0 \
  farama-notifications==0.0.6 gymnasium-robotics==1.4.2 hydra-core==1.3.8 omegaconf==2.3.1
# hydra's parser runtime is published as a source archive only: build its (pure Python) wheel here
[[ -n $(ls .whl/antlr4_python3_runtime-4.9.3-*.whl 2>/dev/null) ]] || $PIP wheel -q --no-deps -w .whl antlr4-python3-runtime==4.9.3
mkdir -p .gl /tmp/amd64/partial
o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
apt-get "${o[@]}" update -qq
(cd .gl && apt-get "${o[@]}" download -qq libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
du -sh .whl .gl
ls .whl .gl
