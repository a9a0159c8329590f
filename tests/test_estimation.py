"""The proprio Kalman filter: clean measurements pass through, noisy ones are smoothed, bad input is refused."""

from __future__ import annotations

import numpy as np
import pytest

import envs
from envs.ogbench_cube import UR5E_2F85
from envs.panda_env import PANDA
from planner.apps.filter_check import errors
from planner.estimation import ProprioFilter


def test_clean_proprio_passes_through_unchanged():
    raw, filtered, _ = errors(0.0, seeds=3, tasks=("pick_place", "push"), steps=50)
    assert np.abs(raw).max() == 0.0
    np.testing.assert_allclose(filtered, 0.0, atol=1e-6)  # float32 proprio through float64: exact up to rounding


def test_noisy_fingertip_is_smoothed_and_noise_is_estimated():
    raw, filtered, noise = errors(0.03, seeds=3, tasks=("pick_place",), steps=50)
    raw_rms = np.sqrt((raw[:, :3] ** 2).mean())
    filt_rms = np.sqrt((filtered[:, :3] ** 2).mean())
    assert filt_rms < 0.6 * raw_rms, (filt_rms, raw_rms)
    raw_open, filt_open = np.sqrt((raw[:, 6] ** 2).mean()), np.sqrt((filtered[:, 6] ** 2).mean())
    assert filt_open < 0.7 * raw_open, (filt_open, raw_open)  # the opening: commanded when free, held when blocked
    assert 0.02 < noise["ee_pos"] < 0.045


def test_bad_input_is_refused():
    filt = ProprioFilter.for_embodiment(PANDA)
    with pytest.raises(ValueError, match="expects 8 proprio channels"):
        filt(np.zeros(5), None)
    with pytest.raises(ValueError, match="action_scale"):
        ProprioFilter(0.0, layout=PANDA.proprio, gripper_action=3)
    with pytest.raises(ValueError, match="end_velocity_gain"):
        ProprioFilter(0.05, layout=PANDA.proprio, gripper_action=3)


def test_pixel_filter_passes_clean_frames_and_denoises_still_ones():
    from planner.estimation import PixelFilter

    rng = np.random.default_rng(0)
    scene = rng.integers(40, 215, size=(32, 32, 3)).astype(np.uint8)
    clean = PixelFilter()
    for _ in range(5):
        np.testing.assert_array_equal(clean(scene), scene)
    noisy = PixelFilter()
    for _ in range(10):
        frame = np.clip(scene + rng.normal(0, 8, scene.shape), 0, 255).astype(np.uint8)
        out = noisy(frame)
    raw_rms = np.sqrt(np.mean((frame.astype(float) - scene) ** 2))
    assert np.sqrt(np.mean((out.astype(float) - scene) ** 2)) < 0.5 * raw_rms
    moved = scene.copy()
    moved[:8, :8] = 255 - moved[:8, :8]  # something moves into a corner: it shows up at once, not blended
    frame = np.clip(moved + rng.normal(0, 8, scene.shape), 0, 255).astype(np.uint8)
    out = noisy(frame)
    assert np.abs(out[:8, :8].astype(float) - moved[:8, :8]).mean() < 12
    noisy(np.zeros_like(scene))  # a dropped (black) frame, then the scene again: no dark ghost left behind
    frame = np.clip(moved + rng.normal(0, 8, scene.shape), 0, 255).astype(np.uint8)
    assert np.abs(noisy(frame).astype(float) - moved).mean() < 12


def test_an_action_delay_is_not_mistaken_for_sensor_noise():
    """Clean sensors, but the robot executes the previous command: the prediction errs by centimetres, yet the
    residuals are not white, so the gate stays shut and the measurement passes through."""
    env = envs.make("pick_place", pixels=False)
    base = env.unwrapped
    filt = ProprioFilter.for_embodiment(base.embodiment)
    for seed in range(2):
        rng = np.random.default_rng(seed)
        obs, _ = env.reset(seed=seed)
        policy, commanded, executed = envs.scripted_expert(env), None, np.zeros(4)
        filt.reset()
        for _ in range(50):
            np.testing.assert_allclose(filt(obs["proprio"], commanded), obs["proprio"], atol=1e-6)
            commanded = np.clip(policy(obs) + rng.normal(0.0, 0.3, 4), -1.0, 1.0)
            obs, _, terminated, truncated, _ = env.step(executed)
            executed = commanded
            if terminated or truncated:
                break
        assert not filt.noisy


