"""The WorldModel protocol every planner objective talks to: encode, batched rollout, decode to named quantities."""

from __future__ import annotations

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

    def encode(self, obs: Obs) -> Tensor:
        """Observation (single or batched) -> latent ``[B, *latent]``."""
        ...

    def rollout(self, z0: Tensor, actions: Tensor) -> Tensor:
        """``z0: [B, *latent]`` (B = 1 broadcasts), ``actions: [B, H, A]`` -> predicted latents ``[B, H, *latent]``."""
        ...

    def decode(self, z: Tensor) -> dict[str, Tensor]:
        """Latents ``[..., *latent]`` -> named quantities (see ``STATE_KEYS``), each ``[..., *shape]``."""
        ...
