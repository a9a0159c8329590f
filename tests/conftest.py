"""Shared test set-up: headless rendering and a CPU-only torch."""

import os

os.environ.setdefault("MUJOCO_GL", "egl")
