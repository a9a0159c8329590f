"""Batched episodes in lockstep (``batch_episodes=E``): E lanes, each an env and an agent, one thread each, whose
world-model calls are gathered into one batched call per round.

Why threads: every lane runs the serial episode loop verbatim (``Run.episode``: the agent's own optimizer, cost,
guardrails, safety filter, fallback, audit and faults, all per episode), so nothing of the per-episode logic is
duplicated. The world model the lanes share is a :class:`LockstepModel`: a lane that calls ``rollout`` (``encode``,
``decode``) waits until every live lane waits too, then one lane runs the round: requests of one shape are
concatenated (E plans of ``[N, H, A]`` become one ``[E*N, H, A]`` rollout, E frames one encode, E plans' latents one
decode through the probes), run once, and split back. Each lane's optimizer samples, ranks and picks elites within
its own N samples only: no episode ever sees another's samples. A round holds exactly one request per live lane, ordered by episode seed, so a batched run is
deterministic.

Randomness is per episode already: the agent seeds a fresh generator per planning step (``1000 + step``), the env
and the faults from the episode's seed, so a seed's outcome does not depend on its lane, on E or on the other
episodes; it equals the serial outcome as far as the world model's batched arithmetic equals its per-episode
arithmetic (tests/test_batched.py checks it; BENCHMARKS.md, issue 16).
"""

from __future__ import annotations

import functools
import inspect
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig
from torch import Tensor

from planner.apps.episode import EpisodeResult


@dataclass
class _Request:
    lane: int
    order: int  # the lane's episode seed: a round's requests run in seed order, whichever lane runs which seed
    kind: str  # "rollout" or "encode"
    args: tuple
    done: bool = False
    result: Any = None
    error: BaseException | None = None


@dataclass
class LockstepStats:
    """What the batching did: rounds run, requests served in how many batched calls, the largest batch (rows) of one
    call, and the wall seconds spent in those calls (the rest of a run is the lanes' own work: envs, costs, guardrails,
    filters, run one lane at a time under Python's GIL)."""

    rounds: int = 0
    requests: int = 0
    calls: int = 0
    max_rows: int = 0
    model_s: float = 0.0


