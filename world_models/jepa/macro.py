"""A high-level world model over macro-steps, for hierarchical planning (after HWM, arXiv 2604.03208).

One macro-step is ``k`` env steps. Its macro-action is the mean of the ``k`` actions (``pool``): for a delta-position
controller that is the net displacement over the macro-step divided by ``k``, plus the mean gripper command. The
high-level predictor maps the JEPA latent ``z_t`` and a macro-action to ``z_{t+k}``; it has the low-level predictor's
architecture (``LatentPredictor``) and works on the frozen JEPA's latents, so it is trained self-supervised on the
same kind of collection (encode every frame once, regress ``k``-step-later latents, rolled out over ``rollout``
macro-steps). It is stored beside the JEPA checkpoint (``default_macro.pt``) and bound to it by the JEPA file's
SHA-1: a macro model trained on another JEPA's latents is refused.

    python -m world_models.jepa.macro data=data/detector out=runs/macro [k=5 steps=2000 heldout=data/heldout/...]
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from world_models.jepa.data import camera_keys, iter_episodes
from world_models.jepa.model import JEPAWorldModel
from world_models.jepa.predictor import LatentPredictor

KIND = "jepa_macro_model"
DEFAULT_MACRO = Path(__file__).resolve().parent / "checkpoints" / "default_macro.pt"


@dataclass(frozen=True)
class MacroConfig:
    k: int = 5  # env steps per macro-step
    width: int = 64
    blocks: int = 4
    cond_dim: int = 128


def file_sha1(path: str | Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


class MacroWorldModel(nn.Module):
    """``rollout(z0 [B, D], macros [N, H, A]) -> [N, H, D]`` over macro-steps of the JEPA ``base``'s latents."""

    def __init__(self, base: JEPAWorldModel, config: MacroConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or MacroConfig()
        if cfg.k < 1:
            raise ValueError(f"macro k must be >= 1, got {cfg.k}")
        self.k = cfg.k
        self.action_dim = base.action_dim
        self._base = [base]  # a reference, not a submodule: the JEPA's weights live in their own checkpoint
        channels = base.vis_shape[0]
        self.predictor = LatentPredictor(
            channels, base.proprio_dim, base.action_dim, cfg.width, cfg.blocks, cfg.cond_dim
        )
        self.to(device=base.device, dtype=base.dtype)

    @property
    def base(self) -> JEPAWorldModel:
        return self._base[0]

    @staticmethod
    def pool(actions: Tensor) -> Tensor:
        """``[..., k, A]`` env actions -> the macro-action ``[..., A]`` (their mean)."""
        return actions.mean(-2)

    def step(self, z: Tensor, macro: Tensor) -> Tensor:
        vis, p = self.base.split(z)
        vis, p = self.predictor(vis, p, macro.to(z.dtype))
        return self.base.join(vis, p)

    def rollout(self, z0: Tensor, macros: Tensor) -> Tensor:
        """``z0 [B, D]`` (B = 1 broadcasts), ``macros [N, H, A]`` -> predicted latents ``[N, H, D]``."""
        if macros.dim() != 3 or macros.shape[-1] != self.action_dim:
            raise ValueError(f"macros must be [N, H, {self.action_dim}], got {tuple(macros.shape)}")
        z = z0.expand(macros.shape[0], -1)
        out = []
        for t in range(macros.shape[1]):
            z = self.step(z, macros[:, t])
            out.append(z)
        return torch.stack(out, 1)


def save_macro(path: str | Path, model: MacroWorldModel, base_sha1: str, metadata: dict[str, Any]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "kind": KIND,
        "config": asdict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.predictor.state_dict().items()},
        "base_sha1": base_sha1,
        "metadata": metadata,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_macro(
    base: JEPAWorldModel, path: str | Path | None = None, base_path: str | Path | None = None
) -> MacroWorldModel:
    """The macro model at ``path`` (default: the shipped ``default_macro.pt``) for the JEPA ``base`` loaded from
    ``base_path`` (default: the shipped JEPA). ``ValueError`` naming the file if it is missing, of another kind, or
    trained on another JEPA's latents."""
    from world_models.jepa.checkpoint import DEFAULT_CHECKPOINT

    path = Path(path or DEFAULT_MACRO)
    if not path.is_file():
        raise ValueError(
            f"no macro model at {path}: train one with `python -m world_models.jepa.macro data=DIR out=DIR` "
            "(hierarchical sub-goals need it)"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"macro model {path} is unreadable ({type(err).__name__}: {err})") from None
    if not isinstance(payload, dict) or payload.get("kind") != KIND:
        raise ValueError(
            f"{path} is not a macro model (kind {payload.get('kind') if isinstance(payload, dict) else '?'})"
        )
    base_sha1 = file_sha1(base_path or DEFAULT_CHECKPOINT)
    if payload["base_sha1"] != base_sha1:
        raise ValueError(
            f"macro model {path} was trained on the latents of another JEPA checkpoint (SHA-1 {payload['base_sha1'][:8]}, "
            f"this one {base_sha1[:8]}): retrain it on this JEPA"
        )
    model = MacroWorldModel(base, MacroConfig(**payload["config"]))
    model.predictor.load_state_dict(payload["state_dict"])
    model.metadata = payload["metadata"]
    return model.eval().requires_grad_(False)


# ------------------------------------------------------------------------------------------------ data
@torch.no_grad()
def encode_collection(base: JEPAWorldModel, root: str | Path) -> list[dict[str, np.ndarray]]:
    """Every episode of a collection as ``{"z": [T, D], "actions": [T, A], "valid": [T], "ee_pos", "cube_pos"}``,
    encoded from the views the JEPA sees (``ValueError`` if the collection lacks one)."""
    from world_models.jepa.evaluate import encode_episode

    keys = camera_keys(root, list(base.cameras))
    out = []
    for ep in iter_episodes(root):
        out.append(
            {
                "z": encode_episode(base, ep, keys).float().cpu().numpy(),
                "actions": ep["actions"].astype(np.float32),
                "valid": ep["valid_action"].astype(bool),
                "ee_pos": ep["ee_pos"].astype(np.float32),
                "cube_pos": ep["cube_pos"].astype(np.float32),
            }
        )
    return out


def macro_windows(episodes: list[dict[str, np.ndarray]], k: int, steps: int) -> dict[str, Tensor]:
    """All windows of ``steps`` macro-steps: ``z [W, steps + 1, D]`` (every k-th latent), ``macros [W, steps, A]``,
    and the true ``ee_pos``/``cube_pos [W, steps + 1, 3]``; a window never crosses an episode end."""
    zs, ms, ee, cube = [], [], [], []
    span = k * steps
    for ep in episodes:
        t_len = len(ep["z"])
        for t in range(0, t_len - span):
            if not ep["valid"][t : t + span].all():
                continue
            idx = np.arange(t, t + span + 1, k)
            zs.append(ep["z"][idx])
            ms.append(ep["actions"][t : t + span].reshape(steps, k, -1).mean(1))
            ee.append(ep["ee_pos"][idx])
            cube.append(ep["cube_pos"][idx])
    if not zs:
        raise ValueError(f"no windows of {steps} macro-steps of {k} env steps in the collection (episodes too short?)")
    return {
        "z": torch.as_tensor(np.stack(zs)),
        "macros": torch.as_tensor(np.stack(ms)),
        "ee_pos": torch.as_tensor(np.stack(ee)),
        "cube_pos": torch.as_tensor(np.stack(cube)),
    }


# ------------------------------------------------------------------------------------------------ train, evaluate
def train_macro(
    model: MacroWorldModel, windows: dict[str, Tensor], steps: int, batch: int = 256, lr: float = 1e-3, seed: int = 0
) -> list[float]:
    """Regress each macro-step's encoded latent from the rolled-out prediction (all ``rollout`` steps). The visual
    map and the proprio part weigh equally (each normalized by its variance): the proprio is 8 of ~1000 dimensions
    but carries the hand and fingers a sub-goal must place."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.predictor.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    n_vis = model.base.latent_dim - model.base.proprio_dim
    var = windows["z"][:, 0].var(0)
    scale = torch.cat([var[:n_vis].mean().expand(n_vis), var[n_vis:].mean().expand(len(var) - n_vis)])
    weight = torch.cat([torch.full((n_vis,), 0.5 / n_vis), torch.full((len(var) - n_vis,), 0.5 / (len(var) - n_vis))])
    losses = []
    model.train().requires_grad_(True)
    model.base.requires_grad_(False)
    for _ in range(steps):
        i = torch.randint(len(windows["z"]), (batch,), generator=gen)
        z, m = windows["z"][i], windows["macros"][i]
        pred = model.rollout(z[:, 0], m)
        loss = ((pred - z[:, 1:]).square() / scale * weight).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        if len(losses) % 250 == 0:
            print(f"[macro] step {len(losses)}/{steps} loss {np.mean(losses[-50:]):.3f}", flush=True)
    model.eval().requires_grad_(False)
    return losses


@torch.no_grad()
def evaluate_macro(model: MacroWorldModel, windows: dict[str, Tensor], num_random: int = 64, seed: int = 0) -> dict:
    """Held-out figures: normalized latent error per macro-step (and of assuming no change), probe errors of the
    predicted latents (cm), and how often the true macro-action's prediction lies closer to the encoded outcome
    than a random macro-action's (averaged over ``num_random`` uniform ones)."""
    gen = torch.Generator().manual_seed(seed)
    z, m = windows["z"], windows["macros"]
    scale = z[:, 0].var(0).mean()
    pred = torch.cat([model.rollout(z[i : i + 512, 0], m[i : i + 512]) for i in range(0, len(z), 512)])
    err = ((pred - z[:, 1:]).square().mean(-1) / scale).mean(0)
    still = ((z[:, :1] - z[:, 1:]).square().mean(-1) / scale).mean(0)
    decoded = model.base.decode(pred)
    ee_cm = (decoded["ee_pos"] - windows["ee_pos"][:, 1:]).norm(dim=-1).mean(0) * 100
    cube_cm = (decoded["cube_pos"] - windows["cube_pos"][:, 1:]).norm(dim=-1).mean(0) * 100
    beats = []
    for i in range(0, len(z), 256):
        z0, target = z[i : i + 256, 0], z[i : i + 256, 1]
        true_d = (model.step(z0, m[i : i + 256, 0]) - target).square().mean(-1)
        rand = torch.rand(num_random, len(z0), model.action_dim, generator=gen) * 2 - 1
        rand_d = torch.stack([(model.step(z0, r) - target).square().mean(-1) for r in rand])
        beats.append((rand_d > true_d).float().mean(0))
    return {
        "windows": len(z),
        "k": model.k,
        "macro_latent_err_by_step": [round(float(x), 4) for x in err],
        "no_change_latent_err_by_step": [round(float(x), 4) for x in still],
        "macro_ee_err_cm_by_step": [round(float(x), 2) for x in ee_cm],
        "macro_cube_err_cm_by_step": [round(float(x), 2) for x in cube_cm],
        "macro_energy_true_action_rate": round(float(torch.cat(beats).mean()), 4),
        "num_random_macros": num_random,
    }


def main(argv: list[str] | None = None) -> None:
    """``key=value`` arguments: data (required), out (required), k, steps, batch, rollout, heldout, checkpoint, seed."""
    from world_models.jepa.checkpoint import DEFAULT_CHECKPOINT, load_world_model

    known = {"data", "out", "k", "steps", "rollout", "heldout", "checkpoint", "seed", "batch"}
    args: dict[str, str] = {}
    for item in argv if argv is not None else sys.argv[1:]:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise SystemExit(f"macro: expected key=value with key in {sorted(known)}, got {item!r}")
        args[key] = value
    for key in ("data", "out"):
        if key not in args:
            raise SystemExit(f"macro: {key}= is required")
    torch.manual_seed(int(args.get("seed", 0)))
    base_path = Path(args.get("checkpoint") or DEFAULT_CHECKPOINT)
    base = load_world_model(base_path)
    k, steps, rollout = int(args.get("k", 5)), int(args.get("steps", 2000)), int(args.get("rollout", 2))
    batch = int(args.get("batch", 256))
    out = Path(args["out"])
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    train_eps = encode_collection(base, args["data"])
    print(f"[macro] encoded {sum(len(e['z']) for e in train_eps)} frames in {time.time() - t0:.0f} s", flush=True)
    model = MacroWorldModel(base, MacroConfig(k=k))
    losses = train_macro(model, macro_windows(train_eps, k, rollout), steps, batch, seed=int(args.get("seed", 0)))
    print(f"[macro] {steps} steps, loss {np.mean(losses[:50]):.3f} -> {np.mean(losses[-50:]):.3f}", flush=True)
    report: dict[str, Any] = {"train_loss_first_last": [float(np.mean(losses[:50])), float(np.mean(losses[-50:]))]}
    if args.get("heldout"):
        report["heldout"] = evaluate_macro(model, macro_windows(encode_collection(base, args["heldout"]), k, 3))
    report["wall_s"] = round(time.time() - t0, 1)
    meta = {"data": args["data"], "k": k, "steps": steps, "batch": batch, "rollout": rollout, "report": report}
    save_macro(out / "macro.pt", model, file_sha1(base_path), meta)
    (out / "macro_report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(f"[macro] wrote {out / 'macro.pt'} and {out / 'macro_report.json'}")


if __name__ == "__main__":
    main()
