"""Scripted experts that solve each task from privileged state: proof of solvability and training data."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np

from envs.panda_env import GRASP_HEIGHT, PandaEnv

Policy = Callable[[dict[str, np.ndarray]], np.ndarray]
OPEN, CLOSE = 1.0, -1.0


def _toward(ee: np.ndarray, goal: np.ndarray, scale: float, gain: float = 1.0) -> np.ndarray:
    """Action that moves the hand toward ``goal``, saturating at one full step."""
    return np.clip(gain * (goal - ee) / scale, -1.0, 1.0)


def _reach(env: PandaEnv) -> Policy:
    def policy(obs: dict[str, np.ndarray]) -> np.ndarray:
        s = env.state()
        return np.r_[_toward(s["ee_pos"], s["target_pos"], env.action_scale), OPEN].astype(np.float32)

    return policy


def _push(env: PandaEnv) -> Policy:
    """Go behind the cube (opposite the target) above it, descend, then push along the cube-to-target line."""
    hover, push_z = 0.10, 0.065
    memory = {"phase": "behind", "episode": None}

    def policy(obs: dict[str, np.ndarray]) -> np.ndarray:
        s = env.state()
        ee, cube, target = s["ee_pos"], s["cube_pos"], s["target_pos"]
        if memory["episode"] is not env.sample:
            memory.update(phase="behind", episode=env.sample)
        to_target = target[:2] - cube[:2]
        u = to_target / max(np.linalg.norm(to_target), 1e-6)
        perp = np.array([-u[1], u[0]])
        behind = cube[:2] - 0.06 * u
        rel = ee[:2] - cube[:2]
        if memory["phase"] == "push" and (rel @ u > -0.025 or abs(rel @ perp) > 0.02):
            memory["phase"] = "behind"  # lost the cube: go round again
        if memory["phase"] == "behind":
            far = np.linalg.norm(ee[:2] - behind) > 0.015
            if far and ee[2] < hover - 0.02:
                goal = np.r_[ee[:2], hover]  # up first, so the fingers never sweep the cube
            elif far:
                goal = np.r_[behind, hover]
            else:
                goal = np.r_[behind, push_z]
                if ee[2] < push_z + 0.008:
                    memory["phase"] = "push"
        if memory["phase"] == "push":
            goal = np.r_[ee[:2] + 0.03 * u - 0.7 * (rel @ perp) * perp, push_z]
        return np.r_[_toward(ee, goal, env.action_scale), CLOSE].astype(np.float32)

    return policy


def _pick_place(env: PandaEnv) -> Policy:
    """Above the cube, descend open, close, lift, carry to the target, hold."""
    hover = 0.12
    memory = {"phase": "approach", "closing": 0, "episode": None}

    def policy(obs: dict[str, np.ndarray]) -> np.ndarray:
        s = env.state()
        ee, cube, target = s["ee_pos"], s["cube_pos"], s["target_pos"]
        if memory["episode"] is not env.sample:  # a new episode: start over
            memory.update(phase="approach", closing=0, episode=env.sample)
        grasp = np.r_[cube[:2], cube[2] - 0.02 + GRASP_HEIGHT]
        phase = memory["phase"]
        if phase == "carry" and np.linalg.norm(cube - (ee - [0, 0, GRASP_HEIGHT - 0.02])) > 0.05:
            phase = "approach"  # dropped it: try again
        if phase == "approach":
            if np.linalg.norm(ee[:2] - cube[:2]) < 0.012:
                phase = "descend"
            goal, grip = np.r_[cube[:2], max(hover, ee[2]) if np.linalg.norm(ee[:2] - cube[:2]) > 0.04 else hover], OPEN
        if phase == "descend":
            goal, grip = grasp, OPEN
            if np.linalg.norm(ee[:2] - cube[:2]) > 0.025:
                phase, goal = "approach", np.r_[cube[:2], hover]
            elif abs(ee[2] - grasp[2]) < 0.008:
                phase, memory["closing"] = "close", 0
        if phase == "close":
            goal, grip = grasp, CLOSE
            memory["closing"] += 1
            if memory["closing"] >= 3:
                phase = "carry"
        if phase == "carry":
            carry = target + (ee - cube)  # keep the cube where it sits in the hand
            if np.linalg.norm(ee[:2] - carry[:2]) > 0.03 and ee[2] < carry[2] + 0.03:
                goal = np.r_[ee[:2] + np.clip(carry[:2] - ee[:2], -0.02, 0.02), max(carry[2] + 0.04, ee[2] + 0.03)]
            else:
                goal = carry
            grip = CLOSE
            if env.task.on_table(target) and np.linalg.norm(cube - target) < 0.02:
                grip = OPEN  # a table target: let go there (success means resting and released)
        memory["phase"] = phase
        return np.r_[_toward(ee, goal, env.action_scale), grip].astype(np.float32)

    return policy


_EXPERTS = {"reach": _reach, "push": _push, "pick_place": _pick_place}


def scripted_expert(env: gym.Env) -> Policy:
    """A policy ``obs -> action`` that solves ``env``'s task using privileged simulator state."""
    base = env.unwrapped
    if not isinstance(base, PandaEnv):
        raise TypeError(f"scripted experts need a jepa_mpc Panda env, got {type(base).__name__}")
    return _EXPERTS[base.task.name](base)