class LockstepModel:
    """A world model shared by lanes in threads: ``rollout``, ``encode`` and ``decode`` are batched across the live
    lanes, every other attribute (``device``, ``latent_shape``, ...) is the wrapped model's own.

    ``lanes`` threads will each enter ``with model.lane(i)`` (and leave it when done). A call from a thread that is not
    a lane, or one that needs gradients (a gradient optimizer's objective), runs at once, unbatched. ``batch_encode``
    batches ``encode`` of single observations and ``decode`` too (only for a model with ``pixel_keys`` and
    ``latent_shape``, i.e. the JEPA; the oracle's encode and decode read each lane's own simulator state).
    """

    def __init__(self, model: Any, lanes: int, batch_encode: bool = True) -> None:
        self._model = model
        self._batch_encode = batch_encode and hasattr(model, "pixel_keys") and hasattr(model, "latent_shape")
        self._cond = threading.Condition()
        self._local = threading.local()
        self._live = lanes  # counted from the start: a round never runs before a slow-starting lane has joined it
        self._pending: list[_Request] = []
        # Calls that bypass the rounds run one at a time: the model may keep scratch state (the oracle's MjData).
        self._alone = threading.RLock()
        self.stats = LockstepStats()

    # Decode batches every quantity across lanes (planner.safety.predicted_states then decodes them all at once).
    decode_keys = None

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._model, name)
        if not inspect.ismethod(value):  # data, properties, sub-modules: as they are
            return value

        @functools.wraps(value)
        def one_at_a_time(*args: Any, **kwargs: Any) -> Any:
            with self._alone:
                return value(*args, **kwargs)

        return one_at_a_time

    def _direct(self, name: str, *args: Any) -> Any:
        """The wrapped model's own call, unbatched, never beside another lane's (the oracle keeps scratch data)."""
        with self._alone:
            return getattr(self._model, name)(*args)

    @property
    def wrapped(self) -> Any:
        return self._model

    @contextmanager
    def lane(self, index: int) -> Iterator[None]:
        """Make the current thread lane ``index`` (one of the ``lanes`` counted at construction) until it leaves:
        its calls join the rounds; once it has left, the rounds go on without it."""
        self._local.lane = index
        self._local.order = index
        try:
            yield
        finally:
            with self._cond:
                self._live -= 1
                self._local.lane = None
                self._run_if_all_wait()

    def running(self, seed: int) -> None:
        """The current lane now runs the episode of ``seed``: its requests take their place in a round by seed, so
        two lanes that pick their next seeds in the same round (in either order) batch the same rows the same way."""
        self._local.order = seed

    # ------------------------------------------------------------------------------------------------ the calls
    def rollout(self, z0: Tensor, actions: Tensor) -> Tensor:
        """``z0 [1 or N, *latent]``, ``actions [N, H, A]`` -> ``[N, H, *latent]``, as the wrapped model's."""
        if actions.requires_grad or z0.requires_grad:
            return self._direct("rollout", z0, actions)
        return self._submit("rollout", (z0, actions))

    def decode(self, z: Tensor) -> dict[str, Tensor]:
        """``z [..., *latent]`` -> the probes' quantities ``[..., ...]``; batched across lanes for a JEPA."""
        if not self._batch_encode or z.requires_grad:
            return self._direct("decode", z)
        return self._submit("decode", (z,))

    def encode(self, obs: Any) -> Tensor:
        """One observation -> ``[1, *latent]``; batched across lanes for a JEPA (see the class docstring)."""
        if not self._batch_encode or not _single(obs, self._model.pixel_keys):
            return self._direct("encode", obs)
        return self._submit("encode", (obs,))

    # ------------------------------------------------------------------------------------------------ the rounds
    def _submit(self, kind: str, args: tuple) -> Any:
        lane = getattr(self._local, "lane", None)
        if lane is None:
            return self._direct(kind, *args)
        request = _Request(lane, self._local.order, kind, args)
        with self._cond:
            self._pending.append(request)
            self._run_if_all_wait()
            while not request.done:
                self._cond.wait()
        if request.error is not None:
            raise request.error
        return request.result

    def _run_if_all_wait(self) -> None:
        """With the lock held: when every live lane waits on a request, run the round and wake them all."""
        if not self._pending or len(self._pending) < self._live:
            return
        batch, self._pending = sorted(self._pending, key=lambda r: (r.order, r.lane)), []
        self.stats.rounds += 1
        groups: dict[tuple, list[_Request]] = {}
        for request in batch:
            groups.setdefault(_group_key(request), []).append(request)
        for group in groups.values():
            start = time.perf_counter()
            try:
                with torch.no_grad(), self._alone:
                    results = self._run_group(group)
                for request, result in zip(group, results, strict=True):
                    request.result = result
            except BaseException as err:  # every lane of the group re-raises it in its own thread
                for request in group:
                    request.error = err
            for request in group:
                request.done = True
            self.stats.model_s += time.perf_counter() - start
            self.stats.requests += len(group)
            self.stats.calls += 1
        self._cond.notify_all()

    def _run_group(self, group: list[_Request]) -> list[Any]:
        if group[0].kind == "rollout":
            sizes = [r.args[1].shape[0] for r in group]
            z0 = torch.cat([_rows(r.args[0], n) for r, n in zip(group, sizes, strict=True)])
            actions = torch.cat([r.args[1] for r in group])
            self.stats.max_rows = max(self.stats.max_rows, int(actions.shape[0]))
            return list(self._model.rollout(z0, actions).split(sizes))
        if group[0].kind == "decode":
            trail = len(self._model.latent_shape)
            leads = [r.args[0].shape[: r.args[0].dim() - trail] for r in group]
            flat = [r.args[0].reshape(-1, *r.args[0].shape[r.args[0].dim() - trail :]) for r in group]
            sizes = [f.shape[0] for f in flat]
            self.stats.max_rows = max(self.stats.max_rows, sum(sizes))
            out = self._model.decode(torch.cat(flat))
            parts = {k: v.split(sizes) for k, v in out.items()}
            return [{k: parts[k][i].reshape(*lead, *out[k].shape[1:]) for k in out} for i, lead in enumerate(leads)]
        keys = list(group[0].args[0])
        stacked = {k: _stack([r.args[0][k] for r in group]) for k in keys}
        self.stats.max_rows = max(self.stats.max_rows, len(group))
        return list(self._model.encode(stacked).split(1))


