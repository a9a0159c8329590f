"""``jepa-mpc benchmark``: success rates over seeded episodes, streamed to JSONL, resumable, summarized."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from scipy.stats import beta, binomtest

from planner.apps import factory, lockstep, shards
from planner.apps.episode import EpisodeResult
from planner.apps.validate import validate
from planner.mpc import AgentConfig
from planner.progress import Progress

# An episode row's identity: the cell it belongs to. ``config`` is a hash of every setting that changes behaviour
# (planner budget, cost weights, guardrail parameters, fault parameters, ...), so two runs that differ only in
# ``planner.num_samples`` never count each other's episodes as done.
KEY_FIELDS = ("task", "planner", "world_model", "subgoals", "guardrails", "faults", "cost", "config")
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
    "subgoals",
    "perception",
)
SUMMARY_FIELDS = (
    *KEY_FIELDS,
    "episodes",
    "success_rate",
    "success_ci95",
    "success_first_touch_rate",
    "plan_ms_p50",
    "plan_ms_p95",
    "executed_violations",
    "violation_episodes",
    "violation_episode_rate",
    "violation_episode_rate_ub95",
    "violation_steps_per_episode",
    "predicted_violations",
    "fallbacks",
    "mean_steps",
    "mean_final_distance",
)


DEFAULT_ESTIMATE_SIGMAS = AgentConfig.estimate_sigmas


def config_hash(cfg: DictConfig) -> str:
    """8 hex digits over the resolved settings that change what an episode does (not out, episodes or seed)."""
    parts = {
        k: OmegaConf.to_container(cfg[k], resolve=True) if isinstance(cfg[k], DictConfig) else cfg[k]
        for k in HASHED
        if k in cfg
    }
    if str(cfg.get("subgoals")) == "hierarchical" and cfg.get("hierarchy") is not None:
        parts["hierarchy"] = OmegaConf.to_container(cfg.hierarchy, resolve=True)  # only then: other cells keep theirs
    if isinstance(parts.get("perception"), dict):  # keys a mode does not read leave its cells' hashes alone
        if str(cfg.get("subgoals")) not in ("none", "hierarchical"):
            parts["perception"].pop("photo_readout", None)
        if str(cfg.get("subgoals")) != "perceived":
            parts["perception"].pop("hand_correction", None)
            parts["perception"].pop("watch_moved", None)
            parts["perception"].pop("knock_distance", None)
    if float(cfg.get("estimate_sigmas", DEFAULT_ESTIMATE_SIGMAS)) != DEFAULT_ESTIMATE_SIGMAS:
        parts["estimate_sigmas"] = float(cfg.estimate_sigmas)  # only when changed, for the same reason
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:8]


def _group_file(group: str, choice: str) -> dict[str, Any]:
    """A config group's file as a plain dict, its own ``defaults`` merged in first ({} when there is no such file)."""
    path = Path(__file__).resolve().parents[2] / "configs" / group / f"{choice}.yaml"
    if not path.exists():
        return {}
    node = OmegaConf.load(path)
    merged = OmegaConf.create()
    for entry in node.get("defaults", []) or []:
        if isinstance(entry, str) and entry != "_self_":
            merged = OmegaConf.merge(merged, _group_file(group, entry))
    body = {k: v for k, v in node.items() if k != "defaults"}
    out = OmegaConf.to_container(OmegaConf.merge(merged, body), resolve=True)
    return out if isinstance(out, dict) else {}


def _group_files(group: str) -> dict[str, dict[str, Any]]:
    """Every shipped choice of a config group: ``{name: its file as a plain dict}``."""
    folder = Path(__file__).resolve().parents[2] / "configs" / group
    return {path.stem: _group_file(group, path.stem) for path in sorted(folder.glob("*.yaml"))}


def _node(cfg: DictConfig, key: str) -> dict[str, Any]:
    value = OmegaConf.to_container(cfg[key], resolve=True) if cfg.get(key) is not None else {}
    return value if isinstance(value, dict) else {}


