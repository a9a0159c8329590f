"""Collect JEPA training episodes: noisy scripted experts plus exploration segments, written as resumable chunks.

Episode ``i`` (counting over ``env_ids`` in order, ``episodes_per_env`` each) resets with seed ``seed + i`` and draws
its noise from ``numpy.random.default_rng(seed + i)``, so an episode is a function of its index alone and an
interrupted run resumes by skipping the seeds already on disk (``ChunkWriter.completed_seeds``).

Behaviour per step: with an exploration segment active (started with probability ``explore_prob``, length in
``explore_len``) the action is a smooth random walk in [-1, 1]^4; otherwise it is the expert's action plus Gaussian
noise ``action_noise`` on the motion dims. A fraction ``random_episode_frac`` of episodes explore throughout.
This module is an app edge: it is the one place in world_models/ that joins an env (import rule 2).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from world_models.jepa.data import ChunkWriter, completed_seeds, list_chunks, load_chunk

Policy = Callable[[dict[str, np.ndarray]], np.ndarray]


def _state_row(info: dict[str, Any]) -> dict[str, np.ndarray]:
    s = info["state"]
    return {
        "ee_pos": np.asarray(s["ee_pos"], np.float32),
        "cube_pos": np.asarray(s["cube_pos"], np.float32),
        "gripper": np.asarray(s["gripper"], np.float32).reshape(()),
    }


def _views(obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every camera view of an observation: ``pixels`` and any ``pixels_<camera>``."""
    return {k: v for k, v in obs.items() if k.startswith("pixels")}


def run_episode(
    env: Any, policy: Policy, seed: int, length: int, c: dict[str, Any], rng: np.random.Generator, explore_all: bool
) -> tuple[dict[str, np.ndarray], bool]:
    """Roll one episode of at most ``length`` frames -> (arrays in the chunk format, success at any step)."""
    obs, info = env.reset(seed=seed)
    rows: list[dict[str, np.ndarray]] = []
    success, explore_left = bool(info.get("is_success", False)), 0
    rand = rng.uniform(-1, 1, 4)
    lo, hi = c.get("explore_len", [3, 10])
    for t in range(length):
        row = {**_views(obs), "proprio": obs["proprio"], **_state_row(info)}
        rows.append(row)
        if t == length - 1:
            break
        expert = np.asarray(policy(obs), np.float32)
        if explore_all or explore_left > 0:
            rand = np.clip(0.6 * rand + 0.8 * rng.uniform(-1, 1, 4), -1, 1)
            if rng.random() < c.get("gripper_flip_prob", 0.05):
                rand[3] = -np.sign(rand[3])
            action = rand.astype(np.float32)
            explore_left -= 1
        else:
            action = expert.copy()
            action[:3] += c.get("action_noise", 0.3) * rng.standard_normal(3)
            if rng.random() < c.get("explore_prob", 0.08):
                explore_left = int(rng.integers(lo, hi + 1))
                rand = np.clip(expert + 0.5 * rng.uniform(-1, 1, 4), -1, 1)
        action = np.clip(action, -1, 1).astype(np.float32)
        row["action"] = action
        obs, _, terminated, truncated, info = env.step(action)
        success = success or bool(info.get("is_success", False))
        if terminated or truncated:
            rows.append({**_views(obs), "proprio": obs["proprio"], **_state_row(info)})
            break
    t_len = len(rows)
    actions = np.zeros((t_len, 4), np.float32)
    for i, r in enumerate(rows[:-1]):
        actions[i] = r["action"]
    keys = [k for k in rows[0] if k.startswith("pixels")] + ["proprio", "ee_pos", "cube_pos", "gripper"]
    ep = {k: np.stack([r[k] for r in rows]) for k in keys}
    ep["actions"] = actions
    ep["valid_action"] = np.arange(t_len) < t_len - 1
    return ep, success


_ENVS: dict[str, Any] = {}  # per-process env cache (one env per task id, reused across episodes)


