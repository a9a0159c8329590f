"""Gradient descent (Adam) on action sequences through a differentiable objective, constraints by augmented Lagrangian."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from planner.optimizers.base import (
    BestSample,
    BoundedOptimizer,
    CheckedSettings,
    NotDifferentiableError,
    clamp_bounds,
    count,
    number,
    sanitize,
)
from planner.types import ObjectiveFn, Plan

_NOT_DIFF_HINT = (
    "this world model (e.g. the MuJoCo oracle) gives no gradients with respect to the actions; "
    "use the 'cem' or 'mppi' optimizer instead of a gradient planner ('gd', 'cem_gd')"
)


def augmented_lagrangian(cost: Tensor, violation: Tensor, multiplier: Tensor, penalty: Tensor) -> Tensor:
    """Per-sample augmented Lagrangian ``cost + multiplier * violation + penalty / 2 * violation**2``.

    All inputs ``[S]``; ``violation >= 0`` is the constraint residual (0 = feasible), so this is the equality form
    of the method with a non-negative residual. Returns ``[S]``.
    """
    return cost + multiplier * violation + 0.5 * penalty * violation.square()


def check_differentiable(objective: ObjectiveFn, actions: Tensor) -> tuple[Tensor, Tensor]:
    """Call ``objective`` on ``actions [N, H, A]`` (which must require grad) and make sure the cost has a graph.

    Returns the raw (cost ``[N]``, violation ``[N]``). Raises :class:`NotDifferentiableError` if the cost does not
    depend differentiably on the actions (numpy inside, ``torch.no_grad``, a simulator, ...).
    """
    try:
        cost, violation = objective(actions)
    except RuntimeError as err:
        if "requires grad" in str(err) or "numpy" in str(err).lower():
            raise NotDifferentiableError(f"the objective cannot be differentiated: {_NOT_DIFF_HINT} ({err})") from err
        raise
    if not isinstance(cost, Tensor) or not cost.requires_grad or cost.grad_fn is None:
        raise NotDifferentiableError(f"the objective's cost has no gradient: {_NOT_DIFF_HINT}")
    return cost, violation


@dataclass(frozen=True)
class GDSettings(CheckedSettings):
    """Gradient descent's settings, checked on construction (see :class:`GradientDescent`)."""

    steps: int = count(50)
    lr: float = number(0.05)
    num_starts: int = count(8)
    init_noise: float = number(0.3, low_open=False)
    penalty_init: float = number(10.0, low_open=False)
    penalty_growth: float = number(2.0, low=1.0, low_open=False)
    max_penalty: float = number(1e6)
    multiplier_every: int = count(5)
    bound_mode: Literal["clamp", "tanh"] = "clamp"

    def check(self) -> None:
        if self.bound_mode not in ("clamp", "tanh"):
            raise ValueError(f"bound_mode must be 'clamp' or 'tanh', got {self.bound_mode!r}")


