"""Cross-entropy method with the iCEM improvements and feasibility-first elites."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from planner.optimizers.base import (
    BestSample,
    BoundedOptimizer,
    CheckedSettings,
    clamp_bounds,
    colored_noise,
    count,
    flag,
    number,
    rank,
    shrinking,
)
from planner.types import ObjectiveFn, Plan


@dataclass(frozen=True)
class CEMSettings(CheckedSettings):
    """CEM's settings, checked on construction (see :class:`CEM`)."""

    num_samples: int = count(256, minimum=2)
    num_elites: int = count(16)
    iterations: int = count(4)
    init_std: float = number(0.5)
    min_std: float = number(0.05, low_open=False)
    alpha: float = number(0.1, high=1.0, low_open=False)
    noise_beta: float = number(2.0, high=10.0, low_open=False)
    keep_elites_fraction: float = number(0.3, high=1.0, low_open=False)
    population_decay: float = number(1.0, low=1.0, low_open=False)
    include_mean: bool = flag(True)

    def check(self) -> None:
        if self.num_elites > self.num_samples:
            raise ValueError(f"num_elites ({self.num_elites}) must be <= num_samples ({self.num_samples})")
        if self.min_std > self.init_std:
            raise ValueError(f"min_std ({self.min_std}) must be <= init_std ({self.init_std})")
        if self.alpha == 1.0:
            raise ValueError("alpha must be < 1, otherwise the distribution never moves")


class CEM(BoundedOptimizer):
    """iCEM (Pinneri et al. 2020) over action sequences ``[H, A]`` with hard constraints ranked first.

    Each iteration samples ``mean + std * colored_noise`` (clamped to the bounds), ranks the samples by
    ``(violation, cost)`` (feasible ones first; if fewer than ``num_elites`` are feasible, the least-violating
    fill in), refits mean and std to the elites with momentum ``alpha``, and carries the best
    ``keep_elites_fraction`` of the elites into the next iteration's population. The population shrinks by
    ``population_decay`` per iteration (never below ``2 * num_elites``); the last iteration also evaluates the
    mean itself. The returned plan is the best sample ever evaluated, feasibility first.

    Args:
        horizon, action_dim: H and A.
        lower, upper: action bounds, floats, ``[A]`` or ``[H, A]``.
        num_samples: population size N of the first iteration (kept elites and the mean included).
        num_elites: elites per iteration.
        iterations: refits per plan.
        init_std: initial standard deviation, in action units.
        min_std: floor on the standard deviation.
        alpha: momentum: ``mean <- alpha * mean + (1 - alpha) * elite_mean`` (same for std).
        noise_beta: colored-noise exponent (0 = white, 2 = iCEM default).
        keep_elites_fraction: fraction of elites re-evaluated in the next iteration (0 disables).
        population_decay: factor >= 1 by which the population shrinks each iteration (1 = constant).
        include_mean: evaluate the mean as a sample in the last iteration.
        device, dtype: where the samples live.
        settings: all of the above but the first two lines and ``device, dtype``, as one :class:`CEMSettings`
            (keywords override its fields).
    """

    Settings = CEMSettings

    def population(self, iteration: int) -> int:
        """Samples evaluated in ``iteration`` (0-based): ``max(N / decay**i, 2 * num_elites)``, capped at N."""
        return shrinking(self.num_samples, self.population_decay, iteration, 2 * self.num_elites)

    @torch.no_grad()
    def optimize(self, objective: ObjectiveFn, init: Tensor | None, generator: torch.Generator) -> Plan:
        """Run the iterations; ``init [H, A]`` is the initial mean (already shifted by the caller), None = centre.

        The objective is called under ``torch.no_grad`` with actions ``[n, H, A]``, ``n <= num_samples``.
        """
        h, a = self.horizon, self.action_dim
        mean = self.initial_mean(init)  # [H, A]
        std = torch.full_like(mean, self.init_std)  # [H, A]
        kept: Tensor | None = None  # [k, H, A] elites carried over
        best = BestSample(mean)
        feasible_fraction = 0.0
        for it in range(self.iterations):
            n_total = self.population(it)
            extra = [] if kept is None else [kept]
            if self.include_mean and it == self.iterations - 1:
                extra.append(mean.unsqueeze(0))
            n_new = max(n_total - sum(e.shape[0] for e in extra), 1)
            noise = colored_noise((n_new, h, a), self.noise_beta, generator, self.device, self.dtype)
            samples = torch.cat([clamp_bounds(mean + std * noise, self.lower, self.upper), *extra])  # [n, H, A]
            cost, viol = self.evaluate(objective, samples)
            order = rank(cost, viol)
            elites = samples[order[: self.num_elites]]  # [K, H, A]
            best.offer(samples, cost, viol, order)
            best.record()
            feasible_fraction = float((viol <= 0).to(self.dtype).mean())
            mean = self.alpha * mean + (1.0 - self.alpha) * elites.mean(dim=0)
            std = self.alpha * std + (1.0 - self.alpha) * elites.std(dim=0, unbiased=False)
            std = std.clamp_min(self.min_std)
            n_keep = int(round(self.keep_elites_fraction * self.num_elites))
            kept = elites[:n_keep].clone() if n_keep > 0 else None
            del samples, cost, viol, order, elites, noise
        return best.plan(feasible_fraction, mean, self.iterations)
