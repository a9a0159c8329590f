"""Where the agent's sub-goals come from (``subgoals=``): privileged, perceived, or the goal photo alone.

- ``privileged`` (reference): the task's phase program filled with the simulator's true cube and target positions,
  sub-goal images rendered by posing the simulator. A real robot has none of this; the mode is named as such.
- ``perceived``: the same phase program (task knowledge), every number in it perceived: the hand from proprio, the
  cube from the current frames (averaged over the frames since the last re-perception), the target from the goal
  photo; both read by ``perception.source``: the cube detector (world_models/detector.py, pixels only) or the
  world model's own cube probe. The last sub-goal also carries the goal photo's latent. Re-perceives when the
  world model is surprised or the perceived cube leaves the sub-goals built for it.
- ``none``: the goal photo's latent only (the flat planner's ablation).
- ``hierarchical``: sub-goals the agent plans itself from the goal photo with a macro-step world model, no task
  program (planner/apps/hierarchy.py).

Perceived, none and hierarchical read the env only through ``RobotView`` (planner/apps/contract.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from planner.costs import GoalSchedule
from world_models.base import world_model_class

SUBGOAL_MODES = ("privileged", "perceived", "none", "hierarchical")
# A phase program: (hand, cube, target) positions [3] -> sub-goal dicts with "ee_pos", "gripper", "phase", ...
Program = Callable[[np.ndarray, np.ndarray, np.ndarray], list[dict[str, Any]]]


def check_mode(mode: str, world_model: str) -> str:
    """``mode`` if it is known and fits the world model, else one ValueError naming ``subgoals``."""
    if mode not in SUBGOAL_MODES:
        raise ValueError(f"subgoals={mode!r} is unknown; choose one of {', '.join(SUBGOAL_MODES)}")
    if world_model_class(world_model).reads_sim_state and mode != "privileged":
        raise ValueError(
            f"subgoals={mode!r} needs a learned world model: the oracle plans on the simulator's true state, so it is "
            "a privileged reference (subgoals=privileged)"
        )
    return mode


PERCEPTION_KEYS = {
    "surprise_threshold",
    "jump_distance",
    "knock_distance",
    "reperceive_distance",
    "source",
    "detector",
    "watch_moved",
    "photo_readout",
    "hand_correction",
}


def check_perception(mode: str, world_model: str, node: dict[str, Any]) -> None:
    """``subgoals`` and the ``perception`` group, checked before anything runs (ValueError naming the key)."""
    check_mode(mode, world_model)
    unknown = sorted(set(node) - PERCEPTION_KEYS)
    if unknown:
        raise ValueError(f"perception.{unknown[0]} is not a known key; known: {', '.join(sorted(PERCEPTION_KEYS))}")
    for key in ("surprise_threshold", "jump_distance", "knock_distance", "reperceive_distance"):
        value = node.get(key, 1.0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ValueError(
                f"perception.{key} must be a number > 0 (off: inf on the command line, .inf in a yaml file), "
                f"got {value!r}"
            )
    if node.get("source", "detector") not in ("detector", "probe"):
        raise ValueError(f"perception.source must be detector or probe, got {node.get('source')!r}")
    if not isinstance(node.get("hand_correction", False), bool):
        raise ValueError(f"perception.hand_correction must be true or false, got {node['hand_correction']!r}")
    if not isinstance(node.get("watch_moved", False), bool):
        raise ValueError(f"perception.watch_moved must be true or false, got {node['watch_moved']!r}")
    if node.get("detector") is not None and not isinstance(node["detector"], str):
        raise ValueError(f"perception.detector must be a file path or null, got {node['detector']!r}")
    readout = node.get("photo_readout", [])
    if readout is None:
        readout = []
    if isinstance(readout, str) or not isinstance(readout, Sequence) or not all(k in READOUT_KEYS for k in readout):
        raise ValueError(f"perception.photo_readout must be a list of {', '.join(READOUT_KEYS)}, got {readout!r}")


def photo_goal(photo: dict[str, Any], world_model: Any) -> dict[str, Tensor]:
    """The goal photo as a latent sub-goal: ``{"latent": [D], "latent_mask": [D]}`` (visual dimensions only)."""
    with torch.no_grad():
        z, mask = world_model.encode_goal(photo)
    return {"latent": z[0], "latent_mask": mask}


def goal_only_schedule(
    photo: dict[str, Any], world_model: Any, readout: dict[str, Tensor] | None = None
) -> GoalSchedule:
    """``subgoals=none``: one sub-goal, the goal photo's latent, plus what ``photo_readout`` read off the photo."""
    return GoalSchedule([{**photo_goal(photo, world_model), **(readout or {})}], phases=["goal"])