def _flat(node: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for k, v in node.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _changes(current: dict[str, Any], base: dict[str, Any]) -> list[str]:
    """``key=value`` for every setting ``current`` has differently from ``base`` (``<removed>`` when it lacks it)."""
    now, then = _flat(current), _flat(base)
    return [
        f"{k}={now.get(k, '<removed>')}"
        for k in sorted(set(now) | set(then))
        if now.get(k, "<removed>") != then.get(k, "<removed>")
    ]


def guardrails_label(cfg: DictConfig) -> str:
    """What guardrails a cell ran, derived from the guardrail set itself (never from how it was asked for), so equal
    settings print equally from the command line, a sweep or a script: the shipped set it is closest to (most
    entries in common, fewest missing), plus what differs, e.g. ``default+floor(z_min=0.15)`` or
    ``keep_out[keep_out.margin=0]``."""
    current = {k: v for k, v in _node(cfg, "guardrails").items() if isinstance(v, dict) and "_target_" in v}
    files = {
        name: {k: v for k, v in node.items() if isinstance(v, dict)}
        for name, node in _group_files("guardrails").items()
    }
    if not files:
        return "+".join(sorted(current)) or "none"

    def closeness(name: str) -> tuple:
        base = files[name]
        same = sum(current.get(k) == v for k, v in base.items())
        return (-sum(k in current for k in base), sum(k not in current for k in base), -same, name)

    choice = min(files, key=closeness)
    base = files[choice]
    params = {name: ",".join(f"{k}={v}" for k, v in node.items() if k != "_target_") for name, node in current.items()}
    added = [f"+{name}" + (f"({params[name]})" if params[name] else "") for name in current if name not in base]
    changed = [f"{name}.{c}" for name, node in current.items() if name in base for c in _changes(node, base[name])]
    removed = [f"-{name}" for name in base if name not in current]
    label = choice + "".join(added) + "".join(removed)
    return label + (f"[{','.join(changed)}]" if changed else "")


def cost_label(cfg: DictConfig) -> str:
    """The cost a cell ran, derived from its settings: the shipped cost file it equals (of two equal files, the one
    named after the world model, as ``cost: ${world_model}`` picks it), else the closest one plus what differs,
    e.g. ``latent[weights.gripper=3.0]``."""
    current = _node(cfg, "cost")
    files = _group_files("cost")
    if not files:
        return "custom"
    world_model = str(cfg.world_model.name) if cfg.get("world_model") is not None else ""
    aliases = {"oracle", "jepa"}  # cost files that only select another one for their world model

    def closeness(name: str) -> tuple:
        preferred = 0 if name == world_model else (1 if name not in aliases else 2)
        return (len(_changes(current, files[name])), preferred, name)

    choice = min(files, key=closeness)
    changed = _changes(current, files[choice])
    return choice + (f"[{','.join(changed)}]" if changed else "")


def run_key(cfg: DictConfig) -> dict[str, str]:
    return {
        "task": str(cfg.task),
        "planner": str(cfg.planner.name),
        "world_model": str(cfg.world_model.name),
        "subgoals": str(cfg.get("subgoals", "privileged")),
        "guardrails": guardrails_label(cfg),
        "faults": str(cfg.faults.name),
        "cost": cost_label(cfg),
        "config": config_hash(cfg),
    }


# What a line must hold to count as an episode row; anything else in results.jsonl is skipped with a warning.
ROW_FIELDS = ("task", "seed", "success", "steps", "executed_violations", "predicted_violations", "fallbacks")


def _is_row(row: Any) -> bool:
    return (
        isinstance(row, dict)
        and all(k in row for k in ROW_FIELDS)
        and isinstance(row["seed"], int)
        and isinstance(row["executed_violations"], int)
    )


def read_results(path: Path) -> list[dict[str, Any]]:
    """Every episode row of ``results.jsonl``. A last line cut short by a kill is ignored; any other line that is
    not an episode row (not JSON, or JSON without the row fields) is skipped with one warning naming the lines."""
    if not path.exists():
        return []
    rows, foreign = [], []
    lines = path.read_text().split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if number == len(lines):  # the partial last line of a killed run
                continue
            row = None
        if _is_row(row):
            rows.append(row)
        else:
            foreign.append(number)
    if foreign:
        shown = ", ".join(str(n) for n in foreign[:10]) + (", ..." if len(foreign) > 10 else "")
        warnings.warn(f"{path}: skipped {len(foreign)} line(s) that are not episode rows (line {shown})", stacklevel=2)
    return rows


def _cell(row: dict[str, Any]) -> tuple:
    return tuple(row.get(k, "-") for k in KEY_FIELDS)


def read_cells(out: Path) -> dict[tuple, list[int]]:
    """``out/cells.json``: for each cell run into ``out``, the seeds its last command asked for."""
    path = out / "cells.json"
    if not path.exists():
        return {}
    try:
        entries = json.loads(path.read_text())
        return {_cell(e["key"]): [int(s) for s in e["seeds"]] for e in entries}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise SystemExit(f"jepa-mpc benchmark: {path} is not a list of {{key, seeds}} entries ({err})") from None


def write_cells(out: Path, key: dict[str, str], seeds: list[int]) -> None:
    """Record the seeds this command asked for its cell (replacing what an earlier command of the cell asked)."""
    cells = read_cells(out)
    cells[_cell(key)] = sorted(seeds)
    entries = [{"key": dict(zip(KEY_FIELDS, cell, strict=True)), "seeds": s} for cell, s in sorted(cells.items())]
    (out / "cells.json").write_text(json.dumps(entries, indent=1))


def check_out(out: Path, key: dict[str, str], append: bool) -> None:
    """Refuse, in one line, to write this cell's summary over a summary of something else: a ``summary.json`` that
    is not a benchmark summary, or results of other cells, unless ``append=true`` asks to add this cell to them."""
    summary = out / "summary.json"
    if summary.exists():
        try:
            existing = json.loads(summary.read_text())
        except json.JSONDecodeError:
            existing = None
        if not (isinstance(existing, list) and all(isinstance(r, dict) and "episodes" in r for r in existing)):
            raise SystemExit(
                f"jepa-mpc benchmark: {summary} is not a benchmark summary (another command wrote it); choose another out"
            )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # read_results warns about foreign lines when the summary is made
        others = {_cell(r) for r in read_results(out / "results.jsonl")} | set(read_cells(out))
    others.discard(_cell(key))
    if others and not append:
        names = "; ".join("/".join(str(v) for v in cell[:-1]) for cell in sorted(others)[:3])
        raise SystemExit(
            f"jepa-mpc benchmark: out={out} already holds {len(others)} other benchmark cell(s) ({names}); pass "
            "append=true to add this cell to that summary, or choose another out"
        )


def violation_upper_bound(k: int, n: int) -> float:
    """One-sided 95 % (Clopper-Pearson) upper bound on the rate of episodes with a violation, from ``k`` of ``n``:
    ``1 - 0.05^(1/n)``, about 3/n, when none had one."""
    return 1.0 if k >= n else float(beta.ppf(0.95, k + 1, n - k))


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
        "success_first_touch": result.success_first_touch,
        "steps": result.steps,
        "plan_ms_p50": float(np.nanpercentile(ms, 50)),
        "plan_ms_p95": float(np.nanpercentile(ms, 95)),
        "plan_ms_all": [round(x, 2) for x in result.plan_ms],
        "executed_violations": result.executed_violations,
        "crossings": result.crossings,  # which guardrail, at which step and substep, by how much (metres)
        "predicted_violations": result.predicted_violations,
        "fallbacks": result.fallbacks,
        "failure": result.failure,
        "final_distance": result.final_distance,
        "final_state": result.final_state,
        "final_phase": result.final_phase,
        "regrasps": result.regrasps,
        "pred_error_all": [round(x, 5) for x in result.pred_errors],
        "surprise_steps": result.surprises,
        "reperceived_steps": result.reperceived,
        "cube_event_steps": result.cube_events,
        "fault_events": result.fault_events,
        "goal_ms_all": [round(x, 2) for x in result.goal_ms],  # the sub-goal source's time per step
        "peak_rss_mb": result.peak_rss_mb,
    }


