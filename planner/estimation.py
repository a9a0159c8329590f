"""State estimation in front of the world model: a Kalman filter on the proprio vector whose measurement noise is
learned online, so clean sensors pass through untouched and noisy ones are smoothed.

The filter reads the robot's named proprio layout (``envs.embodiment.Embodiment.proprio``) and models the quantities
the robot's controller rule describes; each channel is a scalar Kalman filter:

- ``ee_pos``: the hand covers ``tracking`` of the commanded displacement (the controller's rule: ``action_scale * a``
  from the current position, clipped to the controller's box);
- ``ee_vel`` (if the robot measures it): the hand ends the step moving at ``end_velocity_gain`` times the commanded
  displacement;
- ``gripper``: under an absolute command, free fingers sit at the commanded opening, fingers closing on something
  stop at an opening the filter holds (unknown for the two steps they take to close); under a relative command the
  opening is held while the command is 0 and unknown while it moves the fingers;
- ``gripper_rate`` (if measured): 0 under a steady command;
- any other named quantity (e.g. a wrist angle) passes through unfiltered.

Variances are kept in units of the noise variance, so the first measurements are averaged 1, 1/2, 1/3, ... however
well the noise is known yet. Measurement noise: ``r = max(mean squared innovation - predicted variance, 0)`` per
quantity, from a running mean (a prior worth a few steps, then exponential). With clean sensors the innovations are
as small as the prediction error, ``r`` stays ~0 and the gain ~1; with noise the gain drops towards ``sqrt(q / r)``.
The robot's motion numbers (``tracking``, ``end_velocity_gain``) are measured per robot and kept with its
embodiment (``Embodiment.motion_model``). What the filter buys on the Panda: ``python -m planner.apps.filter_check``
(figures in BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

# The quantities the filter has a motion model for; anything else in a layout passes through.
MODELLED = ("ee_pos", "ee_vel", "gripper", "gripper_rate")
# Gripper thresholds as fractions of the gripper's range (closed .. open): an absolute command this far below the
# estimated opening means the fingers close onto something (``CLOSE``), they stay blocked while the command is less
# than ``HOLD`` above it, and a command that moves by more than ``MOVE`` moves the fingers.
CLOSE, HOLD, MOVE = 0.125, 0.0625, 0.125


class ProprioFilter:
    """Adaptive scalar Kalman filters on the proprio channels of one robot (build it with ``for_embodiment``).

    Args:
        action_scale: metres of hand motion per action unit (the controller's).
        ee_low / ee_high: the controller's clipping box for the commanded hand position.
        tracking: the fraction of the commanded displacement the hand covers in one control step (a bias here would
            pile up in the estimate under small gains).
        q_ee: variance (m^2) of what the hand prediction misses per step (contacts, lag).
        end_velocity_gain: the hand velocity (m/s) measured at the end of a step per metre of commanded displacement
            (needed when the layout has ``ee_vel``).
        q_vel: variance ((m/s)^2) of what that velocity prediction misses.
        layout: the named proprio quantities ``{name: (start, stop)}``; must have ``ee_pos`` and a one-channel
            ``gripper``.
        gripper_action: the action channel of the gripper command; ``gripper_command``: ``"absolute"`` (the value is
            the opening asked for, linear from ``gripper_closed`` at -1 to ``gripper_open`` at +1) or
            ``"relative"`` (0 keeps the opening).
        q_opening: variance per step of the opening the fingers rest at when something stops them (they keep
            squeezing a little), and of free fingers around the commanded opening.
        q_opening_rate: variance of the opening rate under a steady gripper command (predicted 0 then; unknown for a
            step after the command moves the fingers).
        memory: steps of the running mean of squared innovations once past the first ``memory`` steps.
        r_prior / prior_steps: the measurement noise variance assumed before any innovation is seen, worth this many
            steps of evidence (so the first measurements are averaged rather than trusted outright).
        detect_noise: RMS disagreement (m) above which the sensors count as noisy and the filter acts; below it the
            measurement passes through unchanged (clean runs behave exactly as without the filter). With ``ee_vel``
            the disagreement is between the hand's measured step and its measured velocity (sensors alone, so an
            action delay or a collision does not pass for noise); without it, between the measured step and the
            commanded one.
    """

    def __init__(
        self,
        action_scale: float,
        ee_low: Any = (-np.inf,) * 3,
        ee_high: Any = (np.inf,) * 3,
        tracking: float = 1.0,
        q_ee: float = 0.001**2,
        end_velocity_gain: float | None = None,
        q_vel: float = 0.003**2,
        *,
        layout: Mapping[str, tuple[int, int]],
        gripper_action: int,
        gripper_command: str = "absolute",
        gripper_open: float = 1.0,
        gripper_closed: float = 0.0,
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
        if "ee_pos" not in layout or "gripper" not in layout or np.subtract(*layout["gripper"][::-1]) != 1:
            raise ValueError(f"ProprioFilter needs ee_pos and a one-channel gripper in the layout, got {dict(layout)}")
        if "ee_vel" in layout and end_velocity_gain is None:
            raise ValueError("ProprioFilter: a layout with ee_vel needs end_velocity_gain (the robot's)")
        if gripper_command not in ("absolute", "relative") or not gripper_closed < gripper_open:
            raise ValueError(f"ProprioFilter: bad gripper command {gripper_command!r} or range")
        self.action_scale, self.tracking = float(action_scale), float(tracking)
        self.end_velocity_gain = float(end_velocity_gain or 0.0)
        self.ee_low, self.ee_high = np.asarray(ee_low, dtype=float), np.asarray(ee_high, dtype=float)
        self.groups = {name: slice(*span) for name, span in layout.items() if name in MODELLED}
        self.size = max(stop for _, stop in layout.values())
        self.passed = np.ones(self.size, dtype=bool)  # channels without a motion model: passed through
        process = {"ee_pos": q_ee, "ee_vel": q_vel, "gripper": q_opening, "gripper_rate": q_opening_rate}
        self.q = np.ones(self.size)
        for name, channels in self.groups.items():
            self.q[channels], self.passed[channels] = process[name], False
        self.gripper_action, self.gripper_command = int(gripper_action), gripper_command
        self.gripper_open, self.gripper_closed = float(gripper_open), float(gripper_closed)
        span = self.gripper_open - self.gripper_closed
        self.close_margin, self.hold_margin, self.move_margin = CLOSE * span, HOLD * span, MOVE * span
        self._ee, self._vel = self.groups["ee_pos"], self.groups.get("ee_vel")
        self._grip, self._rate = self.groups["gripper"].start, self.groups.get("gripper_rate")
        self.memory = int(memory)
        self.r_prior, self.prior_steps = float(r_prior), int(prior_steps)
        self.detect_noise = float(detect_noise)
        self.reset()

    @classmethod
    def for_embodiment(cls, embodiment: Any, **kwargs: Any) -> ProprioFilter:
        """The filter for a robot (``envs.embodiment.Embodiment``): its controller rule, proprio layout, gripper
        command and range, and its measured motion model (``motion_model``); ``kwargs`` override any of them."""
        settings: dict[str, Any] = {
            "layout": dict(embodiment.proprio),
            "gripper_action": embodiment.gripper_action,
            "gripper_command": embodiment.gripper_command,
            "gripper_open": embodiment.gripper_open,
            "gripper_closed": embodiment.gripper_closed,
            **embodiment.motion_model,
            **kwargs,
        }
        return cls(embodiment.action_scale, embodiment.ee_low, embodiment.ee_high, **settings)

    def reset(self) -> None:
        """Forget the estimate (start of an episode)."""
        self.estimate: np.ndarray | None = None
        self._p = np.ones(self.size)  # estimate variance in units of the measurement noise variance
        self._noise_sq = {name: self.r_prior for name in self.groups}  # running mean of normalized sq. innovations
        self._samples = {name: self.prior_steps for name in self.groups}
        self._gate_sq, self._gate_samples = 0.0, 0
        self._previous_raw: np.ndarray | None = None
        self.noisy = False  # whether the gate says the sensors are noisy (then the filter acts)
        self._blocked = False  # the fingers rest on something wider than the command (the cube)
        self._blocked_steps = 0
        self._width = self.gripper_open  # the last commanded opening (absolute command)

    def noise_std(self) -> dict[str, float]:
        """The measurement noise (standard deviation) estimated so far, per modelled quantity."""
        return {name: float(np.sqrt(self._noise_sq[name])) for name in self.groups}

    def ee_std(self) -> float:
        """Standard deviation (m) of the hand estimate, the largest of the 3 axes: 0 while the gate passes the
        measurement through (clean sensors), for the safety filter's margin."""
        return self._estimate_std("ee_pos")

    def gripper_std(self) -> float:
        """Standard deviation (same unit as the reading) of the gripper opening estimate: 0 while the gate passes the
        measurement through (clean sensors)."""
        return self._estimate_std("gripper")

    def _estimate_std(self, name: str) -> float:
        """Standard deviation of a modelled quantity's estimate, the largest over its channels (0 with clean sensors)."""
        if not self.noisy or self.estimate is None:
            return 0.0
        return float(np.sqrt(np.max(self._p[self.groups[name]]) * self._noise_sq[name]))

    def _noise_variance(self) -> np.ndarray:
        """The estimated measurement noise variance per channel ``[P]`` (1 where a channel passes through)."""
        r = np.ones(self.size)
        for name, channels in self.groups.items():
            r[channels] = self._noise_sq[name]
        return r

    def _displacement(self, ee: np.ndarray, a: np.ndarray) -> np.ndarray:
        """Where the controller rule moves a hand at ``ee [3]`` under the clipped action ``a``, minus ``ee``."""
        return np.clip(ee + self.action_scale * a[:3], self.ee_low, self.ee_high) - ee

    def _update_gate(self, z: np.ndarray, a: np.ndarray) -> None:
        """The gate: are the sensors noisy? With a measured velocity, judged from the sensors alone (an action delay
        or a collision must not pass for noise): the hand's step ``z_t - z_{t-1}`` and its end-of-step velocity
        agree, ``step = tracking / end_velocity_gain * velocity`` (to ~1 mm RMS on the simulated Panda whatever the
        robot executed), while sensor noise breaks that by tens of mm. Without one, the step is compared with the
        commanded one. Above ``detect_noise`` RMS the filter acts; below it the measurement passes through untouched
        (the gripper models are rougher than clean sensors, and smoothing them cost grasps in clean runs)."""
        previous = self._previous_raw
        self._previous_raw = z[self._ee].copy()
        if previous is None:
            return
        if self._vel is not None:
            residual = (z[self._ee] - previous) - self.tracking / self.end_velocity_gain * z[self._vel]
        else:
            residual = (z[self._ee] - previous) - self.tracking * self._displacement(previous, a)
        self._gate_samples += 1
        rate = max(1.0 / self._gate_samples, 1.0 / self.memory)
        self._gate_sq += rate * (float(np.mean(residual**2)) - self._gate_sq)
        self.noisy = self._gate_samples >= 2 and self._gate_sq > self.detect_noise**2

    def _gripper_prior(self, a: np.ndarray, estimate: float) -> tuple[float | None, bool, bool]:
        """The predicted opening (None: keep the estimate), whether it is unknown this step, whether the command
        moves the fingers."""
        command = float(a[self.gripper_action])
        if self.gripper_command == "relative":  # 0 holds the opening; anything else moves it by an unknown amount
            moved = command != 0.0
            return None, moved, moved
        width = self.gripper_closed + (self.gripper_open - self.gripper_closed) * (command + 1.0) / 2.0
        was_blocked = self._blocked
        moved = abs(width - self._width) > self.move_margin
        opened = width > self._width + self.move_margin
        # Fingers stopped by an object stay stopped until the command opens them: judged from the estimate alone, a
        # noisy reading below the command would pass for fingers that closed on nothing.
        steady = was_blocked and not opened
        self._blocked = (
            width < estimate - self.close_margin or steady or (was_blocked and width < estimate + self.hold_margin)
        )
        self._blocked_steps = self._blocked_steps + 1 if self._blocked else 0
        fresh = 0 < self._blocked_steps <= 2  # the fingers take two steps to close onto the object
        self._width = width
        return (None if self._blocked else width), fresh, moved

    def __call__(self, proprio: np.ndarray, last_action: np.ndarray | None) -> np.ndarray:
        """Filtered proprio ``[P]`` from the measured one and the action executed since the last call (None at the
        first step of an episode, when the measurement is taken as is)."""
        z = np.asarray(proprio, dtype=float).reshape(-1)
        if z.shape != (self.size,):
            raise ValueError(f"ProprioFilter expects {self.size} proprio channels {self.groups}, got shape {z.shape}")
        if not np.all(np.isfinite(z)):
            raise ValueError("ProprioFilter: the measured proprio contains NaN or inf")
        if self.estimate is None or last_action is None:
            self.estimate, self._p = z.copy(), np.ones(self.size)
            self._previous_raw = z[self._ee].copy()
            return self.estimate.copy()
        a = np.asarray(last_action, dtype=float).reshape(-1)
        if a.shape[0] <= max(2, self.gripper_action) or not np.all(np.isfinite(a)):
            raise ValueError(
                f"ProprioFilter expects the last action as finite numbers with a gripper, got {a.tolist()}"
            )
        a = np.clip(a, -1.0, 1.0)
        prior = self.estimate.copy()
        displacement = self._displacement(prior[self._ee], a)
        prior[self._ee] += self.tracking * displacement
        if self._vel is not None:
            prior[self._vel] = self.end_velocity_gain * displacement
        if self._rate is not None:
            prior[self._rate] = 0.0
        # Variances are kept in units of the measurement noise r, so the gain does not depend on how well r is known
        # yet (the first measurements are averaged 1, 1/2, 1/3, ... whatever r turns out to be).
        r_before = self._noise_variance()
        with np.errstate(divide="ignore"):
            p_prior = self._p + self.q / r_before
        # The opening: free fingers sit at the commanded opening within a step; fingers closing on an object stop at
        # its width, held as a constant. Closing below the current opening starts "blocked" afresh: the width is
        # unknown then, and the measurements average it out.
        g = self._grip
        width, fresh, moved = self._gripper_prior(a, float(prior[g]))
        if (fresh or moved) and self._rate is not None:
            p_prior[self._rate] = np.inf
        if fresh:
            p_prior[g] = np.inf
        elif width is not None:
            prior[g], p_prior[g] = width, self.q[g] / max(r_before[g], 1e-300)
        p_prior[self.passed] = np.inf
        innovation = z - prior
        with np.errstate(invalid="ignore"):  # the predicted variance in absolute units: E[innovation^2] - r
            predicted = np.where(r_before > 0, p_prior * r_before, self.q)
        if width is not None:
            predicted[g] = self.q[g]
        for name, channels in self.groups.items():
            if name.startswith("gripper") and (fresh or moved):
                continue  # fingers moving to a new command: the innovation says nothing about the noise
            self._samples[name] += 1
            rate = max(1.0 / self._samples[name], 1.0 / self.memory)  # the exact mean first (prior included)
            excess = float(np.mean(innovation[channels] ** 2 - predicted[channels]))
            self._noise_sq[name] += rate * (max(excess, 0.0) - self._noise_sq[name])
        unknown = np.isinf(p_prior)
        gain = np.where(unknown, 1.0, p_prior / (np.where(unknown, 0.0, p_prior) + 1.0))
        self.estimate = prior + gain * innovation
        with np.errstate(invalid="ignore"):
            self._p = np.where(unknown, 1.0, (1.0 - gain) * p_prior)
        self._update_gate(z, a)
        if not self.noisy:
            self.estimate, self._p = z.copy(), np.ones(self.size)
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
