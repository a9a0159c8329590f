"""The JEPA world model: CoordConv encoder + AdaLN latent predictor + probes, behind the WorldModel protocol.

Latent layout: a flat vector ``z = [vis.flatten(), proprio_scale * normalized_proprio]`` of size
``D = V * C * g * g + P`` (``V`` camera views, ``C`` latent channels per view, ``g = image_size / downsample``,
``P`` proprio size; 1 * 16*8*8 + 8 = 1032 by default).

Views: ``config.cameras`` names the env cameras the model sees, in order; the first one's frames are the observation
key ``pixels``, every further camera's ``pixels_<camera>`` (the env's keys, ``envs.panda_env``). A checkpoint
without ``cameras`` (all before multi-view) sees ``["front"]``, so it encodes and plans exactly as before. The proprio part is in the latent because rollouts need proprio at future steps: the predictor predicts
the next proprio alongside the next visual map, so ``rollout`` needs only ``z0`` and actions.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from world_models.base import Obs
from world_models.jepa.encoder import ConvEncoder, MultiViewEncoder
from world_models.jepa.predictor import LatentPredictor
from world_models.jepa.probes import PROBE_DIMS, Probes

PIXEL_MEAN, PIXEL_STD = 0.5, 0.25


@dataclass
class JEPAConfig:
    """Architecture hyperparameters (plain values; stored in every checkpoint)."""

    image_size: int = 64
    cameras: tuple[str, ...] = ("front",)  # env cameras the encoder sees: obs keys pixels, pixels_<camera>, ...
    proprio_dim: int = 8
    action_dim: int = 4
    enc_width: int = 32
    latent_channels: int = 16
    coord_conv: bool = True
    downsample: int = 8  # image pixels per latent cell: 8 (an 8x8 map at 64 px) or 4 (a finer 16x16 map)
    pred_width: int = 64
    pred_blocks: int = 4
    cond_dim: int = 128
    probe_hidden: int = 128
    probe_type: str = "spatial"
    proprio_scale: float = 1.0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JEPAConfig:
        """Build from a dict; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown JEPAConfig keys {sorted(unknown)}; known: {sorted(known)}")
        if "cameras" in d:
            d = {**d, "cameras": tuple(d["cameras"])}
            if not d["cameras"] or len(set(d["cameras"])) != len(d["cameras"]):
                raise ValueError(f"cameras must be a non-empty list of distinct names, got {list(d['cameras'])}")
        return cls(**d)


def pixel_keys(cameras: tuple[str, ...] | list[str]) -> list[str]:
    """Observation keys of the camera views: ``pixels`` for the first camera, ``pixels_<camera>`` for the others."""
    return ["pixels"] + [f"pixels_{c}" for c in cameras[1:]]


MIN_CHUNK_ROWS = 16


def row_chunks(n: int, size: int) -> list[slice]:
    """``n`` rows as consecutive slices of ``size`` rows, or one slice when ``size`` is 0 or covers them all.

    A remainder under :data:`MIN_CHUNK_ROWS` rows joins the chunk before it: the CPU kernels (oneDNN convolutions,
    MKL matrix products) pick their blocking by batch size, and on the development CPU a batch under 16 rows gave
    rows that differ in the last bits from the same rows in a larger batch, while chunks of 16 rows or more gave the
    same bits (tests/test_jepa_model.py checks chunked against unchunked decodes)."""
    if size <= 0 or n <= size:
        return [slice(0, n)]
    starts = list(range(0, n, size))
    if len(starts) > 1 and n - starts[-1] < MIN_CHUNK_ROWS:
        starts.pop()
    return [slice(a, b) for a, b in zip(starts, [*starts[1:], n], strict=True)]


def _as_tensor(x: Any, device: torch.device) -> Tensor:
    return torch.from_numpy(np.asarray(x)).to(device) if not isinstance(x, Tensor) else x.to(device)


