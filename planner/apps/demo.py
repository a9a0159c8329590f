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
from omegaconf import DictConfig  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from planner.apps import factory  # noqa: E402
from planner.apps.validate import validate  # noqa: E402


def overlay(frame: np.ndarray, lines: list[str]) -> np.ndarray:
    image = Image.fromarray(frame)
    draw = ImageDraw.Draw(image)
    draw.rectangle([0, 0, image.width, 12 * len(lines) + 4], fill=(0, 0, 0))
    for i, line in enumerate(lines):
        draw.text((4, 2 + 12 * i), line, fill=(255, 255, 255))
    return np.asarray(image)


def phase_starts(steps: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """(step, phase) where the agent entered each sub-goal phase, in order (a regrasp re-enters earlier ones)."""
    out: list[tuple[int, str]] = []
    for s in steps:
        phase = s.get("phase")
        if phase is not None and (not out or out[-1][1] != phase):
            out.append((int(s["step"]), str(phase)))
    return out


def plot_episode(steps: list[dict[str, Any]], path: Path) -> None:
    surprise = any("pred_error" in s for s in steps)  # perceived sub-goals log the world model's surprise
    fig, axes = plt.subplots(4 if surprise else 3, 1, figsize=(8, 12 if surprise else 9), sharex=True)
    t = [s["step"] for s in steps]
    terms = sorted({k for s in steps for k in s.get("cost_terms", {})})
    for term in terms:
        axes[0].plot(t, [s.get("cost_terms", {}).get(term, np.nan) for s in steps], label=term)
    axes[0].set_ylabel("cost of chosen plan")
    axes[0].legend(fontsize=7)
    names = sorted({k for s in steps for k in s.get("true_margin", {})})
    for name in names:
        axes[1].plot(t, [s["true_margin"].get(name, np.nan) for s in steps], label=name)
    axes[1].axhline(0.0, color="k", lw=0.8)
    axes[1].set_ylabel("guardrail margin (m, true state)")
    if names:
        axes[1].legend(fontsize=7)
    axes[2].plot(t, [s.get("plan_ms", np.nan) for s in steps], ".-")
    axes[2].set_ylabel("planning ms")
    if surprise:
        axes[3].plot(t, [s.get("pred_error", np.nan) for s in steps], ".-", label="one-step prediction error")
        for s in steps:
            if s.get("surprise") or s.get("reperceived"):
                axes[3].axvline(s["step"], color="r" if s.get("surprise") else "orange", lw=0.8)
        axes[3].set_ylabel("latent prediction error")
        axes[3].legend(fontsize=7, title="red: surprise, orange: re-perceived", title_fontsize=7)
    axes[-1].set_xlabel("step")
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
    out.mkdir(parents=True, exist_ok=True)
    parts = factory.build_run(cfg, render_mode="rgb_array", render_size=int(cfg.video_size))
    env, base = parts.env, parts.env.unwrapped
    subgoal_images: list[np.ndarray] = []

    def prepare(e) -> None:
        parts.prepare(e)
        subgoal_images.clear()
        # Shown beside the live view, for the viewer: with privileged sub-goals each one's rendered image; otherwise
        # the goal photo, the only image the agent was given.
        subs = base.subgoals() if parts.subgoals == "privileged" else [None]
        for sub in subs:
            subgoal_images.append(base.goal_observation(sub, view_size=int(cfg.video_size))["view"])

    def frame() -> np.ndarray:  # the main camera, and beside it every further camera the robot sees (pixels_<cam>)
        size = int(cfg.video_size)
        return np.concatenate([env.render(), *(base.render_camera(size, c) for c in base.cameras[1:])], axis=1)

    result = parts.episode(int(cfg.seed), record=True, frame_fn=frame, prepare=prepare)
    # Overlay: step, cost, feasible fraction, nearest guardrail margin; the active sub-goal image beside the view.
    video = []
    for i, img in enumerate(result.frames):  # frame i shows the state after step i (frame 0: the start)
        info = result.steps_info[i - 1] if i > 0 else {}
        margin = min((info.get("true_margin") or {"-": np.inf}).values())
        lines = [
            f"step {i}  {info.get('phase', 'start')}  cost {info.get('plan_cost', float('nan')):.3f}",
            f"feasible {100 * info.get('feasible_fraction', float('nan')):.0f}%  margin {margin * 100:.1f} cm"
            + ("  FALLBACK" if info.get("fallback") else ""),
        ]
        if info.get("surprise"):
            lines.append("SURPRISE: re-perceiving")
        sub = subgoal_images[min(info.get("subgoal", 0), len(subgoal_images) - 1)] if subgoal_images else img
        video.append(np.concatenate([overlay(img, lines), sub], axis=1))
    video_path = out / f"{cfg.task}_{cfg.planner.name}_{cfg.world_model.name}.mp4"
    imageio.mimwrite(video_path, video, fps=int(cfg.fps), macro_block_size=1)
    plot_path = out / f"{cfg.task}_{cfg.planner.name}_{cfg.world_model.name}.png"
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
        "plot": str(plot_path),
    }
    (out / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    env.close()
    print(json.dumps(summary, indent=2))
    print(f"video: {video_path}\nplots: {plot_path}")
    return summary
