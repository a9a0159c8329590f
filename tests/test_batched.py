"""batch_episodes=E: episodes in lockstep lanes whose world-model calls are batched per round give the serial rows
(tiny JEPA reach, the oracle), every field of them, in the same results file, and resume after a partial file."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from planner.apps import benchmark, lockstep, shards
from planner.apps.validate import ConfigError, check
from planner.cli import CONFIG_DIR

TINY = ["planner.num_samples=12", "planner.num_elites=3", "planner.iterations=1", "planner.horizon=2"]
TIMING = {"plan_ms_p50", "plan_ms_p95", "plan_ms_all", "goal_ms_all", "peak_rss_mb", "hardware"}


def config(out: Path, episodes: int, extra: list[str] = ()):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(
            config_name="benchmark", overrides=["task=reach", f"episodes={episodes}", f"out={out}", *TINY, *extra]
        )


def rows(out: Path) -> dict[int, dict]:
    """seed -> its row without the timing fields (wall times differ between any two runs) and the world model's
    one-step prediction errors (see ``same_pred_errors``): the trajectory itself must be the serial one."""
    drop = TIMING | {"pred_error_all"}
    return {r["seed"]: {k: v for k, v in r.items() if k not in drop} for r in shards.read_all_results(out)}


def same_pred_errors(a: Path, b: Path) -> bool:
    """The rows' one-step prediction errors agree to 1e-4: a batched float32 rollout differs from the same rollout
    alone by ~1e-6, which the row's 5 decimals can show (BENCHMARKS.md, issue 16)."""
    errors = [{r["seed"]: r["pred_error_all"] for r in shards.read_all_results(out)} for out in (a, b)]
    return errors[0].keys() == errors[1].keys() and all(
        np.allclose(errors[0][s], errors[1][s], rtol=0, atol=1e-4) for s in errors[0]
    )


@pytest.mark.parametrize("world_model", ["jepa", "oracle"])
def test_batched_episodes_give_the_serial_rows_and_resume(tmp_path, world_model):
    extra = [f"world_model={world_model}"]
    benchmark.run(config(tmp_path / "serial", 4, extra))
    serial = rows(tmp_path / "serial")
    # a batched run killed after two episodes: two rows and a torn third line; resumed with E=3 it runs the other two
    out = tmp_path / "batched"
    out.mkdir()
    lines = (tmp_path / "serial" / "results.jsonl").read_text().splitlines()
    (out / "results.jsonl").write_text(lines[0] + "\n" + lines[1] + "\n" + lines[2][:40])
    summary = benchmark.run(config(out, 4, [*extra, "batch_episodes=3"]))
    written = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert len(written) == 4 and sorted(r["seed"] for r in written) == [0, 1, 2, 3]  # none lost, none twice
    assert all(set(r) == set(json.loads(lines[0])) for r in written)  # the same fields as a serial row
    assert rows(out) == serial  # outcomes, steps, final states, violations, surprises: every non-timing field
    assert same_pred_errors(out, tmp_path / "serial")
    assert summary[0]["episodes"] == 4
    # and from scratch, all four in lockstep, with more lanes than episodes left at the end
    benchmark.run(config(tmp_path / "fresh", 4, [*extra, "batch_episodes=3"]))
    assert rows(tmp_path / "fresh") == serial


def test_batch_episodes_is_validated(tmp_path):
    with pytest.raises(ConfigError, match="batch_episodes must be an integer >= 1"):
        check(config(tmp_path, 2, ["batch_episodes=0"]), "benchmark")


class Toy:
    """A world model that records the batch of every rollout: next latent = latent + action sum."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.scale = 2.0

    def rollout(self, z0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        self.calls.append(actions.shape[0])
        return z0.expand(actions.shape[0], -1)[:, None] + actions.sum(-1, keepdim=True).cumsum(1)


def test_a_round_batches_one_request_per_live_lane_and_a_finished_lane_drops_out():
    toy = Toy()
    shared = lockstep.LockstepModel(toy, lanes=3)
    assert shared.scale == 2.0  # everything else is the wrapped model's
    got: dict[int, list[torch.Tensor]] = {}

    def lane(i: int, requests: int) -> None:
        with shared.lane(i):
            shared.running(10 + i)
            z0 = torch.full((1, 1), float(i))
            got[i] = [shared.rollout(z0, torch.ones(3 + i, 2, 1)) for _ in range(requests)]

    threads = [threading.Thread(target=lane, args=(i, 1 + i)) for i in range(3)]  # lane i asks i + 1 times
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not any(t.is_alive() for t in threads)  # no deadlock as lanes finish
    assert toy.calls == [3 + 4 + 5, 4 + 5, 5]  # round 1: all three lanes; then lane 0 drops out; then lane 1
    assert shared.stats.rounds == 3 and shared.stats.requests == 6 and shared.stats.max_rows == 12
    for i, outs in got.items():  # each lane gets its own rows back: its start plus its own actions
        assert all(
            torch.equal(o, torch.full((3 + i, 2, 1), float(i)) + torch.tensor([1.0, 2.0])[:, None]) for o in outs
        )
    assert shared.rollout(torch.zeros(1, 1), torch.ones(2, 2, 1)).shape == (2, 2, 1)  # not a lane: at once, alone
    assert toy.calls[-1] == 2


def test_an_error_in_a_batched_call_reaches_every_lane_of_it():
    class Broken(Toy):
        def rollout(self, z0, actions):
            raise RuntimeError("model broke")

    shared = lockstep.LockstepModel(Broken(), lanes=2)
    errors: list[str] = []

    def lane(i: int) -> None:
        with shared.lane(i):
            try:
                shared.rollout(torch.zeros(1, 1), torch.ones(2, 2, 1))
            except RuntimeError as err:
                errors.append(str(err))

    threads = [threading.Thread(target=lane, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert errors == ["model broke", "model broke"]


def test_calls_outside_the_rounds_never_overlap():
    """The oracle's encode keeps scratch data on the model: two lanes must not interleave in it."""

    class Scratch(Toy):
        def encode(self, obs: dict) -> torch.Tensor:
            self.x = obs["v"]
            time.sleep(0.01)  # another lane, were it let in, would overwrite x here
            return torch.tensor([[self.x]])

    shared = lockstep.LockstepModel(Scratch(), lanes=4)
    got: dict[int, list[float]] = {}

    def lane(i: int) -> None:
        with shared.lane(i):
            got[i] = [float(shared.encode({"v": float(i)})) for _ in range(5)]

    threads = [threading.Thread(target=lane, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert got == {i: [float(i)] * 5 for i in range(4)}
