"""JEPA checkpoints: atomic save, safe validated load (``weights_only``), and the shipped default model.

Payload (a plain dict, loadable with ``torch.load(weights_only=True)``)::

    {"format_version": 1, "kind": "jepa_world_model",
     "config": {JEPAConfig fields},
     "state_dicts": {"model": JEPAWorldModel.state_dict(), optional "target_encoder", ...},
     "metadata": {"code_version": git describe or "unknown", "data": {...}, "metrics": {...}, ...},
     optional "train_state": {"step", "phase", "optimizer", "scheduler", "rng": {...}}}
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import torch

from world_models.jepa.model import JEPAConfig, JEPAWorldModel

CHECKPOINT_FORMAT_VERSION = 1
KIND = "jepa_world_model"
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "checkpoints" / "default.pt"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, truncated or does not match the model (the message says which)."""


def git_describe() -> str:
    """``git describe --always --dirty`` of this source tree, or ``"unknown"``."""
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def save_checkpoint(
    path: str | Path,
    model: JEPAWorldModel,
    *,
    metadata: dict[str, Any] | None = None,
    extra_state_dicts: dict[str, dict[str, torch.Tensor]] | None = None,
    train_state: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` (+ optional training state) to ``path`` atomically (tmp file, fsync, ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"code_version": git_describe(), **(metadata or {})}
    payload: dict[str, Any] = {
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "kind": KIND,
        "config": model.config_dict(),
        "state_dicts": {
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            **(extra_state_dicts or {}),
        },
        "metadata": meta,
    }
    if train_state is not None:
        payload["train_state"] = train_state
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def _unreadable(path: Path, error: Exception) -> str:
    """Why a checkpoint could not be read, without torch's advice to retry with ``weights_only=False`` (that would
    run whatever code the file holds): objects a safe load refuses are named, other errors reported briefly."""
    text = str(error)
    refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if refused:
        return (
            f"checkpoint {path} holds an object a safe load refuses ({refused.group(1)}); a jepa-mpc checkpoint "
            "holds only tensors and plain values, so it was not written by jepa-mpc or was altered: not loaded"
        )
    if "Weights only load failed" in text:
        detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)
        reason = detail.group(1).strip() if detail else "unreadable pickle"
        return f"checkpoint {path} is not a torch checkpoint (corrupt, truncated or another format): {reason}"
    first = next((line for line in text.splitlines() if line.strip()), "").split(". ")[0]
    return f"checkpoint {path} is corrupt or truncated and could not be read: {type(error).__name__}: {first[:200]}"


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and structurally validate a checkpoint payload; raises ``CheckpointError`` naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # zip/pickle errors for truncated or corrupt files, or disallowed objects
        raise CheckpointError(_unreadable(path, e)) from None
    if not isinstance(payload, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(payload).__name__}, expected a dict payload")
    missing = [k for k in ("format_version", "kind", "config", "state_dicts", "metadata") if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} is missing keys {missing} (not a jepa-mpc checkpoint?)")
    if payload["kind"] != KIND:
        raise CheckpointError(f"checkpoint {path} is of kind {payload['kind']!r}, expected {KIND!r}")
    if payload["format_version"] != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format_version {payload['format_version']}, "
            f"this code reads {CHECKPOINT_FORMAT_VERSION}"
        )
    if "model" not in payload["state_dicts"]:
        raise CheckpointError(f"checkpoint {path} has no 'model' state dict")
    return payload


def model_from_payload(
    payload: dict[str, Any],
    path: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    autocast_bf16: bool = False,
) -> JEPAWorldModel:
    """Build a ``JEPAWorldModel`` from a validated payload; shape/key mismatches raise ``CheckpointError``."""
    try:
        config = JEPAConfig.from_dict(dict(payload["config"]))
        model = JEPAWorldModel(config, device=device, dtype=dtype, autocast_bf16=autocast_bf16)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path} has an invalid config: {e}") from e
    state = payload["state_dicts"]["model"]
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        raise CheckpointError(
            f"checkpoint {path} does not match the model: missing keys {missing[:5]}, "
            f"unexpected keys {unexpected[:5]}, shape mismatches {shapes[:5]}"
        )
    bad = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"checkpoint {path} has non-finite values in {bad[:5]}")
    model.load_state_dict(state)
    return model


def load_world_model(
    path: str | Path | None = None,
    device: str | torch.device = "cpu",
    *,
    dtype: torch.dtype = torch.float32,
    autocast_bf16: bool = False,
    bf16_weights: bool = False,
) -> JEPAWorldModel:
    """Load a trained model for planning (eval mode, parameters frozen; gradients still reach inputs/actions).

    ``path=None`` loads the shipped default ``world_models/jepa/checkpoints/default.pt``. ``bf16_weights`` casts the
    predictor and probe heads to bfloat16 (``JEPAWorldModel.use_bf16_weights``).
    """
    if path is None:
        path = DEFAULT_CHECKPOINT
        if not path.is_file():
            raise CheckpointError(
                f"no shipped default checkpoint at {path}: train one (world_models.jepa.train.train) "
                "and copy its model.pt there, or pass an explicit path"
            )
    payload = read_checkpoint(path)
    model = model_from_payload(payload, path, device=device, dtype=dtype, autocast_bf16=autocast_bf16)
    model.checkpoint_metadata = payload["metadata"]
    if bf16_weights:
        model.use_bf16_weights()
    return model.eval().requires_grad_(False)


def from_checkpoint(
    checkpoint: str | None = None, device: str = "cpu", autocast_bf16: bool = False, bf16_weights: bool = False
) -> JEPAWorldModel:
    """Hydra factory (``configs/world_model/jepa.yaml``): ``checkpoint=None`` means the shipped default."""
    return load_world_model(checkpoint, device, autocast_bf16=autocast_bf16, bf16_weights=bf16_weights)