def test_the_filter_reads_a_second_robots_layout():
    """The UR5e (OGBench cube-single): no velocity channel, a wrist angle, a relative gripper command. Clean sensors
    pass through exactly; 3 cm of noise on the hand is more than halved; the wrist angle passes through."""
    pytest.importorskip("ogbench")
    env = envs.make("cube_single_task1", pixels=False)
    hand = slice(*UR5E_2F85.proprio["ee_pos"])
    for noise, passes in ((0.0, True), (0.03, False)):
        filt = ProprioFilter.for_embodiment(UR5E_2F85)
        raw, filtered = [], []
        for seed in range(2):
            rng = np.random.default_rng(seed)
            obs, _ = env.reset(seed=seed)
            filt.reset()
            last, action = None, np.zeros(UR5E_2F85.action_dim)
            for t in range(40):
                measured = obs["proprio"] + rng.normal(0.0, noise, obs["proprio"].shape)
                estimate = filt(measured, last)
                raw.append(measured - obs["proprio"])
                filtered.append(estimate - obs["proprio"])
                action = np.clip(0.7 * action + rng.normal(0.0, 0.4, action.shape), -1.0, 1.0)
                action[UR5E_2F85.gripper_action] = rng.choice([-1.0, 1.0]) if t % 10 == 0 else 0.0
                obs, *_ = env.step(action)
                last = action.copy()
        raw, filtered = np.array(raw), np.array(filtered)
        if passes:
            np.testing.assert_allclose(filtered, 0.0, atol=1e-6)
        else:
            assert np.sqrt((filtered[:, hand] ** 2).mean()) < 0.5 * np.sqrt((raw[:, hand] ** 2).mean())
            yaw = slice(*UR5E_2F85.proprio["ee_yaw"])
            np.testing.assert_allclose(filtered[:, yaw], raw[:, yaw], atol=1e-6)
    env.close()


def test_fingers_closed_on_the_cube_stay_held_through_noisy_readings():
    # Closing (command -0.73: 1 cm) on a 4 cm cube under 3.1 cm reading noise: a reading below the command must not
    # pass for fingers that closed on nothing (the estimate would jump to 1 cm and the agent regrasp), and the
    # estimate's spread says how far to trust it.
    filt = ProprioFilter.for_embodiment(PANDA)
    rng = np.random.default_rng(0)
    true = np.array([0.5, 0.0, 0.055, 0.0, 0.0, 0.0, 0.08, 0.0])
    hold_open, close = np.array([0.0, 0.0, 0.0, 1.0]), np.array([0.0, 0.0, 0.0, -0.73])
    last = None
    for _ in range(15):  # open fingers, still hand: the filter learns the noise
        filt(true + rng.normal(0.0, 0.031, 8), last)
        last = hold_open
    assert filt.noisy and filt.gripper_std() > 0
    true[6] = 0.04
    estimates, stds = [], []
    for step in range(12):
        reading = true + rng.normal(0.0, 0.031, 8)
        if step == 1:
            reading[6] = -0.005  # a reading far below the commanded 1 cm
        estimates.append(filt(reading, close)[6])
        stds.append(filt.gripper_std())
    assert abs(estimates[-1] - 0.04) < 0.015, estimates
    assert min(estimates[3:]) > 0.02, estimates  # never mistaken for an empty grasp once averaging
    assert stds[-1] < stds[2], stds  # the average grows confident


def test_clean_readings_give_no_gripper_doubt():
    filt = ProprioFilter.for_embodiment(PANDA)
    p = np.array([0.5, 0.0, 0.2, 0.0, 0.0, 0.0, 0.08, 0.0])
    filt(p, None)
    filt(p, np.array([0.0, 0.0, 0.0, 1.0]))
    assert filt.gripper_std() == 0.0 and filt.ee_std() == 0.0
