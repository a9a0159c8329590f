"""Builds the MuJoCo scene: the Franka Panda (gymnasium-robotics' kitchen assets), a table, a cube and a target.

The Panda arm, its meshes and its gripper come from the ``gymnasium_robotics`` wheel (installed offline from PyPI);
we only read its asset files, never its environments (they break on recent MuJoCo).

Control design: the end effector is driven by a *mocap weld*: a kinematic mocap body carries the commanded
end-effector pose and a soft weld equality pulls the gripper site onto it, while the seven arm joints stay fully
simulated (gravity-compensated, damped, joint-limited, colliding). We chose it over operational-space control or
differential IK because (1) the commanded pose is part of MuJoCo's state (``mjSTATE_MOCAP_POS``), so the oracle
world model can roll out hundreds of candidate plans with ``mujoco.rollout`` in C, multithreaded, with no Python
in the physics loop; (2) it is the controller Fetch and many manipulation benchmarks use, so results compare;
(3) it never produces a NaN from a singular Jacobian. The gripper is the Panda's two position-controlled fingers.
"""

from __future__ import annotations

import functools
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

TABLE_HEIGHT = 0.0  # the table top is the world's z = 0 plane; the arm's base stands on it
CUBE_HALF = 0.02  # a 4 cm cube: the Panda's fingers open to 8 cm
FINGER_OPEN = 0.04  # metres per finger at full opening
# The gripper points straight down: the site's z axis along world -z (a half turn about x), yaw 45° so the
# fingers close along world y.
EE_DOWN_QUAT = np.array([0.0, 1.0, 0.0, 0.0])
# A comfortable arm posture with the hand above the table centre, pointing down (found by letting the weld settle).
HOME_QPOS = np.array([0.0, -0.13, 0.0, -2.27, 0.0, 2.14, 0.78])
# The in-hand camera, in the hand body's frame (z runs down the gripper; the fingertip-centre site is at z = 0.21):
# 8 cm off-axis, across the fingers' closing axis, at the height of the hand's base, looking at the fingertips.
WRIST_CAMERA_POS = np.array([0.08 * np.sqrt(0.5), -0.08 * np.sqrt(0.5), 0.09])
WRIST_LOOK_AT = np.array([0.0, 0.0, 0.24])
WRIST_FOVY = 75.0
# Named cameras of the scene: ``front`` (the shipped model's view), ``side``, ``close`` (a nearer, steeper front view)
# and ``wrist`` (in-hand, moves with the gripper).
CAMERAS = ("front", "side", "close", "wrist")


def franka_asset_dir() -> Path:
    """Folder of the Panda assets inside the installed ``gymnasium_robotics`` wheel."""
    spec = importlib.util.find_spec("gymnasium_robotics")  # located, not imported: its import registers envs
    if spec is None or spec.origin is None:
        raise ImportError(
            "jepa-mpc needs the Franka Panda assets of the 'gymnasium-robotics' package: pip install gymnasium-robotics"
        )
    path = Path(spec.origin).parent / "envs" / "assets" / "kitchen_franka" / "franka_assets"
    if not (path / "chain.xml").is_file():
        raise FileNotFoundError(f"Franka Panda assets not found at {path}; reinstall gymnasium-robotics")
    return path


def _include_body(xml_text: str) -> str:
    """Strip the XML comment header and the <mujocoinclude> wrapper of an asset file."""
    xml_text = re.sub(r"<!--.*?-->", "", xml_text, flags=re.S)
    match = re.search(r"<mujocoinclude>(.*)</mujocoinclude>", xml_text, flags=re.S)
    if match is None:
        raise ValueError("unexpected Franka asset file layout: no <mujocoinclude> element")
    return match.group(1)


@dataclass(frozen=True)
class SceneConfig:
    """What varies between scenes: image size and physics rates."""

    width: int = 64
    height: int = 64
    timestep: float = 0.005  # seconds per physics step (implicitfast integrator)