READOUT_KEYS = ("ee_pos", "cube_pos")  # what the detector reads off a photo


def photo_readout(detector: Any, photo: dict[str, Any], keys: Sequence[str]) -> dict[str, Tensor]:
    """The goal photo read by the pixels-only detector: ``{key: position [3]}`` for each of ``keys`` (the hand and/or
    the cube where the finished scene shows them). Task-free: the same reading for every task; the planner's cost
    then compares the world model's probe reading of its imagined states with it."""
    return {key: torch.as_tensor(detector.locate(photo["pixels"], key)[0], dtype=torch.float64) for key in keys}


KNOCK_REFERENCE = 3  # readings whose mean a new one is compared with (PerceivedGoals._knocked)
KNOCK_CONFIRM = 0.75  # the share of knock_distance the next reading must still be off by


@dataclass
class PerceivedGoals:
    """``subgoals=perceived``: builds and rebuilds the phase program from what the robot perceives.

    Called by the agent every step with the observation it plans from, its latent and the action it last executed;
    returns a new ``GoalSchedule`` when the sub-goals are (re)built, else None, plus a step-info dict:
    ``pred_error`` (the world model's one-step prediction error on the visual latent), ``surprise`` and
    ``surprise_kind`` (``latent`` or ``object``), ``cube_seen`` [3] and ``cube_seen_std`` (the spread of the readings
    averaged into the estimate), ``reperceived``.
    """

    world_model: Any
    program: Program
    goal: dict[str, Tensor]  # the goal photo's latent and mask (photo_goal)
    target: np.ndarray  # [3] where the goal photo shows the cube
    locate_cube: Callable[[dict[str, Any], Tensor], np.ndarray]  # (robot obs, its latent) -> cube position [3]
    switch_distance: float  # GoalSchedule's: advance when hand and gripper are this close to the sub-goal
    switch_every: int | None = None  # GoalSchedule's switch_steps, the same for every sub-goal
    hold_phases: Sequence[str] = ()  # phases in which the robot moves the cube itself (Task.moves_object_in)
    watch_phases: Sequence[str] = ()  # of those, the ones in which it stays in view (Task.watches_object_in)
    surprise_threshold: float = float("inf")  # latent prediction error above which a step is a surprise
    jump_distance: float = 0.04  # metres a cube reading may differ from the estimate before it is a surprise
    # Metres a cube the robot has not yet touched may be seen away from its last readings on two frames in a row
    # before it is a surprise (``_knocked``); inf turns the rule off.
    knock_distance: float = float("inf")
    reperceive_distance: float = 0.03  # metres the perceived cube may drift from its sub-goals before a rebuild
    use_photo_latent: bool = True  # the last sub-goal also pursues the goal photo's latent (cost.use_latent_goal)
    # proprio [P] -> hand position [3]: the robot's reader (``Embodiment.read(proprio, "ee_pos")``; the factory
    # passes it). Required to build sub-goals; None is refused when they are built.
    locate_hand: Callable[[np.ndarray], np.ndarray] | None = None
    # Goal-photo hand correction (perception.hand_correction): the detector's reading of the hand in the current frame
    # and in the goal photo, and the task's photo -> target rule. See ``_correct_target``.
    read_hand: Callable[[dict[str, Any]], np.ndarray] | None = None
    photo_seen: dict[str, np.ndarray] | None = None
    target_from_photo: Callable[[dict[str, np.ndarray]], np.ndarray] | None = None
    readings: list[np.ndarray] = field(default_factory=list)
    built_for: np.ndarray | None = None  # where the sub-goals expect the cube (re-perceived if it is seen elsewhere)
    _expected: list[np.ndarray | None] = field(default_factory=list)  # the program's cube position per sub-goal
    _was_holding: bool = False
    _first_hold: int = 0  # the index of the program's first sub-goal that moves the cube (len(goals) if none)
    _touched: bool = False  # whether the robot has moved the cube yet (been in a hold phase) this episode
    _knock: tuple[np.ndarray, np.ndarray] | None = None  # a reading off the cube's last readings: (their mean, it)
    _watched: list[np.ndarray] = field(default_factory=list)  # the last readings while a moved cube is watched
    _z_prev: Tensor | None = None
    _last_index: int = 0
    _hand_offsets: list[np.ndarray] = field(default_factory=list)
    _last_goal_ee: np.ndarray | None = None  # the last sub-goal's hand as built (before any correction)

    def __call__(
        self, obs: dict[str, Any], z: Tensor, last_action: np.ndarray | None, step: int, schedule: GoalSchedule | None
    ) -> tuple[GoalSchedule | None, dict[str, Any]]:
        """``obs``: what the agent plans from; ``z``: its latent ``[1, D]``; ``schedule``: None at the first step."""
        with torch.no_grad():
            cube = np.asarray(self.locate_cube(obs, z), dtype=np.float64)
            error = self._prediction_error(z, last_action)
        self._z_prev = z
        holding = schedule is not None and schedule.phase in self.hold_phases
        if self._was_holding and not holding and schedule is not None:
            # The robot has put the cube down (or lost it): what was seen before it moved it no longer counts, and
            # the cube is expected where the program meant to leave it; seen elsewhere, the sub-goals are rebuilt
            # from where it lies (a cube dragged or dropped off the target is picked up again).
            self.readings = []
            expected = self._expected[schedule.index] if schedule.index < len(self._expected) else None
            if expected is not None:
                self.built_for = expected
        self._was_holding = holding
        # Two kinds of surprise: the world model did not predict the new frame, or the cube, which moves only when
        # the robot moves it, is seen somewhere else than where it was (outside the phases that move it).
        jumped = not holding and bool(self.readings) and self._off_estimate(cube) > self.jump_distance
        went_back = schedule is not None and schedule.index < self._last_index  # e.g. the agent's regrasp rule
        self._touched = self._touched or holding
        untouched = schedule is not None and not self._touched and schedule.index < self._first_hold
        knocked = self._knocked(cube, untouched and not went_back and not jumped)
        surprised = bool(error > self.surprise_threshold or jumped)  # the scene changed: rebuilt from it
        # A knock is flagged and the estimate starts again from the knocked cube's readings; the sub-goals are kept
        # unless it now lies more than reperceive_distance from them (``drifted``): the open fingers still fit around
        # a cube knocked 2-3 cm, and going back up to rebuild from above dragged it along.
        info: dict[str, Any] = {"pred_error": error, "surprise": surprised or knocked is not None}
        info["surprise_kind"] = "latent" if error > self.surprise_threshold else "object" if info["surprise"] else None
        self._last_index = schedule.index if schedule is not None else 0
        if info["surprise"] or went_back:
            self.readings = []  # what was seen before no longer describes the scene
            self._knock = None
        if knocked is not None:
            self.readings = [knocked]  # the knocked cube's first reading
        if not holding:
            self.readings.append(cube)
        estimate = np.mean(self.readings, axis=0) if self.readings else cube
        info["cube_seen"] = estimate.round(4).tolist()
        info["cube_seen_std"] = float(np.std(self.readings, axis=0).max()) if len(self.readings) > 1 else None
        drifted = (
            self.built_for is not None
            and len(self.readings) >= 2  # one frame is not enough to give up a plan (a finger may hide the cube)
            and np.linalg.norm(estimate - self.built_for) > self.reperceive_distance
        )
        off_path = self._off_path(cube, schedule)
        info["off_path"] = off_path
        if off_path:
            self.readings = list(self._watched)  # rebuild from where the moved cube is seen now
            estimate = np.mean(self.readings, axis=0)
        rebuild = schedule is None or off_path or (not holding and (surprised or drifted))
        info["reperceived"] = bool(rebuild and schedule is not None)
        if self.locate_hand is None:
            raise ValueError("PerceivedGoals needs locate_hand (the robot's hand reader, Embodiment.read) to build")
        ee = np.asarray(self.locate_hand(np.asarray(obs["proprio"], dtype=np.float64)), dtype=np.float64)
        if not rebuild:
            self._correct_target(obs, ee, schedule, info)
            return None, info
        built = self.build(ee, estimate)
        self._correct_target(obs, ee, built, info)  # a rebuilt program starts corrected, not a step later
        return built, info

    def _correct_target(
        self, obs: dict[str, Any], ee: np.ndarray, schedule: GoalSchedule | None, info: dict[str, Any]
    ) -> None:
        """The detector misreads the hand in places (up to ~10 cm at the far +y edge of the workspace), and a target
        read off the goal photo inherits the error. Where the hand is now, proprio tells the truth, so the detector's
        offset here is measured (its reading of this frame minus proprio, averaged over 3 frames) and taken off the
        goal photo's reading: near the goal the two frames look alike and so do their offsets, so the target settles
        on the place whose picture matches the photo. Moves the last sub-goal's hand by the change."""
        if self.read_hand is None or self.photo_seen is None or schedule is None or self._last_goal_ee is None:
            return
        self._hand_offsets = [*self._hand_offsets[-2:], np.asarray(self.read_hand(obs), dtype=np.float64) - ee]
        corrected_hand = self.photo_seen["ee_pos"] - np.mean(self._hand_offsets, axis=0)
        corrected = np.asarray(self.target_from_photo({**self.photo_seen, "ee_pos": corrected_hand}), dtype=np.float64)
        shift = corrected - np.asarray(self.target, dtype=np.float64)
        last = schedule.goals[-1]
        last["ee_pos"] = torch.as_tensor(self._last_goal_ee + shift, dtype=last["ee_pos"].dtype)
        info["target_shift"] = shift.round(4).tolist()

    def build(self, ee: np.ndarray, cube: np.ndarray) -> GoalSchedule:
        """The phase program for a hand at ``ee`` and a cube at ``cube`` (the target from the goal photo)."""
        self.built_for = np.asarray(cube, dtype=np.float64).copy()
        self._last_index = 0
        subgoals = self.program(ee, self.built_for, self.target)
        self._expected = [None if "cube_pos" not in sub else np.asarray(sub["cube_pos"], float) for sub in subgoals]
        holds = [i for i, sub in enumerate(subgoals) if sub.get("phase") in self.hold_phases]
        self._first_hold = holds[0] if holds else len(subgoals)
        goals: list[dict[str, Any]] = []
        for i, sub in enumerate(subgoals):
            goal = {k: torch.as_tensor(np.asarray(sub[k], dtype=np.float64)) for k in ("ee_pos", "gripper") if k in sub}
            if i == len(subgoals) - 1 and self.use_photo_latent:
                goal.update(self.goal)
            goals.append(goal)
        self._last_goal_ee = np.asarray(subgoals[-1]["ee_pos"], dtype=np.float64).copy()
        return GoalSchedule(
            goals,
            switch_distance=self.switch_distance,
            switch_steps=[self.switch_every] * (len(goals) - 1) if self.switch_every else None,
            keys=["ee_pos", "gripper"],
            phases=[str(s.get("phase", "goal")) for s in subgoals],
        )

    def _off_path(self, cube: np.ndarray, schedule: GoalSchedule | None) -> bool:
        """In a watched phase: whether the cube, averaged over its last readings, lies farther than
        ``reperceive_distance`` from the path the remaining sub-goals expect it to follow."""
        if schedule is None or schedule.phase not in self.watch_phases:
            self._watched = []
            return False
        self._watched = [*self._watched[-1:], cube]  # two frames: one may be misread
        path = [c for c in self._expected[max(schedule.index - 1, 0) :] if c is not None]
        if len(self._watched) < 2 or not path:
            return False
        seen = np.mean(self._watched, axis=0)
        return distance_to_path(seen[:2], np.array([c[:2] for c in path])) > self.reperceive_distance

    def _knocked(self, cube: np.ndarray, watched: bool) -> np.ndarray | None:
        """Until the robot first moves the cube (the program's phases before its first hold phase, and no hold phase
        yet this episode) the cube lies still, so a knock smaller than ``jump_distance`` shows as a step in its
        readings: a reading more than ``knock_distance`` from the mean of the last ``KNOCK_REFERENCE`` readings, and
        the next one still more than ``KNOCK_CONFIRM`` of that away from the same mean (a frame misread while the
        fingers come down around the cube does not repeat; a knocked cube stays where it went). Returns the first of
        the two readings when the knock is confirmed, else None. Compared with the last few readings rather than the
        whole estimate: the detector's reading drifts by 1-2 cm, slowly, as the hand comes down and hides part of
        the cube. Off once the robot has handled the cube: dropped or put back, it may lie tilted or against the
        fingers, where the detector misreads it by several cm from frame to frame; in the hold phases themselves the
        fingers hide it (misread by 5-12 cm in the air, BENCHMARKS.md)."""
        pending, self._knock = self._knock, None
        if not watched or not np.isfinite(self.knock_distance):
            return None
        if pending is not None and np.linalg.norm(cube - pending[0]) > KNOCK_CONFIRM * self.knock_distance:
            return pending[1]
        if len(self.readings) >= KNOCK_REFERENCE:
            reference = np.mean(self.readings[-KNOCK_REFERENCE:], axis=0)
            if np.linalg.norm(cube - reference) > self.knock_distance:
                self._knock = (reference, cube)
        return None

    def _off_estimate(self, cube: np.ndarray) -> float:
        """Distance (m) of a new reading from the mean of the readings so far."""
        return float(np.linalg.norm(cube - np.mean(self.readings, axis=0)))

    def _prediction_error(self, z: Tensor, last_action: np.ndarray | None) -> float:
        if self._z_prev is None or last_action is None:
            return 0.0
        return prediction_error(self.world_model, self._z_prev, last_action, z, self.goal["latent_mask"])


