"""Cross-entropy method with the iCEM improvements and feasibility-first elites."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from planner.optimizers.base import (
    Bound,
    BoundedOptimizer,
    better,
    check_float,
    check_positive_int,
    clamp_bounds,
    colored_noise,
    rank,
)
from planner.types import ObjectiveFn, Plan


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
    """

    def __init__(
        self,
        horizon: int,
        action_dim: int,
        lower: Bound = -1.0,
        upper: Bound = 1.0,
        num_samples: int = 256,
        num_elites: int = 16,
        iterations: int = 4,
        init_std: float = 0.5,
        min_std: float = 0.05,
        alpha: float = 0.1,
        noise_beta: float = 2.0,
        keep_elites_fraction: float = 0.3,
        population_decay: float = 1.0,
        include_mean: bool = True,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | str = torch.float32,
    ) -> None:
        super().__init__(horizon, action_dim, lower, upper, device, dtype)
        self.num_samples = check_positive_int("num_samples", num_samples, minimum=2)
        self.num_elites = check_positive_int("num_elites", num_elites)
        if num_elites > num_samples:
            raise ValueError(f"num_elites ({num_elites}) must be <= num_samples ({num_samples})")
        self.iterations = check_positive_int("iterations", iterations)
        self.init_std = check_float("init_std", init_std)
        self.min_std = check_float("min_std", min_std, low_open=False)
        if self.min_std > self.init_std:
            raise ValueError(f"min_std ({min_std}) must be <= init_std ({init_std})")
        self.alpha = check_float("alpha", alpha, high=1.0, low_open=False)
        if self.alpha == 1.0:
            raise ValueError("alpha must be < 1, otherwise the distribution never moves")
        self.noise_beta = check_float("noise_beta", noise_beta, high=10.0, low_open=False)
        self.keep_elites_fraction = check_float("keep_elites_fraction", keep_elites_fraction, high=1.0, low_open=False)
        self.population_decay = check_float("population_decay", population_decay, low=1.0, low_open=False)
        self.include_mean = bool(include_mean)

    def population(self, iteration: int) -> int:
        """Samples evaluated in ``iteration`` (0-based): ``max(N / decay**i, 2 * num_elites)``, capped at N."""
        n = int(math.ceil(self.num_samples / self.population_decay**iteration))
        return min(self.num_samples, max(n, 2 * self.num_elites))

    @torch.no_grad()
    def optimize(self, objective: ObjectiveFn, init: Tensor | None, generator: torch.Generator) -> Plan:
        """Run the iterations; ``init [H, A]`` is the initial mean (already shifted by the caller), None = centre.

        The objective is called under ``torch.no_grad`` with actions ``[n, H, A]``, ``n <= num_samples``.
        """
        h, a = self.horizon, self.action_dim
        mean = self.initial_mean(init)  # [H, A]
        std = torch.full_like(mean, self.init_std)  # [H, A]
        kept: Tensor | None = None  # [k, H, A] elites carried over
        best_actions, best_cost, best_viol = mean, math.inf, math.inf
        history: list[float] = []
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
            i0 = int(order[0])
            c0, v0 = float(cost[i0]), float(viol[i0])
            if better(c0, v0, best_cost, best_viol):
                best_actions, best_cost, best_viol = samples[i0].clone(), c0, v0
            history.append(best_cost)
            feasible_fraction = float((viol <= 0).to(self.dtype).mean())
            mean = self.alpha * mean + (1.0 - self.alpha) * elites.mean(dim=0)
            std = self.alpha * std + (1.0 - self.alpha) * elites.std(dim=0, unbiased=False)
            std = std.clamp_min(self.min_std)
            n_keep = int(round(self.keep_elites_fraction * self.num_elites))
            kept = elites[:n_keep].clone() if n_keep > 0 else None
            del samples, cost, viol, order, elites, noise
        return Plan(
            actions=best_actions,
            cost=best_cost,
            violation=best_viol,
            feasible=best_viol <= 0.0,
            feasible_fraction=feasible_fraction,
            mean=mean,
            cost_history=history,
            iterations=self.iterations,
        )
