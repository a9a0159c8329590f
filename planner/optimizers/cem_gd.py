"""CEM for a global search, then gradient descent to refine CEM's best sample."""

from __future__ import annotations

import torch
from torch import Tensor

from planner.optimizers.base import Bound, BoundedOptimizer, better
from planner.optimizers.cem import CEM
from planner.optimizers.gd import GradientDescent, check_differentiable
from planner.types import ObjectiveFn, Plan


class CEMGD(BoundedOptimizer):
    """CEM followed by :class:`GradientDescent` started from CEM's best sample.

    The refinement is kept only if it is better feasibility first (a refinement that is worse or infeasible
    where CEM's plan was feasible is dropped). The objective must be differentiable: this is checked with one
    single-sample call *before* CEM runs, and :class:`NotDifferentiableError` is raised otherwise (no silent
    fallback to pure CEM: choose ``cem`` explicitly for gradient-free world models such as the MuJoCo oracle).

    Args:
        horizon, action_dim, lower, upper, device, dtype: as for every optimizer.
        num_samples, num_elites, iterations, init_std, min_std, alpha, noise_beta, keep_elites_fraction,
            population_decay, include_mean: passed to :class:`CEM` (same defaults).
        gd_steps, gd_lr, gd_num_starts, gd_init_noise: passed to :class:`GradientDescent` as ``steps``, ``lr``,
            ``num_starts`` and ``init_noise`` (start 0 is CEM's best, exactly).
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
        gd_steps: int = 20,
        gd_lr: float = 0.02,
        gd_num_starts: int = 4,
        gd_init_noise: float = 0.05,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | str = torch.float32,
    ) -> None:
        super().__init__(horizon, action_dim, lower, upper, device, dtype)
        common = dict(horizon=horizon, action_dim=action_dim, lower=lower, upper=upper, device=device, dtype=dtype)
        self.cem = CEM(
            num_samples=num_samples,
            num_elites=num_elites,
            iterations=iterations,
            init_std=init_std,
            min_std=min_std,
            alpha=alpha,
            noise_beta=noise_beta,
            keep_elites_fraction=keep_elites_fraction,
            population_decay=population_decay,
            include_mean=include_mean,
            **common,
        )
        self.gd = GradientDescent(
            steps=gd_steps, lr=gd_lr, num_starts=gd_num_starts, init_noise=gd_init_noise, **common
        )

    def optimize(self, objective: ObjectiveFn, init: Tensor | None, generator: torch.Generator) -> Plan:
        """CEM from ``init [H, A]``, then GD from its best; raises NotDifferentiableError before any CEM work."""
        for inner in (self.cem, self.gd):  # this optimizer's bounds rule its parts (an agent may narrow them per call)
            inner.lower, inner.upper = self.lower, self.upper
        probe = self.initial_mean(init).unsqueeze(0).requires_grad_(True)  # [1, H, A]
        with torch.enable_grad():
            check_differentiable(objective, probe)
        del probe
        coarse = self.cem.optimize(objective, init, generator)
        fine = self.gd.optimize(objective, coarse.actions, generator)
        chosen = fine if better(fine.cost, fine.violation, coarse.cost, coarse.violation) else coarse
        return Plan(
            actions=chosen.actions,
            cost=chosen.cost,
            violation=chosen.violation,
            feasible=chosen.feasible,
            feasible_fraction=coarse.feasible_fraction,
            mean=coarse.mean,
            cost_history=coarse.cost_history
            + (fine.cost_history if chosen is fine else [coarse.cost] * fine.iterations),
            iterations=coarse.iterations + fine.iterations,
        )
