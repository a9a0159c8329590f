"""CEM for a global search, then gradient descent to refine CEM's best sample."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from planner.optimizers.base import BoundedOptimizer, better, count, number
from planner.optimizers.cem import CEM, CEMSettings
from planner.optimizers.gd import GradientDescent, check_differentiable
from planner.types import ObjectiveFn, Plan


@dataclass(frozen=True)
class CEMGDSettings(CEMSettings):
    """CEM's settings (same defaults) and those of the refinement (``gd_*``, see :class:`CEMGD`)."""

    gd_steps: int = count(20)
    gd_lr: float = number(0.02)
    gd_num_starts: int = count(4)
    gd_init_noise: float = number(0.05, low_open=False)

    def cem(self) -> CEMSettings:
        """The CEM part."""
        return CEMSettings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(CEMSettings)})

    def gd(self) -> dict[str, Any]:
        """The refinement's settings, as :class:`GradientDescent` keywords."""
        return {
            "steps": self.gd_steps,
            "lr": self.gd_lr,
            "num_starts": self.gd_num_starts,
            "init_noise": self.gd_init_noise,
        }


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
        settings: all of those as one :class:`CEMGDSettings` (keywords override its fields).
    """

    Settings = CEMGDSettings

    def setup(self) -> None:
        """Its parts, on its bounds, device and dtype."""
        common = dict(horizon=self.horizon, action_dim=self.action_dim, lower=self.lower, upper=self.upper)
        common.update(device=self.device, dtype=self.dtype)
        self.cem = CEM(settings=self.settings.cem(), **common)
        self.gd = GradientDescent(**self.settings.gd(), **common)

    def with_bounds(self, lower: Tensor, upper: Tensor) -> CEMGD:
        """A copy narrowed to ``lower``/``upper``, its CEM and refinement with it (see ``BoundedOptimizer``)."""
        narrowed = super().with_bounds(lower, upper)
        assert isinstance(narrowed, CEMGD)
        narrowed.cem, narrowed.gd = self.cem.with_bounds(lower, upper), self.gd.with_bounds(lower, upper)
        return narrowed

    def optimize(self, objective: ObjectiveFn, init: Tensor | None, generator: torch.Generator) -> Plan:
        """CEM from ``init [H, A]``, then GD from its best; raises NotDifferentiableError before any CEM work."""
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
