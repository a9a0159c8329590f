"""Trajectory optimizers over an objective ``actions [N, H, A] -> (cost [N], violation [N])``, and their registry."""

from __future__ import annotations

from typing import Any

from planner.optimizers.base import (
    NotDifferentiableError,
    Optimizer,
    clamp_bounds,
    colored_noise,
    rank,
    sanitize,
)
from planner.optimizers.cem import CEM, CEMSettings
from planner.optimizers.cem_gd import CEMGD, CEMGDSettings
from planner.optimizers.gd import GDSettings, GradientDescent, augmented_lagrangian, check_differentiable
from planner.optimizers.mppi import MPPI, MPPISettings, mppi_weights
from planner.registry import lookup

OPTIMIZERS: dict[str, type] = {"cem": CEM, "mppi": MPPI, "gd": GradientDescent, "cem_gd": CEMGD}


def make_optimizer(name: str, **kwargs: Any) -> Optimizer:
    """Build the optimizer registered as ``name`` (cem, mppi, gd, cem_gd) with constructor ``kwargs``."""
    return lookup(OPTIMIZERS, "optimizer", name)(**kwargs)


__all__ = [
    "CEM",
    "CEMGD",
    "MPPI",
    "OPTIMIZERS",
    "CEMGDSettings",
    "CEMSettings",
    "GDSettings",
    "GradientDescent",
    "MPPISettings",
    "NotDifferentiableError",
    "Optimizer",
    "augmented_lagrangian",
    "check_differentiable",
    "clamp_bounds",
    "colored_noise",
    "make_optimizer",
    "mppi_weights",
    "rank",
    "sanitize",
]