def distance_to_path(point: np.ndarray, path: np.ndarray) -> float:
    """Distance from ``point [2]`` to the polyline through ``path [n, 2]`` (a single point when n = 1)."""
    if len(path) == 1:
        return float(np.linalg.norm(point - path[0]))
    a, b = path[:-1], path[1:]
    ab = b - a
    t = np.clip(((point - a) * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0.0, 1.0)
    return float(np.linalg.norm(a + t[:, None] * ab - point, axis=-1).min())


def prediction_error(world_model: Any, z_prev: Tensor, action: Any, z: Tensor, mask: Tensor) -> float:
    """The surprise signal: mean squared error over the ``mask``ed (visual) dimensions between the latent predicted
    from ``z_prev [1, D]`` and ``action [A]`` and the latent ``z [1, D]`` encoded from the new frame."""
    a = torch.as_tensor(np.asarray(action), dtype=z.dtype, device=z.device).reshape(1, 1, -1)
    predicted = world_model.rollout(z_prev, a)[:, -1]
    mask = mask.to(z.device, z.dtype)
    return float(((predicted - z).square() * mask).sum() / mask.sum())


def probe_perception(world_model: Any, photo_latent: Tensor) -> tuple[Callable[..., np.ndarray], np.ndarray]:
    """The world model's cube probe: on the current latent (pixels + proprio) and on the goal photo's latent."""

    def locate(obs: dict[str, Any], z: Tensor) -> np.ndarray:
        return world_model.decode(z)["cube_pos"][0].detach().cpu().double().numpy()

    with torch.no_grad():
        target = locate({}, photo_latent[None])
    return locate, target


def detector_perception(
    detector: Any, photo: dict[str, Any], target_from_photo: Callable[[dict[str, np.ndarray]], np.ndarray]
) -> tuple[Callable[..., np.ndarray], np.ndarray, dict[str, np.ndarray]]:
    """A pixels-only detector on the current front-camera frame (the cube) and on the goal photo (the cube and the
    hand, turned into the target by the task's ``target_from_photo``); also returns the photo's reading itself."""

    def locate(obs: dict[str, Any], z: Tensor) -> np.ndarray:
        return detector.locate(obs["pixels"], "cube_pos")[0]

    seen = {key: detector.locate(photo["pixels"], key)[0] for key in ("cube_pos", "ee_pos")}
    return locate, target_from_photo(seen), seen