def collect_episode(job: tuple[int, str, int, dict[str, Any]]) -> tuple[dict[str, np.ndarray], bool, int, int, int]:
    """Collect episode ``i`` of task ``ti`` -> (arrays, success, seed, episode id, task id). Runs in any process."""
    ti, env_id, i, c = job
    os.environ.setdefault("MUJOCO_GL", "egl")
    import gymnasium as gym

    import envs

    if env_id not in _ENVS:
        for old in _ENVS.values():
            old.close()
        _ENVS.clear()
        _ENVS[env_id] = gym.make(env_id, image_size=c["image_size"], cameras=c.get("cameras") or None)
    env = _ENVS[env_id]
    seed = int(c["seed"]) + i
    rng = np.random.default_rng(seed)
    max_steps = env.spec.max_episode_steps if env.spec and env.spec.max_episode_steps else 10**9
    length = min(int(c["episode_len"]), max_steps + 1)
    explore_all = rng.random() < c.get("random_episode_frac", 0.1)
    ep, ok = run_episode(env, envs.scripted_expert(env), seed, length, c, rng, explore_all)
    return ep, ok, seed, i, ti


@contextlib.contextmanager
def episode_results(todo: list[tuple], workers: int) -> Iterator[Iterator[tuple]]:
    """``collect_episode`` over ``todo`` in seed order, in ``workers`` spawned processes when there is more than one
    (and more than one job); afterwards the pool is terminated and this process's cached envs are closed."""
    pool = None
    if workers > 1 and len(todo) > 1:
        import multiprocessing
        import signal

        # workers ignore Ctrl-C (this process handles it: terminate, then flush the whole episodes buffered);
        # imap keeps seed order, so the chunk files do not depend on the worker count or on timing
        pool = multiprocessing.get_context("spawn").Pool(
            workers, initializer=signal.signal, initargs=(signal.SIGINT, signal.SIG_IGN)
        )
        results = pool.imap(collect_episode, todo, chunksize=1)
    else:
        results = map(collect_episode, todo)
    try:
        yield results
    finally:
        if pool is not None:
            pool.terminate()
        for e in _ENVS.values():
            e.close()
        _ENVS.clear()


def collect(cfg: Any) -> Path:
    """Collect episodes per ``configs/collect.yaml`` into ``cfg.out`` (alias ``out_dir``); resumes; returns the directory.

    ``workers`` > 1 renders in that many processes (spawned; each with its own MuJoCo GL context); this process
    writes the episodes in seed order, so the files are the same for any worker count.
    """
    from planner.apps.shards import parse_shard
    from world_models.jepa.train import out_path, to_plain

    c = to_plain(cfg)
    os.environ.setdefault("MUJOCO_GL", "egl")
    out = out_path(c, "data/jepa")
    env_ids = list(c["env_ids"])
    per_env, base = int(c["episodes_per_env"]), int(c["seed"])
    workers = int(c.get("workers", 1) or 1)
    jobs = [(ti, env_id, ti * per_env + j, c) for ti, env_id in enumerate(env_ids) for j in range(per_env)]
    shard = parse_shard(c.get("shard"), "collect")
    if shard is not None:
        return collect_shard(c, out, jobs, shard, workers)
    with ChunkWriter(
        out,
        image_size=c["image_size"],
        cameras=list(c.get("cameras") or ["front"]),
        action_dim=4,
        proprio_dim=8,
        env_ids=env_ids,
        base_seed=base,
        collection={k: v for k, v in c.items() if k not in NOT_COLLECTION},
        episodes_per_chunk=c.get("episodes_per_chunk", 8),
        compress=c.get("compress", True),
    ) as writer:
        done = writer.completed_seeds
        todo = [j for j in jobs if base + j[2] not in done]
        bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="collect", unit="ep", dynamic_ncols=True)
        successes = 0
        try:
            with episode_results(todo, workers) as results:
                for ep, ok, seed, i, ti in results:
                    writer.add_episode(ep, seed=seed, episode_id=i, task_id=ti, success=ok)
                    successes += ok
                    bar.update(1)
                    bar.set_postfix(env=env_ids[ti].split("/")[-1], success=f"{successes}/{bar.n - bar.initial}")
        finally:
            bar.close()
    tqdm.write(f"collect: {len(jobs)} episodes in {out} ({successes} of the {len(todo)} new ones succeeded)")
    return out


