"""Checkpoints: exact round trip; corrupt, truncated, mismatched and missing files raise CheckpointError."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from world_models.jepa import checkpoint as ckpt
from world_models.jepa.checkpoint import CheckpointError, load_world_model, save_checkpoint
from world_models.jepa.model import JEPAConfig, JEPAWorldModel

TINY = JEPAConfig(enc_width=8, latent_channels=8, pred_width=16, pred_blocks=1, cond_dim=32, probe_hidden=32)


def _model() -> JEPAWorldModel:
    torch.manual_seed(0)
    m = JEPAWorldModel(TINY)
    for p in m.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    m.set_proprio_stats(torch.rand(8), torch.rand(8) + 0.5)
    return m


def _obs() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {
        "pixels": rng.integers(0, 255, (2, 64, 64, 3), dtype=np.uint8),
        "proprio": rng.standard_normal((2, 8)).astype(np.float32),
    }


@pytest.fixture
def saved(tmp_path: Path) -> tuple[JEPAWorldModel, Path]:
    m = _model()
    path = save_checkpoint(tmp_path / "m.pt", m, metadata={"metrics": {"x": 1.0}, "data": {"num_episodes": 3}})
    return m, path


def test_round_trip_exact(saved: tuple[JEPAWorldModel, Path]) -> None:
    m, path = saved
    loaded = load_world_model(path)
    z, z2 = m.encode(_obs()), loaded.encode(_obs())
    torch.testing.assert_close(z, z2, rtol=0, atol=0)
    a = torch.rand(2, 4, 4)
    torch.testing.assert_close(m.decode(m.rollout(z, a)), loaded.decode(loaded.rollout(z2, a)), rtol=0, atol=0)
    assert loaded.checkpoint_metadata["metrics"] == {"x": 1.0}
    assert isinstance(loaded.checkpoint_metadata["code_version"], str)
    assert not (path.parent / "m.pt.tmp").exists()


def test_truncated_and_corrupt(saved: tuple[JEPAWorldModel, Path], tmp_path: Path) -> None:
    _, path = saved
    data = path.read_bytes()
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="trunc.pt"):
        load_world_model(trunc)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_world_model(garbage)


def test_mismatched(saved: tuple[JEPAWorldModel, Path], tmp_path: Path) -> None:
    _, path = saved
    payload = torch.load(path, weights_only=True)
    bad = dict(payload, config={**payload["config"], "latent_channels": 16})
    torch.save(bad, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match="shape mismatch"):
        load_world_model(tmp_path / "shape.pt")
    state = dict(payload["state_dicts"]["model"])
    state.pop("proprio_mean")
    torch.save(dict(payload, state_dicts={"model": state}), tmp_path / "keys.pt")
    with pytest.raises(CheckpointError, match="missing keys"):
        load_world_model(tmp_path / "keys.pt")
    torch.save(dict(payload, format_version=99), tmp_path / "fmt.pt")
    with pytest.raises(CheckpointError, match="format_version"):
        load_world_model(tmp_path / "fmt.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="missing keys"):
        load_world_model(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_world_model(tmp_path / "nope.pt")


def test_missing_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ckpt, "DEFAULT_CHECKPOINT", tmp_path / "default.pt")
    with pytest.raises(CheckpointError, match="no shipped default"):
        load_world_model()


class Refused:
    """Any object a weights_only load refuses (its ``__reduce__`` could run code)."""


def test_a_refused_object_is_named_and_no_unsafe_advice_is_given(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"kind": Refused()}, path)
    with pytest.raises(CheckpointError, match="refuses") as err:
        load_world_model(path)
    assert "weights_only=False" not in str(err.value) and "weights_only` set to `False" not in str(err.value)
    garbage = tmp_path / "random.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(CheckpointError, match="random.pt") as err:
        load_world_model(garbage)
    assert "weights_only" not in str(err.value)
