"""Training on synthetic data: loss goes down, checkpoints resume, evaluation report, 2-process DDP (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from world_models.jepa.checkpoint import load_world_model, read_checkpoint
from world_models.jepa.synthetic import write_synthetic_dataset
from world_models.jepa.train import train

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = {
    "enc_width": 8,
    "latent_channels": 8,
    "pred_width": 16,
    "pred_blocks": 1,
    "cond_dim": 32,
    "probe_hidden": 32,
}


def tiny_cfg(data: Path, out: Path, **over: Any) -> dict[str, Any]:
    cfg = {
        "data_dir": str(data),
        "out_dir": str(out),
        "resume": True,
        "seed": 0,
        "device": "cpu",
        "precision": "fp32",
        "threads": 1,
        "steps": 30,
        "probe_steps": 10,
        "batch_size": 8,
        "lr": 3e-3,
        "probe_lr": 3e-3,
        "weight_decay": 0.0,
        "warmup_steps": 2,
        "grad_clip": 1.0,
        "rollout_k": 2,
        "stride": 1,
        "ema_momentum": 0.9,
        "num_workers": 0,
        "shuffle_buffer": 32,
        "val_every": 4,
        "log_every": 1,
        "eval_every": 1000,
        "eval_batches": 1,
        "ckpt_every": 10,
        "loss": {"variant": "vicreg"},
        "probe": {"rollout_weight": 0.5},
        "model": TINY_MODEL,
        "eval": {"max_episodes": 2, "horizon": 10, "num_random_actions": 8, "plots": True},
    }
    cfg.update(over)
    return cfg


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_dataset(tmp_path_factory.mktemp("data"), episodes=8, length=14, episodes_per_chunk=2)


def _losses(out: Path, phase: int) -> list[float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r["train_loss"] for r in rows if r.get("phase") == phase and "train_loss" in r]


def test_training_lowers_loss_and_writes_report(data: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    report = train(tiny_cfg(data, tmp_path, steps=40))
    pre = _losses(tmp_path, 1)
    assert sum(pre[-5:]) / 5 < sum(pre[:5]) / 5
    probe = _losses(tmp_path, 2)
    assert probe[-1] < probe[0]
    for key in (
        "effective_rank_ratio",
        "probe_err_ee_cm",
        "probe_err_cube_cm",
        "rollout10_cube_err_cm",
        "energy_true_action_rate",
    ):
        assert key in report
    assert (tmp_path / "model_report.json").exists() and (tmp_path / "rollout_error.png").exists()
    assert (tmp_path / "probe_traces.png").exists()
    model = load_world_model(tmp_path / "model.pt")
    assert model.checkpoint_metadata["data"]["num_episodes"] == 8


@pytest.mark.parametrize("variant", ["ema", "sigreg"])
def test_variants_and_resume(data: Path, tmp_path: Path, variant: str) -> None:
    cfg = tiny_cfg(data, tmp_path, steps=10, probe_steps=0, loss={"variant": variant}, ckpt_every=5)
    cfg["eval"]["plots"] = False
    train(cfg)
    first = read_checkpoint(tmp_path / "ckpt_latest.pt")
    assert first["train_state"]["step"] == 10
    if variant == "ema":
        assert "target_encoder" in first["state_dicts"]
    train({**cfg, "steps": 15, "probe_steps": 5})  # resumes at step 10
    steps = [
        json.loads(line)["step"]
        for line in (tmp_path / "metrics.jsonl").read_text().splitlines()
        if "train_loss" in line
    ]
    assert steps == list(range(1, 11)) + list(range(11, 21))
    assert read_checkpoint(tmp_path / "ckpt_latest.pt")["train_state"]["step"] == 20


def test_ddp_two_processes_gloo(data: Path, tmp_path: Path) -> None:
    cfg_path = tmp_path / "cfg.json"
    cfg = tiny_cfg(data, tmp_path / "out", steps=6, probe_steps=2, ckpt_every=3)
    cfg["eval"]["plots"] = False
    cfg_path.write_text(json.dumps(cfg))
    script = "import json, sys; from world_models.jepa.train import train; train(json.load(open(sys.argv[1])))"
    runner = tmp_path / "run.py"
    runner.write_text(script)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        str(runner),
        str(cfg_path),
    ]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    payload = read_checkpoint(tmp_path / "out" / "ckpt_latest.pt")
    assert payload["train_state"]["step"] == 8
    assert (tmp_path / "out" / "model.pt").exists()


def test_memory_loader_trains(data: Path, tmp_path: Path) -> None:
    cfg = tiny_cfg(data, tmp_path, steps=6, probe_steps=2, loader="memory")
    cfg["eval"]["plots"] = False
    report = train(cfg)
    assert report["probe_err_ee_cm"] >= 0
    assert read_checkpoint(tmp_path / "ckpt_latest.pt")["train_state"]["step"] == 8
    with pytest.raises(ValueError, match="loader must be"):
        train({**cfg, "out_dir": str(tmp_path / "bad"), "loader": "ram"})


def test_resume_after_a_kill_logs_no_step_twice(data: Path, tmp_path: Path) -> None:
    cfg = tiny_cfg(data, tmp_path, steps=10, probe_steps=0, ckpt_every=5)
    cfg["eval"]["plots"] = False
    train(cfg)
    # a kill -9 after steps 11-12 were logged but before the next checkpoint: the log ran ahead, the last line cut
    with (tmp_path / "metrics.jsonl").open("a") as f:
        f.write(json.dumps({"step": 11, "phase": 1, "train_loss": 1.0}) + "\n")
        f.write(json.dumps({"step": 12, "phase": 1, "train_loss": 1.0}) + "\n" + '{"step": 13, "pha')
    train({**cfg, "steps": 14})
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train_steps = [
        s
        for s, line in zip(steps, (tmp_path / "metrics.jsonl").read_text().splitlines(), strict=True)
        if "train_loss" in line
    ]
    assert train_steps == list(range(1, 15))
