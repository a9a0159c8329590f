"""The Gymnasium environment: a Franka Panda on a table with a cube, driven by end-effector deltas."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from envs.embodiment import Embodiment
from envs.scene import CAMERAS, EE_DOWN_QUAT, FINGER_OPEN, HOME_QPOS, SceneConfig, build_model
from envs.sim_env import TaskSceneEnv, divergence_warnings
from envs.tasks import GRASP_HEIGHT, HOME_EE, TASKS, Task, TaskSample
from world_models.oracle import MocapControlSpec

# Where the controller may move the fingertip centre (metres). Commands outside are clipped to it: this is the
# robot's own physical envelope, not a planner guardrail. z_min keeps the fingertips just above the table.
EE_LOW = np.array([0.20, -0.45, 0.05])
EE_HIGH = np.array([0.85, 0.45, 0.55])
PROPRIO_DIM = 8  # ee_pos(3), ee_vel(3), gripper opening(1), gripper opening rate(1)

# The Franka Panda as the planner sees it (envs.embodiment): fingertip-centre deltas of 5 cm per unit from the
# measured position, clipped to [EE_LOW, EE_HIGH]; an absolute gripper command (+1 open: both fingers at
# FINGER_OPEN, 8 cm apart; -1 shut). Gripper readings are the finger opening in metres; a sub-goal asking for
# 2-7 cm holds the cube (4 cm wide), and fingers shut below 3 cm on such a sub-goal hold nothing.
PANDA = Embodiment(
    name="franka_panda",
    action_names=("dx", "dy", "dz", "gripper"),
    action_scale=0.05,
    ee_low=tuple(float(v) for v in EE_LOW),
    ee_high=tuple(float(v) for v in EE_HIGH),
    proprio={"ee_pos": (0, 3), "ee_vel": (3, 6), "gripper": (6, 7), "gripper_rate": (7, 8)},
    gripper_action=3,
    gripper_command="absolute",
    gripper_open=2 * FINGER_OPEN,
    gripper_closed=0.0,
    gripper_unit="m",
    holding=(0.02, 0.07),
    empty_below=0.03,
    grasp_steps=3,
    # The hand covers 95 % of the commanded displacement in a step (residual ~0.2 mm) and ends it moving at 1.78/s
    # times it (residual ~1.5 mm/s): it is settling by then.
    motion_model={"tracking": 0.95, "end_velocity_gain": 1.78},
    # tracking_check: at most 2.9 mm off the segment over 1280 random steps in free space (one earlier, smaller run
    # saw 8.9 mm, cause not traced), 17.5 mm with a command in flight (BENCHMARKS.md). Contact (fingers pushing on
    # the cube) is not covered by a margin on the command.
    path_margin=0.005,
    delay_margin=0.02,
)


class PandaEnv(TaskSceneEnv, gym.Env):
    """Franka Panda tabletop task with pixel + proprioceptive observations.

    Action: ``[dx, dy, dz, gripper]`` in ``[-1, 1]^4``. The first three move the commanded fingertip position by
    ``action_scale`` metres per unit from the *measured* position (so 1.0 = 5 cm per step by default); the last is
    an absolute gripper command (+1 fully open, -1 closed). Out-of-range actions are clipped; NaN/inf raises
    ``ValueError``. Control runs at ``control_hz`` with physics substeps inside.

    Observation: ``{"pixels": uint8 [H, W, 3], "proprio": float32 [8]}``, ``pixels`` from ``camera``; with
    ``cameras=[a, b, ...]`` one view per camera: ``pixels`` from ``a``, then ``pixels_b``, ... (``pixels_wrist``).
    ``info["state"]`` holds privileged state
    (ee, cube, target, gripper, contacts) for oracle costs, probes and evaluation; ``info["is_success"]`` every
    step (settled: see ``_info``), ``info["is_success_first_touch"]`` beside it; ``info["failure"]`` is ``"unstable"`` if the simulator diverged and ``"cube_off_table"`` if the cube fell off
    (the episode then terminates).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self,
        task: str = "reach",
        image_size: int = 64,
        camera: str = "front",
        control_hz: float = 10.0,
        action_scale: float = 0.05,
        render_mode: str | None = None,
        render_size: int = 256,
        pixels: bool = True,
        cameras: list[str] | tuple[str, ...] | None = None,
    ) -> None:
        if task not in TASKS:
            raise ValueError(f"unknown task {task!r}; known tasks: {sorted(TASKS)}")
        self.cameras = tuple(cameras) if cameras else (camera,)
        unknown = [c for c in self.cameras if c not in CAMERAS]
        if unknown or len(set(self.cameras)) != len(self.cameras):
            raise ValueError(f"cameras must be distinct names from {list(CAMERAS)}, got {list(self.cameras)}")
        # observation key of each view: the first camera is "pixels" (as with one camera), the others "pixels_<name>"
        self.pixel_keys = ["pixels"] + [f"pixels_{c}" for c in self.cameras[1:]]
        self.task: Task = TASKS[task]()
        self.scene = SceneConfig(width=image_size, height=image_size)
        self.model = build_model(self.scene)
        self.data = mujoco.MjData(self.model)
        self.n_substeps = max(1, round(1.0 / (control_hz * self.model.opt.timestep)))
        self.action_scale = float(action_scale)
        self.embodiment = replace(PANDA, action_scale=self.action_scale)
        self.camera = self.cameras[0]
        self.image_size = image_size
        self.render_mode = render_mode
        self.render_size = render_size
        self.use_pixels = pixels
        self._renderers: dict[int, mujoco.Renderer] = {}
        self._ids()
        self.action_space = spaces.Box(-1.0, 1.0, shape=(4,), dtype=np.float32)
        self.observation_space = spaces.Dict(
            {
                **{k: spaces.Box(0, 255, shape=(image_size, image_size, 3), dtype=np.uint8) for k in self.pixel_keys},
                "proprio": spaces.Box(-np.inf, np.inf, shape=(PROPRIO_DIM,), dtype=np.float32),
            }
        )
        self.sample: TaskSample | None = None
        self.steps = 0
        self._placed_for, self._touched = 0, False

    # ----------------------------------------------------------------------------------------------- set-up
    def _ids(self) -> None:
        m = self.model
        self.ee_site = m.site("end_effector").id
        self.ee_mocap = m.body("ee_target").mocapid[0]
        self.target_mocap = m.body("target").mocapid[0]
        self.cube_body = m.body("cube").id
        self.cube_geom = m.geom("cube_geom").id
        cube_joint = m.joint("cube_joint")
        self.cube_qpos = slice(cube_joint.qposadr[0], cube_joint.qposadr[0] + 7)
        self.cube_qvel = slice(cube_joint.dofadr[0], cube_joint.dofadr[0] + 6)
        self.finger_qpos = [m.joint(f"robot:panda0_finger_joint{i}").qposadr[0] for i in (1, 2)]
        self.finger_bodies = {m.body("panda0_leftfinger").id, m.body("panda0_rightfinger").id}
        self.table_geom = m.geom("table").id

    def _place(self, sample: TaskSample, gripper_open: float = FINGER_OPEN) -> None:
        """Put arm, cube and target where ``sample`` says and let the arm settle onto its commanded pose."""
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        d.qpos[:7] = HOME_QPOS
        d.qpos[self.finger_qpos] = gripper_open
        d.ctrl[:] = gripper_open
        d.mocap_pos[self.ee_mocap] = sample.ee_start
        d.mocap_quat[self.ee_mocap] = EE_DOWN_QUAT
        d.mocap_pos[self.target_mocap] = sample.target_pos
        d.qpos[self.cube_qpos] = np.r_[sample.cube_pos, 1.0, 0.0, 0.0, 0.0]
        for _ in range(60):  # 0.3 s: the weld pulls the hand from home onto the start pose
            mujoco.mj_step(m, d)
        d.qvel[:] = 0.0
        mujoco.mj_forward(m, d)

    # ----------------------------------------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.sample = self.task.sample(self.np_random)
        self._place(self.sample)
        self.steps = 0
        self._placed_for, self._touched = 0, False  # steps in a row placed; within the threshold at some step
        state = self.state()
        return self._observation(), self._info(state)

    def step(self, action: np.ndarray):
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (4,):
            raise ValueError(f"action must have 4 entries [dx, dy, dz, gripper], got shape {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action contains NaN or inf: {action.tolist()}")
        action = np.clip(action, -1.0, 1.0)
        m, d = self.model, self.data
        ee = d.site_xpos[self.ee_site].copy()
        d.mocap_pos[self.ee_mocap] = self.embodiment.commanded(ee, action)
        d.ctrl[:] = (action[3] + 1.0) / 2.0 * FINGER_OPEN
        saved = mujoco.mj_stateSize(m, mujoco.mjtState.mjSTATE_INTEGRATION)
        backup = np.empty(saved)
        mujoco.mj_getState(m, d, backup, mujoco.mjtState.mjSTATE_INTEGRATION)
        warnings_before = divergence_warnings(d)
        path = np.empty((self.n_substeps, 3))
        cube_path, gripper_path = np.empty((self.n_substeps, 3)), np.empty(self.n_substeps)
        for i in range(self.n_substeps):
            mujoco.mj_step(m, d)
            path[i] = d.site_xpos[self.ee_site]  # kinematics of the state the substep started from
            cube_path[i], gripper_path[i] = d.qpos[self.cube_qpos][:3], d.qpos[self.finger_qpos].sum()  # after it
        mujoco.mj_forward(m, d)  # observations describe the state after the last substep, not before it
        path = np.vstack([path[1:], d.site_xpos[self.ee_site]])
        self.steps += 1
        unstable = (
            not (np.all(np.isfinite(d.qpos)) and np.all(np.isfinite(d.qvel)))
            or divergence_warnings(d) > warnings_before
        )
        if unstable:  # roll back so no NaN ever reaches an observation, and end the episode
            mujoco.mj_setState(m, d, backup, mujoco.mjtState.mjSTATE_INTEGRATION)
            mujoco.mj_forward(m, d)
        state = self.state()
        info = self._info(state)
        cube_lost = not unstable and state["cube_pos"][2] < -0.05  # knocked off the table: nothing left to do
        if unstable:
            info["failure"] = "unstable"
        elif cube_lost:
            info["failure"] = "cube_off_table"
        else:
            info["ee_path"] = path  # [n_substeps, 3] fingertip positions through the step, for safety audits
            # the true state after every physics substep, for the executed-violation audit of every guardrail
            info["substep_states"] = {"ee_pos": path, "cube_pos": cube_path, "gripper": gripper_path}
        return self._observation(), 0.0 if unstable else -self.task.distance(state), unstable or cube_lost, False, info

    def render(self) -> np.ndarray | None:
        if self.render_mode != "rgb_array":
            return None
        return self.render_camera(self.render_size, self.camera)

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()

    # ----------------------------------------------------------------------------------------------- state
    def state(self) -> dict[str, np.ndarray]:
        """Privileged state: what a motion-capture system and the simulator know."""
        d = self.data
        cube_vel = d.qvel[self.cube_qvel]
        return {
            "ee_pos": d.site_xpos[self.ee_site].copy(),
            "ee_vel": self._ee_velocity(),
            "cube_pos": d.qpos[self.cube_qpos][:3].copy(),
            "cube_quat": d.qpos[self.cube_qpos][3:].copy(),
            "cube_vel": cube_vel[:3].copy(),
            "target_pos": d.mocap_pos[self.target_mocap].copy(),
            "gripper": np.array(d.qpos[self.finger_qpos].sum()),
            "grasped": np.array(self._cube_grasped()),
            "arm_qpos": d.qpos[:7].copy(),
        }

    def goal_observation(
        self, goal: dict[str, np.ndarray] | None = None, view_size: int | None = None
    ) -> dict[str, np.ndarray]:
        """Render the observation the robot would see at ``goal`` (default: this episode's goal).

        The scene is posed in place and restored afterwards: the hand is welded to the goal and the cube pinned at
        its goal pose while the arm settles, so the live episode is left untouched. With ``view_size`` the result
        also holds ``"view"``, a larger rendering of the same scene for videos and docs.
        """
        goal = self.goal_state() if goal is None else goal
        saved = self.get_state()
        m, d = self.model, self.data
        try:
            d.mocap_pos[self.ee_mocap] = goal["ee_pos"]
            d.ctrl[:] = float(goal["gripper"]) / 2.0
            cube = np.r_[goal["cube_pos"], 1.0, 0.0, 0.0, 0.0]
            for _ in range(150):
                d.qpos[self.cube_qpos] = cube
                d.qvel[self.cube_qvel] = 0.0
                mujoco.mj_step(m, d)
            d.qpos[self.cube_qpos] = cube
            d.qvel[:] = 0.0
            mujoco.mj_forward(m, d)
            obs = self._observation()
            if view_size is not None:
                obs["view"] = self.render_camera(view_size, self.camera)
            return obs
        finally:
            self.set_state(saved)

    def oracle_control(self) -> MocapControlSpec:
        """How the oracle world model drives a copy of this scene: the mocap hand target and finger controls."""
        e = self.embodiment
        return MocapControlSpec(self.n_substeps, e.action_scale, e.ee_low, e.ee_high, finger_open=FINGER_OPEN)

    # ----------------------------------------------------------------------------------------------- helpers
    def _ee_velocity(self) -> np.ndarray:
        vel = np.zeros(6)
        mujoco.mj_objectVelocity(self.model, self.data, mujoco.mjtObj.mjOBJ_SITE, self.ee_site, vel, 0)
        return vel[3:].copy()

    def _cube_grasped(self) -> bool:
        touching = set()
        for contact in self.data.contact[: self.data.ncon]:
            geoms = {contact.geom1, contact.geom2}
            if self.cube_geom in geoms:
                other = (geoms - {self.cube_geom}).pop() if len(geoms) == 2 else self.cube_geom
                body = self.model.geom_bodyid[other]
                if body in self.finger_bodies:
                    touching.add(body)
        return len(touching) == 2

    def _observation(self) -> dict[str, np.ndarray]:
        d = self.data
        fingers = d.qpos[self.finger_qpos].sum()
        finger_rate = d.qvel[
            [self.model.jnt_dofadr[self.model.joint(f"robot:panda0_finger_joint{i}").id] for i in (1, 2)]
        ].sum()
        proprio = np.r_[d.site_xpos[self.ee_site], self._ee_velocity(), fingers, finger_rate].astype(np.float32)
        blank = np.zeros((self.image_size, self.image_size, 3), dtype=np.uint8)
        views = {
            key: self.render_camera(self.image_size, camera) if self.use_pixels else blank.copy()
            for key, camera in zip(self.pixel_keys, self.cameras, strict=True)
        }
        return {**views, "proprio": proprio}

    def _info(self, state: dict[str, np.ndarray]) -> dict[str, Any]:
        """``is_success``: settled (``Task.is_placed`` on ``Task.settle_steps`` steps in a row);
        ``is_success_first_touch``: within the threshold on any step so far (the anchors' success)."""
        self._placed_for = self._placed_for + 1 if self.task.is_placed(state) else 0
        self._touched = self._touched or self.task.is_success(state)
        return {
            "state": state,
            "is_success": self._placed_for >= self.task.settle_steps,
            "is_success_first_touch": self._touched,
            "distance": self.task.distance(state),
        }


__all__ = ["PANDA", "PandaEnv", "EE_LOW", "EE_HIGH", "GRASP_HEIGHT", "PROPRIO_DIM", "HOME_EE"]
