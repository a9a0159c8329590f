#!/usr/bin/env bash
# Set up jepa-mpc on a fresh Debian/Ubuntu machine: headless-rendering libraries, a venv, the package.
# Idempotent: a second run only checks. Usage: scripts/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}

need_gl() { ! ldconfig -p 2>/dev/null | grep -q "libEGL.so.1" || ! ldconfig -p 2>/dev/null | grep -q "libOSMesa.so"; }
if need_gl; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "[setup] installing headless rendering libraries (EGL + OSMesa)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libegl1 libgl1-mesa-dri libegl-mesa0 libosmesa6 >/dev/null
  elif command -v apt-get >/dev/null && command -v sudo >/dev/null; then
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libegl1 libgl1-mesa-dri libegl-mesa0 libosmesa6 >/dev/null
  else
    echo "[setup] WARNING: libEGL/libOSMesa not found and cannot apt-get install them." >&2
    echo "[setup] Install libegl1 libgl1-mesa-dri libegl-mesa0 (or libosmesa6) for headless MuJoCo rendering." >&2
  fi
fi

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
  "$VENV/bin/python" -m pip install -q -e ".[dev]"
else
  "$VENV/bin/python" -m pip install -q -e .
fi
# Pick a working headless GL backend once and remember it.
for gl in egl osmesa; do
  if MUJOCO_GL=$gl "$VENV/bin/python" -c "import mujoco; m=mujoco.MjModel.from_xml_string('<mujoco/>'); mujoco.Renderer(m, 8, 8)" 2>/dev/null; then
    echo "$gl" > "$VENV/mujoco_gl"; echo "[setup] headless rendering: MUJOCO_GL=$gl"; break
  fi
done
[ -f "$VENV/mujoco_gl" ] || { echo "[setup] ERROR: no headless OpenGL (tried EGL and OSMesa); see README" >&2; exit 1; }
