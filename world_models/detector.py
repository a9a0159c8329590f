"""A scene detector: the cube's and the hand's positions (and their uncertainty) from one image, without proprio.

Perceived sub-goals need the cube now (from the current frame) and the target (from the goal photo, which has no
proprio). The shipped JEPA's cube probe reads the latent *and* the proprio, places the cube to ~4 cm, and cannot
read a photo without proprio at all (~10 cm); this small supervised network (a CoordConv trunk as the JEPA
encoder's, then an MLP) is trained on the same kind of collection to read the cube, and the hand (a reach goal photo
shows where the hand should be), from pixels alone. It predicts a mean and a standard deviation per axis (Gaussian
negative log-likelihood), so the agent knows how sure it is.

    .venv/bin/python -m world_models.detector data=data/detector out=runs/detector steps=3000
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from world_models.jepa.encoder import ConvEncoder

DEFAULT_PATH = Path(__file__).parent / "checkpoints" / "cube_detector.pt"
KIND = "jepa-mpc/cube-detector"
PIXEL_MEAN, PIXEL_STD = 0.5, 0.25


class DetectorError(ValueError):
    """A detector file that cannot be used, or bad input; the message names the file or the key."""


TARGETS = ("cube_pos", "ee_pos")  # what it locates, 3 coordinates each


class CubeDetector(nn.Module):
    """``pixels: uint8 [B, S, S, 3]`` -> per target in ``TARGETS`` a position ``[B, 3]`` and its std ``[B, 3]`` (m)."""

    def __init__(self, image_size: int = 64, width: int = 32, channels: int = 16, hidden: int = 256) -> None:
        super().__init__()
        self.config = {"image_size": image_size, "width": width, "channels": channels, "hidden": hidden}
        self.image_size = image_size
        self.trunk = ConvEncoder(image_size, width, channels)
        grid = image_size // 8
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(channels * grid * grid, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU()
        )
        n = 3 * len(TARGETS)
        self.mean_out, self.log_std_out = nn.Linear(hidden, n), nn.Linear(hidden, n)
        self.register_buffer("pos_mean", torch.zeros(n))
        self.register_buffer("pos_std", torch.ones(n))

    def forward(self, pixels: Tensor) -> tuple[Tensor, Tensor]:
        """Standardized ``(mean, log_std)`` ``[B, 3 * len(TARGETS)]`` each (training units)."""
        x = (pixels.permute(0, 3, 1, 2).float() / 255.0 - PIXEL_MEAN) / PIXEL_STD
        h = self.head(self.trunk(x))
        return self.mean_out(h), self.log_std_out(h).clamp(-7.0, 3.0)

    @torch.no_grad()
    def locate(self, pixels: Any, target: str = "cube_pos") -> tuple[np.ndarray, np.ndarray]:
        """One image ``uint8 [S, S, 3]`` (or a batch) -> ``(position [.., 3], std [.., 3])`` of ``target``, metres."""
        if target not in TARGETS:
            raise DetectorError(f"the detector locates {TARGETS}, not {target!r}")
        p = torch.as_tensor(np.asarray(pixels))
        single = p.dim() == 3
        p = p[None] if single else p
        if p.dtype != torch.uint8 or p.dim() != 4 or tuple(p.shape[1:]) != (self.image_size, self.image_size, 3):
            raise DetectorError(
                f"pixels must be uint8 [{self.image_size}, {self.image_size}, 3] (or a batch), got "
                f"{p.dtype} {tuple(p.shape)}"
            )
        mean, log_std = self(p.to(self.pos_mean.device))
        sl = slice(3 * TARGETS.index(target), 3 * TARGETS.index(target) + 3)
        pos = (mean * self.pos_std + self.pos_mean)[:, sl].double().cpu().numpy()
        std = (log_std.exp() * self.pos_std)[:, sl].double().cpu().numpy()
        return (pos[0], std[0]) if single else (pos, std)


def save_detector(model: CubeDetector, path: Path, metadata: dict[str, Any]) -> None:
    """Write atomically (a temporary file renamed into place)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"kind": KIND, "config": model.config, "state_dict": model.state_dict(), "metadata": metadata}, tmp)
    tmp.replace(path)


