"""Self-supervised JEPA losses: latent prediction (teacher forcing + multi-step rollout) and collapse prevention.

Collapse prevention variants (``VARIANTS``), switchable from config so they can be ablated:

- ``ema``: targets from an EMA copy of the encoder under stop-gradient (BYOL / I-JEPA / V-JEPA); no regularizer.
- ``vicreg``: targets from the online encoder *with* gradient; VICReg variance (std >= 1 per dim) and covariance
  (decorrelation) terms on the embeddings (PLDM: dropping the variance term collapses planning).
- ``sigreg``: targets from the online encoder with gradient; SIGReg (LeJEPA): random 1-D projections of the
  embeddings are pushed toward N(0, 1) by the Epps-Pulley characteristic-function statistic.
- ``ema_vicreg``: EMA targets plus VICReg on the online embeddings (belt and braces).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from world_models.jepa.model import JEPAWorldModel

VARIANTS: dict[str, tuple[str, str]] = {  # name -> (target source, regularizer)
    "ema": ("ema", "none"),
    "vicreg": ("online", "vicreg"),
    "sigreg": ("online", "sigreg"),
    "ema_vicreg": ("ema", "vicreg"),
}


@dataclass
class LossConfig:
    """Weights of the pretraining loss terms."""

    variant: str = "vicreg"
    teacher_forcing: float = 1.0
    rollout: float = 1.0
    proprio: float = 1.0
    var_weight: float = 1.0
    cov_weight: float = 0.04
    vicreg_on: str = "flat"  # flat: over the D-dim flattened map | location: over per-cell C-dim vectors | both
    sigreg_weight: float = 0.05
    sigreg_projections: int = 256

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown loss variant {self.variant!r}; known: {sorted(VARIANTS)}")
        if self.vicreg_on not in ("flat", "location", "both"):
            raise ValueError(f"vicreg_on must be flat, location or both, got {self.vicreg_on!r}")

    @property
    def target(self) -> str:
        """``ema`` or ``online``."""
        return VARIANTS[self.variant][0]

    @property
    def regularizer(self) -> str:
        """``none``, ``vicreg`` or ``sigreg``."""
        return VARIANTS[self.variant][1]


def vicreg_terms(z: Tensor, eps: float = 1e-4) -> tuple[Tensor, Tensor]:
    """VICReg variance and covariance terms of embeddings ``z: [N, D]`` -> (var_loss, cov_loss) scalars."""
    z = z.float()
    z = z - z.mean(0)
    std = torch.sqrt(z.var(0) + eps)
    var_loss = F.relu(1.0 - std).mean()
    n, d = z.shape
    cov = (z.T @ z) / max(n - 1, 1)
    off = cov - torch.diag(torch.diag(cov))
    return var_loss, off.pow(2).sum() / d


def sigreg(
    z: Tensor, num_projections: int = 256, generator: torch.Generator | None = None, knots: int = 17, t_max: float = 3.0
) -> Tensor:
    """SIGReg: mean Epps-Pulley statistic of random unit projections of ``z: [N, D]`` against N(0, 1).

    The statistic is ``N * int |phi_emp(t) - exp(-t^2/2)|^2 exp(-t^2/2) dt`` (trapezoid rule on ``[-t_max, t_max]``),
    zero iff the projection's empirical characteristic function matches the standard normal's.
    """
    z = z.float()
    u = torch.randn(z.shape[1], num_projections, device=z.device, generator=generator)
    u = u / u.norm(dim=0, keepdim=True)
    x = z @ u  # [N, M]
    t = torch.linspace(-t_max, t_max, knots, device=z.device)
    xt = x[..., None] * t  # [N, M, T]
    re = torch.cos(xt).mean(0) - torch.exp(-0.5 * t**2)
    im = torch.sin(xt).mean(0)
    w = torch.exp(-0.5 * t**2)
    integrand = (re**2 + im**2) * w  # [M, T]
    dt = 2 * t_max / (knots - 1)
    stat = (integrand.sum(-1) - 0.5 * (integrand[:, 0] + integrand[:, -1])) * dt
    return stat.mean() * x.shape[0]


def prediction_loss(pred: Tensor, target: Tensor, split_at: int, proprio_weight: float) -> tuple[Tensor, Tensor]:
    """MSE between predicted and target latents ``[..., D]`` -> (visual part, proprio part)."""
    vis = F.mse_loss(pred[..., :split_at].float(), target[..., :split_at].float())
    prop = F.mse_loss(pred[..., split_at:].float(), target[..., split_at:].float())
    return vis, proprio_weight * prop


def effective_rank(z: Tensor) -> float:
    """Entropy effective rank ``exp(H(p))`` of the covariance spectrum of ``z: [N, D]``, ``p = eig / sum(eig)``."""
    z = z.double()
    z = z - z.mean(0)
    s = torch.linalg.svdvals(z) ** 2  # eigenvalues of the covariance, up to a constant
    p = s / s.sum().clamp_min(1e-12)
    p = p[p > 0]
    return float(torch.exp(-(p * p.log()).sum()))


@torch.no_grad()
def ema_update(target: torch.nn.Module, online: torch.nn.Module, momentum: float) -> None:
    """``target <- momentum * target + (1 - momentum) * online`` for parameters; buffers are copied."""
    for pt, po in zip(target.parameters(), online.parameters(), strict=True):
        pt.lerp_(po.detach(), 1.0 - momentum)
    for bt, bo in zip(target.buffers(), online.buffers(), strict=True):
        bt.copy_(bo)


class PretrainObjective(nn.Module):
    """Phase-1 loss as a module (so DDP can wrap it): prediction of target latents + collapse prevention.

    ``forward(pixels uint8 [B, K+1, H, W, 3], proprio [B, K+1, P], actions [B, K, A])`` -> dict of scalar losses,
    ``"loss"`` the total. Teacher forcing predicts every ``z_{t+1}`` from the encoded ``z_t``; the rollout term
    predicts ``z_1..z_K`` open-loop from ``z_0``. Targets are the EMA encoder's (no grad) or the online encoder's.
    """

    def __init__(self, model: JEPAWorldModel, cfg: LossConfig) -> None:
        super().__init__()
        self.model, self.cfg = model, cfg
        self.target_encoder = copy.deepcopy(model.encoder).requires_grad_(False) if cfg.target == "ema" else None
        self.generator: torch.Generator | None = None

    def forward(self, pixels: Tensor, proprio: Tensor, actions: Tensor) -> dict[str, Tensor]:
        """See class docstring."""
        m, cfg = self.model, self.cfg
        b, w = pixels.shape[:2]
        k, n_vis = w - 1, m.latent_dim - m.proprio_dim
        z = m.encode_tensors(pixels.flatten(0, 1), proprio.flatten(0, 1)).unflatten(0, (b, w))  # [B, W, D]
        if self.target_encoder is not None:
            with torch.no_grad():
                target = m.encode_tensors(
                    pixels[:, 1:].flatten(0, 1), proprio[:, 1:].flatten(0, 1), encoder=self.target_encoder
                ).unflatten(0, (b, k))
        else:
            target = z[:, 1:]
        actions = actions.to(z.dtype)
        tf = m.step(z[:, :-1].flatten(0, 1), actions.flatten(0, 1)).unflatten(0, (b, k))
        tf_vis, tf_prop = prediction_loss(tf, target, n_vis, cfg.proprio)
        ro = torch.stack(list(m.iter_rollout(z[:, 0], actions)), 1)
        ro_vis, ro_prop = prediction_loss(ro, target, n_vis, cfg.proprio)
        out = {"tf": tf_vis, "tf_proprio": tf_prop, "rollout": ro_vis, "rollout_proprio": ro_prop}
        loss = cfg.teacher_forcing * (tf_vis + tf_prop) + cfg.rollout * (ro_vis + ro_prop)
        emb = z[..., :n_vis].flatten(0, 1)
        if cfg.regularizer == "vicreg":
            var, cov = [], []
            if cfg.vicreg_on in ("flat", "both"):
                v, c = vicreg_terms(emb)
                var.append(v)
                cov.append(c)
            if cfg.vicreg_on in ("location", "both"):  # every cell's C-dim vector is a sample
                v, c = vicreg_terms(emb.unflatten(-1, m.vis_shape).flatten(2).transpose(1, 2).flatten(0, 1))
                var.append(v)
                cov.append(c)
            out["var"], out["cov"] = sum(var), sum(cov)
            loss = loss + cfg.var_weight * out["var"] + cfg.cov_weight * out["cov"]
        elif cfg.regularizer == "sigreg":
            out["sigreg"] = sigreg(emb, cfg.sigreg_projections, self.generator)
            loss = loss + cfg.sigreg_weight * out["sigreg"]
        out["loss"] = loss
        return out


class ProbeObjective(nn.Module):
    """Phase-2 loss: probes on frozen latents, standardized MSE per quantity, averaged.

    ``forward(pixels [B, W, H, W, 3], proprio [B, W, P], actions [B, W-1, A], ee_pos [B, W, 3], cube_pos [B, W, 3],
    gripper [B, W])``: every encoded frame is a probe sample, and (weight ``rollout_weight``) so are the frozen
    predictor's open-loop latents for frames 1..W-1, so that decoding imagined latents is calibrated too.
    """

    def __init__(self, model: JEPAWorldModel, rollout_weight: float = 0.5) -> None:
        super().__init__()
        self.model, self.rollout_weight = model, rollout_weight

    def _loss(self, z: Tensor, labels: dict[str, Tensor]) -> dict[str, Tensor]:
        vis, p = self.model.split(z.detach())
        pred = self.model.probes.normalized(vis, p)
        return {
            k: F.mse_loss(pred[k].float(), self.model.probes.standardize(k, y.reshape(len(y), -1)).float())
            for k, y in labels.items()
        }

    def forward(self, pixels: Tensor, proprio: Tensor, actions: Tensor, **labels: Tensor) -> dict[str, Tensor]:
        """See class docstring; returns per-quantity losses and ``"loss"``."""
        m = self.model
        b, w = pixels.shape[:2]
        with torch.no_grad():
            z = m.encode_tensors(pixels.flatten(0, 1), proprio.flatten(0, 1)).unflatten(0, (b, w))
            ro = torch.stack(list(m.iter_rollout(z[:, 0], actions.to(z.dtype))), 1) if w > 1 else None
        enc = self._loss(z.flatten(0, 1), {k: v.flatten(0, 1) for k, v in labels.items()})
        out = {k: v for k, v in enc.items()}
        loss = torch.stack(list(enc.values())).mean()
        if ro is not None and self.rollout_weight > 0:
            roll = self._loss(ro.flatten(0, 1), {k: v[:, 1:].flatten(0, 1) for k, v in labels.items()})
            out.update({f"{k}_rollout": v for k, v in roll.items()})
            loss = loss + self.rollout_weight * torch.stack(list(roll.values())).mean()
        out["loss"] = loss
        return out
