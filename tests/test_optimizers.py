"""Invariants of the optimizers on a seeded 2-D point mass x_{t+1} = x_t + 0.1 a_t with a quadratic cost to a goal."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import Tensor

from planner.guardrails import GuardrailSet, KeepOutBox, guardrail_from_function
from planner.optimizers import (
    CEM,
    CEMGD,
    MPPI,
    GradientDescent,
    NotDifferentiableError,
    Optimizer,
    augmented_lagrangian,
    colored_noise,
    make_optimizer,
    mppi_weights,
    rank,
    sanitize,
)
from planner.types import ObjectiveFn

H, A = 10, 2
GOAL = torch.tensor([1.0, 0.0])
NAMES = ["cem", "mppi", "gd", "cem_gd"]


def rollout(actions: Tensor) -> Tensor:
    """actions [N, H, 2] -> positions [N, H+1, 3] (z = 0.5), starting at the origin."""
    xy = torch.cat([actions.new_zeros(actions.shape[0], 1, 2), 0.1 * actions.cumsum(dim=1)], dim=1)
    return torch.cat([xy, torch.full_like(xy[..., :1], 0.5)], dim=-1)


def task_cost(actions: Tensor) -> Tensor:
    """Sum over steps 1..H of the squared distance to GOAL: [N]."""
    pos = rollout(actions)[:, 1:, :2]
    return (pos - GOAL.to(actions)).square().sum(dim=(1, 2))


def objective_with(guardrails: GuardrailSet | None = None) -> ObjectiveFn:
    """Objective: task cost plus soft penalties; violation = hard guardrail violation."""

    def objective(actions: Tensor) -> tuple[Tensor, Tensor]:
        cost = task_cost(actions)
        if guardrails is None:
            return cost, torch.zeros_like(cost)
        hard, soft, _ = guardrails.evaluate({"ee_pos": rollout(actions)}, actions)
        return cost + soft, hard

    return objective


def build(name: str, **kwargs: object) -> Optimizer:
    small = {"cem": {}, "mppi": {}, "gd": {}, "cem_gd": {"gd_steps": 10}}[name]
    return make_optimizer(name, horizon=H, action_dim=A, **{**small, **kwargs})


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


ZERO_COST = float(task_cost(torch.zeros(1, H, A))[0])


@pytest.mark.parametrize("name", NAMES)
def test_cost_decreases_and_bounds_hold(name: str) -> None:
    opt = build(name, lower=[-0.8, -0.5], upper=[0.8, 0.5])
    plan = opt.optimize(objective_with(), None, gen())
    hist = plan.cost_history
    assert all(b <= a for a, b in zip(hist, hist[1:], strict=False)), hist
    assert hist[-1] < hist[0] or hist[0] < 0.5 * ZERO_COST
    assert plan.cost < 0.5 * ZERO_COST
    assert plan.feasible and plan.violation == 0.0
    assert plan.actions.shape == (H, A)
    assert (plan.actions[:, 0] <= 0.8 + 1e-6).all() and (plan.actions[:, 1].abs() <= 0.5 + 1e-6).all()
    assert (plan.actions >= -0.8 - 1e-6).all()
    assert plan.cost == pytest.approx(float(task_cost(plan.actions[None])[0]), rel=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_bounds_narrowed_after_construction_rule_every_sample(name: str) -> None:
    """The MPC agent narrows the bounds per sub-goal phase (``with_bounds``, a copy): every optimizer (and its parts)
    must obey, and the original keeps its own."""
    built = build(name)
    upper = built.upper.clone()
    upper[:, 0] = -0.5  # the goal lies at +x: the unconstrained optimum is far outside
    opt = built.with_bounds(built.lower, upper)
    assert (built.upper == 1.0).all()
    seen: list[Tensor] = []

    def objective(actions: Tensor) -> tuple[Tensor, Tensor]:
        seen.append(actions.detach().clone())
        return objective_with()(actions)

    plan = opt.optimize(objective, None, gen())
    assert (plan.actions[:, 0] <= -0.5 + 1e-6).all()
    assert all((a[..., 0] <= -0.5 + 1e-6).all() for a in seen)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_plan(name: str) -> None:
    p1 = build(name).optimize(objective_with(), None, gen(3))
    p2 = build(name).optimize(objective_with(), None, gen(3))
    assert torch.equal(p1.actions, p2.actions) and p1.cost == p2.cost


@pytest.mark.parametrize("name", ["cem", "mppi"])
def test_warm_start_is_never_lost(name: str) -> None:
    best = torch.ones(H, A) * torch.tensor([1.0, 0.0])
    plan = build(name, iterations=1).optimize(objective_with(), best, gen())
    assert plan.cost <= float(task_cost(best[None])[0]) + 1e-6


def test_mppi_weights_sum_to_one_over_feasible_only() -> None:
    g = gen(1)
    cost = torch.rand(64, generator=g) * 10
    viol = torch.where(torch.rand(64, generator=g) < 0.5, torch.rand(64, generator=g), torch.zeros(64))
    cost, viol = sanitize(cost, viol)
    for temperature, normalize in [(0.1, True), (1.0, False), (1e-4, True)]:
        w = mppi_weights(cost, viol, temperature, normalize)
        assert torch.isfinite(w).all() and float(w.sum()) == pytest.approx(1.0)
        assert float(w[viol > 0].sum()) == 0.0
    w = mppi_weights(cost, viol + 1.0, 0.1)  # none feasible: all weight on the least-violating sample
    assert float(w.sum()) == pytest.approx(1.0) and int(w.argmax()) == int(rank(cost, viol + 1.0)[0])
    w = mppi_weights(torch.full((8,), math.inf), torch.full((8,), math.inf), 0.1)
    assert float(w.sum()) == pytest.approx(1.0)


def test_rank_is_feasibility_first_and_sanitize_kills_nan() -> None:
    cost = torch.tensor([0.0, 5.0, float("nan"), 1.0, -3.0, 2.0])
    viol = torch.tensor([0.5, 0.0, 0.0, 0.0, float("inf"), 0.5])
    c, v = sanitize(cost, viol)
    assert math.isinf(c[2]) and math.isinf(v[2]) and math.isinf(c[4])
    assert rank(c, v).tolist() == [3, 1, 0, 5, 4, 2] or rank(c, v).tolist() == [3, 1, 0, 5, 2, 4]


def test_colored_noise_shape_scale_and_smoothness() -> None:
    white = colored_noise((2000, 16, 2), 0.0, gen())
    red = colored_noise((2000, 16, 2), 2.0, gen())
    assert red.shape == (2000, 16, 2) and red.dtype == torch.float32
    assert float(red.std()) == pytest.approx(1.0, abs=0.05)

    def lag1(x: Tensor) -> float:
        return float((x[:, 1:] * x[:, :-1]).mean() / x.var())

    assert lag1(red) > 0.5 > abs(lag1(white))
    assert torch.equal(colored_noise((4, 16, 2), 2.0, gen(5)), colored_noise((4, 16, 2), 2.0, gen(5)))


def test_augmented_lagrangian_gradient_matches_finite_differences() -> None:
    box = GuardrailSet([KeepOutBox([0.1, -0.5, 0.0], [0.9, 0.5, 1.0], bodies=["ee_pos"])])
    objective = objective_with(box)

    def loss(actions: Tensor) -> Tensor:
        cost, viol = objective(actions)
        return augmented_lagrangian(cost, viol, torch.full_like(cost, 0.7), torch.full_like(cost, 3.0))

    actions = (0.6 + 0.3 * torch.rand(2, H, A, generator=gen(2), dtype=torch.float64)).requires_grad_(True)
    assert float(objective(actions.detach())[1].min()) > 0  # inside the box: the constraint term is active
    assert torch.autograd.gradcheck(loss, (actions,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", ["gd", "cem_gd"])
def test_not_differentiable_raises_clear_error(name: str) -> None:
    def numpy_objective(actions: Tensor) -> tuple[Tensor, Tensor]:
        a = actions.detach().numpy()
        cost = torch.from_numpy(np.square(a).sum(axis=(1, 2)))
        return cost, torch.zeros_like(cost)

    def raw_numpy_objective(actions: Tensor) -> tuple[Tensor, Tensor]:
        cost = torch.from_numpy(np.square(actions.numpy()).sum(axis=(1, 2)))
        return cost, torch.zeros_like(cost)

    for fn in (numpy_objective, raw_numpy_objective):
        with pytest.raises(NotDifferentiableError, match="cem.*mppi|mppi"):
            build(name).optimize(fn, None, gen())
    assert issubclass(NotDifferentiableError, TypeError)


@pytest.mark.parametrize("name", NAMES)
def test_keep_out_box_on_the_straight_line_is_avoided(name: str) -> None:
    box = GuardrailSet([KeepOutBox([0.35, -0.15, 0.0], [0.65, 0.15, 1.0], bodies=["ee_pos"])])
    free = build(name).optimize(objective_with(), None, gen())
    assert float(box.evaluate({"ee_pos": rollout(free.actions[None])}, free.actions[None])[0][0]) > 0
    plan = build(name).optimize(objective_with(box), None, gen())
    hard, _, _ = box.evaluate({"ee_pos": rollout(plan.actions[None])}, plan.actions[None])
    assert plan.feasible and plan.violation == 0.0 and float(hard[0]) == 0.0
    assert plan.cost < ZERO_COST


@pytest.mark.parametrize("name", NAMES)
def test_no_feasible_sample_is_flagged(name: str) -> None:
    always = guardrail_from_function(lambda s, a: 1.0 + a.abs().sum(dim=-1), "always_violated")
    plan = build(name).optimize(objective_with(GuardrailSet([always])), None, gen())
    assert not plan.feasible and plan.violation > 0 and math.isfinite(plan.violation)
    assert plan.feasible_fraction == 0.0


@pytest.mark.parametrize("name", NAMES)
def test_nan_costs_are_never_chosen(name: str) -> None:
    def nan_near_goal(actions: Tensor) -> tuple[Tensor, Tensor]:
        cost = task_cost(actions)
        near = (rollout(actions)[:, -1, :2] - GOAL).norm(dim=-1) < 0.5
        cost = torch.where(near, torch.full_like(cost, float("nan")), cost)
        return cost, torch.zeros_like(cost)

    plan = build(name).optimize(nan_near_goal, None, gen())
    assert math.isfinite(plan.cost) and plan.feasible
    assert math.isfinite(float(nan_near_goal(plan.actions[None])[0][0]))


def test_soft_guardrail_adds_cost_not_violation() -> None:
    box = KeepOutBox([0.35, -0.15, 0.0], [0.65, 0.15, 1.0], bodies=["ee_pos"], hard=False, weight=100.0)
    straight = torch.ones(1, H, A) * torch.tensor([1.0, 0.0])
    cost, viol = objective_with(GuardrailSet([box]))(straight)
    depth = box.violation({"ee_pos": rollout(straight)}, straight).sum()
    assert float(viol[0]) == 0.0 and float(depth) > 0
    assert float(cost[0]) == pytest.approx(float(task_cost(straight)[0] + 100.0 * depth))
    plan = CEM(H, A).optimize(objective_with(GuardrailSet([box])), None, gen())
    assert plan.feasible and plan.violation == 0.0


def test_gd_tanh_mode_and_validation() -> None:
    plan = GradientDescent(H, A, lower=-0.5, upper=0.5, bound_mode="tanh").optimize(objective_with(), None, gen())
    assert plan.actions.abs().max() <= 0.5 and plan.cost < ZERO_COST
    with pytest.raises(ValueError, match="bound_mode"):
        GradientDescent(H, A, bound_mode="sigmoid")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="num_elites"):
        CEM(H, A, num_samples=8, num_elites=16)
    with pytest.raises(ValueError, match="lower"):
        MPPI(H, A, lower=1.0, upper=-1.0)
    with pytest.raises(ValueError, match="horizon"):
        CEMGD(0, A)
    with pytest.raises(ValueError, match="init must have shape"):
        CEM(H, A).optimize(objective_with(), torch.zeros(H + 1, A), gen())
    assert CEM(H, A, dtype="float64").optimize(objective_with(), None, gen()).actions.dtype == torch.float64
    with pytest.raises(ValueError, match="dtype"):
        MPPI(H, A, dtype="int32")
    with pytest.raises(KeyError, match="cem, cem_gd, gd, mppi"):
        make_optimizer("ilqr", horizon=H, action_dim=A)


def test_mppi_population_decay_is_optional_and_shrinks() -> None:
    """Default MPPI keeps N samples per iteration; population_decay > 1 shrinks it (floored), iCEM-style."""
    assert [MPPI(H, A, num_samples=64).population(i) for i in range(3)] == [64, 64, 64]
    mppi = MPPI(H, A, num_samples=64, iterations=4, population_decay=2.0, min_samples=10)
    assert [mppi.population(i) for i in range(4)] == [64, 32, 16, 10]
    sizes: list[int] = []

    def objective(actions: Tensor) -> tuple[Tensor, Tensor]:
        sizes.append(actions.shape[0])
        return task_cost(actions), torch.zeros(actions.shape[0])

    plan = mppi.optimize(objective, None, torch.Generator().manual_seed(0))
    assert sizes == [64, 32, 16, 10, 1]  # the last call is the final mean
    assert math.isfinite(plan.cost)
    with pytest.raises(ValueError):
        MPPI(H, A, population_decay=0.5)


def test_with_bounds_narrows_a_copy_and_leaves_the_configured_optimizer_alone():
    from planner.optimizers import CEM

    opt = CEM(horizon=3, action_dim=2, num_samples=16, num_elites=4, iterations=1)
    narrowed = opt.with_bounds(torch.tensor([-1.0, 0.5]), torch.tensor([0.2, 1.0]))
    assert torch.equal(opt.lower, -torch.ones(3, 2)) and torch.equal(opt.upper, torch.ones(3, 2))
    assert narrowed.lower[:, 1].eq(0.5).all() and narrowed.upper[:, 0].eq(0.2).all()
    plan = narrowed.optimize(lambda a: (a.pow(2).sum((1, 2)), a.new_zeros(a.shape[0])), None, torch.Generator())
    assert (plan.actions[:, 1] >= 0.5).all() and (plan.actions[:, 0] <= 0.2).all()


def test_cem_gd_passes_every_cem_setting_through():
    from planner.optimizers import CEMGD

    opt = CEMGD(horizon=2, action_dim=2, keep_elites_fraction=0.0, population_decay=2.0, include_mean=False)
    assert opt.cem.keep_elites_fraction == 0.0 and opt.cem.population_decay == 2.0 and not opt.cem.include_mean


def test_settings_are_one_frozen_object_and_keywords_still_work() -> None:
    from dataclasses import FrozenInstanceError

    from planner.optimizers import CEMSettings

    settings = CEMSettings(num_samples=32, num_elites=4)
    opt = CEM(H, A, settings=settings, iterations=2)  # keywords override fields of settings=
    assert opt.settings == CEMSettings(num_samples=32, num_elites=4, iterations=2) and opt.num_samples == 32
    with pytest.raises(FrozenInstanceError):
        settings.num_samples = 8  # type: ignore[misc]
    with pytest.raises(TypeError, match="unknown settings \\['num_sample'\\]"):
        CEM(H, A, num_sample=32)
    with pytest.raises(ValueError, match="num_elites \\(8\\) must be <= num_samples \\(4\\)"):
        CEMSettings(num_samples=4, num_elites=8)
