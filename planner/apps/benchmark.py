"""``jepa-mpc benchmark``: success rates over seeded episodes, streamed to JSONL, resumable, summarized."""

from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from scipy.stats import binomtest
from tqdm import tqdm

from planner.apps import factory
from planner.apps.episode import EpisodeResult

# An episode row's identity: the cell it belongs to. ``config`` is a hash of every setting that changes behaviour
# (planner budget, cost weights, guardrail parameters, fault parameters, ...), so two runs that differ only in
# ``planner.num_samples`` never count each other's episodes as done.
KEY_FIELDS = ("task", "planner", "world_model", "guardrails", "faults", "cost", "config")
HASHED = (
    "task",
    "env",
    "planner",
    "world_model",
    "guardrails",
    "faults",
    "cost",
    "replan_every",
    "proprio_filter",
    "pixel_filter",
    "device",
)
SUMMARY_FIELDS = (
    *KEY_FIELDS,
    "episodes",
    "success_rate",
    "success_ci95",
    "plan_ms_p50",
    "plan_ms_p95",
    "executed_violations",
    "predicted_violations",
    "fallbacks",
    "mean_steps",
    "mean_final_distance",
)


def _choice(cfg: DictConfig, key: str, fallback: str) -> str:
    """A hydra group choice recorded in the config (``guardrails_name``...), or ``fallback`` outside hydra.main."""
    value = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
    return str(value) if value is not None else fallback


def config_hash(cfg: DictConfig) -> str:
    """8 hex digits over the resolved settings that change what an episode does (not out, episodes or seed)."""
    parts = {
        k: OmegaConf.to_container(cfg[k], resolve=True) if isinstance(cfg[k], DictConfig) else cfg[k]
        for k in HASHED
        if k in cfg
    }
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:8]


def run_key(cfg: DictConfig) -> dict[str, str]:
    guards = [str(k) for k, v in (cfg.get("guardrails") or {}).items() if isinstance(v, DictConfig) and "_target_" in v]
    return {
        "task": str(cfg.task),
        "planner": str(cfg.planner.name),
        "world_model": str(cfg.world_model.name),
        "guardrails": _choice(cfg, "guardrails_name", "+".join(sorted(guards)) or "none"),
        "faults": str(cfg.faults.name),
        "cost": _choice(cfg, "cost_name", "custom"),
        "config": config_hash(cfg),
    }


def read_results(path: Path) -> list[dict[str, Any]]:
    """Every complete line of ``results.jsonl`` (a line cut short by a kill is ignored)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def drop_partial_line(path: Path) -> None:
    """A run killed mid-write leaves a last line without its newline: cut it so the next append starts clean."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)


def append_result(path: Path, row: dict[str, Any]) -> None:
    """Append one line and fsync, so a killed run loses at most the episode in flight."""
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


def episode_row(key: dict[str, str], result: EpisodeResult) -> dict[str, Any]:
    ms = np.asarray(result.plan_ms) if result.plan_ms else np.asarray([np.nan])
    return {
        **key,
        "seed": result.seed,
        "success": result.success,
        "steps": result.steps,
        "plan_ms_p50": float(np.nanpercentile(ms, 50)),
        "plan_ms_p95": float(np.nanpercentile(ms, 95)),
        "plan_ms_all": [round(x, 2) for x in result.plan_ms],
        "executed_violations": result.executed_violations,
        "predicted_violations": result.predicted_violations,
        "fallbacks": result.fallbacks,
        "failure": result.failure,
        "final_distance": result.final_distance,
        "final_state": result.final_state,
        "final_phase": result.final_phase,
        "regrasps": result.regrasps,
        "peak_rss_mb": result.peak_rss_mb,
    }


def summarize(rows: list[dict[str, Any]], hardware: str) -> list[dict[str, Any]]:
    """One row per (task, planner, world_model, guardrails, faults): Wilson 95 % interval on success."""
    latest: dict[tuple, dict[str, Any]] = {}
    for row in rows:  # one row per (cell, seed): a repeated seed counts once, the latest line wins
        latest[(*(row.get(k, "-") for k in KEY_FIELDS), row["seed"])] = row
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in latest.values():
        groups.setdefault(tuple(row.get(k, "-") for k in KEY_FIELDS), []).append(row)
    out = []
    for key, group in sorted(groups.items()):
        n = len(group)
        k = sum(bool(r["success"]) for r in group)
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        ms = np.concatenate(
            [np.asarray(r["plan_ms_all"], dtype=float) for r in group if r["plan_ms_all"]] or [np.array([np.nan])]
        )
        out.append(
            {
                **dict(zip(KEY_FIELDS, key, strict=True)),
                "episodes": n,
                "success_rate": k / n,
                "success_ci95": [round(ci.low, 4), round(ci.high, 4)],
                "plan_ms_p50": round(float(np.nanpercentile(ms, 50)), 2),
                "plan_ms_p95": round(float(np.nanpercentile(ms, 95)), 2),
                "executed_violations": int(sum(r["executed_violations"] for r in group)),
                "predicted_violations": int(sum(r["predicted_violations"] for r in group)),
                "fallbacks": int(sum(r["fallbacks"] for r in group)),
                "mean_steps": round(float(np.mean([r["steps"] for r in group])), 2),
                "mean_final_distance": round(float(np.mean([r["final_distance"] for r in group])), 4),
                "hardware": hardware,
            }
        )
    return out


def summary_markdown(summary: list[dict[str, Any]]) -> str:
    head = "| task | planner | world model | guardrails | faults | cost | config | episodes | success (95 % CI) | plan ms p50 / p95 | executed viol. | predicted viol. | fallbacks |"
    lines = [head, "|" + "---|" * 13]
    for r in summary:
        lo, hi = r["success_ci95"]
        lines.append(
            f"| {r['task']} | {r['planner']} | {r['world_model']} | {r['guardrails']} | {r['faults']} | {r['cost']} | {r['config']} | {r['episodes']} | "
            f"{100 * r['success_rate']:.0f} % ({100 * lo:.0f}-{100 * hi:.0f}) | {r['plan_ms_p50']:.0f} / {r['plan_ms_p95']:.0f} | "
            f"{r['executed_violations']} | {r['predicted_violations']} | {r['fallbacks']} |"
        )
    return "\n".join(lines) + "\n"


def hardware_string(device: torch.device) -> str:
    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({cpu})"
    return f"CPU ({cpu})"


def run(cfg: DictConfig) -> list[dict[str, Any]]:
    factory.check_task(cfg, "benchmark")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.jsonl"
    key = run_key(cfg)
    drop_partial_line(results_path)
    done = {r["seed"] for r in read_results(results_path) if all(r.get(k) == v for k, v in key.items())}
    seeds = [int(cfg.seed) + i for i in range(int(cfg.episodes))]
    todo = [s for s in seeds if s not in done]
    torch.manual_seed(int(cfg.seed))
    device = factory.resolve_device(str(cfg.device))
    if todo:
        parts = factory.build_run(cfg)
        for seed in tqdm(todo, desc=f"{key['task']}/{key['planner']}/{key['world_model']}/{key['guardrails']}"):
            append_result(results_path, episode_row(key, parts.episode(seed)))
        parts.env.close()
    summary = summarize(read_results(results_path), hardware_string(device))
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(summary_markdown(summary))
    print(summary_markdown(summary))
    print(f"results: {results_path}\nsummary: {out / 'summary.json'}, {out / 'summary.md'}")
    return summary
