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