DETECTION_WINDOW = 3  # steps after a push within which a flag counts as detecting it
DISPLACING_PUSH_M = 0.02  # a push that moved the cube less than this (the fingers held it) is not scored


def surprise_scores(group: list[dict[str, Any]]) -> dict[str, Any]:
    """The surprise monitor's figures for a cell of perceived episodes: pushes that displaced the cube, the share
    flagged (a surprise or a re-perception) within ``DETECTION_WINDOW`` steps, the mean delay, and the surprises
    per episode outside any push window (false alarms, or events the robot caused itself, e.g. a dropped cube)."""
    pushes = detected = other = unexplained = 0
    delays: list[int] = []
    for row in group:
        flags = sorted(set(row.get("surprise_steps", [])) | set(row.get("reperceived_steps", [])))
        windows = []
        for event in row.get("fault_events", []):
            if event.get("kind") != "push":
                continue
            window = range(event["step"] + 1, event["step"] + 1 + DETECTION_WINDOW)  # obs after the pushed step on
            windows.append(window)
            if (event.get("moved_m") or 0.0) < DISPLACING_PUSH_M:
                continue
            pushes += 1
            hits = [s for s in flags if s in window]
            if hits:
                detected += 1
                delays.append(hits[0] - event["step"])
        other += sum(1 for s in row.get("surprise_steps", []) if not any(s in w for w in windows))
        # The true cube's own moves (episode.cube_moved_by_itself) explain a flag as well as an injected push does.
        windows += [range(e + 1, e + 1 + DETECTION_WINDOW) for e in row.get("cube_event_steps", [])]
        unexplained += sum(1 for s in row.get("surprise_steps", []) if not any(s in w for w in windows))
    labelled = all("cube_event_steps" in row for row in group)
    return {
        "pushes_displacing": pushes,
        "push_detected_rate": detected / pushes if pushes else None,
        "push_detect_delay_steps": round(float(np.mean(delays)), 2) if delays else None,
        "surprises_per_episode_outside_pushes": round(other / len(group), 3),
        # false alarms proper: flags that no push and no true cube move explains (rows from before the label: None)
        "false_alarms_per_episode": round(unexplained / len(group), 3) if labelled else None,
    }


