#!/usr/bin/env bash
# Set up jepa-mpc on a fresh Debian/Ubuntu machine: a venv with the package, and a working headless OpenGL for
# MuJoCo (Debian's EGL/OSMesa libraries are installed with apt-get when no backend works). Idempotent.
# Usage: scripts/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
GL_PACKAGES="libegl1 libgl1-mesa-dri libegl-mesa0 libosmesa6"

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --upgrade pip
# CPU torch first: an unpinned torch would pull a multi-GB CUDA build.
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  "$VENV/bin/python" -m pip install -q "torch==2.13.0" || "$VENV/bin/python" -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
fi
if [ "${1:-}" = "--dev" ]; then
  "$VENV/bin/python" -m pip install -q -e ".[dev,ogbench]"  # ogbench: the second robot's env and its tests
else
  "$VENV/bin/python" -m pip install -q -e .
fi

pick_gl() {  # remember the first headless GL backend MuJoCo can render with
  for gl in egl osmesa; do
    if MUJOCO_GL=$gl "$VENV/bin/python" -c "import mujoco; m=mujoco.MjModel.from_xml_string('<mujoco/>'); mujoco.Renderer(m, 8, 8)" 2>/dev/null; then
      echo "$gl" > "$VENV/mujoco_gl"; echo "[setup] headless rendering: MUJOCO_GL=$gl"; return 0
    fi
  done
  return 1
}
if ! pick_gl; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  if command -v apt-get >/dev/null && { [ -z "$SUDO" ] || command -v sudo >/dev/null; }; then
    echo "[setup] no headless OpenGL yet: installing $GL_PACKAGES"
    # shellcheck disable=SC2086
    { $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $GL_PACKAGES >/dev/null; } \
      || echo "[setup] WARNING: apt-get could not install $GL_PACKAGES" >&2
  fi
  pick_gl || { echo "[setup] ERROR: MuJoCo cannot render headless (tried EGL and OSMesa). Install: $GL_PACKAGES" >&2; exit 1; }
fi
