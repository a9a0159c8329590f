"""``jepa-mpc demo``: one planning episode, written as an MP4 with an overlay plus PNG plots of what the planner saw."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import imageio.v2 as imageio
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
from omegaconf import DictConfig  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from planner.apps import factory  # noqa: E402
from planner.apps.validate import validate  # noqa: E402
from planner.progress import Progress  # noqa: E402


def _font(size: int) -> ImageFont.ImageFont:
    """A legible font at ``size`` pixels (Pillow's bundled one; its bitmap fallback where FreeType is missing)."""
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):
        return ImageFont.load_default()


def overlay(frame: np.ndarray, lines: list[str], bottom: str | None = None) -> np.ndarray:
    """``lines`` on a black band across the top of ``frame`` (and ``bottom``, if given, across its foot)."""
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    size = max(10, image.height // 20)
    font = _font(size)
    pitch = size + 3
    draw.rectangle([0, 0, image.width, pitch * len(lines) + 4], fill=(0, 0, 0))
    for i, line in enumerate(lines):
        draw.text((4, 2 + pitch * i), line, fill=(255, 255, 255), font=font)
    if bottom:
        draw.rectangle([0, image.height - pitch - 4, image.width, image.height], fill=(0, 0, 0))
        draw.text((4, image.height - pitch - 2), bottom, fill=(255, 255, 120), font=font)
    return np.asarray(image)


def overlay_lines(info: dict[str, Any], step: int, max_steps: int | None, phases: tuple[str, ...]) -> list[str]:
    """The overlay of the frame after ``step`` steps (``info``: that step's agent info; ``{}`` at the start): step,
    phase, the chosen plan's cost, the feasible fraction and the nearest guardrail. Never prints nan or inf: what
    is not known yet (the start) or not finite says so in words."""
    of = f"/{max_steps}" if max_steps else ""
    phase = info.get("phase")
    if phase is None:
        return [f"step 0{of}  start", "planning the first step"]
    where = f" {phases.index(phase) + 1}/{len(phases)}" if phase in phases else ""
    cost = info.get("plan_cost")
    cost_text = f"cost {cost:.3f}" if isinstance(cost, int | float) and np.isfinite(cost) else "cost -"
    first = f"step {step}{of}  phase{where}: {phase}  {cost_text}"
    feasible = info.get("feasible_fraction")
    feasible_text = (
        f"feasible {100 * feasible:.0f}%" if isinstance(feasible, int | float) and np.isfinite(feasible) else ""
    )
    margins = {k: v for k, v in (info.get("true_margin") or {}).items() if np.isfinite(v)}
    nearest = min(margins, key=margins.get) if margins else None
    margin_text = f"  nearest {nearest} {100 * margins[nearest]:.1f} cm" if nearest else ""
    second = (feasible_text + margin_text).strip() + ("  FALLBACK" if info.get("fallback") else "")
    return [first, second] + (["SURPRISE: re-perceiving"] if info.get("surprise") else [])


def caption(image: np.ndarray, text: str) -> np.ndarray:
    """``image`` with ``text`` on a band across its top (the right panel's caption)."""
    return overlay(image, [text])


def phase_starts(steps: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """(step, phase) where the agent entered each sub-goal phase, in order (a regrasp re-enters earlier ones)."""
    out: list[tuple[int, str]] = []
    for s in steps:
        phase = s.get("phase")
        if phase is not None and (not out or out[-1][1] != phase):
            out.append((int(s["step"]), str(phase)))
    return out


# Lines that may lie on top of each other (two guardrails with the same margin) stay distinguishable: each gets its
# own dash pattern and marker, and earlier lines are drawn wider underneath later ones.
STYLES = [("-", "o"), ("--", "s"), (":", "^"), ("-.", "v"), ((0, (5, 1, 1, 1)), "D"), ((0, (1, 2)), "x")]


def _lines(ax: plt.Axes, t: list[int], series: dict[str, list[float]]) -> None:
    n = len(series)
    for i, (name, values) in enumerate(series.items()):
        dash, marker = STYLES[i % len(STYLES)]
        ax.plot(t, values, ls=dash, marker=marker, ms=3.5, lw=1.2 + 1.6 * (n - 1 - i) / max(n - 1, 1), label=name)
    if series:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def plot_episode(steps: list[dict[str, Any]], path: Path) -> None:
    """Cost terms, true-state guardrail margins, planning time (and the one-step prediction error with perceived
    sub-goals) per step, the phase changes marked on every panel; legends sit right of the axes, steps are integers."""
    surprise = any("pred_error" in s for s in steps)  # perceived sub-goals log the world model's surprise
    fig, axes = plt.subplots(4 if surprise else 3, 1, figsize=(10, 12 if surprise else 9), sharex=True)
    t = [int(s["step"]) for s in steps]
    terms = sorted({k for s in steps for k in s.get("cost_terms", {})})
    _lines(axes[0], t, {term: [s.get("cost_terms", {}).get(term, np.nan) for s in steps] for term in terms})
    axes[0].set_ylabel("cost of chosen plan")
    names = sorted({k for s in steps for k in s.get("true_margin", {})})
    _lines(axes[1], t, {name: [100 * s.get("true_margin", {}).get(name, np.nan) for s in steps] for name in names})
    axes[1].axhline(0.0, color="k", lw=0.8)
    axes[1].set_ylabel("guardrail margin (cm, true state)\n> 0: room left")
    axes[2].plot(t, [s.get("plan_ms", np.nan) for s in steps], ".-")
    axes[2].set_ylabel("planning ms")
    if surprise:
        axes[3].plot(t, [s.get("pred_error", np.nan) for s in steps], ".-", label="one-step prediction error")
        for s in steps:
            if s.get("surprise") or s.get("reperceived"):
                axes[3].axvline(s["step"], color="r" if s.get("surprise") else "orange", lw=0.8)
        axes[3].set_ylabel("latent prediction error")
        axes[3].legend(
            fontsize=7,
            title="red: surprise\norange: re-perceived",
            title_fontsize=7,
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            borderaxespad=0.0,
        )
    axes[-1].set_xlabel("step")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    for step, phase in phase_starts(steps):  # where each sub-goal phase begins, on every panel
        for ax in axes:
            ax.axvline(step, color="0.6", lw=0.8, ls="--")
        axes[0].annotate(phase, (step, 1.0), xycoords=("data", "axes fraction"), fontsize=7, va="bottom", rotation=30)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def run(cfg: DictConfig) -> dict[str, Any]:
    validate(cfg, "demo")  # every value, before anything is built or written
    factory.check_task(cfg, "demo")
    out = Path(cfg.out)
    name = f"{cfg.task}_{cfg.planner.name}_{cfg.world_model.name}"
    progress = Progress(f"demo {cfg.task}/{cfg.planner.name}/{cfg.world_model.name}")
    progress.line(f"building the env and the {cfg.world_model.name} world model")
    out.mkdir(parents=True, exist_ok=True)
    parts = factory.build_run(cfg, render_mode="rgb_array", render_size=int(cfg.video_size))
    env, base = parts.env, parts.env.unwrapped
    size = int(cfg.video_size)
    panels: list[np.ndarray] = []  # the right panel: each sub-goal image, or the goal photo, captioned

    def prepare(e) -> None:
        parts.prepare(e)
        panels.clear()
        # Shown beside the live view, for the viewer: with privileged sub-goals each one's rendered image; otherwise
        # the goal photo, the only image the agent was given.
        if parts.subgoals == "privileged":
            subs = base.subgoals()
            for i, sub in enumerate(subs):
                image = base.goal_observation(sub, view_size=size)["view"]
                panels.append(caption(image, f"sub-goal {i + 1}/{len(subs)}: {sub.get('phase', 'goal')} (rendered)"))
        else:
            image = base.goal_observation(None, view_size=size)["view"]
            panels.append(caption(image, "goal photo (the agent's only image)"))

    def frame() -> np.ndarray:  # the main camera, and beside it every further camera the robot sees (pixels_<cam>)
        return np.concatenate([env.render(), *(base.render_camera(size, c) for c in base.cameras[1:])], axis=1)

    progress.start(int(cfg.seed), parts.max_steps)
    result = parts.episode(int(cfg.seed), record=True, frame_fn=frame, prepare=prepare, on_step=progress.step)
    progress.end(result.success, result.steps)
    # Overlay: step, phase, cost, feasible fraction, nearest guardrail margin; the captioned goal image beside it.
    # the phases this episode went through, as its sub-goal schedule lists them (a table target adds "release")
    phases = tuple(getattr(parts.agent.schedule, "phases", ()) or getattr(base.task, "phases", ()))
    outcome = f"{'SUCCESS' if result.success else 'NO SUCCESS'} after {result.steps} steps"
    video = []
    imagined = None  # hierarchical: the high level's current sub-goal, posed from the probes' reading of it
    for i, img in enumerate(result.frames):  # frame i shows the state after step i (frame 0: the start)
        info = result.steps_info[i - 1] if i > 0 else {}
        lines = overlay_lines(info, i, parts.max_steps, phases)
        panel = panels[min(int(info.get("subgoal", 0)), len(panels) - 1)] if panels else img
        if "subgoal_decoded" in info:
            seen = {k: np.asarray(v, dtype=np.float64) for k, v in info["subgoal_decoded"].items()}
            imagined = caption(base.goal_observation(seen, view_size=size)["view"], "imagined sub-goal (probes)")
        if imagined is not None:
            panel = imagined
        last = i == len(result.frames) - 1
        video.append(np.concatenate([overlay(img, lines, outcome if last else None), panel], axis=1))
    fps = int(cfg.fps)  # playback: fps frames a second for 10 control steps a second (4: 0.4x real time)
    video = [video[0]] * fps + video + [video[-1]] * (2 * fps)  # hold the start 1 s longer and the end 2 s
    video_path = out / f"{name}.mp4"
    imageio.mimwrite(video_path, video, fps=fps, macro_block_size=1)
    plot_path = out / f"{name}.png"
    plot_episode(result.steps_info, plot_path)
    summary = {
        "task": str(cfg.task),
        "planner": str(cfg.planner.name),
        "world_model": str(cfg.world_model.name),
        "subgoals": parts.subgoals,
        "seed": int(cfg.seed),
        "success": result.success,
        "steps": result.steps,
        "executed_violations": result.executed_violations,
        "fallbacks": result.fallbacks,
        "plan_ms_p50": float(np.median(result.plan_ms)) if result.plan_ms else None,
        "video": str(video_path),
        "video_seconds": round(len(video) / fps, 1),
        "plot": str(plot_path),
    }
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    env.close()
    print(json.dumps(summary, indent=2))
    progress.close(f"video {video_path} ({summary['video_seconds']} s), plots {plot_path}, {out / 'demo_summary.json'}")
    return summary
