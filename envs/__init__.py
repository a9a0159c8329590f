"""MuJoCo Franka Panda tasks (reach, push, pick-and-place), registered with gymnasium on import."""

from envs.experts import scripted_expert
from envs.panda_env import PandaEnv
from envs.registry import ENV_IDS, env_id, make, register_all
from envs.tasks import TASKS

register_all()

__all__ = ["ENV_IDS", "TASKS", "PandaEnv", "env_id", "make", "register_all", "scripted_expert"]
