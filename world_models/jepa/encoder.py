"""Small CoordConv image encoder: 64x64 RGB -> spatial latent [C, 8, 8] that keeps where things are.

Why spatial and CoordConv: the cube is ~4 px wide at 64x64. A global-pooled vector must learn to encode its position
through a bottleneck; a spatial map with coordinate channels keeps position as *where* a feature fires, so a small
probe reads the cube position to ~1 cm. There is no pooling: three stride-2 convolutions (64 -> 32 -> 16 -> 8) keep
every pixel in some receptive field, and the last layer is a residual block at 8x8 (16x16 with ``downsample=4``).
``MultiViewEncoder`` runs one such trunk per camera view.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


def coord_grid(batch: int, size: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Two channels with x and y in [-1, 1]: ``[B, 2, size, size]``."""
    r = torch.linspace(-1.0, 1.0, size, device=device, dtype=dtype)
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    return torch.stack([xx, yy]).expand(batch, 2, size, size)


class ResBlock(nn.Module):
    """Pre-norm residual block of two 3x3 convolutions at constant resolution."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(8, width)
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.norm2 = nn.GroupNorm(8, width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """``x: [B, W, h, w]`` -> same shape."""
        h = self.conv1(F.silu(self.norm1(x)))
        return x + self.conv2(F.silu(self.norm2(h)))


class ConvEncoder(nn.Module):
    """Normalized image ``[B, 3, S, S]`` -> spatial latent ``[B, latent_channels, S/d, S/d]``.

    Args:
        image_size: input side length S (a multiple of ``downsample``).
        width: channels of the first stage (later stages use ``2 * width``).
        latent_channels: C, channels of the latent map.
        coord_conv: append x/y coordinate channels to the input and to the last stage.
        downsample: d, 8 (three stride-2 stages: 8x8 at 64 px) or 4 (the last stage keeps its resolution: a finer
            16x16 map at 64 px, 4x the predictor's work per step).
    """

    def __init__(
        self,
        image_size: int = 64,
        width: int = 32,
        latent_channels: int = 16,
        coord_conv: bool = True,
        downsample: int = 8,
    ) -> None:
        super().__init__()
        if downsample not in (4, 8):
            raise ValueError(f"downsample must be 4 or 8, got {downsample}")
        if image_size % downsample:
            raise ValueError(f"image_size must be a multiple of {downsample}, got {image_size}")
        self.image_size, self.coord_conv = image_size, coord_conv
        self.grid = image_size // downsample
        extra = 2 if coord_conv else 0
        w2 = 2 * width
        self.stem = nn.Sequential(
            nn.Conv2d(3 + extra, width, 3, stride=2, padding=1),
            nn.GroupNorm(8, width),
            nn.SiLU(),
            nn.Conv2d(width, w2, 3, stride=2, padding=1),
            nn.GroupNorm(8, w2),
            nn.SiLU(),
            nn.Conv2d(w2, w2, 3, stride=2 if downsample == 8 else 1, padding=1),
        )
        self.mix = nn.Conv2d(w2 + extra, w2, 1)
        self.block = ResBlock(w2)
        self.out = nn.Sequential(nn.GroupNorm(8, w2), nn.SiLU(), nn.Conv2d(w2, latent_channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        """``x: [B, 3, S, S]`` (normalized floats) -> ``[B, C, S/d, S/d]``."""
        if self.coord_conv:
            x = torch.cat([x, coord_grid(x.shape[0], x.shape[-1], x.device, x.dtype)], 1)
        h = self.stem(x)
        if self.coord_conv:
            h = torch.cat([h, coord_grid(h.shape[0], h.shape[-1], h.device, h.dtype)], 1)
        return self.out(self.block(self.mix(h)))


class MultiViewEncoder(nn.Module):
    """One ``ConvEncoder`` trunk per camera view, fused by stacking their maps along channels.

    ``[B, V, 3, S, S]`` -> ``[B, V * C, S/d, S/d]``. Each view keeps its own weights (a wrist camera and a scene camera
    see different things at the same pixel); the predictor and probes then mix the views at every grid cell.
    """

    def __init__(
        self,
        views: int,
        image_size: int = 64,
        width: int = 32,
        latent_channels: int = 16,
        coord_conv: bool = True,
        downsample: int = 8,
    ) -> None:
        super().__init__()
        self.trunks = nn.ModuleList(
            ConvEncoder(image_size, width, latent_channels, coord_conv, downsample) for _ in range(views)
        )

    def forward(self, x: Tensor) -> Tensor:
        """``x: [B, V, 3, S, S]`` (normalized floats) -> ``[B, V * C, S/d, S/d]``."""
        if x.dim() != 5 or x.shape[1] != len(self.trunks):
            raise ValueError(f"expected [B, {len(self.trunks)}, 3, S, S], got {tuple(x.shape)}")
        return torch.cat([trunk(x[:, v]) for v, trunk in enumerate(self.trunks)], 1)
