"""Beyond one process: shard=i/n splits a cell's seeds, each worker appends to its own file, a killed shard resumes,
the summary counts each (cell, seed) once, ``jepa-mpc summarize`` rebuilds it, and sharded collect writes the serial
chunk files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from planner.apps import benchmark, shards
from planner.cli import CONFIG_DIR

TINY = ["planner.num_samples=12", "planner.num_elites=3", "planner.iterations=1", "planner.horizon=2"]
ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "planner.cli"]
ENV = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl"), "OMP_NUM_THREADS": "1"}


def run_cell(out: Path, episodes: int, extra: list[str] = ()) -> list[dict]:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(
            config_name="benchmark", overrides=["task=reach", f"episodes={episodes}", f"out={out}", *TINY, *extra]
        )
    return benchmark.run(cfg)


def outcomes(out: Path) -> dict[int, tuple]:
    """seed -> what the episode did (success, steps, final distance), from every results file in ``out``."""
    rows = shards.read_all_results(out)
    return {r["seed"]: (r["success"], r["steps"], round(r["final_distance"], 6)) for r in rows}


@pytest.mark.parametrize("value", ["2/2", "-1/2", "1", "a/b", "1/0", True])
def test_a_bad_shard_is_one_error(value):
    with pytest.raises(SystemExit, match="shard must be i/n"):
        shards.parse_shard(value)


def test_shards_partition_the_seeds():
    seeds = list(range(10, 23))
    for n in (1, 2, 3, 5):
        parts = [shards.shard_items(seeds, shards.parse_shard(f"{i}/{n}")) for i in range(n)]
        assert sorted(s for p in parts for s in p) == seeds  # none lost, none twice
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert shards.parse_shard(None) is None and shards.shard_items(seeds, None) == seeds


def test_two_shards_give_the_serial_outcomes_in_their_own_files(tmp_path):
    run_cell(tmp_path / "serial", 4)
    run_cell(tmp_path / "sharded", 4, ["shard=1/2"])
    summary = run_cell(tmp_path / "sharded", 4, ["shard=0/2"])
    files = sorted(p.name for p in (tmp_path / "sharded" / "results").iterdir())
    assert len(files) == 2 and files[0].endswith("shard0of2.jsonl") and files[1].endswith("shard1of2.jsonl")
    assert not (tmp_path / "sharded" / "results.jsonl").exists()
    assert [json.loads(x)["seed"] for x in (tmp_path / "sharded" / "results" / files[1]).read_text().splitlines()] == [
        1,
        3,
    ]
    assert outcomes(tmp_path / "sharded") == outcomes(tmp_path / "serial")
    assert summary[0]["episodes"] == 4 and summary[0]["episodes_asked"] == 4
    assert "Incomplete" not in (tmp_path / "sharded" / "summary.md").read_text()


def test_summarize_rebuilds_from_whatever_results_exist_and_names_missing_seeds(tmp_path):
    run_cell(tmp_path, 4, ["shard=0/2"])  # shard 1/2 never ran
    summary_md = (tmp_path / "summary.md").read_text()
    assert "0 of 4" not in summary_md and "2 of 4 episodes; missing seeds 1, 3" in summary_md
    before = json.loads((tmp_path / "summary.json").read_text())
    (tmp_path / "summary.json").unlink()
    (tmp_path / "summary.md").unlink()
    done = subprocess.run([*CLI, "summarize", f"out={tmp_path}"], capture_output=True, text=True, env=ENV, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((tmp_path / "summary.json").read_text()) == before
    assert before[0]["episodes"] == 2 and before[0]["episodes_asked"] == 4
    assert "missing seeds 1, 3" in done.stdout
    empty = subprocess.run([*CLI, "summarize", f"out={tmp_path / 'nothing'}"], capture_output=True, text=True, env=ENV)
    assert empty.returncode != 0 and "not a directory" in empty.stderr
    assert not (tmp_path / "nothing").exists()


def test_a_repeated_seed_in_two_files_counts_once(tmp_path):
    run_cell(tmp_path, 2)  # serial: results.jsonl
    run_cell(tmp_path, 2, ["shard=0/1"])  # nothing left to do: every seed is in results.jsonl already
    assert not list((tmp_path / "results").glob("*.jsonl"))
    # copy a row into a shard file, as two workers racing on one seed would leave it
    row = (tmp_path / "results.jsonl").read_text().splitlines()[0]
    (tmp_path / "results").mkdir(exist_ok=True)
    (tmp_path / "results" / "extra-shard0of2.jsonl").write_text(row + "\n")
    summary = shards.rebuild_summary(tmp_path, quiet=True)
    assert summary[0]["episodes"] == 2


def test_a_killed_shard_resumes_without_losing_or_repeating_an_episode(tmp_path):
    args = [*CLI, "benchmark", "task=reach", "episodes=6", "shard=0/2", f"out={tmp_path}", *TINY]
    worker = subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    own = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and worker.poll() is None:
        own = (
            next(iter((tmp_path / "results").glob("*shard0of2.jsonl")), None)
            if (tmp_path / "results").is_dir()
            else None
        )
        if own is not None and own.read_text().count("\n") >= 1:
            break
        time.sleep(0.2)
    if worker.poll() is None:
        worker.send_signal(signal.SIGKILL)
    worker.wait()
    own = next(iter(tmp_path.glob("results/*shard0of2.jsonl")), None)
    assert own is not None, (worker.stderr.read() or "")[-500:]
    # On a fast machine the worker may finish more episodes between two polls (or all of them), so the file is cut
    # back to what a kill right after the first episode leaves: one complete row, then the episode in flight, torn.
    first = own.read_text().splitlines()[0]
    own.write_text(first + "\n" + '{"task": "reach", "seed": 2, "succ')
    (tmp_path / "summary.json").unlink(missing_ok=True)
    done_before = [json.loads(first)["seed"]]
    other = [a.replace("shard=0/2", "shard=1/2") for a in args]
    for command in (args, other):  # the same command again, then the other shard
        again = subprocess.run(command, cwd=ROOT, env=ENV, capture_output=True, text=True)
        assert again.returncode == 0, again.stderr[-2000:]
    seeds = [json.loads(x)["seed"] for x in own.read_text().splitlines()]
    assert sorted(seeds) == [0, 2, 4] and seeds[: len(done_before)] == done_before  # only what was missing ran
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert len(summary) == 1 and summary[0]["episodes"] == 6
    assert sorted(outcomes(tmp_path)) == list(range(6))


def test_sharded_collect_writes_the_serial_chunks(tmp_path):
    from world_models.jepa.collect import collect
    from world_models.jepa.data import completed_seeds, list_chunks, load_chunk, read_meta

    cfg = {
        "env_ids": ["jepa_mpc/PandaReach-v0"],
        "episodes_per_env": 5,
        "episode_len": 3,
        "image_size": 16,
        "seed": 5,
        "episodes_per_chunk": 2,
        "compress": False,
        "random_episode_frac": 0.0,
    }
    collect({**cfg, "out_dir": str(tmp_path / "serial")})
    collect({**cfg, "out_dir": str(tmp_path / "sharded"), "shard": "1/2"})
    assert [p.name for p in list_chunks(tmp_path / "sharded")] == ["chunk_000001.npz"]
    assert read_meta(tmp_path / "sharded")["num_episodes"] == 2
    collect({**cfg, "out_dir": str(tmp_path / "sharded"), "shard": "0/2"})
    serial, sharded = list_chunks(tmp_path / "serial"), list_chunks(tmp_path / "sharded")
    assert [p.name for p in sharded] == [p.name for p in serial] == [f"chunk_00000{i}.npz" for i in range(3)]
    for a, b in zip(serial, sharded, strict=True):
        left, right = load_chunk(a), load_chunk(b)
        assert sorted(left) == sorted(right)
        for k in left:
            np.testing.assert_array_equal(left[k], right[k], err_msg=f"{b.name}:{k}")
    meta = read_meta(tmp_path / "sharded")
    assert meta == read_meta(tmp_path / "serial") and meta["num_episodes"] == 5
    assert completed_seeds(tmp_path / "sharded") == set(range(5, 10))
    # a collection an unsharded run left mid-chunk is not silently mixed with shards
    collect({**cfg, "out_dir": str(tmp_path / "odd"), "episodes_per_env": 1})
    with pytest.raises(SystemExit, match="not block 0"):
        collect({**cfg, "out_dir": str(tmp_path / "odd"), "shard": "0/2"})
