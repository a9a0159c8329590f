"""The three tasks (reach, push, pick-and-place): reset distributions, goals and success tests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from envs.scene import CUBE_HALF

# Where the planner may send the hand and where cubes and targets are drawn from (metres, world frame).
CUBE_X, CUBE_Y = (0.40, 0.62), (-0.18, 0.18)
HOME_EE = np.array([0.5, 0.0, 0.25])
GRASP_HEIGHT = CUBE_HALF + 0.035  # fingertip-centre site height that puts the finger pads around the cube
PUSH_HEIGHT = GRASP_HEIGHT  # fingertip centre while pushing: the finger pads at the cube's middle


@dataclass(frozen=True)
class TaskSample:
    """One episode's initial layout and goal."""

    ee_start: np.ndarray  # [3]
    cube_pos: np.ndarray  # [3]
    target_pos: np.ndarray  # [3]


class Task:
    """Base class: a name, an episode limit and a success test on privileged state."""

    name: str = ""
    max_episode_steps: int = 50
    # The goal quantities a planner's cost should pursue (goal scenes hold more, to be rendered faithfully).
    cost_keys: tuple[str, ...] = ("ee_pos", "cube_pos", "gripper")
    success_threshold: float = 0.05  # metres, as FetchPickAndPlace
    # Success means the goal is reached and stays reached: ``is_placed`` must hold on this many consecutive steps
    # (``is_success`` alone, the first step within the threshold, is kept as the anchors' "first touch" figure).
    settle_steps: int = 1
    # The names of the phases its sub-goals go through (each sub-goal dict carries one under "phase"): costs can be
    # weighted per phase (cost.phase_weights), and logs and the demo say which phase the agent is in.
    phases: tuple[str, ...] = ("goal",)
    # Whether sub-goals hold the cube between the fingers: only then does an opening that shuts on nothing mean a
    # failed grasp (the agent's regrasp_below check); a push's fingers hold nothing, whatever their opening.
    holds_object: bool = False
    # The phases in which the robot itself moves the cube: a perceiving agent neither updates nor questions its cube
    # estimate there (planner.apps.goals).
    moves_object_in: tuple[str, ...] = ()
    # Of those, the phases in which the moved cube stays in view (pushed, not held): the agent checks that it follows
    # the sub-goals' path and re-perceives when it leaves it.
    watches_object_in: tuple[str, ...] = ()
    # Whether the hand at the goal looks as the goal photo shows it all along the way there (reach: an empty hand),
    # so the detector's offset measured where the hand is carries over to its reading of the photo (the perceived
    # agent's perception.hand_correction). Not when the hand carries a cube the photo shows released.
    hand_as_in_goal_photo: bool = False

    def sample(self, rng: np.random.Generator) -> TaskSample:
        raise NotImplementedError

    def distance(self, state: dict[str, np.ndarray]) -> float:
        """The quantity whose threshold defines success (metres)."""
        raise NotImplementedError

    def is_success(self, state: dict[str, np.ndarray]) -> bool:
        """Within the threshold on this step (success at first touch)."""
        return bool(self.distance(state) < self.success_threshold)

    def is_placed(self, state: dict[str, np.ndarray]) -> bool:
        """The per-step condition of a settled success (``settle_steps`` in a row make one); default: in reach."""
        return self.is_success(state)

    def goal_state(self, sample: TaskSample) -> dict[str, np.ndarray]:
        """The scene at the goal: where hand, cube and gripper should be (used to render goal images)."""
        raise NotImplementedError

    def target_from_goal_photo(self, seen: dict[str, np.ndarray]) -> np.ndarray:
        """The target position from what a detector reads in the goal photo (``seen["cube_pos"]``,
        ``seen["ee_pos"]``): task knowledge of where the goal scene puts the cube relative to the hand."""
        return np.asarray(seen["cube_pos"], dtype=np.float64)

    def subgoals(self, sample: TaskSample) -> list[dict[str, Any]]:
        """Sub-goal scenes leading to the goal (as V-JEPA 2-AC's sub-goal images), each with its ``"phase"`` name;
        the last is the goal."""
        return [{**self.goal_state(sample), "phase": "goal"}]


