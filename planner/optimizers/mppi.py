"""Model-predictive path integral (MPPI) control with weights over feasible samples only."""

from __future__ import annotations

import math
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


def mppi_weights(cost: Tensor, violation: Tensor, temperature: float, normalize: bool = True) -> Tensor:
    """Importance weights ``[N]`` (summing to 1) for sanitised ``cost [N]`` and ``violation [N]``.

    - Some sample feasible (``violation <= 0``): ``softmax(-(cost - min) / temperature)`` over the feasible samples,
      0 for the others. With ``normalize`` the shifted costs are divided by their spread (max - min over the
      feasible samples), which makes ``temperature`` scale-free: 0.1 means a sample one tenth of the spread worse
      than the best gets ``1/e`` of its weight.
    - None feasible: all weight on the least-violating sample (ties broken by cost), so the mean moves towards
      feasibility; no violation scale has to be guessed.
    - Every violation infinite (nothing informative): uniform weights.
    """
    feasible = violation <= 0
    if bool(feasible.any()):
        shifted = torch.where(feasible, cost, torch.full_like(cost, math.inf))
        shifted = shifted - shifted.min()
        if normalize:
            spread = torch.where(feasible, shifted, torch.zeros_like(shifted)).max()
            shifted = shifted / spread.clamp_min(torch.finfo(cost.dtype).tiny)
        return torch.softmax(-shifted / temperature, dim=0)  # exp(-inf) = 0 for infeasible samples
    if not bool(torch.isfinite(violation).any()):
        return torch.full_like(cost, 1.0 / cost.numel())
    weights = torch.zeros_like(cost)
    weights[rank(cost, violation)[0]] = 1.0
    return weights


@dataclass(frozen=True)
class MPPISettings(CheckedSettings):
    """MPPI's settings, checked on construction (see :class:`MPPI`)."""

    num_samples: int = count(256, minimum=2)
    iterations: int = count(3)
    noise_std: float = number(0.5)
    temperature: float = number(0.1)
    normalize_costs: bool = flag(True)
    noise_beta: float = number(0.0, high=10.0, low_open=False)
    include_mean: bool = flag(True)
    population_decay: float = number(1.0, low=1.0, low_open=False)
    min_samples: int = count(32, minimum=2)


class MPPI(BoundedOptimizer):
    """MPPI over action sequences ``[H, A]``: perturb the mean, reweight, repeat; feasibility first.

    Each iteration samples ``mean + noise_std * colored_noise`` (clamped; sample 0 is the mean itself when
    ``include_mean``), evaluates them and sets the mean to the :func:`mppi_weights` average of the samples.
    After the last iteration the final mean is evaluated too, and the plan is whichever of {final mean, best
    sample seen} is better feasibility first; its ``cost``/``violation`` are the evaluated ones of those actions.

    Args:
        horizon, action_dim: H and A.
        lower, upper: action bounds, floats, ``[A]`` or ``[H, A]``.
        num_samples: samples N per iteration.
        iterations: reweighting rounds per plan.
        noise_std: perturbation standard deviation, in action units.
        temperature: softmax temperature (relative to the cost spread when ``normalize_costs``).
        normalize_costs: divide costs by their spread before the softmax (see :func:`mppi_weights`).
        noise_beta: colored-noise exponent along H (0 = white Gaussian, classic MPPI).
        include_mean: sample 0 of every iteration is the unperturbed mean.
        device, dtype: where the samples live.
        population_decay: factor >= 1 by which the number of samples shrinks each iteration, as in iCEM
            (1 = constant N, the default); see :meth:`population`.
        min_samples: floor on the number of samples of any iteration when ``population_decay > 1``.
        settings: all of the above but ``horizon, action_dim, lower, upper, device, dtype``, as one
            :class:`MPPISettings` (keywords override its fields).
    """

    Settings = MPPISettings

    def population(self, iteration: int) -> int:
        """Samples drawn in ``iteration`` (0-based): ``max(N / decay**i, min_samples)``, capped at N."""
        return shrinking(self.num_samples, self.population_decay, iteration, self.min_samples)

    @torch.no_grad()
    def optimize(self, objective: ObjectiveFn, init: Tensor | None, generator: torch.Generator) -> Plan:
        """Run the iterations from ``init [H, A]`` (None = centre of the bounds) and return the plan."""
        h, a = self.horizon, self.action_dim
        mean = self.initial_mean(init)  # [H, A]
        best = BestSample(mean)
        feasible_fraction = 0.0
        for it in range(self.iterations):
            n = self.population(it)
            noise = self.noise_std * colored_noise((n, h, a), self.noise_beta, generator, self.device, self.dtype)
            if self.include_mean:
                noise[0] = 0.0
            samples = clamp_bounds(mean + noise, self.lower, self.upper)  # [N, H, A]
            cost, viol = self.evaluate(objective, samples)
            best.offer(samples, cost, viol)
            best.record()
            feasible_fraction = float((viol <= 0).to(self.dtype).mean())
            weights = mppi_weights(cost, viol, self.temperature, self.normalize_costs)  # [N]
            mean = torch.einsum("n,nha->ha", weights, samples)
            del noise, samples, cost, viol, weights
        mean_cost, mean_viol = self.evaluate(objective, mean.unsqueeze(0))
        if best.offer_one(mean, float(mean_cost[0]), float(mean_viol[0])):
            best.history[-1] = best.cost
        return best.plan(feasible_fraction, mean, self.iterations)