def summarize(
    rows: list[dict[str, Any]], hardware: str, cells: dict[tuple, list[int]] | None = None
) -> list[dict[str, Any]]:
    """One row per cell (``KEY_FIELDS``): Wilson 95 % interval on success; the safe-control-gym violation metrics
    (episodes with at least one executed violation over episodes, its one-sided 95 % upper bound, violation steps
    per episode). With ``cells`` (``read_cells``), a cell counts only the seeds its last command asked for."""
    cells = cells or {}
    latest: dict[tuple, dict[str, Any]] = {}
    for row in rows:  # one row per (cell, seed): a repeated seed counts once, the latest line wins
        asked = cells.get(_cell(row))
        if asked is not None and row["seed"] not in asked:
            continue
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
        violating = sum(int(r["executed_violations"]) > 0 for r in group)
        out.append(
            {
                **dict(zip(KEY_FIELDS, key, strict=True)),
                "episodes": n,
                "success_rate": k / n,
                "success_ci95": [round(ci.low, 4), round(ci.high, 4)],
                # success at the first step within the distance (the anchors' definition), for comparison
                "success_first_touch_rate": sum(bool(r.get("success_first_touch", r["success"])) for r in group) / n,
                "plan_ms_p50": round(float(np.nanpercentile(ms, 50)), 2),
                "plan_ms_p95": round(float(np.nanpercentile(ms, 95)), 2),
                "executed_violations": int(sum(r["executed_violations"] for r in group)),
                "violation_episodes": violating,
                "violation_episode_rate": violating / n,
                "violation_episode_rate_ub95": round(violation_upper_bound(violating, n), 4),
                "violation_steps_per_episode": round(sum(r["executed_violations"] for r in group) / n, 3),
                "predicted_violations": int(sum(r["predicted_violations"] for r in group)),
                "fallbacks": int(sum(r["fallbacks"] for r in group)),
                "mean_steps": round(float(np.mean([r["steps"] for r in group])), 2),
                "mean_final_distance": round(float(np.mean([r["final_distance"] for r in group])), 4),
                "hardware": hardware,
            }
        )
        if out[-1].get("subgoals") == "perceived":
            out[-1].update(surprise_scores(group))
    return out


def summary_markdown(summary: list[dict[str, Any]]) -> str:
    head = "| task | planner | world model | sub-goals | guardrails | faults | cost | config | episodes | success (95 % CI) | first touch | plan ms p50 / p95 | executed viol. (episodes with one, 95 % upper bound; steps per episode) | predicted viol. | fallbacks |"
    lines = [head, "|" + "---|" * 15]
    for r in summary:
        lo, hi = r["success_ci95"]
        lines.append(
            f"| {r['task']} | {r['planner']} | {r['world_model']} | {r.get('subgoals', '-')} | {r['guardrails']} | {r['faults']} | {r['cost']} | {r['config']} | {r['episodes']} | "
            f"{100 * r['success_rate']:.0f} % ({100 * lo:.0f}-{100 * hi:.0f}) | "
            f"{100 * r.get('success_first_touch_rate', float('nan')):.0f} % | {r['plan_ms_p50']:.0f} / {r['plan_ms_p95']:.0f} | "
            f"{r['executed_violations']} ({r.get('violation_episodes', '-')}/{r['episodes']}, "
            f"<= {100 * r.get('violation_episode_rate_ub95', float('nan')):.1f} %; "
            f"{r.get('violation_steps_per_episode', float('nan')):.2f}) | {r['predicted_violations']} | {r['fallbacks']} |"
        )
    monitored = [r for r in summary if "surprises_per_episode_outside_pushes" in r]
    if monitored:
        lines += [
            "",
            "Surprise monitor (perceived sub-goals): pushes that moved the cube >= 2 cm, the share flagged (surprise or "
            f"re-perception) within {DETECTION_WINDOW} steps, surprises per episode outside push windows, and false "
            "alarms: surprises that neither a push nor a move of the true cube apart from the hand explains.",
            "",
            "| task | faults | config | episodes | displacing pushes | flagged | delay (steps) | other surprises / episode "
            "| false alarms / episode |",
            "|" + "---|" * 9,
        ]
        for r in monitored:
            rate = r["push_detected_rate"]
            false_alarms = r.get("false_alarms_per_episode")
            lines.append(
                f"| {r['task']} | {r['faults']} | {r['config']} | {r['episodes']} | {r['pushes_displacing']} | "
                f"{'-' if rate is None else f'{100 * rate:.0f} %'} | {r['push_detect_delay_steps'] or '-'} | "
                f"{r['surprises_per_episode_outside_pushes']:.2f} | "
                f"{'-' if false_alarms is None else f'{false_alarms:.2f}'} |"
            )
    return "\n".join(lines) + "\n"


