"""Chunked episode format: round trip, interrupted-writer resume, streaming windows and sharding."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import DataLoader

from world_models.jepa.data import (
    ChunkWriter,
    MemoryWindows,
    WindowDataset,
    completed_seeds,
    iter_episodes,
    list_chunks,
    read_meta,
)
from world_models.jepa.synthetic import synthetic_episode, write_synthetic_dataset


def _writer(root: Path, per_chunk: int = 3) -> ChunkWriter:
    return ChunkWriter(
        root,
        image_size=64,
        action_dim=4,
        proprio_dim=8,
        env_ids=["synthetic/Squares-v0"],
        base_seed=0,
        episodes_per_chunk=per_chunk,
    )


def test_round_trip(tmp_path: Path) -> None:
    eps = [synthetic_episode(np.random.default_rng(i), length=7 + i) for i in range(5)]
    with _writer(tmp_path) as w:
        for i, ep in enumerate(eps):
            w.add_episode(ep, seed=100 + i, episode_id=i, task_id=0)
    meta = read_meta(tmp_path)
    assert meta["num_episodes"] == 5 and meta["num_frames"] == sum(len(e["pixels"]) for e in eps)
    assert len(list_chunks(tmp_path)) == 2 and completed_seeds(tmp_path) == {100, 101, 102, 103, 104}
    back = list(iter_episodes(tmp_path))
    for ep, got in zip(eps, back, strict=True):
        np.testing.assert_array_equal(ep["pixels"], got["pixels"])
        np.testing.assert_allclose(ep["proprio"], got["proprio"])
        np.testing.assert_allclose(ep["actions"][:-1], got["actions"][:-1])
        assert not got["valid_action"][-1] and got["valid_action"][:-1].all()
        assert (got["actions"][-1] == 0).all()


def test_interrupted_writer_resumes_without_duplicates(tmp_path: Path) -> None:
    def collect(stop_after: int | None) -> None:
        with _writer(tmp_path) as w:
            for i in range(7):
                if 50 + i in w.completed_seeds:
                    continue
                if stop_after is not None and i == stop_after:
                    raise KeyboardInterrupt
                w.add_episode(
                    synthetic_episode(np.random.default_rng(i), length=6), seed=50 + i, episode_id=i, task_id=0
                )

    with pytest.raises(KeyboardInterrupt):
        collect(stop_after=5)
    (tmp_path / "chunks" / "chunk_000099.npz.tmp").write_bytes(b"half-written")  # a crash mid-write
    assert completed_seeds(tmp_path) == {50, 51, 52, 53, 54}
    collect(stop_after=None)
    ids = [int(ep["episode_id"][0]) for ep in iter_episodes(tmp_path)]
    assert sorted(ids) == list(range(7)) and len(ids) == 7
    assert not list((tmp_path / "chunks").glob("*.tmp"))
    assert json.loads((tmp_path / "meta.json").read_text())["num_episodes"] == 7


def test_writer_rejects_mismatch(tmp_path: Path) -> None:
    write_synthetic_dataset(tmp_path, episodes=2)
    with pytest.raises(ValueError, match="image_size"):
        ChunkWriter(tmp_path, image_size=32, action_dim=4, proprio_dim=8, env_ids=["synthetic/Squares-v0"])


def test_window_stream_shapes_and_split(tmp_path: Path) -> None:
    write_synthetic_dataset(tmp_path, episodes=8, length=10, episodes_per_chunk=2)
    ds = WindowDataset(tmp_path, window=5, split="train", val_every=4, shuffle_buffer=16, infinite=False)
    items = list(ds)
    assert len(items) == 6 * (10 - 5 + 1)  # episodes 0 and 4 are held out
    it = items[0]
    assert it["pixels"].shape == (5, 64, 64, 3) and it["actions"].shape == (4, 4) and it["proprio"].shape == (5, 8)
    val = list(WindowDataset(tmp_path, window=5, split="val", val_every=4, infinite=False))
    assert len(val) == 2 * 6
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert tuple(batch["pixels"].shape) == (4, 5, 64, 64, 3)


def test_worker_sharding_is_disjoint_and_complete(tmp_path: Path) -> None:
    write_synthetic_dataset(tmp_path, episodes=6, length=8, episodes_per_chunk=1)
    ds = WindowDataset(tmp_path, window=3, split="all", shuffle_buffer=4, infinite=False)
    loader = DataLoader(ds, batch_size=None, num_workers=2)
    keys = sorted((float(i["ee_pos"][0, 0]), float(i["ee_pos"][0, 1])) for i in loader)
    single = sorted((float(i["ee_pos"][0, 0]), float(i["ee_pos"][0, 1])) for i in ds)
    assert keys == single and len(keys) == 6 * 6


def test_memory_windows_match_the_stream(tmp_path: Path) -> None:
    write_synthetic_dataset(tmp_path, episodes=8, length=10, episodes_per_chunk=3)
    mem = MemoryWindows(tmp_path, window=5, split="train", val_every=4)
    assert len(mem) == 6 * (10 - 5 + 1)  # the same windows the stream cuts: episodes 0 and 4 held out
    stream = {
        tuple(np.round(i["ee_pos"][:, 0], 6)): i["actions"]
        for i in WindowDataset(tmp_path, 5, val_every=4, infinite=False)
    }
    batch = next(mem.batches(64, seed=1))
    assert tuple(batch["pixels"].shape) == (64, 5, 64, 64, 3) and tuple(batch["actions"].shape) == (64, 4, 4)
    for row, actions in zip(batch["ee_pos"][:, :, 0].numpy(), batch["actions"].numpy(), strict=True):
        key = tuple(np.round(row, 6))  # every sampled window is one the stream has (none crosses episodes) ...
        np.testing.assert_array_equal(actions, stream[key])  # ... with the same actions between its frames
    assert len(MemoryWindows(tmp_path, window=5, split="train", val_every=4, stride=2)) == 6 * 3
    with pytest.raises(RuntimeError, match="no val windows"):
        MemoryWindows(tmp_path, window=50, split="val", val_every=4)


def _one_chunk(root: Path) -> Path:
    with _writer(root, per_chunk=2) as w:
        for i in range(2):
            w.add_episode(synthetic_episode(np.random.default_rng(i), length=6), seed=i, episode_id=i, task_id=0)
    return list_chunks(root)[0]


def _rewrite(path: Path, **changes) -> None:
    """Write the chunk again with arrays replaced (``None``: removed)."""
    arrays = {**dict(np.load(path)), **changes}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("truncated", "truncated or corrupt"),
        ("random", "not an .npz archive"),
        ("nan", "'proprio' holds 1 NaN or inf"),
        ("object", "'actions' holds Python objects"),
        ("no_pixels", r"lacks the arrays \['pixels'\]"),
    ],
)
def test_a_bad_chunk_is_one_error_naming_the_file_and_what_is_wrong(tmp_path: Path, damage: str, message: str):
    from world_models.jepa.data import DataError, load_chunk

    path = _one_chunk(tmp_path)
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "random":
        path.write_bytes(np.random.default_rng(0).bytes(len(data)))
    elif damage == "nan":
        proprio = np.load(path)["proprio"].copy()
        proprio[3, 2] = np.nan
        _rewrite(path, proprio=proprio)
    elif damage == "object":
        _rewrite(path, actions=np.array([object()] * 3, dtype=object))
    else:
        _rewrite(path, pixels=None)
    with pytest.raises(DataError, match=f"{path.name}.*{message}|{message}.*{path.name}") as err:
        list(iter_episodes(tmp_path))
    assert str(path) in str(err.value) and "pickled data" not in str(err.value)
    if damage in ("truncated", "random"):
        with pytest.raises(DataError, match=path.name):  # collect resuming onto the bad chunk says which one
            _writer(tmp_path)
    with pytest.raises(DataError, match=path.name):
        load_chunk(path)


def test_a_broken_meta_json_names_the_file(tmp_path: Path):
    from world_models.jepa.data import DataError

    _one_chunk(tmp_path)
    (tmp_path / "meta.json").write_text('{"format_version": 1, "cameras": [')
    with pytest.raises(DataError, match="meta.json is not valid JSON"):
        read_meta(tmp_path)
    with pytest.raises(DataError, match="meta.json"):
        _writer(tmp_path)
