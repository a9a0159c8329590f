"""Two-phase JEPA training: self-supervised pretraining of encoder+predictor, then probes on frozen latents.

``train(cfg)`` takes a DictConfig (or dict) composed from ``configs/train.yaml``. It writes, under ``out`` (alias
``out_dir``): ``ckpt_latest.pt`` (atomic, every ``ckpt_every`` steps, with optimizer/scheduler/step/RNG so ``resume=true``
continues), ``metrics.jsonl``, the final ``model.pt`` and ``model_report.json`` (``evaluate.evaluate_model``).
Multi-process: run under ``torchrun --nproc_per_node N`` (WORLD_SIZE > 1): DDP with gloo on CPU, nccl on CUDA;
rank 0 writes checkpoints. On resume the weights, optimizer and RNG are restored exactly; the data stream is
reseeded from the step (the order of windows is not replayed).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from world_models.jepa.checkpoint import model_from_payload, read_checkpoint, save_checkpoint
from world_models.jepa.data import MemoryWindows, WindowDataset, list_chunks, load_chunk, read_meta
from world_models.jepa.losses import LossConfig, PretrainObjective, ProbeObjective, effective_rank, ema_update
from world_models.jepa.model import JEPAConfig, JEPAWorldModel

LABELS = ("ee_pos", "cube_pos", "gripper")


def to_plain(cfg: Any) -> dict[str, Any]:
    """DictConfig or mapping -> plain nested dict (hydra stays at this edge)."""
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(cfg, DictConfig):
            return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]
    except ImportError:  # pragma: no cover
        pass
    return json.loads(json.dumps(dict(cfg), default=str))


def out_path(c: dict[str, Any], default: str | Path) -> Path:
    """The app's output directory: ``out`` (the spelling ``benchmark`` uses), or its older alias ``out_dir``.

    Both null means ``default``; both set to different places is a ``ValueError`` naming the two keys.
    """
    out, alias = c.get("out"), c.get("out_dir")
    if out is not None and alias is not None and Path(out) != Path(alias):
        raise ValueError(f"out={out} and out_dir={alias} disagree: out_dir is an alias of out, give one of them")
    return Path(out if out is not None else alias if alias is not None else default)


def init_distributed(device: str) -> tuple[int, int, torch.device]:
    """(rank, world_size, device); initializes the process group when ``WORLD_SIZE > 1``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = torch.device(device)
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    rank = torch.distributed.get_rank() if world > 1 else 0
    if dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(dev)
    return rank, world, dev