def _rows(z0: Tensor, n: int) -> Tensor:
    """``z0 [1 or n, ...]`` as ``[n, ...]`` rows (a rollout broadcasts a single start to its N samples)."""
    return z0.expand(n, *z0.shape[1:]) if z0.shape[0] == 1 else z0


def _group_key(request: _Request) -> tuple:
    """Requests that can share one call: same kind and the same trailing shapes, dtypes and devices."""
    if request.kind == "rollout":
        z0, actions = request.args
        return ("rollout", tuple(z0.shape[1:]), z0.dtype, z0.device, tuple(actions.shape[1:]), actions.dtype)
    if request.kind == "decode":
        z = request.args[0]
        return ("decode", tuple(z.shape[-1:]), z.dtype, z.device)
    obs = request.args[0]
    return ("encode", *sorted((k, tuple(np.shape(v)), str(getattr(v, "dtype", ""))) for k, v in obs.items()))


def _single(obs: Any, pixel_keys: Any) -> bool:
    """One unbatched observation: ``pixels [H, W, 3]`` per view (the episode loop's)."""
    try:
        return all(np.ndim(obs[k]) == 3 for k in pixel_keys) and np.ndim(obs["proprio"]) == 1
    except (KeyError, TypeError):
        return False


def _stack(values: list[Any]) -> Any:
    if isinstance(values[0], Tensor):
        return torch.stack(values)
    return np.stack([np.asarray(v) for v in values])


def run_lanes(
    cfg: DictConfig,
    seeds: list[int],
    lanes: int,
    on_result: Callable[[EpisodeResult], None],
    build: Callable[..., Any] | None = None,
) -> LockstepStats:
    """Run ``seeds`` in ``lanes`` lockstep lanes sharing one world model; ``on_result`` gets each episode as it ends
    (called under a lock, in the order episodes end). A lane whose episode ends takes the next seed; when none is
    left it drops out and the rounds go on with the others. The first error in any lane stops the others from
    starting new episodes and is raised here once every lane has stopped.

    ``build(cfg, world_model=...)`` builds one lane (default ``factory.build_run``); each lane is built in its own
    thread (an EGL rendering context belongs to the thread that made it)."""
    from planner.apps import factory

    build = build or factory.build_run
    first = build(cfg)  # loads the world model once; its env is not used
    first.env.close()
    shared = LockstepModel(first.world_model, lanes)
    todo = iter(seeds)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def next_seed() -> int | None:
        with lock:
            return None if errors else next(todo, None)

    def lane(index: int) -> None:
        try:
            with shared.lane(index):
                run = build(cfg, world_model=shared)
                try:
                    while (seed := next_seed()) is not None:
                        shared.running(seed)
                        result = run.episode(seed)
                        with lock:
                            on_result(result)
                finally:
                    run.env.close()
        except BaseException as err:
            with lock:
                errors.append(err)

    threads = [threading.Thread(target=lane, args=(i,), name=f"lane{i}", daemon=True) for i in range(lanes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return shared.stats
