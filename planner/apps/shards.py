"""Beyond one process: ``shard=i/n`` seed splits, one results file per worker, a lock on an out dir, and the summary
rebuilt from every results file there (``jepa-mpc summarize``, and at the end of a hydra multirun).

An out dir holds ``results.jsonl`` (a serial, unsharded run: unchanged from before) and ``results/*.jsonl``, one
file per (cell, shard) written by exactly one process; ``cells.json`` and the summary are read-modify-written under
an exclusive ``flock`` on ``out/.lock``, so any number of processes can share one out dir. A worker that dies loses
at most the episode in flight; rerunning its command (or any other shard split of the same cell) runs exactly the
seeds that no file holds yet, and the summary counts each (cell, seed) once.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

_SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(value: Any, app: str = "benchmark") -> tuple[int, int] | None:
    """``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``; ``None`` (or ``null``) -> ``None``: no sharding."""
    if value is None:
        return None
    match = _SHARD_RE.match(str(value))
    if isinstance(value, bool) or match is None or not 0 <= int(match[1]) < int(match[2]):
        raise SystemExit(f"jepa-mpc {app}: shard must be i/n with 0 <= i < n (e.g. shard=0/4), got {value!r}")
    return int(match[1]), int(match[2])


def shard_items(items: list[Any], shard: tuple[int, int] | None) -> list[Any]:
    """The items shard ``i/n`` owns: every n-th from the i-th (round robin, so shards get the same mix of seeds)."""
    if shard is None:
        return list(items)
    i, n = shard
    return [x for k, x in enumerate(items) if k % n == i]


def in_sweep() -> bool:
    """True inside a hydra multirun job (``-m``): its cells share one out dir, each writing its own results file."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    except (ImportError, ValueError):
        return False


@contextlib.contextmanager
def out_lock(out: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``out/.lock`` for a read-modify-write of the files every worker shares."""
    out.mkdir(parents=True, exist_ok=True)
    with (out / ".lock").open("a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def cell_id(key: dict[str, str]) -> str:
    """8 hex digits naming a cell (all its key fields) in a file name."""
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]


def results_path(out: Path, key: dict[str, str], shard: tuple[int, int] | None, own_file: bool) -> Path:
    """Where this process appends its episodes: ``results.jsonl`` for a serial unsharded run, else its own file
    ``results/<task>-<planner>-<world_model>-<cell id>-shard<i>of<n>.jsonl``."""
    if shard is None and not own_file:
        return out / "results.jsonl"
    i, n = shard or (0, 1)
    name = f"{key['task']}-{key['planner']}-{key['world_model']}-{cell_id(key)}-shard{i}of{n}.jsonl"
    (out / "results").mkdir(parents=True, exist_ok=True)
    return out / "results" / re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def result_files(out: Path) -> list[Path]:
    """Every results file in ``out``: ``results.jsonl`` first, then the per-worker files by name."""
    files = [out / "results.jsonl"] if (out / "results.jsonl").exists() else []
    if (out / "results").is_dir():
        files += sorted((out / "results").glob("*.jsonl"))
    return files


def read_all_results(out: Path) -> list[dict[str, Any]]:
    """The episode rows of every results file in ``out`` (a repeated (cell, seed) is counted once by the summary)."""
    from planner.apps.benchmark import read_results

    return [row for path in result_files(out) for row in read_results(path)]


def _label(cell: tuple) -> str:
    return "/".join(str(v) for v in cell[:-1]) + f" [{cell[-1]}]"


def rebuild_summary(out: Path, hardware: str | None = None, quiet: bool = False) -> list[dict[str, Any]]:
    """Write ``summary.json`` and ``summary.md`` from every results file in ``out`` (under the out lock), counting
    each cell's seeds its last command asked for (``cells.json``); ``hardware`` labels cells whose rows do not
    name theirs. A cell with seeds not yet run says so: the
    summary row gets ``episodes_asked``, ``summary.md`` a line naming the missing seeds, and a warning is printed."""
    from planner.apps import benchmark

    if not result_files(out) and not (out / "cells.json").exists():
        raise SystemExit(f"jepa-mpc summarize: {out} holds no benchmark results (results.jsonl or results/*.jsonl)")
    with out_lock(out):
        rows = read_all_results(out)
        cells = benchmark.read_cells(out)
        machines: dict[tuple, set[str]] = {}
        for row in rows:
            if "hardware" in row:
                machines.setdefault(benchmark._cell(row), set()).add(str(row["hardware"]))
        summary = benchmark.summarize(rows, hardware or "unknown", cells)
        done: dict[tuple, set[int]] = {}
        for row in rows:
            done.setdefault(benchmark._cell(row), set()).add(int(row["seed"]))
        missing_lines = []
        for entry in summary:
            cell = benchmark._cell(entry)
            if cell in machines:  # where its episodes ran, as the rows say (several machines for a sharded cell)
                entry["hardware"] = "; ".join(sorted(machines[cell]))
            if cell in cells:
                entry["episodes_asked"] = len(cells[cell])
        for cell, asked in sorted(cells.items()):
            missing = sorted(set(asked) - done.get(cell, set()))
            if missing:
                shown = ", ".join(str(s) for s in missing[:20]) + (", ..." if len(missing) > 20 else "")
                missing_lines.append(
                    f"- {_label(cell)}: {len(asked) - len(missing)} of {len(asked)} episodes; missing seeds {shown}"
                )
        markdown = benchmark.summary_markdown(summary)
        if missing_lines:
            markdown += "\nIncomplete cells (rerun their command or shards to finish; done seeds are skipped):\n\n"
            markdown += "\n".join(missing_lines) + "\n"
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        (out / "summary.md").write_text(markdown)
    if not quiet:
        print(markdown)
        print(f"summary: {out / 'summary.json'}, {out / 'summary.md'} (from {len(result_files(out))} results file(s))")
    if missing_lines and not quiet:
        warnings.warn(f"{out}: {len(missing_lines)} cell(s) incomplete", stacklevel=2)
    return summary


def summarize_app(cfg: DictConfig) -> list[dict[str, Any]]:
    """``jepa-mpc summarize out=DIR``: rebuild the summary from whatever results exist in ``DIR``."""
    out = Path(str(cfg.out))
    if not out.is_dir():
        raise SystemExit(f"jepa-mpc summarize: out={out} is not a directory")
    return rebuild_summary(out)


try:  # a hydra callback (configs/benchmark.yaml): one summary of every cell when a multirun's jobs have all returned
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover - hydra without callbacks
    Callback = object  # type: ignore[assignment,misc]


class SummarizeSweep(Callback):  # type: ignore[misc]
    """After a multirun (any launcher: basic, joblib, submitit, ray), rebuild ``out``'s summary from every job's
    results, in the process that launched them."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        out = Path(str(config.hydra.sweep.dir))
        if result_files(out):
            with warnings.catch_warnings():
                warnings.simplefilter("default")
                rebuild_summary(out)
