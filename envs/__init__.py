"""MuJoCo Franka Panda tasks (reach, push, pick-and-place) and OGBench's cube-single on a UR5e (optional extra),
registered with gymnasium on import; each task's robot is an ``envs.embodiment.Embodiment``."""

from envs.experts import scripted_expert
from envs.panda_env import PandaEnv
from envs.registry import EMBODIMENTS, ENV_IDS, embodiment_of, env_id, make, phase_names, register_all
from envs.tasks import TASKS

register_all()

__all__ = [
    "EMBODIMENTS",
    "ENV_IDS",
    "embodiment_of",
    "phase_names",
    "TASKS",
    "PandaEnv",
    "env_id",
    "make",
    "register_all",
    "scripted_expert",
]
