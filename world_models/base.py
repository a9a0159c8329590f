"""The WorldModel protocol every planner objective talks to: encode, batched rollout, decode to named quantities."""

from __future__ import annotations

import importlib
from typing import Any, Protocol, runtime_checkable

from torch import Tensor

Obs = dict[str, Any]  # {"pixels": uint8 [H, W, 3] or [B, H, W, 3], "proprio": float32 [P] or [B, P], ...}

# Named physical quantities a world model's decode (its probes) may return, with their trailing shapes.
STATE_KEYS: dict[str, tuple[int, ...]] = {
    "ee_pos": (3,),  # end-effector (fingertip centre) position, metres, world frame
    "cube_pos": (3,),  # cube centre position, metres
    "gripper": (),  # gripper opening in the robot's units (envs.embodiment: Panda metres 0..0.08, UR5e fraction 0..1)
}


@runtime_checkable
class WorldModel(Protocol):
    """A learned or exact model of the scene that a planner can imagine with.

    Shapes: latents are batch-first with any trailing shape ``[*latent]``.
    """

    action_dim: int
    # What it reads, declared by the class so the apps build a run from it instead of testing names:
    reads_pixels: bool  # encode reads camera frames (the env renders them)
    reads_sim_state: bool  # encode reads the simulator's state, obs["sim_state"]: a privileged reference

    def encode(self, obs: Obs) -> Tensor:
        """Observation (single or batched) -> latent ``[B, *latent]``."""
        ...

    def rollout(self, z0: Tensor, actions: Tensor) -> Tensor:
        """``z0: [B, *latent]`` (B = 1 broadcasts), ``actions: [B, H, A]`` -> predicted latents ``[B, H, *latent]``."""
        ...

    def decode(self, z: Tensor) -> dict[str, Tensor]:
        """Latents ``[..., *latent]`` -> named quantities (see ``STATE_KEYS``), each ``[..., *shape]``.

        Optional: a model that also names ``decode_keys`` (a tuple) and takes ``decode(z, keys=[...])`` for a subset
        has each quantity decoded only when a cost term or guardrail reads it (``planner.safety.predicted_states``).
        """
        ...


# The world models a config can name (``world_model.name``): module and class, imported only when asked for.
WORLD_MODELS: dict[str, tuple[str, str]] = {
    "oracle": ("world_models.oracle", "OracleWorldModel"),
    "jepa": ("world_models.jepa.model", "JEPAWorldModel"),
}


def world_model_class(name: str) -> type:
    """The class behind ``world_model.name``, to read what it declares (``reads_pixels``, ``reads_sim_state``)
    before one is built; an unknown name is one ValueError listing the known ones."""
    if name not in WORLD_MODELS:
        raise ValueError(f"unknown world_model {name!r}; known: {', '.join(WORLD_MODELS)}")
    module, attr = WORLD_MODELS[name]
    return getattr(importlib.import_module(module), attr)
