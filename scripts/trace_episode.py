"""Trace benchmark episodes step by step: what the agent believed against what was true.

    MUJOCO_GL=egl python scripts/trace_episode.py TRACE.jsonl benchmark world_model=jepa planner=cem_cpu \
        task=pick_place faults=obs_noise episodes=1 seed=20002 out=/tmp/trace_run

Runs the given ``jepa-mpc`` command with two read-only hooks and writes one JSON line per executed step to
TRACE.jsonl: the agent's phase, regrasp and fallback, its proprio estimate (hand, gripper opening) and their
standard deviations, the command, the perceived cube, surprises, re-perception, the goal-photo hand correction; and,
from the simulator after the step (never shown to the agent), the true hand, cube and gripper and whether the cube
moved apart from the hand. For debugging failures on tuning seeds; results and rows are as without it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np

import planner.apps.episode as episode
import planner.mpc as mpc


def _rounded(values: Any, digits: int = 3) -> list[float]:
    return np.round(np.asarray(values, dtype=float).reshape(-1), digits).tolist()


def main() -> None:
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    trace_path, command = sys.argv[1], sys.argv[2:]
    rows: list[dict[str, Any]] = []
    act, moved_by_itself = mpc.MPCAgent.act, episode.cube_moved_by_itself

    def traced_act(self: mpc.MPCAgent, obs: Any) -> Any:
        action, info = act(self, obs)
        estimator = self.proprio_filter
        believed = obs["proprio"] if estimator is None or estimator.estimate is None else estimator.estimate
        hand = self.embodiment.read(np.asarray(believed), "ee_pos") if self.embodiment else believed[:3]
        grip = self.embodiment.read(np.asarray(believed), "gripper") if self.embodiment else [np.nan]
        rows.append(
            {
                "step": info["step"],
                "phase": info.get("phase"),
                "regrasp": info.get("regrasp"),
                "fallback": info.get("fallback_reason") if info.get("fallback") else None,
                "hand_estimate": _rounded(hand),
                "gripper_estimate": _rounded(grip, 4),
                "hand_std": None if estimator is None else round(estimator.ee_std(), 4),
                "gripper_std": None if estimator is None else round(estimator.gripper_std(), 4),
                "action": _rounded(action, 2),
                "cube_seen": info.get("cube_seen"),
                "surprise": info.get("surprise_kind"),
                "reperceived": info.get("reperceived"),
                "target_shift": info.get("target_shift"),
                "filter_margin": info.get("filter_margin"),
            }
        )
        return action, info

    def traced_moved(before: dict[str, Any], after: dict[str, Any]) -> bool:
        moved = moved_by_itself(before, after)
        if rows:
            rows[-1]["true_after"] = {k: _rounded(after[k], 4) for k in ("ee_pos", "cube_pos", "gripper") if k in after}
            rows[-1]["cube_moved_by_itself"] = bool(moved)
        return moved

    mpc.MPCAgent.act = traced_act  # type: ignore[method-assign]
    episode.cube_moved_by_itself = traced_moved
    from planner.cli import main as cli

    try:
        cli(command)
    finally:
        with open(trace_path, "w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        print(f"trace: {len(rows)} steps in {trace_path}")


if __name__ == "__main__":
    main()
