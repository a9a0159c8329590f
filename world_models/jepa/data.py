"""Chunked on-disk episode format for world-model training: an atomic, resumable writer and a streaming reader.

Format (``FORMAT_VERSION = 1``)::

    DIR/meta.json                 summary, rewritten atomically after every chunk:
                                  {format_version, image_size [H, W], cameras, action_dim, proprio_dim,
                                   env_ids, num_episodes, num_frames, num_chunks, base_seed, collection {...}}
    DIR/chunks/chunk_000012.npz   several whole episodes concatenated along time (T frames in all):
        pixels        uint8   [T, H, W, 3]   the first camera's frames (meta "cameras"; absent: ["front"])
        pixels_<cam>  uint8   [T, H, W, 3]   one more key per further camera (e.g. pixels_wrist)
        proprio       float32 [T, P]
        actions       float32 [T, A]   action taken AT frame t (moves frame t to t+1)
        valid_action  bool    [T]      False on each episode's last frame (its action row is zeros)
        ee_pos        float32 [T, 3]   privileged state, used only for probes and evaluation
        cube_pos      float32 [T, 3]
        gripper       float32 [T]
        episode_id    int64   [T]
        task_id       int64   [T]      index into meta["env_ids"]
        episode_starts  int64 [E]      first frame of each episode in this chunk
        episode_lengths int64 [E]
        episode_seeds   int64 [E]      env reset seed of each episode
        episode_success bool  [E]

Chunks are written to ``*.tmp`` and ``os.replace``-d into place, so a chunk on disk is always whole. The chunk
files are the truth: the set of completed episode seeds is read back from their ``episode_seeds``, so an
interrupted collection resumes by skipping those seeds (episodes buffered but not yet flushed are re-collected;
collection is seed-determined, so nothing is duplicated or lost).

Reading streams: ``WindowDataset`` loads one chunk at a time in a shuffled order, cuts sub-trajectories of
``window`` frames, and mixes them through a bounded shuffle buffer; chunks are sharded over DataLoader workers
and distributed ranks. The train/val split is by episode: ``episode_id % val_every == 0`` is held out. With more
than one camera, the windows' ``pixels`` carry a view axis: ``[W, V, H, W, 3]`` in the order of meta ``cameras``.
"""

from __future__ import annotations

import json
import os
import random
import re
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

FORMAT_VERSION = 1
FRAME_KEYS = ("pixels", "proprio", "actions", "valid_action", "ee_pos", "cube_pos", "gripper")
DEFAULT_CAMERAS = ["front"]  # collections from before multi-view rendered the front camera only
_CHUNK_RE = re.compile(r"^chunk_(\d{6})\.npz$")


