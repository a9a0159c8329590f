"""Plain types shared by the optimizers, the guardrails and the MPC agent."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import Tensor

# actions [N, H, A] -> (cost [N], violation [N] >= 0; 0 means every hard guardrail is satisfied)
ObjectiveFn = Callable[[Tensor], tuple[Tensor, Tensor]]


@dataclass
class Plan:
    """What an optimizer returns.

    actions: [H, A] the chosen sequence (the best feasible sample, or the least-violating one if none is feasible).
    cost: scalar cost of ``actions``; violation: its total hard-guardrail violation (0 = feasible).
    feasible: whether ``violation == 0``.
    feasible_fraction: fraction of all evaluated samples (last iteration) that were feasible.
    mean: [H, A] the sampling distribution's mean after the last iteration (for warm starts).
    cost_history: best cost after each iteration (python floats, for tests and plots).
    """

    actions: Tensor
    cost: float
    violation: float
    feasible: bool
    feasible_fraction: float
    mean: Tensor | None = None
    cost_history: list[float] = field(default_factory=list)
    iterations: int = 0
