"""Held-out evaluation of a JEPA world model: latent health, probe accuracy, open-loop rollouts, energy ranking.

``evaluate_model(model, data_dir, out_dir)`` writes ``out_dir/model_report.json`` with

- ``effective_rank_ratio``: entropy effective rank of held-out latents' covariance spectrum / latent dim;
- ``probe_err_ee_cm``, ``probe_err_cube_cm``, ``probe_err_gripper_cm``: mean error of probes on encoded frames
  (plus ``probe_err_cube_cm_median`` and ``_p90``: the mean is dominated by frames where the cube is hidden, and
  ``probe_err_cube_held_cm``: the frames where the cube is between the closed fingers, ``cube_held_mask``);
- ``rollout_{ee,cube}_err_cm_by_horizon`` and ``rollout10_cube_err_cm``: probes on open-loop predicted latents
  vs the true state h steps later, with ``static_cube_err_cm_by_horizon`` (cube assumed not to move) for scale;
- ``energy_true_action_rate``: per held-out transition, the fraction of 64 random actions whose predicted next
  latent is farther (L2) from the encoded true next frame than the true action's prediction; averaged;
- ``latent_err_by_horizon``: normalized squared error of predicted vs encoded latents,

and PNG plots ``rollout_error.png`` and ``probe_traces.png``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from world_models.jepa.data import camera_keys, iter_episodes, stacked_pixels
from world_models.jepa.losses import effective_rank
from world_models.jepa.model import JEPAWorldModel

# The cube counts as held when it sits between the fingertips and the fingers are closed on it: centred under the
# fingertip-centre site horizontally, 1-6 cm below it (3.5 cm in a centred grasp), and the opening under 7 cm (an open
# hand is 8 cm; closed on the 4 cm cube it is ~4 cm). Judged from the stored labels, so any collection qualifies.
HELD_XY, HELD_DZ, HELD_OPENING = 0.02, (0.01, 0.06), 0.07


def cube_held_mask(ee_pos: np.ndarray, cube_pos: np.ndarray, gripper: np.ndarray) -> np.ndarray:
    """Frames where the cube is between the closed fingers: ``ee_pos, cube_pos [N, 3]``, ``gripper [N]`` -> bool ``[N]``."""
    ee, cube = np.asarray(ee_pos).reshape(-1, 3), np.asarray(cube_pos).reshape(-1, 3)
    dz = ee[:, 2] - cube[:, 2]
    return (
        (np.linalg.norm(ee[:, :2] - cube[:, :2], axis=1) < HELD_XY)
        & (dz > HELD_DZ[0])
        & (dz < HELD_DZ[1])
        & (np.asarray(gripper).reshape(-1) < HELD_OPENING)
    )


@torch.no_grad()
def encode_episode(model: JEPAWorldModel, ep: dict[str, np.ndarray], keys: list[str], batch: int = 256) -> torch.Tensor:
    """Latents ``[T, D]`` of one episode; ``keys``: the chunk keys of the model's cameras, in its order."""
    dev = model.device
    zs = [
        model.encode_tensors(
            torch.from_numpy(stacked_pixels(ep, keys, slice(i, i + batch))).to(dev),
            torch.from_numpy(ep["proprio"][i : i + batch]).to(dev),
        )
        for i in range(0, len(ep["pixels"]), batch)
    ]
    return torch.cat(zs)


def _cm(pred: torch.Tensor, true: np.ndarray) -> np.ndarray:
    """Per-row L2 error in cm: ``pred [N, d] or [N]``, ``true`` same shape -> ``[N]``."""
    diff = pred.float().cpu().numpy().reshape(len(true), -1) - true.reshape(len(true), -1)
    return 100.0 * np.linalg.norm(diff, axis=-1)


