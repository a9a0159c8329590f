"""How much of the cube's position do the raw pixels of a candidate observation hold? A cheap ceiling measurement.

For each candidate observation (camera(s) and resolution) a small supervised regressor (a CoordConv trunk per view,
the same as the JEPA encoder's, fused with the proprio) is trained from the raw frames to the true cube position on
the CPU, and evaluated on held-out episodes (seeds disjoint from the training ones and from every JEPA collection).
No self-supervision: if a supervised model cannot find the cube in these pixels, no JEPA latent will.

    MUJOCO_GL=egl OMP_NUM_THREADS=1 .venv/bin/python scripts/perception_ceiling.py collect   # renders every view once
    MUJOCO_GL=egl OMP_NUM_THREADS=1 .venv/bin/python scripts/perception_ceiling.py fit       # one regressor per candidate
    .venv/bin/python scripts/perception_ceiling.py fit --only front64 wrist64 --steps 500  # a subset
    .venv/bin/python scripts/perception_ceiling.py jepa      # the shipped JEPA's cube probe on the same held-out frames
    .venv/bin/python scripts/perception_ceiling.py table     # the results as a markdown table (last row per candidate)

``collect`` writes ``data/ceiling/{train,val}.npz`` (frames of every view, proprio, ee/cube/gripper labels);
``fit`` appends one JSON line per candidate to ``runs/ceiling/results.jsonl`` and prints a table (cm).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from world_models.jepa.encoder import ConvEncoder  # noqa: E402
from world_models.jepa.evaluate import cube_held_mask  # noqa: E402

# Every frame is rendered once per (camera, size) here; candidates pick from these.
RENDERS = {
    "front64": ("front", 64),
    "front96": ("front", 96),
    "front128": ("front", 128),
    "side64": ("side", 64),
    "close64": ("close", 64),
    "wrist64": ("wrist", 64),
}
CANDIDATES = {
    "front64": ("front64",),  # the shipped model's observation (baseline)
    "front96": ("front96",),
    "front128": ("front128",),
    "side64": ("side64",),
    "close64": ("close64",),
    "wrist64": ("wrist64",),
    "front64+wrist64": ("front64", "wrist64"),
    "close64+wrist64": ("close64", "wrist64"),
}
TASKS = ("jepa_mpc/PandaReach-v0", "jepa_mpc/PandaPush-v0", "jepa_mpc/PandaPickPlace-v0")


def collect(out: Path, episodes_per_task: int, seed: int) -> None:
    """Roll the JEPA collection policy (noisy experts + exploration) and render every view of every frame."""
    import gymnasium as gym

    import envs
    from world_models.jepa.collect import run_episode

    cfg = {"action_noise": 0.3, "explore_prob": 0.08, "explore_len": [3, 10], "gripper_flip_prob": 0.05}
    frames: dict[str, list[np.ndarray]] = {k: [] for k in [*RENDERS, "proprio", "ee_pos", "cube_pos", "gripper"]}
    frames["episode"], frames["grasped"] = [], []
    bar = tqdm(total=episodes_per_task * len(TASKS), desc=f"collect {out.name}", unit="ep")
    for ti, env_id in enumerate(TASKS):
        env = gym.make(env_id, image_size=64)
        base = env.unwrapped
        policy = envs.scripted_expert(env)
        real_obs = base._observation

        def observe(base=base, real_obs=real_obs) -> dict[str, np.ndarray]:
            obs = real_obs()  # every frame the policy sees is rendered in every view, in the same order
            for key, (camera, size) in RENDERS.items():
                frames[key].append(base.render_camera(size, camera))
            frames["grasped"].append(bool(base._cube_grasped()))
            return obs

        base._observation = observe
        for j in range(episodes_per_task):
            s = seed + ti * episodes_per_task + j
            rng = np.random.default_rng(s)
            before = len(frames["front64"])
            ep, _ = run_episode(env, policy, s, 60, cfg, rng, explore_all=rng.random() < 0.1)
            t = len(ep["pixels"])
            # run_episode keeps one row per observation it saw; drop nothing, but check the alignment
            assert len(frames["front64"]) - before == t, "rendered frames and episode rows out of step"
            for k in ("proprio", "ee_pos", "cube_pos", "gripper"):
                frames[k].append(ep[k])
            frames["episode"].append(np.full(t, s))
            bar.update(1)
        env.close()
    bar.close()
    arrays = {
        k: (np.stack(v) if k in RENDERS else np.concatenate(v) if k != "grasped" else np.array(v))
        for k, v in frames.items()
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(out, **arrays)
    print(f"wrote {out}: {len(arrays['proprio'])} frames")


class Regressor(nn.Module):
    """One CoordConv trunk per view (as the JEPA encoder) -> flattened maps + proprio -> MLP -> cube position."""

    def __init__(self, sizes: list[int], proprio_dim: int = 8, hidden: int = 256) -> None:
        super().__init__()
        self.trunks = nn.ModuleList(ConvEncoder(s, 32, 16) for s in sizes)
        feat = sum(16 * (s // 8) ** 2 for s in sizes) + proprio_dim
        self.head = nn.Sequential(
            nn.Linear(feat, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 3)
        )

    def forward(self, views: list[torch.Tensor], proprio: torch.Tensor) -> torch.Tensor:
        feats = [
            trunk((v.permute(0, 3, 1, 2).float() / 255.0 - 0.5) / 0.25).flatten(1)
            for trunk, v in zip(self.trunks, views, strict=True)
        ]
        return self.head(torch.cat([*feats, proprio], 1))


def fit(name: str, train: dict[str, np.ndarray], val: dict[str, np.ndarray], steps: int, batch: int, seed: int) -> dict:
    """Train one candidate's regressor for ``steps`` and report its held-out cube error (cm)."""
    torch.manual_seed(seed)
    keys = CANDIDATES[name]
    model = Regressor([RENDERS[k][1] for k in keys])
    pm, ps = train["proprio"].mean(0), train["proprio"].std(0) + 1e-4
    cm, cs = train["cube_pos"].mean(0), train["cube_pos"].std(0) + 1e-4
    t_views = [torch.from_numpy(train[k]) for k in keys]
    t_prop = torch.from_numpy((train["proprio"] - pm) / ps).float()
    t_cube = torch.from_numpy((train["cube_pos"] - cm) / cs).float()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    start = time.time()
    model.train()
    for _ in tqdm(range(steps), desc=name, unit="step", mininterval=10):
        idx = torch.randint(len(t_prop), (batch,), generator=gen)
        pred = model([v[idx] for v in t_views], t_prop[idx])
        loss = nn.functional.smooth_l1_loss(pred, t_cube[idx], beta=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    train_s = time.time() - start
    model.eval()
    preds = []
    with torch.no_grad():
        v_prop = torch.from_numpy((val["proprio"] - pm) / ps).float()
        for i in range(0, len(v_prop), 256):
            preds.append(model([torch.from_numpy(val[k][i : i + 256]) for k in keys], v_prop[i : i + 256]))
    pred = torch.cat(preds).numpy() * cs + cm
    return {
        "candidate": name,
        "views": list(keys),
        "steps": steps,
        "batch": batch,
        "params": sum(p.numel() for p in model.parameters()),
        "train_s": round(train_s, 1),
        "n_train_frames": len(t_prop),
        **_errors(pred, val),
    }


def _errors(pred: np.ndarray, val: dict[str, np.ndarray]) -> dict:
    err = 100.0 * np.linalg.norm(pred - val["cube_pos"], axis=1)
    held = cube_held_mask(val["ee_pos"], val["cube_pos"], val["gripper"])
    return {
        "n_val_frames": len(err),
        "n_val_held": int(held.sum()),
        "cube_cm_mean": float(err.mean()),
        "cube_cm_median": float(np.median(err)),
        "cube_cm_p90": float(np.percentile(err, 90)),
        "cube_cm_held": float(err[held].mean()) if held.any() else float("nan"),
    }


@torch.no_grad()
def jepa_row(checkpoint: str | None, val: dict[str, np.ndarray]) -> dict:
    """A JEPA checkpoint's cube probe on the held-out frames of the views it sees (the self-supervised reference)."""
    from world_models.jepa.checkpoint import load_world_model

    model = load_world_model(checkpoint)
    keys = [f"{c}{model.image_size}" for c in model.cameras]
    preds = []
    for i in range(0, len(val["proprio"]), 256):
        obs = {"proprio": val["proprio"][i : i + 256]}
        obs.update({k: val[r][i : i + 256] for k, r in zip(model.pixel_keys, keys, strict=True)})
        preds.append(model.decode(model.encode(obs))["cube_pos"].numpy())
    name = "jepa:" + (Path(checkpoint).name if checkpoint else "default.pt")
    row = {"candidate": name, "views": keys, "steps": 0, "params": sum(p.numel() for p in model.parameters())}
    return {**row, "train_s": 0.0, **_errors(np.concatenate(preds), val)}


def table(results: Path) -> str:
    """Markdown table of ``results`` (JSON lines), the last row of each candidate, in ``CANDIDATES`` order."""
    rows = {r["candidate"]: r for r in map(json.loads, results.read_text().splitlines())}
    lines = [
        "| candidate | cube mean (cm) | median | p90 | held | parameters | wall s (shared CPU) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in [c for c in CANDIDATES if c in rows] + [c for c in rows if c.startswith("jepa:")]:
        r = rows[name]
        lines.append(
            f"| {name} | {r['cube_cm_mean']:.2f} | {r['cube_cm_median']:.2f} | {r['cube_cm_p90']:.2f} | "
            f"{r['cube_cm_held']:.2f} | {r['params'] / 1e3:.0f}k | {r['train_s']:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("command", choices=["collect", "fit", "jepa", "table"])
    p.add_argument("--checkpoint", default=None, help="jepa: a checkpoint (default: the shipped one)")
    p.add_argument("--data", default=str(ROOT / "data" / "ceiling"))
    p.add_argument("--out", default=str(ROOT / "runs" / "ceiling" / "results.jsonl"))
    p.add_argument("--train-episodes", type=int, default=60, help="per task")
    p.add_argument("--val-episodes", type=int, default=12, help="per task")
    p.add_argument("--seed", type=int, default=500_000, help="training seeds start here, held-out at +100000")
    p.add_argument("--only", nargs="*", default=None, help=f"candidates (default all): {', '.join(CANDIDATES)}")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=64)
    args = p.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    data = Path(args.data)
    if args.command == "collect":
        os.environ.setdefault("MUJOCO_GL", "egl")
        collect(data / "train.npz", args.train_episodes, args.seed)
        collect(data / "val.npz", args.val_episodes, args.seed + 100_000)
        return
    if args.command == "table":
        print(table(Path(args.out)))
        return
    train, val = (dict(np.load(data / f"{s}.npz")) for s in ("train", "val"))
    if args.command == "jepa":
        row = jepa_row(args.checkpoint, val)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(row)
        return
    held = cube_held_mask(val["ee_pos"], val["cube_pos"], val["gripper"])
    print(
        f"held-out frames: {len(held)}, cube held: {int(held.sum())} (simulator grasp flag: {int(val['grasped'].sum())})"
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.only or list(CANDIDATES):
        if name not in CANDIDATES:
            raise SystemExit(f"unknown candidate {name!r}; known: {', '.join(CANDIDATES)}")
        row = fit(name, train, val, args.steps, args.batch, seed=0)
        with open(out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(
            f"{name:18s} mean {row['cube_cm_mean']:.2f}  median {row['cube_cm_median']:.2f}  p90 {row['cube_cm_p90']:.2f}  "
            f"held {row['cube_cm_held']:.2f} cm  ({row['train_s']:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