def scene_xml(cfg: SceneConfig = SceneConfig()) -> str:
    """The scene as an MJCF string, meshes loaded from the gymnasium-robotics wheel by absolute path."""
    asset_dir = franka_asset_dir()
    assets = _include_body((asset_dir / "assets.xml").read_text())
    # Drop the include's own compiler/option/size lines: the scene sets those itself.
    assets = re.sub(r"<compiler[^>]*/>|<option[^>]*/>|<size[^>]*/>", "", assets)
    chain = _include_body((asset_dir / "chain.xml").read_text())
    return f"""
<mujoco model="jepa_mpc_panda">
  <compiler angle="radian" meshdir="{asset_dir / "meshes"}" autolimits="true"/>
  <option timestep="{cfg.timestep}" integrator="implicitfast" cone="elliptic" impratio="10"/>
  <visual>
    <global offwidth="{max(cfg.width, 640)}" offheight="{max(cfg.height, 480)}"/>
    <quality shadowsize="0" offsamples="0"/>
    <headlight ambient="0.45 0.45 0.45" diffuse="0.5 0.5 0.5" specular="0 0 0"/>
  </visual>
  {assets}
  <asset>
    <texture name="floor_tex" type="2d" builtin="checker" rgb1=".25 .27 .3" rgb2=".2 .22 .25" width="64" height="64"/>
    <material name="floor_mat" texture="floor_tex" texrepeat="8 8"/>
    <material name="table_mat" rgba=".62 .5 .38 1"/>
    <material name="cube_mat" rgba=".85 .15 .12 1"/>
    <material name="target_mat" rgba=".1 .75 .2 .55"/>
  </asset>
  <worldbody>
    <light name="key" pos=".6 -.6 1.6" dir="-.3 .4 -1" diffuse=".6 .6 .6" castshadow="false"/>
    <geom name="floor" type="plane" pos="0 0 -0.75" size="3 3 .1" material="floor_mat"/>
    <geom name="table" type="box" pos="0.45 0 -0.02" size="0.6 0.6 0.02" material="table_mat" friction="1 0.005 0.0001"/>
    <camera name="front" pos="1.25 0 0.75" xyaxes="0 1 0 -0.655 0 0.755" fovy="45"/>
    <camera name="side" pos="0.5 -1.0 0.55" xyaxes="1 0 0 0 0.45 0.9" fovy="50"/>
    <camera name="close" pos="0.95 0 0.5" xyaxes="0 1 0 -0.707 0 0.707" fovy="50"/>
    {chain}
    <body name="ee_target" mocap="true" pos="0.5 0 0.3" quat="{" ".join(map(str, EE_DOWN_QUAT))}">
      <site name="ee_target_site" size="0.005" rgba="0 0 0 0" group="5"/>
    </body>
    <body name="cube" pos="0.5 0 {CUBE_HALF}">
      <freejoint name="cube_joint"/>
      <geom name="cube_geom" type="box" size="{CUBE_HALF} {CUBE_HALF} {CUBE_HALF}" material="cube_mat" mass="0.05"
            friction="1.5 0.01 0.0001" condim="4" solref="0.01 1"/>
    </body>
    <body name="target" mocap="true" pos="0.5 0.2 0.05">
      <geom name="target_geom" type="sphere" size="0.025" material="target_mat" contype="0" conaffinity="0"/>
    </body>
  </worldbody>
  <equality>
    <weld name="ee_weld" site1="ee_target_site" site2="end_effector" solref="0.02 1" solimp="0.9 0.95 0.001"/>
  </equality>
  <actuator>
    <position name="finger_left" joint="robot:panda0_finger_joint1" kp="800" forcerange="-40 40" ctrlrange="0 0.04"/>
    <position name="finger_right" joint="robot:panda0_finger_joint2" kp="800" forcerange="-40 40" ctrlrange="0 0.04"/>
  </actuator>
</mujoco>
"""


def _wrist_camera_quat() -> np.ndarray:
    """Orientation of the in-hand camera in the hand frame (``panda0_link7``): looking past the fingertips.

    The camera sits beside the hand, off the fingers' closing axis (so the fingers frame the cube instead of hiding
    it), and looks at a point just beyond the fingertip centre; its image x axis runs along the closing axis.
    """
    forward = WRIST_LOOK_AT - WRIST_CAMERA_POS
    forward /= np.linalg.norm(forward)
    x_axis = np.array([np.sqrt(0.5), np.sqrt(0.5), 0.0])  # the fingers' closing axis (fingers are yawed -45 deg)
    x_axis -= forward * (x_axis @ forward)
    x_axis /= np.linalg.norm(x_axis)
    z_axis = -forward  # a MuJoCo camera looks along its -z axis
    y_axis = np.cross(z_axis, x_axis)
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.column_stack([x_axis, y_axis, z_axis]).reshape(-1))
    return quat


def _tune(spec: mujoco.MjSpec) -> None:
    """Gravity-compensate the arm, lighten its joint damping so the weld can move it briskly, mount the wrist camera."""
    hand = spec.body("panda0_link7")
    hand.add_camera(name="wrist", pos=WRIST_CAMERA_POS, quat=_wrist_camera_quat(), fovy=WRIST_FOVY)
    for site in spec.sites:
        if site.name == "end_effector":
            site.rgba = [0, 0, 0, 0]  # keep the control point out of the camera images
    for body in spec.bodies:
        if body.name.startswith("panda0_"):
            body.gravcomp = 1.0
    for joint in spec.joints:
        if joint.name.startswith("robot:panda0_joint"):
            index = int(joint.name[-1]) - 1
            _set_damping(joint, 5.0)
            joint.armature = 0.1
            # A weak spring toward the home posture acts only in the arm's null space (the weld dominates), so
            # the redundant elbow does not drift over an episode.
            _set_scalar(joint, "stiffness", 2.0)
            joint.springref = float(HOME_QPOS[index])
        elif joint.name.startswith("robot:panda0_finger"):
            _set_damping(joint, 10.0)  # the kitchen asset's 100 N·s/m and armature 5 take a second to close
            joint.armature = 0.01


def _set_damping(joint: mujoco.MjsJoint, value: float) -> None:
    _set_scalar(joint, "damping", value)


def _set_scalar(joint: mujoco.MjsJoint, attr: str, value: float) -> None:
    """MuJoCo 4 stores joint damping/stiffness as polynomials [c1, c2, c3]; older versions as one float."""
    current = getattr(joint, attr)
    setattr(joint, attr, np.r_[value, np.zeros(np.size(current) - 1)] if np.ndim(current) else value)


@functools.lru_cache(maxsize=8)
def _compiled_xml(cfg: SceneConfig) -> str:
    spec = mujoco.MjSpec.from_string(scene_xml(cfg))
    _tune(spec)
    spec.compile()
    return spec.to_xml()


def build_model(cfg: SceneConfig = SceneConfig()) -> mujoco.MjModel:
    """A fresh MjModel of the scene (cached XML, so building many is cheap)."""
    spec = mujoco.MjSpec.from_string(scene_xml(cfg))
    _tune(spec)
    return spec.compile()