# A cube on the table: its centre within 1 cm of resting height and moving under 2 cm/s.
RESTING_Z_TOL, RESTING_SPEED = 0.01, 0.02


def cube_resting_on_table(state: dict[str, np.ndarray]) -> bool:
    """The cube lies still on the table (not held above it, not sliding)."""
    still = float(np.linalg.norm(state.get("cube_vel", np.zeros(3)))) < RESTING_SPEED
    return bool(abs(float(state["cube_pos"][2]) - CUBE_HALF) < RESTING_Z_TOL and still)


def _cube_xy(rng: np.random.Generator) -> np.ndarray:
    return np.array([rng.uniform(*CUBE_X), rng.uniform(*CUBE_Y)])


def _target_xy_away_from(rng: np.random.Generator, xy: np.ndarray, min_dist: float, max_dist: float) -> np.ndarray:
    """A target on the table between min_dist and max_dist from ``xy``, inside the cube region."""
    for _ in range(100):
        cand = _cube_xy(rng)
        if min_dist <= np.linalg.norm(cand - xy) <= max_dist:
            return cand
    angle = rng.uniform(0, 2 * np.pi)  # fallback; the region is large enough that this is rare
    return np.clip(
        xy + min_dist * np.array([np.cos(angle), np.sin(angle)]), [CUBE_X[0], CUBE_Y[0]], [CUBE_X[1], CUBE_Y[1]]
    )


