"""Probe heads that read named physical quantities (ee_pos, cube_pos, gripper) out of frozen JEPA latents.

Probes are trained after pretraining, on frozen latents (encoded frames and, optionally, the frozen predictor's
rollouts so that decoding imagined latents is calibrated too). Targets are standardized with statistics stored as
buffers, so a probe's output is in metres.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from world_models.jepa.encoder import coord_grid

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


class SpatialProbeHead(nn.Module):
    """Attention-pooling probe that keeps the spatial layout of the latent map.

    A small conv trunk over ``[vis, x, y]`` gives per-cell features; ``heads`` spatial-softmax maps (soft-argmax
    keypoints) pool ``[features, x, y]`` over the ``g x g`` grid, so a ~5 px object's position is read as *where*
    (and, through the pooled features, the sub-cell offset encoded in the channels) rather than through a squeeze
    bottleneck. The pooled vectors, a global mean of the features and the proprio go through an MLP.
    """

    def __init__(
        self, latent_channels: int, grid: int, proprio_dim: int, out_dim: int, hidden: int = 128, heads: int = 4
    ) -> None:
        super().__init__()
        width = max(16, hidden // 2)
        self.trunk = nn.Sequential(
            nn.Conv2d(latent_channels + 2, width, 1),
            nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.SiLU(),
        )
        self.attn = nn.Conv2d(width, heads, 1)
        self.mlp = nn.Sequential(
            nn.Linear(heads * (width + 2) + width + proprio_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, out_dim),
        )
        self.skip = nn.Linear(proprio_dim, out_dim)  # linear read-out of the proprio part (ee_pos is in it)

    def forward(self, vis: Tensor, proprio: Tensor) -> Tensor:
        """``vis: [B, C, g, g]``, ``proprio: [B, P]`` -> ``[B, out_dim]``."""
        coords = coord_grid(vis.shape[0], vis.shape[-1], vis.device, vis.dtype)
        h = self.trunk(torch.cat([vis, coords], 1))
        w = self.attn(h).flatten(2).softmax(-1)  # [B, heads, g*g]
        vals = torch.cat([h, coords], 1).flatten(2)  # [B, width + 2, g*g]
        pooled = torch.einsum("bkn,bcn->bkc", w, vals).flatten(1)
        return self.mlp(torch.cat([pooled, h.mean((-2, -1)), proprio], -1)) + self.skip(proprio)


class FlatProbeHead(ProbeHead):
    """``ProbeHead`` without the squeeze bottleneck: an MLP on the full flattened map (1x1 conv is the identity size)."""

    def __init__(self, latent_channels: int, grid: int, proprio_dim: int, out_dim: int, hidden: int = 128) -> None:
        super().__init__(latent_channels, grid, proprio_dim, out_dim, hidden, squeeze=latent_channels)


PROBE_TYPES = {"squeeze": ProbeHead, "flat": FlatProbeHead, "spatial": SpatialProbeHead}


class Probes(nn.Module):
    """One head per quantity in ``PROBE_DIMS``; outputs in physical units (metres).

    ``probe_type``: ``spatial`` (``SpatialProbeHead``, the default), ``squeeze`` (``ProbeHead``: 1x1 squeeze to
    8 channels, flatten, MLP; the original head) or ``flat`` (MLP on the whole flattened map).
    """

    def __init__(
        self, latent_channels: int, grid: int, proprio_dim: int, hidden: int = 128, probe_type: str = "spatial"
    ) -> None:
        super().__init__()
        if probe_type not in PROBE_TYPES:
            raise ValueError(f"unknown probe_type {probe_type!r}; known: {sorted(PROBE_TYPES)}")
        head = PROBE_TYPES[probe_type]
        self.heads = nn.ModuleDict(
            {k: head(latent_channels, grid, proprio_dim, d, hidden) for k, d in PROBE_DIMS.items()}
        )
        for k, d in PROBE_DIMS.items():
            self.register_buffer(f"{k}_mean", torch.zeros(d))
            self.register_buffer(f"{k}_std", torch.ones(d))

    def set_stats(self, stats: dict[str, tuple[Tensor, Tensor]]) -> None:
        """Target standardization: ``{name: (mean [d], std [d])}``."""
        for k, (mean, std) in stats.items():
            getattr(self, f"{k}_mean").copy_(mean.reshape(-1))
            getattr(self, f"{k}_std").copy_(std.reshape(-1).clamp_min(1e-4))

    def normalized(self, vis: Tensor, proprio: Tensor, keys: Iterable[str] | None = None) -> dict[str, Tensor]:
        """Standardized predictions ``{name: [B, d]}`` (what the probe loss compares); ``keys``: only these heads
        (each head reads the same input on its own, so one head's output does not depend on which others run)."""
        names = list(self.heads) if keys is None else list(keys)
        return {k: self.heads[k](vis, proprio) for k in names}

    def standardize(self, name: str, value: Tensor) -> Tensor:
        """Physical target ``[B, d]`` -> standardized units."""
        return (value - getattr(self, f"{name}_mean")) / getattr(self, f"{name}_std")

    def forward(self, vis: Tensor, proprio: Tensor, keys: Iterable[str] | None = None) -> dict[str, Tensor]:
        """``vis: [B, C, g, g]``, ``proprio: [B, P]`` -> ``{"ee_pos": [B, 3], "cube_pos": [B, 3], "gripper": [B]}``
        (only ``keys`` when given)."""
        out = {}
        for k, y in self.normalized(vis, proprio, keys).items():
            y = y * getattr(self, f"{k}_std") + getattr(self, f"{k}_mean")
            out[k] = y.squeeze(-1) if PROBE_DIMS[k] == 1 else y
        return out