def hardware_string(device: torch.device) -> str:
    cpu = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} ({cpu})"
    return f"CPU ({cpu})"


def run(cfg: DictConfig) -> list[dict[str, Any]]:
    validate(cfg, "benchmark")  # every value, before anything is built or written
    factory.check_task(cfg, "benchmark")
    shard = shards.parse_shard(cfg.get("shard"))  # i/n: this process runs every n-th seed of the cell
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    key = run_key(cfg)
    results_path = shards.results_path(out, key, shard, own_file=shards.in_sweep())
    seeds = [int(cfg.seed) + i for i in range(int(cfg.episodes))]
    with shards.out_lock(out):  # cells of one sweep share out (append implied); other workers write cells.json too
        check_out(out, key, bool(cfg.get("append", False)) or shards.in_sweep())
        write_cells(out, key, seeds)
    drop_partial_line(results_path)
    done = {r["seed"] for r in shards.read_all_results(out) if all(r.get(k) == v for k, v in key.items())}
    todo = [s for s in shards.shard_items(seeds, shard) if s not in done]
    torch.manual_seed(int(cfg.seed))
    device = factory.resolve_device(str(cfg.device))
    hardware = hardware_string(device)
    label = f"benchmark {key['task']}/{key['planner']}/{key['world_model']}/{key['subgoals']}/{key['guardrails']}"
    if shard:
        label += f" shard {shard[0]}/{shard[1]}"
    progress = Progress(label, episodes=len(todo))
    if len(todo) < len(seeds):
        progress.line(f"{len(seeds) - len(todo)} of {len(seeds)} episodes already in {out}; running the rest")
    lanes = min(int(cfg.get("batch_episodes", 1)), len(todo))
    if lanes > 1:  # E episodes in lockstep, their world-model calls batched (planner/apps/lockstep.py)
        progress.line(f"building {lanes} lockstep lanes (envs) around one {key['world_model']} world model")

        def record(result: EpisodeResult) -> None:
            append_result(results_path, {**episode_row(key, result), "hardware": hardware})
            violations = f", {result.executed_violations} executed violations" if result.executed_violations else ""
            progress.start(result.seed, None)
            progress.plan_ms.extend(result.plan_ms)
            progress.end(result.success, result.steps, violations)

        stats = lockstep.run_lanes(cfg, todo, lanes, record)
        progress.line(
            f"lockstep: {stats.rounds} rounds, {stats.requests} world-model calls in {stats.calls} batched ones "
            f"(largest {stats.max_rows} rows, {stats.model_s:.1f} s in them)"
        )
    elif todo:
        progress.line(f"building the env and the {key['world_model']} world model")
        parts = factory.build_run(cfg)
        for seed in todo:
            progress.start(seed, parts.max_steps)
            result = parts.episode(seed, on_step=progress.step)
            append_result(results_path, {**episode_row(key, result), "hardware": hardware})
            violations = f", {result.executed_violations} executed violations" if result.executed_violations else ""
            progress.end(result.success, result.steps, violations)
        parts.env.close()
    summary = shards.rebuild_summary(out, hardware, quiet=True)
    print((out / "summary.md").read_text())
    progress.close(f"{results_path} (one line per episode), {out / 'summary.md'}, {out / 'summary.json'}")
    return summary