def _atomic_write_bytes(path: Path, write: Any) -> None:
    """Call ``write(file)`` on ``path.tmp`` then atomically move it to ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def list_chunks(root: str | Path) -> list[Path]:
    """Complete chunk files under ``root/chunks``, sorted by index."""
    d = Path(root) / "chunks"
    if not d.is_dir():
        return []
    return sorted(p for p in d.iterdir() if _CHUNK_RE.match(p.name))


class DataError(ValueError):
    """A data file that cannot be used; the message names the file and what is wrong with it."""


def read_meta(root: str | Path) -> dict[str, Any]:
    """``root/meta.json`` as a dict; raises ``FileNotFoundError`` naming the directory if absent, ``DataError`` if it
    is not a JSON object."""
    path = Path(root) / "meta.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: not a jepa-mpc episode directory (run collection first)")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path} is not valid JSON ({err}); delete it to rebuild it from the chunks") from None
    if not isinstance(meta, dict):
        raise DataError(f"{path} holds a {type(meta).__name__}, expected a JSON object")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {meta.get('format_version')} != supported {FORMAT_VERSION}")
    return meta


def view_keys(cameras: list[str]) -> list[str]:
    """Chunk (and observation) keys of the camera views: ``pixels``, then ``pixels_<camera>`` for the others."""
    return ["pixels"] + [f"pixels_{c}" for c in cameras[1:]]


def stacked_pixels(arrays: Mapping[str, np.ndarray], keys: list[str], sl: slice = slice(None)) -> np.ndarray:
    """Frames ``sl`` of the views ``keys``: ``[T, H, W, 3]`` for one view, ``[T, V, H, W, 3]`` for several."""
    if len(keys) == 1:
        return arrays[keys[0]][sl]
    return np.stack([arrays[k][sl] for k in keys], 1)


def collection_cameras(root: str | Path) -> list[str]:
    """The cameras a collection rendered (``meta.json``), ``["front"]`` for older collections or none written yet."""
    path = Path(root) / "meta.json"
    return list(read_meta(root).get("cameras", DEFAULT_CAMERAS)) if path.exists() else DEFAULT_CAMERAS


def camera_keys(root: str | Path, cameras: list[str] | None = None) -> list[str]:
    """Chunk keys of ``cameras`` (default: all the collection's) in that order; ``ValueError`` for one not rendered.

    A model may see a subset of a collection's cameras (an ablation trains front-only from a front + wrist set).
    """
    stored = collection_cameras(root)
    missing = [c for c in cameras or [] if c not in stored]
    if missing:
        raise ValueError(f"cameras {missing} were not rendered in {root} (its cameras: {stored})")
    keys = dict(zip(stored, view_keys(stored), strict=True))
    return [keys[c] for c in cameras or stored]


EPISODE_KEYS = ("episode_id", "task_id", "episode_starts", "episode_lengths", "episode_seeds", "episode_success")


def load_chunk(path: str | Path, keys: tuple[str, ...] | None = None) -> dict[str, np.ndarray]:
    """All (or the named) arrays of one chunk file, checked (:func:`check_chunk`); a file that is not a whole
    chunk raises one ``DataError`` naming it and what is wrong (never a pickle load: object arrays are refused)."""
    path = Path(path)
    with path.open("rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04":
        raise DataError(f"chunk {path} is not an .npz archive (no zip header): corrupt or not written by collect")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in keys or () if k not in z.files]
            if missing:
                raise DataError(f"chunk {path} lacks the arrays {missing} (it has {sorted(z.files)})")
            arrays = {}
            for k in keys or z.files:
                try:
                    arrays[k] = z[k]
                except ValueError as err:
                    if "Object arrays" in str(err):
                        raise DataError(
                            f"chunk {path}: array {k!r} holds Python objects, which are never loaded"
                        ) from None
                    raise
    except DataError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as err:
        raise DataError(
            f"chunk {path} is truncated or corrupt and cannot be read ({type(err).__name__}: {err})"
        ) from None
    check_chunk(arrays, path, whole=keys is None)
    return arrays


def check_chunk(arrays: Mapping[str, np.ndarray], path: str | Path, whole: bool = True) -> None:
    """Raise ``DataError`` unless ``arrays`` are a usable chunk: no NaN or inf, pixels uint8; with ``whole``, every
    frame and episode key present (``pixels`` first among them) with one frame count ``T`` across frame keys."""
    if whole:
        missing = [k for k in (*FRAME_KEYS, *EPISODE_KEYS) if k not in arrays]
        if missing:
            raise DataError(f"chunk {path} lacks the arrays {missing} (it has {sorted(arrays)})")
        frames = {k: len(arrays[k]) for k in (*FRAME_KEYS, "episode_id", "task_id")}
        if len(set(frames.values())) != 1:
            raise DataError(f"chunk {path}: frame arrays disagree on the number of frames: {frames}")
        if int(np.sum(arrays["episode_lengths"])) != frames["pixels"]:
            raise DataError(
                f"chunk {path}: episode_lengths sum to {int(np.sum(arrays['episode_lengths']))}, "
                f"not the {frames['pixels']} frames it holds"
            )
    for k, a in arrays.items():
        if k.startswith("pixels") and a.dtype != np.uint8:
            raise DataError(f"chunk {path}: {k!r} is {a.dtype}, expected uint8 frames")
        if np.issubdtype(a.dtype, np.floating) and not np.all(np.isfinite(a)):
            bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
            raise DataError(f"chunk {path}: {k!r} holds {bad} NaN or inf value(s)")


def completed_seeds(root: str | Path) -> set[int]:
    """Seeds of every episode stored in a complete chunk under ``root``."""
    seeds: set[int] = set()
    for p in list_chunks(root):
        seeds.update(int(s) for s in load_chunk(p, ("episode_seeds",))["episode_seeds"])
    return seeds


def is_val_episode(episode_id: int, val_every: int) -> bool:
    """Held-out split rule: every ``val_every``-th episode (0 disables the split: nothing is held out)."""
    return val_every > 0 and episode_id % val_every == 0


def check_split(split: str) -> None:
    """Raise ``ValueError`` unless ``split`` is one of ``all``, ``train``, ``val``."""
    if split not in ("all", "train", "val"):
        raise ValueError(f"split must be all/train/val, got {split!r}")


class ChunkWriter:
    """Buffers whole episodes and writes them ``episodes_per_chunk`` at a time as atomic chunk files.

    Use as a context manager; on exit (also on an exception or interrupt) the buffered whole episodes are flushed.
    """

    def __init__(
        self,
        root: str | Path,
        *,
        image_size: int,
        action_dim: int,
        proprio_dim: int,
        env_ids: list[str],
        base_seed: int = 0,
        cameras: list[str] | None = None,
        collection: Mapping[str, Any] | None = None,
        episodes_per_chunk: int = 8,
        compress: bool = True,
    ) -> None:
        self.root = Path(root)
        (self.root / "chunks").mkdir(parents=True, exist_ok=True)
        self._remove_stale()
        self.meta: dict[str, Any] = {
            "format_version": FORMAT_VERSION,
            "image_size": [int(image_size), int(image_size)],
            "cameras": list(cameras or DEFAULT_CAMERAS),
            "action_dim": int(action_dim),
            "proprio_dim": int(proprio_dim),
            "env_ids": list(env_ids),
            "base_seed": int(base_seed),
            "collection": dict(collection or {}),
        }
        if (self.root / "meta.json").exists():
            old = read_meta(self.root)
            old.setdefault("cameras", DEFAULT_CAMERAS)
            for key in ("image_size", "cameras", "action_dim", "proprio_dim", "env_ids"):
                if old.get(key) != self.meta[key]:
                    raise ValueError(f"{self.root}: existing data has {key}={old.get(key)}, asked for {self.meta[key]}")
        self.episodes_per_chunk = int(episodes_per_chunk)
        self.compress = compress
        self._buffer: list[dict[str, np.ndarray]] = []
        chunks = list_chunks(self.root)
        self._next_index = int(_CHUNK_RE.match(chunks[-1].name).group(1)) + 1 if chunks else 0  # type: ignore[union-attr]
        self._seeds = completed_seeds(self.root)
        self._write_meta()

    def _remove_stale(self) -> None:
        for stale in (self.root / "chunks").glob("*.tmp"):  # a chunk interrupted mid-write: never valid
            stale.unlink()

    @property
    def completed_seeds(self) -> set[int]:
        """Seeds of the episodes already on disk (not those still buffered)."""
        return set(self._seeds)

    def add_episode(
        self, episode: Mapping[str, np.ndarray], *, seed: int, episode_id: int, task_id: int, success: bool = False
    ) -> None:
        """Buffer one whole episode: ``episode`` holds the ``FRAME_KEYS`` arrays, each ``[T, ...]``."""
        if seed in self._seeds or any(int(b["episode_seeds"][0]) == seed for b in self._buffer):
            raise ValueError(f"episode with seed {seed} is already stored")
        t = len(episode["pixels"])
        h, w = self.meta["image_size"]
        ep = {
            "pixels": np.asarray(episode["pixels"], np.uint8),
            "proprio": np.asarray(episode["proprio"], np.float32),
            "actions": np.asarray(episode["actions"], np.float32),
            "valid_action": np.asarray(episode.get("valid_action", np.arange(t) < t - 1), bool),
            "ee_pos": np.asarray(episode["ee_pos"], np.float32),
            "cube_pos": np.asarray(episode["cube_pos"], np.float32),
            "gripper": np.asarray(episode["gripper"], np.float32).reshape(t),
        }
        for key in view_keys(self.meta["cameras"])[1:]:
            if key not in episode:
                raise ValueError(f"episode lacks {key!r}: this collection renders cameras {self.meta['cameras']}")
            ep[key] = np.asarray(episode[key], np.uint8)
        expect = {
            **{k: (t, h, w, 3) for k in view_keys(self.meta["cameras"])},
            "proprio": (t, self.meta["proprio_dim"]),
            "actions": (t, self.meta["action_dim"]),
            "ee_pos": (t, 3),
            "cube_pos": (t, 3),
        }
        for key, shape in expect.items():
            if ep[key].shape != shape:
                raise ValueError(f"episode {key} has shape {ep[key].shape}, expected {shape}")
        ep["actions"][~ep["valid_action"]] = 0.0
        ep["episode_id"] = np.full(t, episode_id, np.int64)
        ep["task_id"] = np.full(t, task_id, np.int64)
        ep["episode_seeds"] = np.array([seed], np.int64)
        ep["episode_success"] = np.array([success], bool)
        self._buffer.append(ep)
        if len(self._buffer) >= self.episodes_per_chunk:
            self.flush()

    def flush(self) -> None:
        """Write the buffered episodes (if any) as one new chunk, then update ``meta.json``."""
        if not self._buffer:
            return
        lengths = np.array([len(b["pixels"]) for b in self._buffer], np.int64)
        arrays = {k: np.concatenate([b[k] for b in self._buffer]) for k in self._buffer[0]}
        arrays["episode_lengths"] = lengths
        arrays["episode_starts"] = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        path = self.root / "chunks" / f"chunk_{self._next_index:06d}.npz"
        save = np.savez_compressed if self.compress else np.savez
        _atomic_write_bytes(path, lambda f: save(f, **arrays))
        self._next_index += 1
        self._seeds.update(int(s) for s in arrays["episode_seeds"])
        self._buffer.clear()
        self._write_meta()

    def _write_meta(self) -> None:
        chunks = list_chunks(self.root)
        frames = 0
        for p in chunks:
            frames += int(load_chunk(p, ("episode_lengths",))["episode_lengths"].sum())
        meta = {**self.meta, "num_episodes": len(self._seeds), "num_frames": frames, "num_chunks": len(chunks)}
        _atomic_write_bytes(self.root / "meta.json", lambda f: f.write(json.dumps(meta, indent=2).encode()))

    def close(self) -> None:
        """Flush what is buffered."""
        self.flush()

    def __enter__(self) -> ChunkWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_episodes(root: str | Path, split: str = "all", val_every: int = 10) -> Iterator[dict[str, np.ndarray]]:
    """Whole episodes in storage order, one chunk in memory at a time; ``split`` in {all, train, val}."""
    for path in list_chunks(root):
        chunk = load_chunk(path)
        for start, length in zip(chunk["episode_starts"], chunk["episode_lengths"], strict=True):
            eid = int(chunk["episode_id"][start])
            if split != "all" and is_val_episode(eid, val_every) != (split == "val"):
                continue
            yield {
                k: v[start : start + length]
                for k, v in chunk.items()
                if k in FRAME_KEYS + ("episode_id", "task_id") or k.startswith("pixels_")
            }


def _shard() -> tuple[int, int]:
    """(index, count) of this reader among all distributed ranks x DataLoader workers."""
    rank, world = 0, 1
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    info = get_worker_info()
    wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
    return rank * nw + wid, world * nw


class WindowDataset(IterableDataset):
    """Streams random sub-trajectories of ``window`` frames (``K + 1`` for K-step rollout training).

    Each item is a dict of numpy arrays: ``pixels`` uint8 [W, H, W, 3], ``proprio`` [W, P], ``actions`` [W-1, A]
    (the actions between the frames), ``ee_pos``/``cube_pos`` [W, 3], ``gripper`` [W], ``task_id`` int.
    Windows never cross an episode boundary and never include an invalid action. ``cameras`` (default: all the
    collection's) picks the views; with more than one, ``pixels`` is ``[W, V, H, W, 3]``.
    """

    def __init__(
        self,
        root: str | Path,
        window: int,
        *,
        split: str = "train",
        val_every: int = 10,
        shuffle_buffer: int = 512,
        stride: int = 1,
        seed: int = 0,
        infinite: bool = True,
        cameras: list[str] | None = None,
    ) -> None:
        super().__init__()
        check_split(split)
        self.root, self.window, self.split, self.val_every = Path(root), int(window), split, int(val_every)
        self.shuffle_buffer, self.stride, self.seed, self.infinite = int(shuffle_buffer), int(stride), seed, infinite
        self.chunks = list_chunks(self.root)
        if not self.chunks:
            raise FileNotFoundError(f"no chunks under {self.root / 'chunks'}")
        self.views = camera_keys(self.root, cameras)

    def _windows(self, chunk: dict[str, np.ndarray], rng: random.Random) -> list[dict[str, Any]]:
        items = []
        w = self.window
        for start, length in zip(chunk["episode_starts"], chunk["episode_lengths"], strict=True):
            eid = int(chunk["episode_id"][start])
            if self.split != "all" and is_val_episode(eid, self.val_every) != (self.split == "val"):
                continue
            for t in range(int(start) + rng.randrange(self.stride), int(start + length) - w + 1, self.stride):
                items.append(
                    {
                        "pixels": stacked_pixels(chunk, self.views, slice(t, t + w)),
                        "proprio": chunk["proprio"][t : t + w],
                        "actions": chunk["actions"][t : t + w - 1],
                        "ee_pos": chunk["ee_pos"][t : t + w],
                        "cube_pos": chunk["cube_pos"][t : t + w],
                        "gripper": chunk["gripper"][t : t + w],
                        "task_id": int(chunk["task_id"][t]),
                    }
                )
        return items

    def __iter__(self) -> Iterator[dict[str, Any]]:
        shard, nshards = _shard()
        epoch = 0
        while True:
            rng = random.Random(hash((self.seed, epoch, shard)) & 0xFFFFFFFF)
            order = list(self.chunks)
            random.Random(self.seed * 7919 + epoch).shuffle(order)  # same order on every shard, then split
            by_chunk = len(order) >= nshards
            mine = order[shard::nshards] if by_chunk else order
            buffer: list[dict[str, Any]] = []
            count = 0
            for path in mine:
                items = self._windows(load_chunk(path), rng)
                if not by_chunk:  # fewer chunks than readers: split windows instead
                    items = items[shard::nshards]
                count += len(items)
                for item in items:
                    if len(buffer) < self.shuffle_buffer:
                        buffer.append(item)
                        continue
                    j = rng.randrange(len(buffer))
                    yield buffer[j]
                    buffer[j] = item
            rng.shuffle(buffer)
            yield from buffer
            if count == 0:
                raise RuntimeError(f"{self.root}: no {self.split} windows of {self.window} frames for reader {shard}")
            epoch += 1
            if not self.infinite:
                return


class MemoryWindows:
    """Every ``window``-frame sub-trajectory of a split, held in memory (on any device), sampled uniformly.

    The streaming ``WindowDataset`` keeps RAM flat for collections larger than memory; this one trades memory
    (``num_frames x H x W x 3`` bytes of pixels, ~2 GB for 160k 64x64 frames) for a perfectly shuffled, loader-free
    batch stream: on a GPU the whole split sits in device memory and a batch is one gather.
    """

    KEYS = ("pixels", "proprio", "actions", "ee_pos", "cube_pos", "gripper")

    def __init__(
        self,
        root: str | Path,
        window: int,
        *,
        split: str = "train",
        val_every: int = 10,
        stride: int = 1,
        device: Any = "cpu",
        cameras: list[str] | None = None,
    ) -> None:
        check_split(split)
        self.window, self.device, stride = int(window), torch.device(device), int(stride)
        parts: dict[str, list[np.ndarray]] = {k: [] for k in self.KEYS}
        starts: list[np.ndarray] = []
        offset = 0
        views = camera_keys(root, cameras)
        for ep in iter_episodes(root, split, val_every):
            t = len(ep["pixels"])
            for k in self.KEYS:
                parts[k].append(stacked_pixels(ep, views) if k == "pixels" else ep[k])
            if t >= self.window:
                starts.append(offset + np.arange(0, t - self.window + 1, stride))
            offset += t
        if not starts:
            raise RuntimeError(f"{root}: no {split} windows of {self.window} frames")
        self.data = {k: torch.from_numpy(np.concatenate(v)).to(self.device) for k, v in parts.items()}
        self.starts = torch.from_numpy(np.concatenate(starts)).to(self.device)
        self._steps = torch.arange(self.window, device=self.device)

    def __len__(self) -> int:
        return len(self.starts)

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """A batch of ``batch_size`` windows drawn uniformly with replacement, keys as ``WindowDataset`` items."""
        pick = torch.randint(len(self.starts), (batch_size,), device=self.device, generator=generator)
        idx = self.starts[pick, None] + self._steps  # [B, W]
        out = {k: v[idx] for k, v in self.data.items()}
        out["actions"] = out["actions"][:, :-1]
        return out

    def batches(self, batch_size: int, seed: int = 0) -> Iterator[dict[str, torch.Tensor]]:
        """Infinite stream of ``sample`` batches from a seeded generator on the data's device."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(int(seed))
        while True:
            yield self.sample(batch_size, gen)
