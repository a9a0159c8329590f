"""Probe heads that read named physical quantities (ee_pos, cube_pos, gripper) out of frozen JEPA latents.

Probes are trained after pretraining, on frozen latents (encoded frames and, optionally, the frozen predictor's
rollouts so that decoding imagined latents is calibrated too). Targets are standardized with statistics stored as
buffers, so a probe's output is in metres.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

PROBE_DIMS: dict[str, int] = {"ee_pos": 3, "cube_pos": 3, "gripper": 1}


class ProbeHead(nn.Module):
    """Spatial latent ``[B, C, g, g]`` + proprio ``[B, P]`` -> ``[B, out_dim]`` (standardized units)."""

    def __init__(
        self, latent_channels: int, grid: int, proprio_dim: int, out_dim: int, hidden: int = 128, squeeze: int = 8
    ) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(latent_channels, squeeze, 1)
        self.mlp = nn.Sequential(
            nn.Linear(squeeze * grid * grid + proprio_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, vis: Tensor, proprio: Tensor) -> Tensor:
        """``vis: [B, C, g, g]``, ``proprio: [B, P]`` -> ``[B, out_dim]``."""
        return self.mlp(torch.cat([self.reduce(vis).flatten(1), proprio], -1))


class Probes(nn.Module):
    """One head per quantity in ``PROBE_DIMS``; outputs in physical units (metres)."""

    def __init__(self, latent_channels: int, grid: int, proprio_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.heads = nn.ModuleDict(
            {k: ProbeHead(latent_channels, grid, proprio_dim, d, hidden) for k, d in PROBE_DIMS.items()}
        )
        for k, d in PROBE_DIMS.items():
            self.register_buffer(f"{k}_mean", torch.zeros(d))
            self.register_buffer(f"{k}_std", torch.ones(d))

    def set_stats(self, stats: dict[str, tuple[Tensor, Tensor]]) -> None:
        """Target standardization: ``{name: (mean [d], std [d])}``."""
        for k, (mean, std) in stats.items():
            getattr(self, f"{k}_mean").copy_(mean.reshape(-1))
            getattr(self, f"{k}_std").copy_(std.reshape(-1).clamp_min(1e-4))

    def normalized(self, vis: Tensor, proprio: Tensor) -> dict[str, Tensor]:
        """Standardized predictions ``{name: [B, d]}`` (what the probe loss compares)."""
        return {k: head(vis, proprio) for k, head in self.heads.items()}

    def standardize(self, name: str, value: Tensor) -> Tensor:
        """Physical target ``[B, d]`` -> standardized units."""
        return (value - getattr(self, f"{name}_mean")) / getattr(self, f"{name}_std")

    def forward(self, vis: Tensor, proprio: Tensor) -> dict[str, Tensor]:
        """``vis: [B, C, g, g]``, ``proprio: [B, P]`` -> ``{"ee_pos": [B, 3], "cube_pos": [B, 3], "gripper": [B]}``."""
        out = {}
        for k, y in self.normalized(vis, proprio).items():
            y = y * getattr(self, f"{k}_std") + getattr(self, f"{k}_mean")
            out[k] = y.squeeze(-1) if PROBE_DIMS[k] == 1 else y
        return out
