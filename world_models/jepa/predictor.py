"""Action-conditioned latent predictor: (spatial latent, proprio, action) at t -> the same at t+1, residually.

Conditioning is AdaLN-Zero style (FiLM on group-normalized features, with a zero-initialized gate per block): the
JEPA-WMs study found AdaLN action conditioning and proprioceptive input help. The predictor also predicts the next
(normalized) proprio, so a multi-step rollout carries its own proprio forward and needs no measurement at future
steps. At initialization every block and both output heads are zero, so the predictor starts as the identity.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from world_models.jepa.encoder import coord_grid


class AdaLNBlock(nn.Module):
    """Residual conv block whose normalizations are scaled/shifted and whose output is gated by a condition."""

    def __init__(self, width: int, cond_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(8, width, affine=False)
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.norm2 = nn.GroupNorm(8, width, affine=False)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.modulation = nn.Linear(cond_dim, 5 * width)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        """``x: [B, W, h, w]``, ``c: [B, cond_dim]`` -> ``[B, W, h, w]``."""
        s1, b1, s2, b2, gate = self.modulation(c)[..., None, None].chunk(5, dim=1)
        if torch.is_grad_enabled():
            h = self.conv1(F.silu(self.norm1(x) * (1 + s1) + b1))
            h = self.conv2(F.silu(self.norm2(h) * (1 + s2) + b2))
            return x + gate * h
        # Without autograd (planning): the same operations in the same order, in place on the temporaries, so the
        # result is the same bit for bit with fewer allocations.
        h = self.conv1(F.silu(self.norm1(x).mul_(1 + s1).add_(b1), inplace=True))
        h = self.conv2(F.silu(self.norm2(h).mul_(1 + s2).add_(b2), inplace=True))
        return h.mul_(gate).add_(x)


class LatentPredictor(nn.Module):
    """One-step dynamics in latent space.

    Args:
        latent_channels: C of the spatial latent ``[C, g, g]``.
        proprio_dim: P, size of the (normalized) proprio part of the latent.
        action_dim: A.
        width: hidden channels of the conv trunk.
        blocks: number of AdaLN residual blocks.
        cond_dim: size of the action+proprio embedding.
    """

    def __init__(
        self,
        latent_channels: int = 16,
        proprio_dim: int = 8,
        action_dim: int = 4,
        width: int = 64,
        blocks: int = 4,
        cond_dim: int = 128,
    ) -> None:
        super().__init__()
        self.cond = nn.Sequential(
            nn.Linear(action_dim + proprio_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, cond_dim), nn.SiLU()
        )
        self.inp = nn.Conv2d(latent_channels + 2, width, 3, padding=1)
        self.blocks = nn.ModuleList(AdaLNBlock(width, cond_dim) for _ in range(blocks))
        self.out = nn.Sequential(nn.GroupNorm(8, width), nn.SiLU(), nn.Conv2d(width, latent_channels, 1))
        self.proprio_head = nn.Sequential(
            nn.Linear(2 * width + cond_dim, cond_dim), nn.SiLU(), nn.Linear(cond_dim, proprio_dim)
        )
        for head in (self.out[-1], self.proprio_head[-1]):
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, vis: Tensor, proprio: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """``vis: [B, C, g, g]``, ``proprio: [B, P]`` (normalized), ``action: [B, A]`` -> next ``(vis, proprio)``."""
        c = self.cond(torch.cat([action, proprio], -1))
        h = self.inp(torch.cat([vis, coord_grid(vis.shape[0], vis.shape[-1], vis.device, vis.dtype)], 1))
        for block in self.blocks:
            h = block(h, c)
        pooled = torch.cat([h.mean((-2, -1)), h.amax((-2, -1))], -1)
        return vis + self.out(h), proprio + self.proprio_head(torch.cat([pooled, c], -1))