def data_stats(data_dir: str | Path, max_chunks: int = 32) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Mean/std of proprio and probe labels over ``max_chunks`` evenly spaced chunks (same on every rank).

    Evenly spaced, not the first ones: collection writes tasks in order, so the first chunks are all one task (reach,
    whose cube never moves: a cube-z std of 0 there blew the standardized cube targets up by ~1e3 on pick-place).
    """
    arrays: dict[str, list[np.ndarray]] = {k: [] for k in ("proprio", *LABELS)}
    chunks = list_chunks(data_dir)
    picked = sorted({chunks[int(i)] for i in np.linspace(0, len(chunks) - 1, min(max_chunks, len(chunks)))})
    for p in picked:
        chunk = load_chunk(p, tuple(arrays))
        for k in arrays:
            arrays[k].append(chunk[k].reshape(len(chunk[k]), -1))
    out = {}
    for k, v in arrays.items():
        x = torch.from_numpy(np.concatenate(v)).double()
        out[k] = (x.mean(0).float(), x.std(0).float())
    return out


_MEMORY: dict[tuple[Any, ...], MemoryWindows] = {}


def make_loader(
    c: dict[str, Any], split: str, seed: int, batch_size: int, workers: int, device: torch.device | None = None
) -> Iterator[dict[str, Any]]:
    """Infinite iterator of batches of ``rollout_k + 1``-frame windows.

    ``c["loader"]``: ``stream`` (default; ``WindowDataset`` through a DataLoader, flat RAM) or ``memory`` (the whole
    split loaded once onto ``device`` as ``MemoryWindows``; the fast path on a GPU).
    """
    loader = c.get("loader", "stream")
    if loader not in ("stream", "memory"):
        raise ValueError(f"loader must be stream or memory, got {loader!r}")
    if loader == "memory":
        dev = device or torch.device("cpu")
        frames = read_meta(c["data_dir"]).get("num_frames")  # a grown collection is a new key
        stride = int(c.get("stride", 1))
        cams = c.get("cameras")
        key = (str(c["data_dir"]), frames, split, c["rollout_k"] + 1, int(c["val_every"]), stride, str(dev), str(cams))
        if key not in _MEMORY:
            _MEMORY[key] = MemoryWindows(
                c["data_dir"],
                c["rollout_k"] + 1,
                split=split,
                val_every=c["val_every"],
                stride=stride,
                device=dev,
                cameras=cams,
            )
        return _MEMORY[key].batches(batch_size, seed)
    ds = WindowDataset(
        c["data_dir"],
        c["rollout_k"] + 1,
        split=split,
        val_every=c["val_every"],
        shuffle_buffer=c["shuffle_buffer"],
        stride=c.get("stride", 1),
        seed=seed,
        cameras=c.get("cameras"),
    )
    return iter(DataLoader(ds, batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0))


def lr_lambda(warmup: int, total: int, floor: float = 0.1) -> Any:
    """Linear warmup then cosine decay to ``floor`` x the base learning rate."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        frac = min(1.0, (step - warmup) / max(1, total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * frac))

    return f


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states as weights_only-safe values."""
    st = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(st[1].astype(np.int64)), "pos": int(st[2])},
    }


def set_rng_state(s: dict[str, Any]) -> None:
    """Inverse of ``rng_state``."""
    torch.set_rng_state(s["torch"].cpu())  # a checkpoint read with map_location=cuda moves it
    py = s["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    np.random.set_state(("MT19937", s["numpy"]["keys"].cpu().numpy().astype(np.uint32), s["numpy"]["pos"], 0, 0.0))


def _batch(b: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(v).to(device, non_blocking=True) for k, v in b.items() if k != "task_id"}


class Trainer:
    """Holds the model, objectives and bookkeeping of one ``train(cfg)`` call."""

    def __init__(self, c: dict[str, Any]) -> None:
        self.c = c
        self.rank, self.world, self.device = init_distributed(c["device"])
        self.out = out_path(c, "runs/jepa")
        self.out.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(c["seed"] + self.rank)
        np.random.seed(c["seed"] + self.rank)
        random.seed(c["seed"] + self.rank)
        meta = read_meta(c["data_dir"])
        self.data_meta = {k: meta.get(k) for k in ("env_ids", "num_episodes", "num_frames", "num_chunks", "base_seed")}
        self.data_meta["data_dir"] = str(c["data_dir"])
        arch = {
            **c.get("model", {}),
            "image_size": meta["image_size"][0],
            # the views the encoder sees: `cameras` (a subset of the collection's, for ablations) or all it rendered
            "cameras": c.get("cameras") or meta.get("cameras", ["front"]),
            "proprio_dim": meta["proprio_dim"],
            "action_dim": meta["action_dim"],
        }
        self.model = JEPAWorldModel(JEPAConfig.from_dict(arch), device=self.device)
        stats = data_stats(c["data_dir"])
        self.model.set_proprio_stats(*(t.to(self.device) for t in stats["proprio"]))
        self.model.probes.set_stats({k: tuple(t.to(self.device) for t in stats[k]) for k in LABELS})
        self.pretrain = PretrainObjective(self.model, LossConfig(**c.get("loss", {}))).to(self.device)
        self.probe = ProbeObjective(self.model, c.get("probe", {}).get("rollout_weight", 0.5))
        self.step, self.opt_state, self.sched_state = 0, None, None
        self.total = c["steps"] + c["probe_steps"]
        self.metrics: dict[str, float] = {}
        self.autocast = (
            torch.autocast(self.device.type, dtype=torch.bfloat16)
            if c["precision"] == "bf16"
            else contextlib.nullcontext()
        )
        ckpt = self.out / "ckpt_latest.pt"
        if c.get("resume", True) and ckpt.exists():
            self._resume(ckpt)
        if self.rank == 0:
            self._trim_metrics()

    def _trim_metrics(self) -> None:
        """Drop ``metrics.jsonl`` rows past the step training starts from: a run killed after its last checkpoint
        logged steps it will now train again, and a fresh run (step 0) starts a fresh log, so no step is logged
        twice. A line cut short by the kill goes too."""
        path = self.out / "metrics.jsonl"
        if not path.exists():
            return
        kept = []
        for line in path.read_text().splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= self.step and self.step:
                kept.append(line)
        tmp = path.with_suffix(".jsonl.tmp")
        tmp.write_text("".join(f"{line}\n" for line in kept))
        tmp.replace(path)

    def _resume(self, path: Path) -> None:
        payload = read_checkpoint(path, map_location=self.device)
        loaded = model_from_payload(payload, path, device=self.device)
        self.model.load_state_dict(loaded.state_dict())
        if self.pretrain.target_encoder is not None and "target_encoder" in payload["state_dicts"]:
            self.pretrain.target_encoder.load_state_dict(payload["state_dicts"]["target_encoder"])
        ts = payload.get("train_state", {})
        self.step = int(ts.get("step", 0))
        self.opt_state, self.sched_state = ts.get("optimizer"), ts.get("scheduler")
        self.phase_of_state = ts.get("phase")
        if "rng" in ts:
            set_rng_state(ts["rng"])
        if self.rank == 0:
            tqdm.write(f"resumed from {path} at step {self.step}")

    def _save(self, opt: torch.optim.Optimizer, sched: Any, phase: int, name: str = "ckpt_latest.pt") -> None:
        if self.rank != 0:
            return
        extra = {}
        if self.pretrain.target_encoder is not None:
            extra["target_encoder"] = {k: v.cpu() for k, v in self.pretrain.target_encoder.state_dict().items()}
        train_state = {
            "step": self.step,
            "phase": phase,
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "rng": rng_state(),
        }
        save_checkpoint(
            self.out / name, self.model, metadata=self._metadata(), extra_state_dicts=extra, train_state=train_state
        )

    def _metadata(self) -> dict[str, Any]:
        return {
            "data": self.data_meta,
            "metrics": dict(self.metrics),
            "train_config": self.c,
            "step": self.step,
            "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }

    def _log(self, record: dict[str, Any]) -> None:
        if self.rank == 0:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    @torch.no_grad()
    def _validate(self, objective: torch.nn.Module, phase: int) -> dict[str, float]:
        c = self.c
        try:
            loader = make_loader(
                c, "val" if c["val_every"] > 0 else "all", c["seed"] + 999, c["batch_size"], 0, self.device
            )
            sums: dict[str, float] = {}
            zs = []
            for _ in range(c["eval_batches"]):
                b = _batch(next(loader), self.device)
                with self.autocast:
                    out = objective(**b) if phase == 2 else objective(b["pixels"], b["proprio"], b["actions"])
                for k, v in out.items():
                    sums[f"val_{k}"] = sums.get(f"val_{k}", 0.0) + float(v) / c["eval_batches"]
                zs.append(self.model.encode_tensors(b["pixels"][:, 0], b["proprio"][:, 0]))
        except (RuntimeError, FileNotFoundError) as e:
            tqdm.write(f"validation skipped: {e}")
            return {}
        z = torch.cat(zs)
        sums["val_effective_rank_ratio"] = effective_rank(z) / min(z.shape)
        return sums

    def run_phase(self, phase: int) -> None:
        """Phase 1 (pretrain encoder+predictor) or 2 (probes on frozen latents), from ``self.step``."""
        c, model = self.c, self.model
        start, end = (0, c["steps"]) if phase == 1 else (c["steps"], self.total)
        if self.step >= end:
            return
        model.requires_grad_(False)
        trainable = [model.encoder, model.predictor] if phase == 1 else [model.probes]
        for m in trainable:
            m.requires_grad_(True)
        params = [p for m in trainable for p in m.parameters()]
        lr = c["lr"] if phase == 1 else c["probe_lr"]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=c["weight_decay"])
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(c["warmup_steps"], end - start))
        if self.opt_state is not None and getattr(self, "phase_of_state", None) == phase:
            opt.load_state_dict(self.opt_state)
            sched.load_state_dict(self.sched_state)
        objective = self.pretrain if phase == 1 else self.probe
        objective.train()
        wrapped = objective
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            wrapped = DistributedDataParallel(objective, device_ids=ids)
        loader = make_loader(
            c,
            "train" if c["val_every"] > 0 else "all",
            c["seed"] + 1000 * self.rank + self.step,
            c["batch_size"],
            c["num_workers"],
            self.device,
        )
        bar = tqdm(
            range(self.step, end),
            initial=self.step - start,
            total=end - start,
            disable=self.rank != 0,
            desc=f"phase {phase} ({'pretrain' if phase == 1 else 'probes'})",
            dynamic_ncols=True,
        )
        for _ in bar:
            b = _batch(next(loader), self.device)
            with self.autocast:
                out = wrapped(**b) if phase == 2 else wrapped(b["pixels"], b["proprio"], b["actions"])
            opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            torch.nn.utils.clip_grad_norm_(params, c["grad_clip"])
            opt.step()
            sched.step()
            if phase == 1 and self.pretrain.target_encoder is not None:
                ema_update(self.pretrain.target_encoder, model.encoder, c["ema_momentum"])
            self.step += 1
            if not all(torch.isfinite(v) for v in out.values()):
                raise FloatingPointError(
                    f"non-finite loss at step {self.step}: { {k: float(v) for k, v in out.items()} }"
                )
            record = {f"train_{k}": float(v.detach()) for k, v in out.items()}
            self.metrics[f"phase{phase}_loss"] = record["train_loss"]
            if self.step % c["log_every"] == 0 or self.step == end:
                bar.set_postfix(loss=f"{record['train_loss']:.4f}")
                self._log({"step": self.step, "phase": phase, "lr": sched.get_last_lr()[0], **record})
            if self.rank == 0 and (self.step % c["eval_every"] == 0 or self.step == end):
                objective.eval()
                val = self._validate(objective, phase)
                objective.train()
                self.metrics.update({f"phase{phase}_{k}": v for k, v in val.items()})
                self._log({"step": self.step, "phase": phase, **val})
            if self.step % c["ckpt_every"] == 0 or self.step == end:
                self._save(opt, sched, phase)
        self.opt_state = None


def train(cfg: Any) -> dict[str, Any]:
    """Run both phases, evaluate, and write ``out/model.pt``; returns the evaluation report (rank 0)."""
    c = to_plain(cfg)
    if c.get("threads"):
        torch.set_num_threads(int(c["threads"]))
    if str(c.get("device", "cpu")).startswith("cuda"):
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    trainer = Trainer(c)
    try:
        trainer.run_phase(1)
        trainer.run_phase(2)
    finally:
        _MEMORY.clear()  # the in-memory splits (GBs on a GPU) are not kept past the run
    report: dict[str, Any] = {}
    if trainer.rank == 0:
        from world_models.jepa.evaluate import evaluate_model

        model = trainer.model.eval()
        ev = c.get("eval", {})
        report = evaluate_model(
            model,
            c["data_dir"],
            trainer.out,
            val_every=c["val_every"],
            max_episodes=ev.get("max_episodes", 20),
            horizon=ev.get("horizon", 10),
            num_random_actions=ev.get("num_random_actions", 64),
            plots=ev.get("plots", True),
        )
        trainer.metrics.update({k: v for k, v in report.items() if isinstance(v, (int, float))})
        save_checkpoint(trainer.out / "model.pt", model, metadata=trainer._metadata())
        tqdm.write(f"wrote {trainer.out / 'model.pt'} and {trainer.out / 'model_report.json'}")
    if trainer.world > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return report


def main() -> None:
    """``python -m world_models.jepa.train [hydra overrides]`` (also what torchrun launches)."""
    from world_models.jepa.entry import hydra_entry

    hydra_entry("train", train)


if __name__ == "__main__":
    main()
