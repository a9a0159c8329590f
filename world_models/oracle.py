"""The oracle world model: the MuJoCo simulator itself, batched with ``mujoco.rollout`` (state as latent)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import mujoco
import numpy as np
import torch
from mujoco import rollout as mj_rollout
from torch import Tensor

from world_models.base import Obs

_PHYSICS = mujoco.mjtState.mjSTATE_FULLPHYSICS
_INTEGRATION = mujoco.mjtState.mjSTATE_INTEGRATION
_CONTROL = mujoco.mjtState.mjSTATE_CTRL | mujoco.mjtState.mjSTATE_MOCAP_POS


@dataclass(frozen=True)
class MocapControlSpec:
    """How an action ``[dx, dy, dz, gripper]`` becomes simulator controls (mirrors the env's controller).

    The commanded fingertip position is the measured one plus ``action_scale * a[:3]``, clipped to
    ``[ee_low, ee_high]``; the gripper command maps ``[-1, 1]`` onto each finger's ``[0, finger_open]``.
    """

    n_substeps: int
    action_scale: float
    ee_low: tuple[float, float, float]
    ee_high: tuple[float, float, float]
    finger_open: float = 0.04
    ee_site: str = "end_effector"
    ee_mocap_body: str = "ee_target"
    cube_joint: str = "cube_joint"
    finger_joints: tuple[str, str] = ("robot:panda0_finger_joint1", "robot:panda0_finger_joint2")


class OracleWorldModel:
    """A ``WorldModel`` whose latent is the simulator state; ``rollout`` runs the real physics for every sample.

    Latent layout ``[B, D]`` (float64): ``[physics state (mjSTATE_FULLPHYSICS) | mocap_pos (3 * nmocap) | ee_pos (3)]``.
    It gives exact predictions (an upper bound for learned models) and no gradients: gradient planners refuse it.
    """

    differentiable = False
    action_dim = 4
    reads_pixels = False
    reads_sim_state = True  # encode reads obs["sim_state"]: a privileged reference

    def __init__(self, model: mujoco.MjModel, control: MocapControlSpec, nthread: int | None = None) -> None:
        self.model = model
        self.control = control
        self.nthread = max(1, nthread or os.cpu_count() or 1)
        self._datas = [mujoco.MjData(model) for _ in range(self.nthread)]
        self._scratch = self._datas[0]
        self.n_physics = mujoco.mj_stateSize(model, _PHYSICS)
        self.n_mocap = 3 * model.nmocap
        self.latent_dim = self.n_physics + self.n_mocap + 3
        self._ee_site = model.site(control.ee_site).id
        self._ee_mocap = int(model.body(control.ee_mocap_body).mocapid[0])
        qpos0 = 1  # physics state starts with time, then qpos
        self._cube = qpos0 + int(model.joint(control.cube_joint).qposadr[0])
        self._fingers = [qpos0 + int(model.joint(name).qposadr[0]) for name in control.finger_joints]
        self._low = np.asarray(control.ee_low)
        self._high = np.asarray(control.ee_high)

    # ---------------------------------------------------------------------------------------------- protocol
    def encode(self, obs: Obs) -> Tensor:
        """``obs["sim_state"]``: the env's ``get_state()`` (mjSTATE_INTEGRATION) -> latent ``[1, D]``."""
        if "sim_state" not in obs:
            raise KeyError("the oracle world model needs obs['sim_state'] = env.unwrapped.get_state()")
        state = np.asarray(obs["sim_state"], dtype=np.float64)
        if not np.all(np.isfinite(state)):
            raise ValueError("obs['sim_state'] contains NaN or inf")
        d = self._scratch
        mujoco.mj_setState(self.model, d, state, _INTEGRATION)
        mujoco.mj_kinematics(self.model, d)
        physics = np.empty(self.n_physics)
        mujoco.mj_getState(self.model, d, physics, _PHYSICS)
        z = np.concatenate([physics, d.mocap_pos.reshape(-1), d.site_xpos[self._ee_site]])
        return torch.from_numpy(z)[None]

    @torch.no_grad()
    def rollout(self, z0: Tensor, actions: Tensor) -> Tensor:
        """``z0 [B or 1, D]``, ``actions [N, H, 4]`` -> ``[N, H, D]`` by simulating each sample exactly."""
        if actions.ndim != 3 or actions.shape[-1] != 4:
            raise ValueError(f"actions must be [N, H, 4], got {tuple(actions.shape)}")
        n, horizon, _ = actions.shape
        acts = np.clip(actions.detach().to("cpu", torch.float64).numpy(), -1.0, 1.0)
        z = np.broadcast_to(z0.detach().to("cpu", torch.float64).numpy(), (n, self.latent_dim)).copy()
        physics, mocap, ee = self._split(z)
        out = np.empty((n, horizon, self.latent_dim))
        c = self.control
        for k in range(horizon):
            mocap = mocap.copy()
            mocap[:, 3 * self._ee_mocap : 3 * self._ee_mocap + 3] = np.clip(
                ee + c.action_scale * acts[:, k, :3], self._low, self._high
            )
            grip = (acts[:, k, 3:4] + 1.0) / 2.0 * c.finger_open
            ctrl = np.concatenate([np.repeat(grip, self.model.nu, axis=1), mocap], axis=1)
            states, _ = mj_rollout.rollout(
                self.model,
                self._datas,
                physics,
                np.repeat(ctrl[:, None], c.n_substeps, axis=1),
                control_spec=_CONTROL,
                persistent_pool=True,
            )
            physics = np.ascontiguousarray(states[:, -1])
            ee = self._kinematics(physics)
            out[:, k] = np.concatenate([physics, mocap, ee], axis=1)
        return torch.from_numpy(out).to(actions.device)

    def decode(self, z: Tensor) -> dict[str, Tensor]:
        """Latents ``[..., D]`` -> ``ee_pos [..., 3]``, ``cube_pos [..., 3]``, ``gripper [...]`` (exact)."""
        return {
            "ee_pos": z[..., self.latent_dim - 3 :],
            "cube_pos": z[..., self._cube : self._cube + 3],
            "gripper": z[..., self._fingers[0]] + z[..., self._fingers[1]],
        }

    # ---------------------------------------------------------------------------------------------- helpers
    def _split(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        p, m = self.n_physics, self.n_mocap
        return np.ascontiguousarray(z[:, :p]), z[:, p : p + m], z[:, p + m :]

    def _kinematics(self, physics: np.ndarray) -> np.ndarray:
        """Fingertip positions ``[N, 3]`` of each physics state (forward kinematics, ~2 µs each)."""
        d = self._scratch
        ee = np.empty((physics.shape[0], 3))
        for i, state in enumerate(physics):
            mujoco.mj_setState(self.model, d, state, _PHYSICS)
            mujoco.mj_kinematics(self.model, d)
            ee[i] = d.site_xpos[self._ee_site]
        return ee


@dataclass(frozen=True)
class SteppedControlSpec:
    """A controller that reads the state it acts from (inverse kinematics, a relative gripper), so controls cannot
    be precomputed for a batched rollout: ``apply(data, action)`` writes ``data``'s controls for one control step
    from ``data``'s own state, as the env's controller does, then ``n_substeps`` physics steps follow.

    ``gripper(qpos)`` reads the gripper quantity (the embodiment's units) from a state's ``qpos [nq]``.
    """

    n_substeps: int
    action_dim: int
    apply: Callable[[mujoco.MjData, np.ndarray], None]
    gripper: Callable[[np.ndarray], float]
    ee_site: str
    cube_joint: str


class SteppedOracleWorldModel:
    """The oracle for a robot whose controller reads the state each step: every sample is simulated in turn, the
    env's own controller computing its controls at every control step (exact, no gradients, sequential).

    Latent layout ``[B, D]`` (float64): ``[integration state (mjSTATE_INTEGRATION) | ee_pos (3) | gripper (1)]``.
    """

    differentiable = False
    reads_pixels = False
    reads_sim_state = True  # encode reads obs["sim_state"]: a privileged reference

    def __init__(self, model: mujoco.MjModel, control: SteppedControlSpec) -> None:
        self.model = model
        self.control = control
        self.action_dim = int(control.action_dim)
        self._data = mujoco.MjData(model)
        self.n_state = mujoco.mj_stateSize(model, _INTEGRATION)
        self.latent_dim = self.n_state + 4
        self._ee_site = model.site(control.ee_site).id
        self._cube = 1 + int(model.joint(control.cube_joint).qposadr[0])  # the state starts with time, then qpos

    def encode(self, obs: Obs) -> Tensor:
        """``obs["sim_state"]``: the env's ``get_state()`` (mjSTATE_INTEGRATION) -> latent ``[1, D]``."""
        if "sim_state" not in obs:
            raise KeyError("the oracle world model needs obs['sim_state'] = env.unwrapped.get_state()")
        state = np.asarray(obs["sim_state"], dtype=np.float64)
        if state.shape != (self.n_state,) or not np.all(np.isfinite(state)):
            raise ValueError(f"obs['sim_state'] must be {self.n_state} finite numbers")
        d = self._data
        mujoco.mj_setState(self.model, d, state, _INTEGRATION)
        mujoco.mj_kinematics(self.model, d)  # positions only: mj_forward would overwrite the solver's warm start
        return torch.from_numpy(self._latent(d))[None]

    @torch.no_grad()
    def rollout(self, z0: Tensor, actions: Tensor) -> Tensor:
        """``z0 [B or 1, D]``, ``actions [N, H, A]`` -> ``[N, H, D]``, each sample simulated with the controller."""
        if actions.ndim != 3 or actions.shape[-1] != self.action_dim:
            raise ValueError(f"actions must be [N, H, {self.action_dim}], got {tuple(actions.shape)}")
        n, horizon, _ = actions.shape
        acts = np.clip(actions.detach().to("cpu", torch.float64).numpy(), -1.0, 1.0)
        z = np.broadcast_to(z0.detach().to("cpu", torch.float64).numpy(), (n, self.latent_dim))
        out = np.empty((n, horizon, self.latent_dim))
        m, d, c = self.model, self._data, self.control
        for i in range(n):
            mujoco.mj_setState(m, d, np.ascontiguousarray(z[i, : self.n_state]), _INTEGRATION)
            mujoco.mj_kinematics(m, d)
            for k in range(horizon):
                c.apply(d, acts[i, k])
                mujoco.mj_step(m, d, nstep=c.n_substeps)
                mujoco.mj_kinematics(m, d)
                out[i, k] = self._latent(d)
        return torch.from_numpy(out).to(actions.device)

    def decode(self, z: Tensor) -> dict[str, Tensor]:
        """Latents ``[..., D]`` -> ``ee_pos [..., 3]``, ``cube_pos [..., 3]``, ``gripper [...]`` (exact)."""
        return {
            "ee_pos": z[..., self.n_state : self.n_state + 3],
            "cube_pos": z[..., self._cube : self._cube + 3],
            "gripper": z[..., self.n_state + 3],
        }

    def _latent(self, d: mujoco.MjData) -> np.ndarray:
        state = np.empty(self.n_state)
        mujoco.mj_getState(self.model, d, state, _INTEGRATION)
        return np.concatenate([state, d.site_xpos[self._ee_site], [self.control.gripper(d.qpos)]])


def make_oracle(model: mujoco.MjModel, control: MocapControlSpec | SteppedControlSpec, nthread: int | None = None):
    """The oracle for an env's controller: batched for a mocap hand, sample by sample for a stateful controller."""
    if isinstance(control, SteppedControlSpec):
        return SteppedOracleWorldModel(model, control)
    return OracleWorldModel(model, control, nthread=nthread)