class ReachTask(Task):
    """Move the end effector (fingertip centre) within 5 cm of a target in free space."""

    name = "reach"
    max_episode_steps = 40
    cost_keys = ("ee_pos",)  # where the cube sits does not matter for reaching
    hand_as_in_goal_photo = True

    def sample(self, rng: np.random.Generator) -> TaskSample:
        cube = np.r_[_cube_xy(rng), CUBE_HALF]
        target = np.array([rng.uniform(0.35, 0.7), rng.uniform(-0.25, 0.25), rng.uniform(0.05, 0.35)])
        ee = HOME_EE + rng.uniform(-0.05, 0.05, size=3)
        return TaskSample(ee, cube, target)

    def distance(self, state: dict[str, np.ndarray]) -> float:
        return float(np.linalg.norm(state["ee_pos"] - state["target_pos"]))

    def goal_state(self, sample: TaskSample) -> dict[str, np.ndarray]:
        return {"ee_pos": sample.target_pos, "cube_pos": sample.cube_pos, "gripper": np.array(0.08)}

    def target_from_goal_photo(self, seen: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(seen["ee_pos"], dtype=np.float64)  # the goal is where the photo shows the hand


class PushTask(Task):
    """Push the cube along the table to within 5 cm of a target on the table."""

    name = "push"
    max_episode_steps = 80
    push_step = 0.03  # metres between waypoints along the push line (3 and 4 cm scored alike: BENCHMARKS.md)
    approach_behind = 0.06  # metres from the cube centre back to where the hand comes down (clear of the cube)
    hand_behind = 0.06  # metres from the hand (fingertip centre) back to the cube centre while pushing
    # Finger opening (m) while pushing: shut. Apart, the 4 cm gap fits the cube and pushes fewer of them overall
    # (BENCHMARKS.md, "Tuning notes").
    push_opening = 0.0
    phases = ("above", "down", "push")  # the goal is the last push waypoint
    moves_object_in = ("push",)
    watches_object_in = ("push",)  # a cube sliding off the hand's line is seen, and approached again from behind
    settle_steps = 3  # the cube within 5 cm of the target and lying still there for 3 steps (0.3 s)
    steer_offset = 0.04  # metres off the new push line within which a re-planned push steers instead of re-approaching

    def sample(self, rng: np.random.Generator) -> TaskSample:
        cube_xy = _cube_xy(rng)
        target_xy = _target_xy_away_from(rng, cube_xy, 0.10, 0.20)
        ee = HOME_EE + rng.uniform(-0.05, 0.05, size=3)
        return TaskSample(ee, np.r_[cube_xy, CUBE_HALF], np.r_[target_xy, CUBE_HALF])

    def distance(self, state: dict[str, np.ndarray]) -> float:
        return float(np.linalg.norm(state["cube_pos"] - state["target_pos"]))

    def is_placed(self, state: dict[str, np.ndarray]) -> bool:
        return self.is_success(state) and cube_resting_on_table(state)

    def goal_state(self, sample: TaskSample) -> dict[str, np.ndarray]:
        direction = sample.target_pos[:2] - sample.cube_pos[:2]
        direction /= max(np.linalg.norm(direction), 1e-6)
        ee = np.r_[sample.target_pos[:2] - self.hand_behind * direction, PUSH_HEIGHT]  # just behind the pushed cube
        return {"ee_pos": ee, "cube_pos": sample.target_pos, "gripper": np.array(self.push_opening)}

    def pushing_from_behind(self, ee: np.ndarray, cube: np.ndarray, direction: np.ndarray) -> bool:
        """Whether the hand is already at pushing height behind the cube, within ``steer_offset`` of the line that
        pushes it to the target: then the push goes on from there along the new line."""
        rel = np.asarray(cube[:2], float) - np.asarray(ee[:2], float)
        along = float(rel @ direction)
        across = abs(float(rel[0] * direction[1] - rel[1] * direction[0]))
        return abs(float(ee[2]) - PUSH_HEIGHT) < 0.02 and 0.02 < along < 0.1 and across < self.steer_offset

    def subgoals(self, sample: TaskSample) -> list[dict[str, Any]]:
        """Above the spot behind the cube, down to pushing height there, then along the push line in steps of at
        most ``push_step`` with the cube just ahead of the hand, ending at the goal. A hand already pushing from
        behind the cube (``pushing_from_behind``) skips the approach: re-planned mid-push, the hand steers.

        The waypoints keep the hand at pushing height through the cube: with only the final scene as a goal, a short
        horizon planner takes the shorter way over the cube and never pushes it.
        """
        direction = sample.target_pos[:2] - sample.cube_pos[:2]
        length = max(float(np.linalg.norm(direction)), 1e-6)
        direction = direction / length
        approach = sample.cube_pos[:2] - self.approach_behind * direction
        behind = sample.cube_pos[:2] - self.hand_behind * direction
        fingers = np.array(self.push_opening)
        goals = [
            {"ee_pos": np.r_[approach, 0.10], "cube_pos": sample.cube_pos, "gripper": fingers, "phase": "above"},
            {"ee_pos": np.r_[approach, PUSH_HEIGHT], "cube_pos": sample.cube_pos, "gripper": fingers, "phase": "down"},
        ]
        if self.pushing_from_behind(sample.ee_start, sample.cube_pos, direction):
            goals = []  # re-planned mid-push (the cube slid off the line): steer from where the hand is, no re-approach
        for s in np.arange(self.push_step, length - 1e-3, self.push_step):
            cube = np.r_[sample.cube_pos[:2] + s * direction, sample.cube_pos[2]]
            ee = np.r_[behind + s * direction, PUSH_HEIGHT]
            goals.append({"ee_pos": ee, "cube_pos": cube, "gripper": fingers, "phase": "push"})
        return goals + [{**self.goal_state(sample), "phase": "push"}]


class PickPlaceTask(Task):
    """Lift the cube and carry it to within 5 cm of a target, half of them in the air (up to 20 cm)."""

    name = "pick_place"
    max_episode_steps = 80
    holds_object = True
    phases = ("above", "around", "close", "lift", "carry", "release")
    moves_object_in = ("close", "lift", "carry")  # at release the cube is let go of: seen again, checked on target
    # Placed means: within 5 cm for 3 steps in a row; a table target also needs the cube resting on the table and
    # let go of (a cube held a few cm above a table target is not placed); an air target is held there.
    settle_steps = 3
    table_target_below = 0.04  # target heights under this are on the table (table targets: 2 cm, air: >= 6 cm)
    lift_height = 0.06  # metres the closed hand lifts the cube straight up before carrying it
    # Finger opening (m) the held sub-goals ask for: the cube's width (asking for less squeezed no better and waited
    # out the schedule's step limit: BENCHMARKS.md).
    hold_opening = CUBE_HALF * 2

    def sample(self, rng: np.random.Generator) -> TaskSample:
        cube_xy = _cube_xy(rng)
        target_xy = _target_xy_away_from(rng, cube_xy, 0.10, 0.25)
        target_z = CUBE_HALF if rng.random() < 0.5 else rng.uniform(0.06, 0.20)
        ee = HOME_EE + rng.uniform(-0.05, 0.05, size=3)
        return TaskSample(ee, np.r_[cube_xy, CUBE_HALF], np.r_[target_xy, target_z])

    def distance(self, state: dict[str, np.ndarray]) -> float:
        return float(np.linalg.norm(state["cube_pos"] - state["target_pos"]))

    def on_table(self, target_pos: np.ndarray) -> bool:
        return bool(target_pos[2] < self.table_target_below)

    def target_from_goal_photo(self, seen: dict[str, np.ndarray]) -> np.ndarray:
        # The fingers hide much of a held cube, while the hand is easy to see: the cube sits at a known offset below
        # the fingertip centre in every goal scene (goal_state).
        return np.asarray(seen["ee_pos"], dtype=np.float64) - np.array([0.0, 0.0, GRASP_HEIGHT - CUBE_HALF])

    def is_placed(self, state: dict[str, np.ndarray]) -> bool:
        if not self.is_success(state):
            return False
        if not self.on_table(state["target_pos"]):
            return True
        return cube_resting_on_table(state) and not bool(state.get("grasped", False))

    def goal_state(self, sample: TaskSample) -> dict[str, np.ndarray]:
        """The finished scene: the cube at the target, the fingers around it (open again on a table target)."""
        ee = sample.target_pos + np.array([0.0, 0.0, GRASP_HEIGHT - CUBE_HALF])  # fingertips around the cube
        opening = 0.08 if self.on_table(sample.target_pos) else self.hold_opening
        return {"ee_pos": ee, "cube_pos": sample.target_pos, "gripper": np.array(opening)}

    def subgoals(self, sample: TaskSample) -> list[dict[str, Any]]:
        """Hand above the cube (open), around it (open), closed on it, the cube lifted straight up, carried to the
        target, and on a table target let go of there.

        The lift tests the grasp before any sideways motion: carried straight to the target, a light grasp let the
        cube slip, or the hand dragged it along the table towards a target at table height.
        """
        cube = sample.cube_pos
        grasp = cube + np.array([0.0, 0.0, GRASP_HEIGHT - CUBE_HALF])
        up = np.array([0.0, 0.0, self.lift_height])
        open_, closed = np.array(0.08), np.array(self.hold_opening)
        goal = self.goal_state(sample)
        goals = [
            {"ee_pos": cube + np.array([0.0, 0.0, 0.09]), "cube_pos": cube, "gripper": open_, "phase": "above"},
            {"ee_pos": grasp, "cube_pos": cube, "gripper": open_, "phase": "around"},
            {"ee_pos": grasp, "cube_pos": cube, "gripper": closed, "phase": "close"},
            {"ee_pos": grasp + up, "cube_pos": cube + up, "gripper": closed, "phase": "lift"},
            {**goal, "gripper": closed, "phase": "carry"},
        ]
        if self.on_table(sample.target_pos):
            goals.append({**goal, "phase": "release"})
        return goals


TASKS: dict[str, type[Task]] = {"reach": ReachTask, "push": PushTask, "pick_place": PickPlaceTask}
