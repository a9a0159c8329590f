"""State estimation in front of the world model: a Kalman filter on the proprio vector whose measurement noise is
learned online, so clean sensors pass through untouched and noisy ones are smoothed.

Proprio layout (``envs.panda_env``): fingertip position (3), fingertip velocity (3), finger opening (1), opening rate
(1). Each channel is a scalar Kalman filter:

- prediction from the command: the fingertip covers 95 % of the commanded displacement (the controller's rule:
  ``action_scale * a`` from the current position, clipped to the controller's box; right to ~0.2 mm on the simulated
  Panda) and ends the step moving at 1.78/s times it (~1.5 mm/s); free fingers sit at the commanded width, fingers
  closing on something stop at a width the filter holds (unknown for the two steps they take to close); the opening
  rate is 0 under a steady command. Variances are kept in units of the noise variance, so the first measurements are
  averaged 1, 1/2, 1/3, ... however well the noise is known yet;
- measurement noise: ``r = max(mean squared innovation - predicted variance, 0)`` per channel group, from a running
  mean (a prior worth a few steps, then exponential). With clean sensors the innovations are as small as the
  prediction error, ``r`` stays ~0 and the gain ~1; with noise the gain drops towards ``sqrt(q / r)``.

What it buys (``python -m planner.apps.filter_check``, scripted-expert episodes): under 3.1 cm and 3.1 cm/s of sensor
noise the fingertip error drops from 31 to 9 mm RMS, its velocity from 31 to 7.5 mm/s, the opening from 30 to 14 mm;
clean sensors pass through unchanged (see the gate in ``ProprioFilter._update_gate``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

GROUPS = {"ee_pos": slice(0, 3), "ee_vel": slice(3, 6), "opening": slice(6, 7), "opening_rate": slice(7, 8)}


class ProprioFilter:
    """Adaptive scalar Kalman filters on the 8 proprio channels of the Panda tasks.

    Args:
        action_scale: metres of fingertip motion per action unit (the controller's).
        ee_low / ee_high: the controller's clipping box for the commanded fingertip position.
        tracking: the fraction of the commanded displacement the hand covers in one control step (0.95 on the
            simulated Panda, residual ~0.2 mm; a bias here would pile up in the estimate under small gains).
        q_ee: variance (m^2) of what the fingertip prediction misses per step (contacts, lag).
        end_velocity_gain: the fingertip velocity (m/s) measured at the end of a step per metre of commanded
            displacement (1.78 on the simulated Panda, residual ~1.5 mm/s: the hand is settling by then).
        q_vel: variance ((m/s)^2) of what that velocity prediction misses.
        opening_max: finger opening (m) at gripper command +1 (the opening is linear in the command, 0 at -1).
        q_opening: variance (m^2) per step of the width the fingers rest at when something stops them (they keep
            squeezing a little), and of free fingers around the commanded width (they lag it by up to ~1.5 cm).
        q_opening_rate: variance ((m/s)^2) of the opening rate under a steady gripper command (predicted 0 then;
            unknown for a step after the command moves the fingers).
        memory: steps of the running mean of squared innovations once past the first ``memory`` steps.
        r_prior / prior_steps: the measurement noise variance assumed before any innovation is seen, worth this many
            steps of evidence (so the first measurements are averaged rather than trusted outright).
        detect_noise: RMS disagreement (m) between the fingertip's measured step and its measured velocity above
            which the sensors count as noisy and the filter acts; below it the measurement passes through unchanged
            (clean runs behave exactly as without the filter).
    """

    def __init__(
        self,
        action_scale: float,
        ee_low: Sequence[float] = (-np.inf,) * 3,
        ee_high: Sequence[float] = (np.inf,) * 3,
        tracking: float = 0.95,
        q_ee: float = 0.001**2,
        end_velocity_gain: float = 1.78,
        q_vel: float = 0.003**2,
        opening_max: float = 0.08,
        q_opening: float = 0.005**2,
        q_opening_rate: float = 0.005**2,
        memory: int = 20,
        r_prior: float = 0.01**2,
        prior_steps: int = 5,
        detect_noise: float = 0.003,
    ) -> None:
        if not action_scale > 0 or memory < 1:
            raise ValueError(f"ProprioFilter needs action_scale > 0 and memory >= 1, got {action_scale}, {memory}")
        if min(q_ee, q_vel, q_opening, q_opening_rate, r_prior) <= 0:
            raise ValueError("ProprioFilter needs positive process noise variances and r_prior")
        self.action_scale, self.tracking = float(action_scale), float(tracking)
        self.end_velocity_gain = float(end_velocity_gain)
        self.ee_low, self.ee_high = np.asarray(ee_low, dtype=float), np.asarray(ee_high, dtype=float)
        self.q = np.r_[[q_ee] * 3, [q_vel] * 3, q_opening, q_opening_rate].astype(float)
        self.opening_max = float(opening_max)
        self.memory = int(memory)
        self.r_prior, self.prior_steps = float(r_prior), int(prior_steps)
        self.detect_noise = float(detect_noise)
        self.gripper_action = 3  # the action channel of the absolute gripper command (for_embodiment sets it)
        self.reset()

    @classmethod
    def for_embodiment(cls, embodiment: Any, **kwargs: Any) -> ProprioFilter:
        """The filter for a robot (``envs.embodiment.Embodiment``): its controller rule and gripper width. Its motion
        models (``tracking``, ``end_velocity_gain``, ...) are the defaults unless given; it needs the channel
        layout of ``GROUPS`` and an absolute gripper command, and refuses other robots in one line."""
        layout = {"ee_pos": (0, 3), "ee_vel": (3, 6), "gripper": (6, 7), "gripper_rate": (7, 8)}
        if dict(embodiment.proprio) != layout or embodiment.gripper_command != "absolute":
            raise ValueError(
                f"ProprioFilter models proprio {layout} with an absolute gripper command; {embodiment.name} has "
                f"{dict(embodiment.proprio)} and a {embodiment.gripper_command} one (set proprio_filter=false)"
            )
        kwargs.setdefault("opening_max", embodiment.gripper_open)
        filt = cls(embodiment.action_scale, embodiment.ee_low, embodiment.ee_high, **kwargs)
        filt.gripper_action = int(embodiment.gripper_action)
        return filt

    def reset(self) -> None:
        """Forget the estimate (start of an episode)."""
        self.estimate: np.ndarray | None = None
        self._p = np.ones(8)  # estimate variance in units of the measurement noise variance
        self._noise_sq = {name: self.r_prior for name in GROUPS}  # running mean of normalized squared innovations
        self._samples = {name: self.prior_steps for name in GROUPS}
        self._gate_sq, self._gate_samples = 0.0, 0
        self._previous_raw: np.ndarray | None = None
        self.noisy = False  # whether the gate says the sensors are noisy (then the filter acts)
        self._blocked = False  # the fingers rest on something wider than the command (the cube)
        self._blocked_steps = 0
        self._width = self.opening_max  # the last commanded width

    def noise_std(self) -> dict[str, float]:
        """The measurement noise (standard deviation) estimated so far, per channel group."""
        return {name: float(np.sqrt(self._noise_sq[name])) for name in GROUPS}

    def ee_std(self) -> float:
        """Standard deviation (m) of the fingertip estimate, the largest of the 3 axes: 0 while the gate passes the
        measurement through (clean sensors), for the safety filter's margin."""
        if not self.noisy or self.estimate is None:
            return 0.0
        return float(np.sqrt(np.max(self._p[0:3]) * self._noise_sq["ee_pos"]))

    def _noise_variance(self) -> np.ndarray:
        """The estimated measurement noise variance per channel ``[8]``."""
        r = np.empty(8)
        for name, channels in GROUPS.items():
            r[channels] = self._noise_sq[name]
        return r

    def _update_gate(self, z: np.ndarray) -> None:
        """The gate: are the sensors noisy? Judged from the sensors alone, not from the command (an action delay or
        a collision must not pass for noise): the fingertip's step ``z_t - z_{t-1}`` and its end-of-step velocity
        agree, ``step = tracking / end_velocity_gain * velocity`` to ~1 mm RMS on the simulated Panda whatever the
        robot executed, while sensor noise breaks that by tens of mm. Above ``detect_noise`` RMS the filter acts;
        below it the measurement passes through untouched (the opening and rate models are rougher than clean
        sensors, and smoothing them cost grasps in clean runs)."""
        previous = self._previous_raw
        self._previous_raw = z[0:3].copy()
        if previous is None:
            return
        residual = (z[0:3] - previous) - self.tracking / self.end_velocity_gain * z[3:6]
        self._gate_samples += 1
        rate = max(1.0 / self._gate_samples, 1.0 / self.memory)
        self._gate_sq += rate * (float(np.mean(residual**2)) - self._gate_sq)
        self.noisy = self._gate_samples >= 2 and self._gate_sq > self.detect_noise**2

    def __call__(self, proprio: np.ndarray, last_action: np.ndarray | None) -> np.ndarray:
        """Filtered proprio ``[8]`` from the measured one and the action executed since the last call (None at the
        first step of an episode, when the measurement is taken as is)."""
        z = np.asarray(proprio, dtype=float).reshape(-1)
        if z.shape != (8,):
            raise ValueError(f"ProprioFilter expects the 8 Panda proprio channels, got shape {z.shape}")
        if not np.all(np.isfinite(z)):
            raise ValueError("ProprioFilter: the measured proprio contains NaN or inf")
        if self.estimate is None or last_action is None:
            self.estimate, self._p = z.copy(), np.ones(8)
            self._previous_raw = z[0:3].copy()
            return self.estimate.copy()
        a = np.asarray(last_action, dtype=float).reshape(-1)
        if a.shape[0] <= max(2, self.gripper_action) or not np.all(np.isfinite(a)):
            raise ValueError(
                f"ProprioFilter expects the last action as finite numbers with a gripper, got {a.tolist()}"
            )
        a = np.clip(a, -1.0, 1.0)
        prior = self.estimate.copy()
        displacement = np.clip(prior[0:3] + self.action_scale * a[:3], self.ee_low, self.ee_high) - prior[0:3]
        prior[0:3] += self.tracking * displacement
        prior[3:6] = self.end_velocity_gain * displacement
        prior[7] = 0.0
        # Variances are kept in units of the measurement noise r, so the gain does not depend on how well r is known
        # yet (the first measurements are averaged 1, 1/2, 1/3, ... whatever r turns out to be).
        r_before = self._noise_variance()
        with np.errstate(divide="ignore"):
            p_prior = self._p + self.q / r_before
        # The opening: free fingers sit at the commanded width within a step; fingers closing on the cube stop at
        # its width, held as a constant. Closing below the current opening starts "blocked" afresh: the width
        # is unknown then, and the measurements average it out.
        width = self.opening_max * (a[self.gripper_action] + 1.0) / 2.0
        was_blocked = self._blocked
        self._blocked = width < prior[6] - 0.01 or (was_blocked and width < prior[6] + 0.005)
        self._blocked_steps = self._blocked_steps + 1 if self._blocked else 0
        fresh = 0 < self._blocked_steps <= 2  # the fingers take two steps to close onto the cube
        moved = abs(width - self._width) > 0.01
        if fresh or moved:
            p_prior[7] = np.inf
        if fresh:
            p_prior[6] = np.inf
        elif not self._blocked:
            prior[6], p_prior[6] = width, self.q[6] / max(r_before[6], 1e-300)
        innovation = z - prior
        with np.errstate(invalid="ignore"):  # the predicted variance in absolute units: E[innovation^2] - r
            predicted = np.where(r_before > 0, p_prior * r_before, self.q)
        if not self._blocked:
            predicted[6] = self.q[6]
        for name, channels in GROUPS.items():
            if name.startswith("opening") and (fresh or moved):
                continue  # fingers moving to a new command: the innovation says nothing about the noise
            self._samples[name] += 1
            rate = max(1.0 / self._samples[name], 1.0 / self.memory)  # the exact mean first (prior included)
            excess = float(np.mean(innovation[channels] ** 2 - predicted[channels]))
            self._noise_sq[name] += rate * (max(excess, 0.0) - self._noise_sq[name])
        self._width = width
        unknown = np.isinf(p_prior)
        gain = np.where(unknown, 1.0, p_prior / (np.where(unknown, 0.0, p_prior) + 1.0))
        self.estimate = prior + gain * innovation
        with np.errstate(invalid="ignore"):
            self._p = np.where(unknown, 1.0, (1.0 - gain) * p_prior)
        self._update_gate(z)
        if not self.noisy:
            self.estimate, self._p = z.copy(), np.ones(8)
        return self.estimate.copy()


class PixelFilter:
    """A recursive video denoiser with motion detection, for camera noise in front of the encoder.

    Per pixel, the estimate is a running mean of the frames since the pixel last changed (gain ``1/n``, at least
    ``min_gain``); a pixel whose change exceeds ``threshold`` noise standard deviations counts as moving and is
    taken from the new frame as is. The noise is estimated robustly from the frame-to-estimate differences (most
    of the scene is still), so clean frames pass through unchanged (their still pixels do not change at all).
    """

    def __init__(self, threshold: float = 3.0, min_gain: float = 0.125) -> None:
        if not threshold > 0 or not 0 < min_gain <= 1:
            raise ValueError(f"PixelFilter needs threshold > 0 and 0 < min_gain <= 1, got {threshold}, {min_gain}")
        self.threshold, self.min_gain = float(threshold), float(min_gain)
        self.reset()

    def reset(self) -> None:
        self.estimate: np.ndarray | None = None
        self._count: np.ndarray | None = None
        self.noise_std = 0.0  # running estimate of the camera noise (grey levels)
        self._frames = 0

    def _restart(self, frame: np.ndarray, pixels: np.ndarray) -> np.ndarray:
        """Start the running means again from this frame, and pass it through."""
        self.estimate, self._count = frame.copy(), np.ones(frame.shape[:2], dtype=np.float32)
        return np.asarray(pixels).copy()

    def __call__(self, pixels: np.ndarray) -> np.ndarray:
        """The denoised frame, same shape and dtype (uint8) as ``pixels``."""
        frame = np.asarray(pixels, dtype=np.float32)
        if self.estimate is None or self.estimate.shape != frame.shape:
            return self._restart(frame, pixels)
        diff = frame - self.estimate
        change = np.abs(diff).max(axis=-1) if diff.ndim == 3 else np.abs(diff)
        # The median of max_c |N(0, s)| over 3 colour channels is 1.263 s; of |N(0, s)|, 0.6745 s.
        noise_now = float(np.median(change)) / (1.263 if diff.ndim == 3 else 0.6745)
        self._frames += 1
        if noise_now > 3.0 * self.noise_std + 2.0 and self._frames > 1:
            return self._restart(frame, pixels)  # most of it changed at once (a dropped black frame, a light)
        self.noise_std += max(1.0 / self._frames, 0.1) * (noise_now - self.noise_std)
        moving = change > self.threshold * self.noise_std
        self._count = np.where(moving, 1.0, self._count + 1.0)
        gain = np.maximum(1.0 / self._count, self.min_gain)
        if diff.ndim == 3:
            gain = gain[..., None]
            moving = moving[..., None]
        self.estimate = np.where(moving, frame, self.estimate + gain * diff)
        return np.clip(np.rint(self.estimate), 0, 255).astype(np.uint8)