NOT_COLLECTION = ("workers", "out", "out_dir", "shard")  # settings that do not change what is collected


class BlockWriter(ChunkWriter):
    """Writes whole blocks: block ``b`` (the episodes ``b * E`` to ``(b + 1) * E - 1`` in collection order) as
    ``chunk_b``, the file a serial run writes for them. A block cut short by an interrupt is not written (its
    episodes run again on resume), and ``meta.json`` counts what every shard has on disk."""

    def __init__(self, root: Path, owned: set[int], **kwargs: Any) -> None:
        self.owned = owned  # the block indices this shard writes (other shards may be writing theirs right now)
        super().__init__(root, **kwargs)

    def _remove_stale(self) -> None:
        for index in self.owned:
            (self.root / "chunks" / f"chunk_{index:06d}.npz.tmp").unlink(missing_ok=True)

    def write_block(self, index: int, episodes: list[tuple[dict[str, np.ndarray], bool, int, int, int]]) -> None:
        self._next_index = index
        for ep, ok, seed, i, ti in episodes:
            self.add_episode(ep, seed=seed, episode_id=i, task_id=ti, success=ok)
        self.flush()  # the last block may be shorter than E

    def close(self) -> None:
        self._buffer.clear()
        self._write_meta()

    def _write_meta(self) -> None:
        from planner.apps.shards import out_lock

        with out_lock(self.root):  # every shard rewrites meta.json (through one meta.json.tmp)
            self._seeds = completed_seeds(self.root)  # other shards write chunks too
            super()._write_meta()


def collect_shard(c: dict[str, Any], out: Path, jobs: list, shard: tuple[int, int], workers: int) -> Path:
    """``shard=i/n``: collect the blocks ``b`` with ``b % n == i`` (``episodes_per_chunk`` episodes each), each
    written whole as ``chunk_b``: any number of shards, run anywhere and in any order, fill ``out`` with the files
    one serial run writes. Needs the chunks already there to be whole blocks (a fresh out, or sharded runs)."""
    from planner.apps.shards import shard_items

    per_chunk, base = int(c.get("episodes_per_chunk", 8)), int(c["seed"])
    blocks = [jobs[b : b + per_chunk] for b in range(0, len(jobs), per_chunk)]
    for path in list_chunks(out):
        index = int(path.name[6:12])
        seeds = {int(s) for s in load_chunk(path, ("episode_seeds",))["episode_seeds"]}
        if index >= len(blocks) or seeds != {base + j[2] for j in blocks[index]}:
            raise SystemExit(
                f"jepa-mpc collect: {path} is not block {index} of this collection ({per_chunk} episodes per chunk, "
                "in order): it was written by an unsharded run cut short, or with other settings; finish it without "
                "shard, or collect the shards into a new out"
            )
    owned = {b for b, _ in shard_items(list(enumerate(blocks)), shard)}
    writer = BlockWriter(
        out,
        owned,
        image_size=c["image_size"],
        cameras=list(c.get("cameras") or ["front"]),
        action_dim=4,
        proprio_dim=8,
        env_ids=list(c["env_ids"]),
        base_seed=base,
        collection={k: v for k, v in c.items() if k not in NOT_COLLECTION},
        episodes_per_chunk=per_chunk,
        compress=c.get("compress", True),
    )
    done = writer.completed_seeds
    mine = [(b, block) for b, block in shard_items(list(enumerate(blocks)), shard) if base + block[0][2] not in done]
    todo = [job for _, block in mine for job in block]
    bar = tqdm(total=len(todo), desc=f"collect shard {shard[0]}/{shard[1]}", unit="ep", dynamic_ncols=True)
    try:
        with episode_results(todo, workers) as results:
            for b, block in mine:
                episodes = []
                for _ in block:
                    episodes.append(next(results))
                    bar.update(1)
                writer.write_block(b, episodes)
    finally:
        bar.close()
        writer.close()
    return out


def main() -> None:
    """``python -m world_models.jepa.collect [hydra overrides]``."""
    from world_models.jepa.entry import hydra_entry

    hydra_entry("collect", collect)


if __name__ == "__main__":
    main()