def _balanced_episodes(data_dir: str | Path, split: str, val_every: int, max_episodes: int) -> list[dict[str, Any]]:
    """Up to ``max_episodes`` episodes of ``split``, taken round-robin over tasks.

    Collection writes tasks one after another, so the first N episodes in storage order would all be one task
    (reach, where the cube never moves); round-robin keeps every task in the held-out metrics.
    """
    by_task: dict[int, list[dict[str, Any]]] = {}
    for ep in iter_episodes(data_dir, split, val_every):
        by_task.setdefault(int(ep["task_id"][0]), []).append(ep)
    queues = [by_task[k] for k in sorted(by_task)]
    out: list[dict[str, Any]] = []
    for i in range(max(map(len, queues), default=0)):
        out.extend(q[i] for q in queues if i < len(q))
    return out[:max_episodes]


@torch.no_grad()
def evaluate_model(
    model: JEPAWorldModel,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    val_every: int = 10,
    max_episodes: int = 20,
    horizon: int = 10,
    num_random_actions: int = 64,
    max_transitions: int = 400,
    max_rank_frames: int = 8000,
    plots: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Evaluate on held-out episodes (``episode_id % val_every == 0``; all episodes if none are held out)."""
    model = model.eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    split = "val" if val_every > 0 else "all"
    episodes = _balanced_episodes(data_dir, split, val_every, max_episodes)
    if not episodes:
        split = "all"
        episodes = _balanced_episodes(data_dir, "all", val_every, max_episodes)
    if not episodes:
        raise FileNotFoundError(f"no episodes under {data_dir}")
    keys = camera_keys(data_dir, list(model.cameras))  # ValueError if the collection lacks a camera the model sees
    h = horizon
    zs, err = [], {"ee_pos": [], "cube_pos": [], "gripper": []}
    ro = {"ee_pos": [[] for _ in range(h)], "cube_pos": [[] for _ in range(h)]}
    static, lat = [[] for _ in range(h)], [[] for _ in range(h)]
    beats: list[float] = []
    traces = []
    per_ep_transitions = max(1, max_transitions // len(episodes))
    for ep in tqdm(episodes, desc="eval-model: held-out episodes", unit="ep", dynamic_ncols=True):
        z = encode_episode(model, ep, keys)
        zs.append(z)
        dec = model.decode(z)
        for k in err:
            err[k].append(_cm(dec[k], ep[k]))
        t_len = len(z)
        actions = torch.from_numpy(ep["actions"]).to(model.device, model.dtype)
        starts = list(range(0, t_len - h, max(1, h // 2)))  # frames s..s+h exist; actions s..s+h-1 are valid
        if starts:
            a = torch.stack([actions[s : s + h] for s in starts])
            pred = model.rollout(z[starts], a)  # [S, h, D]
            pdec = model.decode(pred)
            for j in range(h):
                idx = [s + j + 1 for s in starts]
                for k in ro:
                    ro[k][j].append(_cm(pdec[k][:, j], ep[k][idx]))
                static[j].append(_cm(torch.from_numpy(ep["cube_pos"][starts]), ep["cube_pos"][idx]))
                tgt = z[idx]
                lat[j].append(((pred[:, j] - tgt).pow(2).sum(-1) / tgt.pow(2).sum(-1).clamp_min(1e-8)).cpu().numpy())
            if len(traces) < 3:
                traces.append((ep, dec, starts[0], pdec, t_len))
        ts = torch.randperm(t_len - 1, generator=gen)[:per_ep_transitions].to(model.device)
        rand = torch.rand(len(ts), num_random_actions, model.action_dim, generator=gen).to(model.device) * 2 - 1
        cand = torch.cat([actions[ts][:, None], rand], 1)  # [T, 1 + M, A]; index 0 is the true action
        zn = model.step(z[ts][:, None].expand(-1, cand.shape[1], -1).flatten(0, 1), cand.flatten(0, 1))
        dist = (zn.unflatten(0, cand.shape[:2]) - z[ts + 1][:, None]).norm(dim=-1)  # [T, 1 + M]
        beats.extend((dist[:, 1:] > dist[:, :1]).float().mean(1).cpu().tolist())
    zall = torch.cat(zs)[:max_rank_frames]
    erank = effective_rank(zall)

    def mean_by_h(rows: list[list[np.ndarray]]) -> list[float]:
        return [float(np.concatenate(r).mean()) if r else float("nan") for r in rows]

    ro_cube, ro_ee = mean_by_h(ro["cube_pos"]), mean_by_h(ro["ee_pos"])
    cube_err = np.concatenate(err["cube_pos"])
    held = np.concatenate([cube_held_mask(ep["ee_pos"], ep["cube_pos"], ep["gripper"]) for ep in episodes])
    report: dict[str, Any] = {
        "split": split,
        "n_episodes": len(episodes),
        "n_frames": int(sum(len(z) for z in zs)),
        "latent_dim": model.latent_dim,
        "effective_rank": erank,
        "effective_rank_ratio": erank / model.latent_dim,
        "probe_err_ee_cm": float(np.concatenate(err["ee_pos"]).mean()),
        "probe_err_cube_cm": float(cube_err.mean()),
        "probe_err_cube_cm_median": float(np.median(cube_err)),
        "probe_err_cube_cm_p90": float(np.percentile(cube_err, 90)),
        "probe_err_cube_held_cm": float(cube_err[held].mean()) if held.any() else float("nan"),
        "n_held_frames": int(held.sum()),
        "probe_err_gripper_cm": float(np.concatenate(err["gripper"]).mean()),
        "rollout10_cube_err_cm": ro_cube[9] if h >= 10 else float("nan"),
        "rollout10_ee_err_cm": ro_ee[9] if h >= 10 else float("nan"),
        "rollout_cube_err_cm_by_horizon": ro_cube,
        "rollout_ee_err_cm_by_horizon": ro_ee,
        "static_cube_err_cm_by_horizon": mean_by_h(static),
        "latent_err_by_horizon": mean_by_h(lat),
        "energy_true_action_rate": float(np.mean(beats)) if beats else float("nan"),
        "num_random_actions": num_random_actions,
        "checkpoint_metadata": {
            k: v
            for k, v in getattr(model, "checkpoint_metadata", {}).items()
            if k in ("code_version", "step", "saved_at")
        },
    }
    (out_dir / "model_report.json").write_text(json.dumps(report, indent=2))
    if plots:
        _plots(report, traces, out_dir)
    return report


def _plots(report: dict[str, Any], traces: list[Any], out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hs = np.arange(1, len(report["rollout_cube_err_cm_by_horizon"]) + 1)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(hs, report["rollout_cube_err_cm_by_horizon"], "o-", label="cube (rollout)")
    ax.plot(hs, report["rollout_ee_err_cm_by_horizon"], "s-", label="end effector (rollout)")
    ax.plot(hs, report["static_cube_err_cm_by_horizon"], "k--", label="cube, static baseline")
    ax.set(xlabel="open-loop horizon (steps)", ylabel="mean error (cm)", title="JEPA rollout error vs horizon")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "rollout_error.png", dpi=120)
    plt.close(fig)
    if not traces:
        return
    fig, axes = plt.subplots(len(traces), 2, figsize=(9, 2.6 * len(traces)), squeeze=False)
    for row, (ep, dec, s0, pdec, t_len) in zip(axes, traces, strict=True):
        t = np.arange(t_len)
        h = pdec["cube_pos"].shape[1]
        for ax, key in zip(row, ("ee_pos", "cube_pos"), strict=True):
            for d, color in zip(range(3), "rgb", strict=True):
                ax.plot(t, ep[key][:, d], color=color, lw=1.5, label=f"{'xyz'[d]} true")
                ax.plot(t, dec[key][:, d].cpu(), color=color, ls=":", label=f"{'xyz'[d]} probe")
                ax.plot(
                    np.arange(s0 + 1, s0 + h + 1),
                    pdec[key][0, :, d].cpu(),
                    color=color,
                    ls="--",
                    marker=".",
                    label=f"{'xyz'[d]} rollout",
                )
            ax.set(title=f"{key} (episode {int(ep['episode_id'][0])})", xlabel="step", ylabel="m")
    axes[0, 0].legend(fontsize=6, ncol=3)
    fig.tight_layout()
    fig.savefig(out_dir / "probe_traces.png", dpi=110)
    plt.close(fig)


def training_seeds(model: JEPAWorldModel) -> range | None:
    """Reset seeds of the episodes the checkpoint was trained on (from its metadata), or None if it does not say."""
    data = getattr(model, "checkpoint_metadata", {}).get("data") or {}
    if data.get("base_seed") is None or data.get("num_episodes") is None:
        return None
    return range(int(data["base_seed"]), int(data["base_seed"]) + int(data["num_episodes"]))


def heldout_collection(model: JEPAWorldModel, h: dict[str, Any]) -> Path:
    """Collect (once; cached, resumable) a held-out set that matches the model's observation -> its directory.

    ``h``: ``dir`` (cache root), ``seed`` (first reset seed), ``episodes_per_task``, ``workers``. The seeds must not
    overlap the ones the checkpoint was trained on (``ValueError`` naming both ranges otherwise).
    """
    from omegaconf import OmegaConf

    from world_models.jepa.collect import collect
    from world_models.jepa.train import to_plain

    seed, per_task = int(h["seed"]), int(h["episodes_per_task"])
    c = to_plain(OmegaConf.load(Path(__file__).resolve().parents[2] / "configs" / "collect.yaml"))
    seeds = range(seed, seed + per_task * len(c["env_ids"]))
    trained = training_seeds(model)
    if trained is not None and range(max(seeds.start, trained.start), min(seeds.stop, trained.stop)):
        raise ValueError(
            f"heldout.seed={seed}: held-out seeds {seeds.start}-{seeds.stop - 1} overlap the checkpoint's training "
            f"seeds {trained.start}-{trained.stop - 1}; pick a heldout.seed outside them"
        )
    name = f"seed{seed}_x{per_task}_{model.image_size}px_{'-'.join(model.cameras)}"
    c.update(
        out=str(Path(h["dir"]) / name),
        out_dir=None,
        seed=seed,
        episodes_per_env=per_task,
        image_size=model.image_size,
        cameras=list(model.cameras),
        workers=int(h.get("workers", 1)),
    )
    return collect(c)


def evaluate(cfg: Any) -> dict[str, Any]:
    """``jepa-mpc eval-model`` (``configs/eval_model.yaml``): evaluate a checkpoint, write ``out/model_report.json``.

    ``eval.checkpoint`` (null: ``out/model.pt`` if present, else the shipped default); ``data_dir`` (null: a
    held-out set collected and cached under ``heldout.dir`` with seeds the checkpoint never trained on, every
    episode evaluated; else the ``val_every`` split of that collection); ``out`` (alias ``out_dir``); ``device``.
    """
    from world_models.jepa.checkpoint import load_world_model
    from world_models.jepa.train import out_path, to_plain

    c = to_plain(cfg)
    ev = c.get("eval", {})
    out = out_path(c, "runs/eval_model")
    given = c.get("out") if c.get("out") is not None else c.get("out_dir")
    report_dir = Path(ev.get("out_dir") or out)  # eval.out_dir: an older spelling of out for the report
    if ev.get("out_dir") is not None and given is not None and Path(given) != report_dir:
        raise ValueError(f"out={given} and eval.out_dir={ev['out_dir']} disagree: eval.out_dir is an alias of out")
    path = ev.get("checkpoint")
    if path is None and (out / "model.pt").is_file():
        path = out / "model.pt"
    model = load_world_model(path, c.get("device", "cpu"))
    data_dir, val_every = c.get("data_dir"), c.get("val_every", 10)
    if data_dir is None:
        data_dir, val_every = heldout_collection(model, c.get("heldout", {})), 0
    report = evaluate_model(
        model,
        data_dir,
        report_dir,
        val_every=val_every,
        max_episodes=ev.get("max_episodes", 20),
        horizon=ev.get("horizon", 10),
        num_random_actions=ev.get("num_random_actions", 64),
        plots=ev.get("plots", True),
    )
    report_path = report_dir / "model_report.json"
    keys = [k for k in report if k.startswith(("probe_err", "rollout10", "effective_rank_ratio", "energy"))]
    print("\n".join([f"{k:28s} {report[k]:.3f}" for k in keys] + [f"wrote {report_path}"]))
    return report
