"""OGBench's ``cube-single`` (a UR5e with a Robotiq 2F-85, 5-D action) behind this project's env interface.

The scene, the controller (relative end-effector deltas through OGBench's differential IK and the arm's PD servos,
a relative gripper command), the five evaluation tasks and the success test (the cube within 4 cm of its target)
are OGBench's own code (``pip install jepa-mpc[ogbench]``, ``ogbench==1.2.2``); this module adds what the planner
reads: an embodiment, the proprio layout, privileged state for the audit, sub-goals and the oracle's controller.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import mujoco
import numpy as np
from gymnasium import spaces

from envs.embodiment import Embodiment
from envs.sim_env import TaskSceneEnv
from envs.tasks import Task, TaskSample
from world_models.oracle import SteppedControlSpec

# OGBench's controller (ManipSpaceEnv.set_control): the pinch site is sent to its measured position plus 5 cm per
# unit of a[:3], clipped to OGBench's workspace box; a[3] turns the hand 0.3 rad per unit about z; a[4] adds to the
# gripper's closure (0 open .. 1 shut), so +1 shuts, -1 opens and 0 keeps the current one.
WORKSPACE_LOW, WORKSPACE_HIGH = (0.25, -0.35, 0.02), (0.6, 0.35, 0.35)
DRIVER_CLOSED = 0.8  # rad of the 2F-85's driver joint at full closure (OGBench's normalisation)

# Gripper readings are the opening fraction (1 fully open, 0 shut: one minus OGBench's "gripper_opening", which
# measures closure). Closed on the 4 cm cube the fingers rest near 0.5; shut on nothing, at 0.1 or below.
UR5E_2F85 = Embodiment(
    name="ur5e_robotiq_2f85",
    action_names=("dx", "dy", "dz", "dyaw", "gripper"),
    action_scale=0.05,
    ee_low=WORKSPACE_LOW,
    ee_high=WORKSPACE_HIGH,
    proprio={"ee_pos": (0, 3), "ee_yaw": (3, 4), "gripper": (4, 5), "gripper_rate": (5, 6)},
    gripper_action=4,
    gripper_command="relative",
    gripper_open=1.0,
    gripper_closed=0.0,
    gripper_unit="opening fraction",
    holding=(0.2, 0.8),
    empty_below=0.2,
    grasp_steps=4,
    # The pinch site covers 40 % of the commanded displacement in a control step (differential IK and PD servos lag;
    # residual ~2.3 mm RMS under random commands). No velocity is measured, so the estimator's noise gate compares
    # the measured step with that prediction and opens at twice the clean residual.
    motion_model={"tracking": 0.4, "detect_noise": 0.005},
    # Not measured on this robot (tracking_check drives the Panda): the Panda's margins, which the benchmark rows ran
    # with. The UR5e's hand lags its command (40 % per step) rather than overshooting it.
    path_margin=0.005,
    delay_margin=0.02,
)

OGBENCH_TASKS = {  # our task name -> OGBench task_id (ogbench.manipspace.envs.cube_env.CubeEnv.set_tasks)
    "cube_single_task1": 1,  # horizontal
    "cube_single_task2": 2,  # vertical1
    "cube_single_task3": 3,  # vertical2
    "cube_single_task4": 4,  # diagonal1
    "cube_single_task5": 5,  # diagonal2
}
CUBE_HALF = 0.02


class OGBenchCubeTask(Task):
    """Pick the cube up and put it on its target (OGBench's success: within 4 cm, at any step: the episode ends)."""

    max_episode_steps = 200  # OGBench's limit for cube-single
    success_threshold = 0.04
    holds_object = True
    phases = ("above", "around", "close", "lift", "carry", "lower")
    moves_object_in = ("close", "lift", "carry", "lower")
    grasp_z = 0.02  # pinch-site height at the grasp: the cube's centre (the pads clear the floor there)
    above_z = 0.12  # hand height over the cube before coming down
    carry_z = 0.10  # cube-centre height while carrying
    hold_opening = 0.45  # the opening a held sub-goal asks for: the fingers closed on the 4 cm cube read 0.44-0.46

    def __init__(self, task_id: int = 1) -> None:
        self.task_id = int(task_id)
        self.name = f"cube_single_task{self.task_id}"

    def distance(self, state: dict[str, np.ndarray]) -> float:
        return float(np.linalg.norm(state["cube_pos"] - state["target_pos"]))

    def goal_state(self, sample: TaskSample) -> dict[str, np.ndarray]:
        ee = np.r_[sample.target_pos[:2], self.grasp_z]
        return {"ee_pos": ee, "cube_pos": sample.target_pos, "gripper": np.array(self.hold_opening)}

    def subgoals(self, sample: TaskSample) -> list[dict[str, Any]]:
        """Open hand above the cube, around it, closed on it, the cube lifted, carried over the target, lowered."""
        cube, target = sample.cube_pos, sample.target_pos
        held, open_ = np.array(self.hold_opening), np.array(UR5E_2F85.gripper_open)
        at = np.r_[cube[:2], self.grasp_z]
        lift = np.r_[cube[:2], self.carry_z]
        over = np.r_[target[:2], self.carry_z]
        return [
            {"ee_pos": np.r_[cube[:2], self.above_z], "cube_pos": cube, "gripper": open_, "phase": "above"},
            {"ee_pos": at, "cube_pos": cube, "gripper": open_, "phase": "around"},
            {"ee_pos": at, "cube_pos": cube, "gripper": held, "phase": "close"},
            {"ee_pos": lift, "cube_pos": lift, "gripper": held, "phase": "lift"},
            {"ee_pos": over, "cube_pos": over, "gripper": held, "phase": "carry"},
            {**self.goal_state(sample), "phase": "lower"},
        ]


class OGBenchCubeEnv(TaskSceneEnv, gym.Env):
    """OGBench ``cube-single`` with the project's observations and info.

    Action: ``[dx, dy, dz, dyaw, gripper]`` in ``[-1, 1]^5`` (OGBench's, see ``UR5E_2F85``). Observation:
    ``{"pixels": uint8 [H, W, 3] (camera "front_pixels"), "proprio": float32 [6]}`` (pinch-site position, yaw,
    gripper opening fraction, its rate). ``info["is_success"]``: OGBench's test on this step; ``info["state"]``:
    privileged state for the audit; ``info["substep_states"]``: the true state after every physics substep.

    ``step`` is OGBench's ``ManipSpaceEnv.step`` (success timing "post", as ``cube-single-v0``) with two
    additions: it records every substep for the audit, and ends with forward kinematics so the observation and
    the next command read the state after the last substep (OGBench's read it one 2 ms substep old).
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        task_id: int = 1,
        image_size: int = 64,
        camera: str = "front_pixels",
        pixels: bool = True,
        render_mode: str | None = None,
        render_size: int = 256,
    ) -> None:
        try:
            from ogbench.manipspace import lie
            from ogbench.manipspace.envs.cube_env import CubeEnv
        except ImportError as err:  # say what to install, not a stack of import errors
            raise ImportError("the OGBench envs need the ogbench extra: pip install -e '.[ogbench]'") from err
        if task_id not in OGBENCH_TASKS.values():
            raise ValueError(f"task_id must be one of {sorted(OGBENCH_TASKS.values())}, got {task_id!r}")
        self._lie = lie
        self.inner = CubeEnv(env_type="single", ob_type="states", visualize_info=False, mode="task")
        self.inner.reset(seed=0, options={"task_id": task_id})  # builds the MuJoCo model
        self.task = OGBenchCubeTask(task_id)
        self.embodiment = UR5E_2F85
        self.model: mujoco.MjModel = self.inner.model
        self.data: mujoco.MjData = self.inner.data
        self.n_substeps = int(self.inner._n_steps)
        self.image_size, self.camera, self.cameras = int(image_size), camera, (camera,)
        self.use_pixels, self.render_mode, self.render_size = bool(pixels), render_mode, int(render_size)
        self._renderers: dict[int, mujoco.Renderer] = {}
        self._cube_qpos = int(self.model.joint("object_joint_0").qposadr[0])
        self._driver = int(self.model.joint("ur5e/robotiq/right_driver_joint").qposadr[0])
        self._driver_dof = int(self.model.joint("ur5e/robotiq/right_driver_joint").dofadr[0])
        self._pinch = self.model.site("ur5e/robotiq/pinch").id
        self._pads = {self.model.body(f"ur5e/robotiq/{side}_pad").id for side in ("left", "right")}
        self._cube_geom = self.model.geom("object_0").id
        self.action_space = spaces.Box(-1.0, 1.0, shape=(5,), dtype=np.float32)
        self.observation_space = spaces.Dict(
            {
                "pixels": spaces.Box(0, 255, shape=(image_size, image_size, 3), dtype=np.uint8),
                "proprio": spaces.Box(-np.inf, np.inf, shape=(UR5E_2F85.proprio_dim,), dtype=np.float32),
            }
        )
        self.sample: TaskSample | None = None

    # ----------------------------------------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.inner.reset(seed=seed, options={"task_id": self.task.task_id})
        # OGBench steps its goal scene with unseeded random actions, which leaves controls and the solver's warm
        # start behind; clear them so a seed gives one episode (the first step sets every control anyway).
        self.data.ctrl[:] = 0.0
        self.data.qacc_warmstart[:] = 0.0
        mujoco.mj_kinematics(self.model, self.data)
        state = self.state()
        self.sample = TaskSample(state["ee_pos"].copy(), state["cube_pos"].copy(), state["target_pos"].copy())
        return self._observation(), self._info(state, success=False)

    def step(self, action: np.ndarray):
        action = np.asarray(action, dtype=np.float64).reshape(-1)
        if action.shape != (5,):
            raise ValueError(f"action must have 5 entries [dx, dy, dz, dyaw, gripper], got shape {action.shape}")
        if not np.all(np.isfinite(action)):
            raise ValueError(f"action contains NaN or inf: {action.tolist()}")
        action = np.clip(action, -1.0, 1.0)
        u, m, d = self.inner, self.model, self.data
        u.set_control(action)
        u.pre_step()
        n = self.n_substeps
        path, cube_path, grip_path = np.empty((n, 3)), np.empty((n, 3)), np.empty(n)
        for i in range(n):
            mujoco.mj_step(m, d)
            path[i] = d.site_xpos[self._pinch]  # kinematics of the state the substep started from
            cube_path[i], grip_path[i] = d.qpos[self._cube_qpos : self._cube_qpos + 3], self.gripper(d.qpos)
        mujoco.mj_rnePostConstraint(m, d)
        mujoco.mj_kinematics(m, d)
        u.post_step()  # OGBench's success test (CubeEnv._compute_successes) on the state after the step
        path = np.vstack([path[1:], d.site_xpos[self._pinch]])
        success = bool(u._success)
        state = self.state()
        info = self._info(state, success)
        info["ee_path"] = path
        info["substep_states"] = {"ee_pos": path, "cube_pos": cube_path, "gripper": grip_path}
        return self._observation(), float(success), success, False, info

    def render(self) -> np.ndarray | None:
        return self.render_camera(self.render_size, self.camera) if self.render_mode == "rgb_array" else None

    def close(self) -> None:
        for renderer in self._renderers.values():
            renderer.close()
        self._renderers.clear()

    # ----------------------------------------------------------------------------------------------- state
    def gripper(self, qpos: np.ndarray) -> float:
        """Opening fraction (1 open, 0 shut) of a state's ``qpos``: one minus OGBench's closure reading."""
        return 1.0 - float(np.clip(qpos[self._driver] / DRIVER_CLOSED, 0.0, 1.0))

    def state(self) -> dict[str, np.ndarray]:
        """Privileged state: hand (pinch site), cube, target, gripper opening, whether both pads touch the cube."""
        d = self.data
        return {
            "ee_pos": d.site_xpos[self._pinch].copy(),
            "cube_pos": d.qpos[self._cube_qpos : self._cube_qpos + 3].copy(),
            "cube_quat": d.qpos[self._cube_qpos + 3 : self._cube_qpos + 7].copy(),
            "target_pos": d.mocap_pos[0].copy(),
            "gripper": np.array(self.gripper(d.qpos)),
            "grasped": np.array(self._grasped()),
            "arm_qpos": d.qpos[:6].copy(),
        }

    def goal_observation(self, goal: dict[str, np.ndarray] | None = None, view_size: int | None = None):
        """The scene with the cube at its goal (hand where it is), rendered; the live state is restored."""
        goal = self.goal_state() if goal is None else goal
        saved = self.get_state()
        try:
            self.data.qpos[self._cube_qpos : self._cube_qpos + 3] = goal["cube_pos"]
            mujoco.mj_kinematics(self.model, self.data)
            obs = self._observation(pixels=True)
            if view_size is not None:
                obs["view"] = self.render_camera(view_size, self.camera)
            return obs
        finally:
            self.set_state(saved)

    def oracle_control(self) -> SteppedControlSpec:
        """How the oracle world model drives a copy of this scene: OGBench's own controller on its MjData."""
        return SteppedControlSpec(
            n_substeps=self.n_substeps,
            action_dim=UR5E_2F85.action_dim,
            apply=self._apply_on,
            gripper=self.gripper,
            ee_site="ur5e/robotiq/pinch",
            cube_joint="object_joint_0",
        )

    # ----------------------------------------------------------------------------------------------- helpers
    def _apply_on(self, data: mujoco.MjData, action: np.ndarray) -> None:
        """OGBench's ``set_control`` on another ``MjData`` of this model (the oracle's), leaving the env's alone."""
        with self._controlling(data):
            self.inner.set_control(np.clip(np.asarray(action, dtype=np.float64), -1.0, 1.0))

    @contextlib.contextmanager
    def _controlling(self, data: mujoco.MjData) -> Iterator[None]:
        u = self.inner
        saved, pose = u._data, getattr(u, "_target_effector_pose", None)
        u._data = data
        try:
            yield
        finally:
            u._data, u._target_effector_pose = saved, pose

    def _grasped(self) -> bool:
        touching = set()
        for contact in self.data.contact[: self.data.ncon]:
            geoms = {contact.geom1, contact.geom2}
            if self._cube_geom in geoms:
                for g in geoms - {self._cube_geom}:
                    body = int(self.model.geom_bodyid[g])
                    if body in self._pads:
                        touching.add(body)
        return len(touching) == 2

    def _observation(self, pixels: bool | None = None) -> dict[str, np.ndarray]:
        d = self.data
        yaw = self._lie.SO3.from_matrix(d.site_xmat[self._pinch].reshape(3, 3)).compute_yaw_radians()
        rate = -d.qvel[self._driver_dof] / DRIVER_CLOSED
        proprio = np.r_[d.site_xpos[self._pinch], yaw, self.gripper(d.qpos), rate].astype(np.float32)
        size = self.image_size
        use = self.use_pixels if pixels is None else pixels
        frame = self.render_camera(size, self.camera) if use else np.zeros((size, size, 3), dtype=np.uint8)
        return {"pixels": frame, "proprio": proprio}

    def _info(self, state: dict[str, np.ndarray], success: bool) -> dict[str, Any]:
        return {
            "state": state,
            "is_success": success,
            "is_success_first_touch": success,
            "distance": self.task.distance(state),
        }
