"""How much the proprio Kalman filter (planner/estimation.py) removes, on scripted-expert episodes with perturbed
actions, without and with Gaussian sensor noise (the obs_noise fault's 8/255 = 3.1 cm / 3.1 cm/s by default).

    .venv/bin/python -m planner.apps.filter_check [--noise 0.0314] [--seeds 5]

Prints the RMS error per proprio channel group, raw and filtered, and the noise the filter estimated.
"""

from __future__ import annotations

import argparse

import numpy as np

import envs
from planner.estimation import ProprioFilter


def errors(
    noise: float, seeds: int, tasks: tuple[str, ...] = ("pick_place", "push"), steps: int = 60
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Raw and filtered proprio errors ``[T, P]`` (measured/estimated minus true) along scripted-expert episodes whose
    actions are perturbed in 30 % of the steps, and the filter's mean noise estimate per channel group."""
    raw, filtered, estimated = [], [], []
    for task in tasks:
        env = envs.make(task, pixels=False)
        base = env.unwrapped
        filt = ProprioFilter.for_embodiment(base.embodiment)
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            obs, _ = env.reset(seed=seed)
            policy, last = envs.scripted_expert(env), None
            filt.reset()
            for _ in range(steps):
                measured = obs["proprio"] + rng.normal(0.0, noise, obs["proprio"].shape)
                raw.append(measured - obs["proprio"])
                filtered.append(filt(measured, last) - obs["proprio"])
                action = policy(obs)
                if rng.random() < 0.3:
                    action = np.clip(action + rng.normal(0.0, 0.4, action.shape), -1.0, 1.0)
                obs, _, terminated, truncated, _ = env.step(action)
                last = action
                if terminated or truncated:
                    break
            estimated.append(filt.noise_std())
    mean_estimate = {k: float(np.mean([e[k] for e in estimated])) for k in filt.groups}
    return np.array(raw), np.array(filtered), mean_estimate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--noise", type=float, default=8.0 / 255.0, help="sensor noise std (m, m/s)")
    parser.add_argument("--seeds", type=int, default=5, help="episodes per task (pick_place and push)")
    args = parser.parse_args()
    print("| sensor noise | channels | raw RMS | filtered RMS | noise estimated |")
    print("|---|---|---|---|---|")
    layout = envs.make("push", pixels=False).unwrapped.embodiment.proprio
    for noise in (0.0, args.noise):
        raw, filtered, estimate = errors(noise, args.seeds)
        for name, (start, stop) in layout.items():
            channels = slice(start, stop)
            rms_raw = 1000 * np.sqrt(np.mean(raw[:, channels] ** 2))
            rms_filtered = 1000 * np.sqrt(np.mean(filtered[:, channels] ** 2))
            unit = "mm/s" if "vel" in name or "rate" in name else "mm"
            print(
                f"| {1000 * noise:.1f} | {name} | {rms_raw:.1f} {unit} | {rms_filtered:.1f} {unit} | "
                f"{1000 * estimate.get(name, np.nan):.1f} {unit} |"
            )


if __name__ == "__main__":
    main()