def load_detector(path: str | Path | None = None, device: str | torch.device = "cpu") -> CubeDetector:
    """The shipped detector (``path=None``) or one trained with this module; weights only, never pickled code."""
    path = Path(path) if path is not None else DEFAULT_PATH
    if not path.is_file():
        raise DetectorError(f"cube detector {path} does not exist (train one: python -m world_models.detector)")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        raise DetectorError(f"cube detector {path} is corrupt or not a detector file: {type(e).__name__}") from e
    if not isinstance(payload, dict) or payload.get("kind") != KIND:
        raise DetectorError(f"{path} is not a cube detector (kind {KIND!r} expected)")
    model = CubeDetector(**payload["config"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval()


# ---------------------------------------------------------------------------------------------------- training
def load_frames(root: str | Path, split: str, val_every: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Front-camera frames ``uint8 [N, S, S, 3]``, targets ``[N, 3 * len(TARGETS)]`` and held flags of a collection."""
    from world_models.jepa.data import iter_episodes
    from world_models.jepa.evaluate import cube_held_mask

    pixels, cubes, held = [], [], []
    for ep in iter_episodes(root, split=split, val_every=val_every):
        pixels.append(ep["pixels"])
        cubes.append(np.concatenate([ep[k] for k in TARGETS], axis=-1))
        held.append(cube_held_mask(ep["ee_pos"], ep["cube_pos"], ep["gripper"]))
    if not pixels:
        raise DetectorError(f"no {split} episodes under {root} (collect some: jepa-mpc collect out={root})")
    return np.concatenate(pixels), np.concatenate(cubes).astype(np.float32), np.concatenate(held).astype(bool)


def errors_cm(
    model: CubeDetector, pixels: np.ndarray, labels: np.ndarray, target: str = "cube_pos", batch: int = 512
) -> np.ndarray:
    """Per-frame Euclidean error (cm) of the detector's mean for ``target``."""
    sl = slice(3 * TARGETS.index(target), 3 * TARGETS.index(target) + 3)
    out = []
    for i in range(0, len(pixels), batch):
        pos, _ = model.locate(pixels[i : i + batch], target)
        out.append(np.linalg.norm(pos - labels[i : i + batch, sl], axis=-1) * 100)
    return np.concatenate(out)


def train(
    data: str, out: str, steps: int = 3000, batch: int = 64, lr: float = 2e-3, seed: int = 0, val_every: int = 10
) -> dict[str, Any]:
    """Fit a detector on ``data``'s train split, report on its val split, write ``out``/detector.pt + report.json."""
    torch.manual_seed(seed)
    start = time.time()
    x, y, _ = load_frames(data, "train", val_every)
    vx, vy, vheld = load_frames(data, "val", val_every)
    model = CubeDetector(image_size=x.shape[1])
    model.pos_mean.copy_(torch.as_tensor(y.mean(0)))
    model.pos_std.copy_(torch.as_tensor(y.std(0) + 1e-4))
    target = (torch.as_tensor(y) - model.pos_mean) / model.pos_std
    frames = torch.as_tensor(x)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(frames), (batch,), generator=gen)
        mean, log_std = model(frames[idx])
        # Gaussian NLL: the mean learns the position, log_std how far off it tends to be on such frames
        loss = (((mean - target[idx]) / log_std.exp()).square() / 2 + log_std).mean()
        if step < steps // 10:  # plain regression first, so the variance does not learn to give up on hard frames
            loss = (mean - target[idx]).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 500 == 0:
            print(f"step {step} loss {loss.item():.4f}", flush=True)
    model.eval()
    err = errors_cm(model, vx, vy)
    report = {
        "data": str(data),
        "steps": steps,
        "train_frames": len(x),
        "val_frames": len(vx),
        "cube_cm_mean": float(err.mean()),
        "cube_cm_median": float(np.median(err)),
        "cube_cm_p90": float(np.percentile(err, 90)),
        "cube_cm_held": float(err[vheld].mean()) if vheld.any() else math.nan,
        "ee_cm_mean": float(errors_cm(model, vx, vy, "ee_pos").mean()),
        "wall_s": round(time.time() - start, 1),
    }
    save_detector(model, Path(out) / "detector.pt", report)
    (Path(out) / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> None:
    """``key=value`` arguments of ``train`` (data and out required)."""
    args = dict(a.split("=", 1) for a in (sys.argv[1:] if argv is None else argv))
    for key in ("data", "out"):
        if key not in args:
            raise SystemExit(f"python -m world_models.detector: {key}=... is required")
    known = {"data": str, "out": str, "steps": int, "batch": int, "lr": float, "seed": int, "val_every": int}
    unknown = sorted(set(args) - set(known))
    if unknown:
        raise SystemExit(f"python -m world_models.detector: unknown keys {unknown}; known: {sorted(known)}")
    torch.set_num_threads(1)
    train(**{k: known[k](v) for k, v in args.items()})


if __name__ == "__main__":
    main()
