"""JEPAWorldModel: protocol shapes, broadcasting, input validation, differentiability w.r.t. actions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from world_models.base import STATE_KEYS, WorldModel
from world_models.jepa.model import JEPAConfig, JEPAWorldModel

TINY = JEPAConfig(enc_width=8, latent_channels=8, pred_width=16, pred_blocks=1, cond_dim=32, probe_hidden=32)


@pytest.fixture
def model() -> JEPAWorldModel:
    torch.manual_seed(0)
    m = JEPAWorldModel(TINY)
    for p in m.parameters():  # zero-init heads make the predictor the identity; perturb for meaningful grads
        p.data.add_(0.01 * torch.randn_like(p))
    return m


def _obs(b: int | None = None) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    lead = () if b is None else (b,)
    return {
        "pixels": rng.integers(0, 255, (*lead, 64, 64, 3), dtype=np.uint8),
        "proprio": rng.standard_normal((*lead, 8)).astype(np.float32),
    }


def test_protocol_and_shapes(model: JEPAWorldModel) -> None:
    assert isinstance(model, WorldModel) and model.action_dim == 4
    z1 = model.encode(_obs())
    assert z1.shape == (1, model.latent_dim) == (1, 8 * 8 * 8 + 8)
    zb = model.encode(_obs(5))
    assert zb.shape == (5, model.latent_dim)
    out = model.rollout(zb, torch.zeros(5, 3, 4))
    assert out.shape == (5, 3, model.latent_dim)
    broadcast = model.rollout(z1, torch.zeros(7, 6, 4))
    assert broadcast.shape == (7, 6, model.latent_dim)
    torch.testing.assert_close(broadcast[0], broadcast[6])
    dec = model.decode(broadcast)
    for k, shape in STATE_KEYS.items():
        assert dec[k].shape == (7, 6, *shape)


def test_rollout_equals_steps(model: JEPAWorldModel) -> None:
    z = model.encode(_obs(2))
    a = torch.rand(2, 3, 4) * 2 - 1
    out = model.rollout(z, a)
    manual = model.step(model.step(z, a[:, 0]), a[:, 1])
    torch.testing.assert_close(out[:, 1], manual)


def test_gradients_reach_actions(model: JEPAWorldModel) -> None:
    model.requires_grad_(False)
    z0 = model.encode(_obs())
    actions = (torch.rand(4, 5, 4) * 2 - 1).requires_grad_(True)
    loss = model.decode(model.rollout(z0, actions))["cube_pos"].pow(2).sum()
    loss = loss + model.decode(model.rollout(z0, actions))["ee_pos"].sum()
    loss.backward()
    assert actions.grad is not None and torch.isfinite(actions.grad).all() and actions.grad.abs().sum() > 0


def test_bf16_autocast_rollout(model: JEPAWorldModel) -> None:
    model.autocast_bf16 = True
    z = model.encode(_obs(2))
    out = model.rollout(z, torch.zeros(2, 2, 4))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_bf16_weights_track_fp32_and_keep_gradients(model: JEPAWorldModel) -> None:
    import copy

    z = model.encode(_obs(1))
    actions = torch.rand(5, 3, 4) * 2 - 1
    ref = model.decode(model.rollout(z, actions))
    fast = copy.deepcopy(model).use_bf16_weights()
    assert fast.bf16_weights and fast.predictor.inp.weight.dtype == torch.bfloat16
    assert fast.probes.ee_pos_mean.dtype == torch.float32  # de-standardization stays full precision
    a = actions.clone().requires_grad_(True)
    got = fast.decode(fast.rollout(z, a))
    for k in ref:
        assert got[k].dtype == torch.float32
        assert torch.allclose(got[k], ref[k], atol=0.02, rtol=0.02), k
    got["ee_pos"].sum().backward()
    assert a.grad is not None and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_invalid_inputs_raise(model: JEPAWorldModel) -> None:
    bad = _obs()
    bad["proprio"][3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.encode(bad)
    with pytest.raises(ValueError, match="H = W = 64"):
        model.encode({"pixels": np.zeros((32, 32, 3), np.uint8), "proprio": np.zeros(8, np.float32)})
    with pytest.raises(ValueError, match="uint8"):
        model.encode({"pixels": np.zeros((64, 64, 3), np.float32), "proprio": np.zeros(8, np.float32)})
    with pytest.raises(ValueError, match="proprio"):
        model.encode({"pixels": np.zeros((64, 64, 3), np.uint8), "proprio": np.zeros(5, np.float32)})
    with pytest.raises(ValueError, match="1 or match"):
        model.rollout(torch.zeros(3, model.latent_dim), torch.zeros(2, 4, 4))


@pytest.mark.parametrize("probe_type", ["squeeze", "flat", "spatial"])
def test_probe_types_decode_shapes_and_grads(probe_type: str) -> None:
    from dataclasses import replace

    m = JEPAWorldModel(replace(TINY, probe_type=probe_type))
    z = torch.randn(3, 2, m.latent_dim, requires_grad=True)
    out = m.decode(z)
    assert out["ee_pos"].shape == (3, 2, 3) and out["cube_pos"].shape == (3, 2, 3) and out["gripper"].shape == (3, 2)
    out["cube_pos"].sum().backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    with pytest.raises(ValueError, match="probe_type"):
        JEPAWorldModel(replace(TINY, probe_type="nope"))


@pytest.mark.parametrize("vicreg_on", ["flat", "location", "both"])
def test_vicreg_on_variants(model: JEPAWorldModel, vicreg_on: str) -> None:
    from world_models.jepa.losses import LossConfig, PretrainObjective

    obj = PretrainObjective(model, LossConfig(variant="vicreg", vicreg_on=vicreg_on))
    pixels = torch.randint(0, 255, (4, 3, 64, 64, 3), dtype=torch.uint8)
    out = obj(pixels, torch.randn(4, 3, 8), torch.randn(4, 2, 4))
    assert torch.isfinite(out["loss"]) and out["var"] > 0
    out["loss"].backward()
    with pytest.raises(ValueError, match="vicreg_on"):
        LossConfig(vicreg_on="nope")


def test_row_chunks_cover_every_row_once_without_a_small_remainder() -> None:
    from world_models.jepa.model import MIN_CHUNK_ROWS, row_chunks

    assert row_chunks(64, 32) == [slice(0, 32), slice(32, 64)]
    assert row_chunks(70, 32) == [slice(0, 32), slice(32, 70)]  # 6 left over join the chunk before
    assert row_chunks(81, 32) == [slice(0, 32), slice(32, 64), slice(64, 81)]
    assert row_chunks(10, 32) == [slice(0, 10)] and row_chunks(100, 0) == [slice(0, 100)]
    for n in range(1, 200):
        for size in (16, 32, 64):
            chunks = row_chunks(n, size)
            assert chunks[0].start == 0 and chunks[-1].stop == n
            assert all(a.stop == b.start for a, b in zip(chunks, chunks[1:], strict=False))
            assert all(min(n, MIN_CHUNK_ROWS) <= c.stop - c.start < size + MIN_CHUNK_ROWS for c in chunks)


def test_chunked_one_key_decode_gives_the_one_call_bits() -> None:
    """The planning fast path (CPU, no gradients): latents in chunks through the probes, one head at a time, against
    one call for all latents and all heads, on the shipped model and random rollouts."""
    from world_models.jepa.checkpoint import load_world_model

    wm = load_world_model(None, device="cpu")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, h in [(64, 4), (61, 4), (128, 6), (33, 2), (100, 3), (17, 5), (65, 1)]:
            z0 = torch.randn(1, wm.latent_dim, generator=gen)
            z = wm.rollout(z0, torch.rand(n, h, 4, generator=gen) * 2 - 1)
            decoded = wm.decode(z)
            one = {k: wm.decode(z, keys=[k]) for k in wm.decode_keys}
            wm.cpu_decode_rows = 0  # the reference: one call
            try:
                ref = wm.decode(z)
            finally:
                del wm.cpu_decode_rows
            for k in wm.decode_keys:
                assert list(one[k]) == [k]
                hint = "chunking changed bits on this CPU; JEPAWorldModel.cpu_decode_rows = 0 turns it off"
                assert torch.equal(decoded[k], ref[k]) and torch.equal(one[k][k], ref[k]), (n, h, k, hint)
    with pytest.raises(KeyError, match="nope"):
        wm.decode(z, keys=["nope"])


def test_the_predictor_without_autograd_gives_the_autograd_bits() -> None:
    """AdaLNBlock works in place on its temporaries under no_grad (planning): the same bits as the autograd path."""
    from world_models.jepa.checkpoint import load_world_model

    wm = load_world_model(None, device="cpu")
    gen = torch.Generator().manual_seed(1)
    for n in (1, 16, 64):
        z = torch.randn(n, wm.latent_dim, generator=gen)
        actions = torch.rand(n, 3, 4, generator=gen) * 2 - 1
        with torch.no_grad():
            fast = wm.rollout(z, actions)
        assert torch.is_grad_enabled()
        reference = wm.rollout(z, actions)  # autograd on: the out-of-place path
        assert torch.equal(fast, reference), n