class GradientDescent(BoundedOptimizer):
    """Adam on a batch of starts (``init`` and noisy copies), hard constraints by an augmented Lagrangian.

    Per start s the loss is :func:`augmented_lagrangian` with multiplier ``lambda_s`` (starts at 0) and penalty
    ``mu_s`` (starts at ``penalty_init``). Every ``multiplier_every`` steps, ``lambda_s += mu_s * violation_s`` and,
    for starts still infeasible, ``mu_s *= penalty_growth`` (capped at ``max_penalty``). Actions stay in bounds by
    clamping after each step (``bound_mode="clamp"``) or by ``mid + half * tanh(u)`` (``"tanh"``). Every evaluated
    iterate is a candidate: the plan is the best one seen, feasibility first (the final feasibility check). Samples
    with a NaN/inf cost or violation get no gradient and are never chosen.

    Args:
        horizon, action_dim: H and A.
        lower, upper: action bounds, floats, ``[A]`` or ``[H, A]``.
        steps: Adam steps per plan.
        lr: Adam learning rate, in action units.
        num_starts: parallel starts S: start 0 is ``init``, the others ``init + init_noise * N(0, 1)``.
        init_noise: standard deviation of the extra starts.
        penalty_init, penalty_growth, max_penalty: the quadratic penalty schedule.
        multiplier_every: steps between multiplier/penalty updates.
        bound_mode: ``"clamp"`` or ``"tanh"``.
        device, dtype: where the actions live.
        settings: all of the above but ``horizon, action_dim, lower, upper, device, dtype``, as one
            :class:`GDSettings` (keywords override its fields).
    """

    Settings = GDSettings

    def _to_actions(self, params: Tensor) -> Tensor:
        """Free parameters ``[S, H, A]`` -> actions in bounds ``[S, H, A]``."""
        if self.bound_mode == "tanh":
            mid, half = (self.upper + self.lower) / 2.0, (self.upper - self.lower) / 2.0
            return mid + half * torch.tanh(params)
        return params

    def _to_params(self, actions: Tensor) -> Tensor:
        """Inverse of :meth:`_to_actions` (actions clamped slightly inside the bounds for tanh)."""
        if self.bound_mode == "tanh":
            mid, half = (self.upper + self.lower) / 2.0, (self.upper - self.lower) / 2.0
            return torch.atanh(((actions - mid) / half).clamp(-0.999, 0.999))
        return actions

    def starts(self, init: Tensor | None, generator: torch.Generator) -> Tensor:
        """Initial actions ``[S, H, A]``: ``init`` (or the centre) and ``S - 1`` noisy, clamped copies."""
        mean = self.initial_mean(init)
        noise = torch.randn(
            (self.num_starts, self.horizon, self.action_dim),
            generator=generator,
            device=generator.device,
            dtype=self.dtype,
        ).to(self.device)
        noise[0] = 0.0
        return clamp_bounds(mean + self.init_noise * noise, self.lower, self.upper)

    def optimize(self, objective: ObjectiveFn, init: Tensor | None, generator: torch.Generator) -> Plan:
        """Refine ``init [H, A]`` (None = centre); raises :class:`NotDifferentiableError` for a gradient-free cost."""
        s = self.num_starts
        params = self._to_params(self.starts(init, generator)).requires_grad_(True)  # [S, H, A]
        adam = torch.optim.Adam([params], lr=self.lr)
        multiplier = torch.zeros(s, device=self.device, dtype=self.dtype)
        penalty = torch.full((s,), self.penalty_init, device=self.device, dtype=self.dtype)
        best = BestSample(self.initial_mean(init))
        viol = torch.zeros(s, device=self.device, dtype=self.dtype)
        for step in range(self.steps + 1):
            with torch.enable_grad():
                actions = self._to_actions(params)
                raw_cost, raw_viol = check_differentiable(objective, actions)
                if raw_cost.shape != (s,) or raw_viol.shape != (s,):
                    raise ValueError(
                        f"objective must return cost [N] and violation [N] with N={s}, "
                        f"got {tuple(raw_cost.shape)} and {tuple(raw_viol.shape)}"
                    )
                cost, viol = sanitize(raw_cost.to(self.dtype), raw_viol.to(self.dtype))
            c_det, v_det = cost.detach(), viol.detach()
            best.offer(actions, c_det, v_det)
            if step == self.steps:  # the last iterate is only evaluated (final feasibility check)
                best.history[-1] = best.cost
                break
            best.record()
            finite = torch.isfinite(c_det)
            loss = augmented_lagrangian(cost, viol, multiplier, penalty)
            loss = torch.where(finite, loss, torch.zeros_like(loss)).sum()
            adam.zero_grad(set_to_none=True)
            if loss.requires_grad:
                loss.backward()
                torch.nan_to_num_(params.grad, nan=0.0, posinf=0.0, neginf=0.0)
                adam.step()
            with torch.no_grad():
                if self.bound_mode == "clamp":
                    params.copy_(clamp_bounds(params, self.lower, self.upper))
                if (step + 1) % self.multiplier_every == 0:
                    v = torch.where(finite, v_det, torch.zeros_like(v_det))
                    multiplier += penalty * v
                    penalty = torch.where(v > 0, (penalty * self.penalty_growth).clamp_max(self.max_penalty), penalty)
            del actions, raw_cost, raw_viol, cost, loss
        feasible_fraction = float((viol.detach() <= 0).to(self.dtype).mean())
        return best.plan(feasible_fraction, best.actions, self.steps)