class JEPAWorldModel(nn.Module):
    """``encode`` / ``rollout`` / ``decode`` over flat latents ``[B, D]`` (see module docstring for the layout).

    Args:
        config: architecture; defaults give ~1M parameters.
        device, dtype: where and in what precision the parameters live.
        autocast_bf16: run ``rollout`` under bfloat16 autocast (outputs are cast back to ``dtype``).
    """

    reads_pixels = True  # it encodes the robot's own frames and proprio
    reads_sim_state = False
    decode_keys: tuple[str, ...] = tuple(PROBE_DIMS)  # what decode returns; ``decode(z, keys=...)`` picks some
    # Latents per chunk of a decode on a CPU without gradients (0: one call for all). The probes' activations for 64
    # latents fit a core's L2 cache where those of a 64 x 4 plan's 256 do not (BENCHMARKS.md, "Planning step time"),
    # and every row comes out bit for bit as from one call (tests/test_jepa_model.py).
    cpu_decode_rows: int = 64

    def __init__(
        self,
        config: JEPAConfig | None = None,
        *,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        autocast_bf16: bool = False,
    ) -> None:
        super().__init__()
        self.config = cfg = config or JEPAConfig()
        self.action_dim, self.proprio_dim, self.image_size = cfg.action_dim, cfg.proprio_dim, cfg.image_size
        self.grid = cfg.image_size // cfg.downsample
        self.cameras, self.pixel_keys = tuple(cfg.cameras), pixel_keys(cfg.cameras)
        channels = cfg.latent_channels * len(self.cameras)  # views stacked along channels
        self.vis_shape = (channels, self.grid, self.grid)
        self.latent_dim = channels * self.grid * self.grid + cfg.proprio_dim
        self.autocast_bf16 = autocast_bf16
        self._bf16_weights = False  # set by use_bf16_weights
        # One view keeps the single-trunk module (and its state-dict keys), so older checkpoints load unchanged.
        self.encoder: nn.Module = (
            ConvEncoder(cfg.image_size, cfg.enc_width, cfg.latent_channels, cfg.coord_conv, cfg.downsample)
            if len(self.cameras) == 1
            else MultiViewEncoder(
                len(self.cameras), cfg.image_size, cfg.enc_width, cfg.latent_channels, cfg.coord_conv, cfg.downsample
            )
        )
        self.predictor = LatentPredictor(
            channels, cfg.proprio_dim, cfg.action_dim, cfg.pred_width, cfg.pred_blocks, cfg.cond_dim
        )
        self.probes = Probes(channels, self.grid, cfg.proprio_dim, cfg.probe_hidden, cfg.probe_type)
        self.register_buffer("proprio_mean", torch.zeros(cfg.proprio_dim))
        self.register_buffer("proprio_std", torch.ones(cfg.proprio_dim))
        self.to(device=device, dtype=dtype)

    # ------------------------------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        """Device of the parameters."""
        return self.proprio_mean.device

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the parameters."""
        return self.proprio_mean.dtype

    @property
    def latent_shape(self) -> tuple[int]:
        """Trailing latent shape ``(D,)``."""
        return (self.latent_dim,)

    def set_proprio_stats(self, mean: Tensor, std: Tensor) -> None:
        """Proprio standardization ``mean, std: [P]`` (computed from the training data)."""
        self.proprio_mean.copy_(mean)
        self.proprio_std.copy_(std.clamp_min(1e-4))

    # ------------------------------------------------------------------------------------------ latent layout
    def split(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z: [..., D]`` -> ``(vis [..., C, g, g], proprio_norm [..., P])`` (proprio unscaled)."""
        n = self.latent_dim - self.proprio_dim
        return z[..., :n].unflatten(-1, self.vis_shape), z[..., n:] / self.config.proprio_scale

    def join(self, vis: Tensor, proprio_norm: Tensor) -> Tensor:
        """Inverse of ``split``: ``vis [..., C, g, g]``, ``proprio_norm [..., P]`` -> ``z [..., D]``."""
        return torch.cat([vis.flatten(-3), proprio_norm * self.config.proprio_scale], -1)

    # ------------------------------------------------------------------------------------------ encode
    def normalize_proprio(self, proprio: Tensor) -> Tensor:
        """Raw proprio ``[..., P]`` -> standardized."""
        return (proprio - self.proprio_mean) / self.proprio_std

    def encode_tensors(self, pixels: Tensor, proprio: Tensor, encoder: nn.Module | None = None) -> Tensor:
        """``pixels: uint8 [B, H, W, 3]`` (one view) or ``[B, V, H, W, 3]`` (views in ``cameras`` order),
        ``proprio: [B, P]`` raw -> ``z [B, D]`` (no input validation)."""
        x = (pixels.to(self.dtype).movedim(-1, -3) / 255.0 - PIXEL_MEAN) / PIXEL_STD
        vis = (encoder or self.encoder)(x)
        return self.join(vis, self.normalize_proprio(proprio.to(self.dtype)))

    def encode(self, obs: Obs) -> Tensor:
        """Single obs (``pixels [H, W, 3]`` and any further view ``pixels_<camera>``, ``proprio [P]``) or batched
        -> ``[B, D]``.

        Raises ``ValueError`` for a missing key (naming it), wrong image size or channels, non-uint8 pixels, a proprio
        of the wrong size, mismatched batch sizes or non-finite proprio.
        """
        missing = [k for k in (*self.pixel_keys, "proprio") if k not in obs]
        if missing:
            raise ValueError(
                f"obs lacks {missing}: this model sees cameras {list(self.cameras)} as keys {self.pixel_keys} "
                f"(env cameras={list(self.cameras)}), plus 'proprio'; got keys {sorted(obs)}"
            )
        views = [self._view(obs, k) for k in self.pixel_keys]
        if len({v.shape[0] for v in views}) > 1:
            raise ValueError(f"batch sizes differ between views {self.pixel_keys}: {[v.shape[0] for v in views]}")
        pixels = views[0] if len(views) == 1 else torch.stack(views, 1)
        proprio = _as_tensor(obs["proprio"], self.device)
        if proprio.dim() == 1:
            proprio = proprio[None]
        if proprio.dim() != 2 or proprio.shape[1] != self.proprio_dim:
            raise ValueError(
                f"proprio must be [{self.proprio_dim}] or [B, {self.proprio_dim}], got {tuple(proprio.shape)}"
            )
        if proprio.shape[0] != pixels.shape[0]:
            raise ValueError(f"batch sizes differ: pixels {pixels.shape[0]}, proprio {proprio.shape[0]}")
        if not torch.isfinite(proprio).all():
            raise ValueError(f"proprio contains NaN or inf: {proprio.tolist()}")
        return self.encode_tensors(pixels, proprio.float())

    def _view(self, obs: Obs, key: str) -> Tensor:
        """One camera view of ``obs`` as ``uint8 [B, S, S, 3]``; ``ValueError`` naming ``key`` if malformed."""
        pixels = _as_tensor(obs[key], self.device)
        if pixels.dtype != torch.uint8:
            raise ValueError(f"{key} must be uint8 [B, H, W, 3] in 0..255, got dtype {pixels.dtype}")
        if pixels.dim() == 3:
            pixels = pixels[None]
        s = self.image_size
        if pixels.dim() != 4 or tuple(pixels.shape[1:]) != (s, s, 3):
            raise ValueError(f"{key} must be [H, W, 3] or [B, H, W, 3] with H = W = {s}, got {tuple(pixels.shape)}")
        return pixels

    def encode_goal(self, photo: Obs) -> tuple[Tensor, Tensor]:
        """A goal photo (``pixels`` only: a photo has no proprio) -> ``(z [1, D], mask [D])``: the latent with its
        proprio part at the training mean, and a mask that is 1 on the visual dimensions only."""
        mean = self.proprio_mean.detach().cpu().numpy().astype("float32")
        z = self.encode({**{k: v for k, v in photo.items() if k != "proprio"}, "proprio": mean})
        mask = torch.zeros(self.latent_dim, device=z.device, dtype=z.dtype)
        mask[: self.latent_dim - self.proprio_dim] = 1.0
        return z, mask

    # ------------------------------------------------------------------------------------------ dynamics
    def step(self, z: Tensor, action: Tensor) -> Tensor:
        """One predicted step: ``z [B, D]``, ``action [B, A]`` -> ``z' [B, D]``."""
        vis, p = self.split(z)
        if self.bf16_weights:
            bf = torch.bfloat16
            vis, p = self.predictor(vis.to(bf), p.to(bf), action.to(bf))
            return self.join(vis, p).to(z.dtype)
        vis, p = self.predictor(vis, p, action)
        return self.join(vis, p)

    @property
    def bf16_weights(self) -> bool:
        """Whether the predictor and probe heads hold bfloat16 weights (``use_bf16_weights``)."""
        return self._bf16_weights

    def use_bf16_weights(self) -> JEPAWorldModel:
        """Cast the predictor and the probe heads to bfloat16 for planning; inputs and outputs stay in ``dtype``.

        Unlike autocast, the weights are cast once (CPU autocast re-casts them at every call and was slower here).
        The encoder and the probes' standardization statistics stay in full precision, so decoded positions are not
        quantized to bf16's ~2 mm steps at 0.5 m. Measured on the 2-core CPU: a 64 x 4 x 2 CEM plan 1.7-2x faster.
        """
        self.predictor.to(torch.bfloat16)
        self.probes.heads.to(torch.bfloat16)
        self._bf16_weights = True
        return self

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.autocast_bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    def rollout(self, z0: Tensor, actions: Tensor) -> Tensor:
        """Open-loop imagination: ``z0 [B, D]`` (B = 1 broadcasts to N), ``actions [N, H, A]`` -> ``[N, H, D]``."""
        if z0.dim() != 2 or z0.shape[-1] != self.latent_dim:
            raise ValueError(f"z0 must be [B, {self.latent_dim}], got {tuple(z0.shape)}")
        if actions.dim() != 3 or actions.shape[-1] != self.action_dim:
            raise ValueError(f"actions must be [N, H, {self.action_dim}], got {tuple(actions.shape)}")
        n = actions.shape[0]
        if z0.shape[0] not in (1, n):
            raise ValueError(f"z0 batch {z0.shape[0]} must be 1 or match actions batch {n}")
        z = z0.expand(n, -1)
        out = []
        with self._autocast():
            for t in range(actions.shape[1]):
                z = self.step(z, actions[:, t].to(z.dtype))
                out.append(z)
        return torch.stack(out, 1).to(z0.dtype)

    def iter_rollout(self, z0: Tensor, actions: Tensor) -> Iterator[Tensor]:
        """Like ``rollout`` but yields each ``[N, D]`` step (for training losses that need every step)."""
        z = z0.expand(actions.shape[0], -1)
        for t in range(actions.shape[1]):
            z = self.step(z, actions[:, t])
            yield z

    # ------------------------------------------------------------------------------------------ decode
    def decode(self, z: Tensor, keys: Iterable[str] | None = None) -> dict[str, Tensor]:
        """``z [..., D]`` -> ``{"ee_pos": [..., 3], "cube_pos": [..., 3], "gripper": [...]}`` in metres.

        ``keys``: only these quantities (each probe head reads the latent on its own, so a head's output is the same
        whichever others run). On a CPU without gradients the rows go through in chunks of ``cpu_decode_rows``
        (:func:`row_chunks`)."""
        names = list(self.decode_keys) if keys is None else list(keys)
        unknown = [k for k in names if k not in self.decode_keys]
        if unknown:
            raise KeyError(f"the probes decode {list(self.decode_keys)}, not {unknown}")
        lead = z.shape[:-1]
        flat = z.reshape(-1, self.latent_dim)
        # Chunks on a CPU without gradients only: a GPU wants the whole batch, and a gradient planner's backward pass
        # stays as it was.
        chunked = self.device.type == "cpu" and not torch.is_grad_enabled()
        chunks = row_chunks(flat.shape[0], self.cpu_decode_rows if chunked else 0)
        parts = [self._decode_rows(flat[rows], names) for rows in chunks]
        out = parts[0] if len(parts) == 1 else {k: torch.cat([part[k] for part in parts]) for k in names}
        return {k: v.reshape(*lead, *v.shape[1:]) for k, v in out.items()}

    def _decode_rows(self, flat: Tensor, keys: list[str]) -> dict[str, Tensor]:
        """``flat [B, D]`` -> ``{key: [B, ...]}``."""
        vis, p = self.split(flat)
        if self.bf16_weights:
            vis, p = vis.to(torch.bfloat16), p.to(torch.bfloat16)  # heads in bf16; the de-standardization is fp32
            return {k: v.to(flat.dtype) for k, v in self.probes(vis, p, keys).items()}
        return self.probes(vis, p, keys)

    def config_dict(self) -> dict[str, Any]:
        """Architecture as a plain dict (what checkpoints store)."""
        return {**asdict(self.config), "cameras": list(self.config.cameras)}
