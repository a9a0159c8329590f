"""Shared pieces of the trajectory optimizers: the protocol, sanitising, feasibility-first ranking, noise, bounds,
the settings they are built from and the best-sample tracker they report with."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Sequence
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import Tensor

from planner.types import ObjectiveFn, Plan

Bound = float | Sequence[float] | Tensor


class NotDifferentiableError(TypeError):
    """The objective gives no gradient with respect to the actions, so a gradient planner cannot use it."""


@runtime_checkable
class Optimizer(Protocol):
    """Anything that turns an objective over action sequences into a :class:`Plan`."""

    horizon: int
    action_dim: int

    def optimize(self, objective: ObjectiveFn, init: Tensor | None, generator: torch.Generator) -> Plan:
        """``objective``: actions ``[N, H, A]`` -> (cost ``[N]``, violation ``[N]``); ``init``: ``[H, A]`` mean."""
        ...


def sanitize(cost: Tensor, violation: Tensor) -> tuple[Tensor, Tensor]:
    """Make every sample with a NaN/inf cost or violation infeasible and never a winner.

    cost, violation: ``[N]``. Returns new ``[N]`` tensors: non-finite samples get ``cost = violation = +inf``;
    negative violations (allowed from signed user functions) are clamped to 0, i.e. feasible.
    """
    bad = ~(torch.isfinite(cost) & torch.isfinite(violation))
    inf = torch.full_like(cost, math.inf)
    cost = torch.where(bad, inf, cost)
    violation = torch.where(bad, inf.to(violation.dtype), violation.clamp_min(0.0))
    return cost, violation


def rank(cost: Tensor, violation: Tensor) -> Tensor:
    """Indices ``[N]`` that sort samples feasibility first, lexicographically by ``(violation, cost)``.

    Feasible samples (``violation <= 0``) come first, by increasing cost; then the infeasible ones by increasing
    violation, ties broken by cost. Inputs are expected to be sanitised (see :func:`sanitize`). Stable, so the
    order is deterministic.
    """
    by_cost = torch.sort(cost, stable=True).indices
    viol = violation.clamp_min(0.0)[by_cost]
    return by_cost[torch.sort(viol, stable=True).indices]


def better(cost_a: float, viol_a: float, cost_b: float, viol_b: float) -> bool:
    """Whether sample ``a`` beats ``b`` feasibility first: lower violation, then lower cost."""
    viol_a, viol_b = max(viol_a, 0.0), max(viol_b, 0.0)
    return viol_a < viol_b or (viol_a == viol_b and cost_a < cost_b)


def colored_noise(
    shape: tuple[int, int, int],
    beta: float,
    generator: torch.Generator,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Unit-variance Gaussian noise ``[N, H, A]`` whose power spectrum along H falls as ``1 / f**beta`` (iCEM).

    ``beta = 0`` is white noise; ``beta = 2`` (iCEM's default) gives smooth, low-frequency action sequences.
    Samples are drawn on the generator's device and then moved to ``device``.
    """
    n, h, a = shape
    gen_device = generator.device
    if beta == 0.0 or h < 2:
        return torch.randn(shape, generator=generator, device=gen_device, dtype=dtype).to(device)
    # Timmer & Koenig (1995), as in the `colorednoise` package: Gaussian Fourier coefficients scaled by f^(-beta/2).
    freqs = torch.fft.rfftfreq(h, dtype=torch.float64).clamp_min(1.0 / h)
    scale = freqs.pow(-beta / 2.0)
    # Exact variance of each output sample: the DC (and, for even H, Nyquist) coefficients are real with
    # doubled variance and appear once; every other frequency appears twice (itself and its conjugate).
    var = 4.0 * scale.square()
    var[0] = 2.0 * scale[0].square()
    if h % 2 == 0:
        var[-1] = 2.0 * scale[-1].square()
    sigma = torch.sqrt(var.sum()) / h
    nf = freqs.numel()
    coeff = torch.randn((2, n, a, nf), generator=generator, device=gen_device, dtype=torch.float64)
    real, imag = coeff[0] * scale.to(gen_device), coeff[1] * scale.to(gen_device)
    imag[..., 0] = 0.0
    real[..., 0] *= math.sqrt(2.0)
    if h % 2 == 0:
        imag[..., -1] = 0.0
        real[..., -1] *= math.sqrt(2.0)
    noise = torch.fft.irfft(torch.complex(real, imag), n=h, dim=-1) / sigma.to(gen_device)  # [N, A, H]
    return noise.transpose(1, 2).to(device=device, dtype=dtype).contiguous()


def as_bounds(
    lower: Bound, upper: Bound, horizon: int, action_dim: int, device: torch.device | str, dtype: torch.dtype
) -> tuple[Tensor, Tensor]:
    """Broadcast scalar, ``[A]`` or ``[H, A]`` bounds to two ``[H, A]`` tensors; raise ValueError if invalid."""
    out = []
    for name, value in (("lower", lower), ("upper", upper)):
        t = torch.as_tensor(value, device=device, dtype=dtype)
        try:
            t = torch.broadcast_to(t, (horizon, action_dim)).clone()
        except RuntimeError as err:
            raise ValueError(
                f"{name} bound of shape {tuple(t.shape)} does not broadcast to [H, A] = [{horizon}, {action_dim}]"
            ) from err
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} bound must be finite, got {value!r}")
        out.append(t)
    if not (out[0] < out[1]).all():
        raise ValueError(f"every lower bound must be < its upper bound, got lower={lower!r}, upper={upper!r}")
    return out[0], out[1]


def clamp_bounds(actions: Tensor, lower: Tensor, upper: Tensor) -> Tensor:
    """Clamp actions ``[..., H, A]`` into ``[lower, upper]`` (each ``[H, A]`` or broadcastable)."""
    return torch.maximum(torch.minimum(actions, upper), lower)


def shrinking(num_samples: int, decay: float, iteration: int, floor: int) -> int:
    """iCEM's population schedule: ``max(ceil(num_samples / decay**iteration), floor)``, capped at ``num_samples``."""
    n = int(math.ceil(num_samples / decay**iteration))
    return min(num_samples, max(n, floor))


def check_positive_int(name: str, value: int, minimum: int = 1) -> int:
    """Return ``value`` if it is an int >= ``minimum``, else raise ValueError naming the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def check_float(name: str, value: float, low: float = 0.0, high: float = math.inf, low_open: bool = True) -> float:
    """Return ``float(value)`` if it lies in ``(low, high]`` (``[low, high]`` if not ``low_open``), else ValueError."""
    v = float(value)
    ok = (v > low if low_open else v >= low) and v <= high and math.isfinite(v)
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}]"
        raise ValueError(f"{name} must be a finite number in {interval}, got {value!r}")
    return v


def as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """A torch floating dtype, from itself or its name (``"float32"``, ``"torch.float64"``); ValueError otherwise."""
    if isinstance(dtype, str):
        dtype = getattr(torch, dtype.removeprefix("torch."), None)  # type: ignore[assignment]
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch dtype or its name, got {dtype!r}")
    return dtype


def count(default: int, minimum: int = 1) -> Any:
    """A settings field holding an int >= ``minimum``."""
    return dataclasses.field(default=default, metadata={"check": lambda name, v: check_positive_int(name, v, minimum)})


def number(default: float, low: float = 0.0, high: float = math.inf, low_open: bool = True) -> Any:
    """A settings field holding a finite float in ``(low, high]`` (``[low, high]`` if not ``low_open``)."""
    return dataclasses.field(
        default=default, metadata={"check": lambda name, v: check_float(name, v, low, high, low_open)}
    )


def flag(default: bool) -> Any:
    """A settings field holding a bool."""
    return dataclasses.field(default=default, metadata={"check": lambda name, v: bool(v)})


class CheckedSettings:
    """Base of the optimizers' frozen settings dataclasses: each field declared with :func:`count`, :func:`number`
    or :func:`flag` is checked (and converted) on construction, then :meth:`check` relates fields to each other."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            check = f.metadata.get("check")
            if check is not None:
                object.__setattr__(self, f.name, check(f.name, getattr(self, f.name)))
        self.check()

    def check(self) -> None:
        """Checks across fields; ValueError naming them."""


@dataclasses.dataclass(frozen=True)
class NoSettings(CheckedSettings):
    """An optimizer without settings of its own."""


class BestSample:
    """The best sample an optimizer has evaluated, feasibility first, and the best cost after each iteration.

    ``start [H, A]`` stands until a sample is offered; ``plan`` reports it.
    """

    def __init__(self, start: Tensor) -> None:
        self.actions, self.cost, self.violation = start, math.inf, math.inf
        self.history: list[float] = []  # the best cost after each iteration

    def offer(self, samples: Tensor, cost: Tensor, violation: Tensor, order: Tensor | None = None) -> None:
        """Keep the first-ranked of ``samples [N, H, A]`` (sanitised ``cost``/``violation [N]``; ``order``: their
        :func:`rank`, if already computed) when it beats the best."""
        i0 = int((rank(cost, violation) if order is None else order)[0])
        self.offer_one(samples[i0], float(cost[i0]), float(violation[i0]))

    def offer_one(self, actions: Tensor, cost: float, violation: float) -> bool:
        """Keep ``actions [H, A]`` when they beat the best; whether they did."""
        if not better(cost, violation, self.cost, self.violation):
            return False
        self.actions, self.cost, self.violation = actions.detach().clone(), cost, violation
        return True

    def record(self) -> None:
        """Close an iteration: append the best cost so far to the history."""
        self.history.append(self.cost)

    def plan(self, feasible_fraction: float, mean: Tensor, iterations: int) -> Plan:
        """The :class:`Plan` of the best sample."""
        return Plan(
            actions=self.actions,
            cost=self.cost,
            violation=self.violation,
            feasible=self.violation <= 0.0,
            feasible_fraction=feasible_fraction,
            mean=mean,
            cost_history=self.history,
            iterations=iterations,
        )


class BoundedOptimizer:
    """Common constructor part: horizon, action dimension, action bounds, device and dtype, all validated, and the
    optimizer's own frozen ``settings`` (an instance of the class's ``Settings`` dataclass).

    ``dtype`` may be a name such as ``"float32"`` (for hydra configs). Settings are given whole (``settings=``), as
    keywords (``num_samples=64``: each replaces that field of ``settings`` or of the defaults), or both; each field
    also reads as an attribute (``opt.num_samples``).
    """

    Settings: ClassVar[type] = NoSettings

    def __init__(
        self,
        horizon: int,
        action_dim: int,
        lower: Bound = -1.0,
        upper: Bound = 1.0,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | str = torch.float32,
        *,
        settings: Any = None,
        **overrides: Any,
    ) -> None:
        self.horizon = check_positive_int("horizon", horizon)
        self.action_dim = check_positive_int("action_dim", action_dim)
        self.device = torch.device(device)
        self.dtype = as_dtype(dtype)
        self.lower, self.upper = as_bounds(lower, upper, horizon, action_dim, self.device, self.dtype)  # [H, A] each
        known = {f.name for f in dataclasses.fields(self.Settings)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"{type(self).__name__} got unknown settings {unknown}; known: {', '.join(sorted(known))}")
        if settings is not None and not isinstance(settings, self.Settings):
            raise TypeError(f"{type(self).__name__} needs settings of type {self.Settings.__name__}, got {settings!r}")
        self.settings = (
            dataclasses.replace(settings, **overrides) if settings is not None else self.Settings(**overrides)
        )
        for field in dataclasses.fields(self.settings):  # each field reads as an attribute (opt.num_samples)
            setattr(self, field.name, getattr(self.settings, field.name))
        self.setup()

    def setup(self) -> None:
        """What an optimizer builds from its checked settings and bounds (its parts); nothing by default."""

    def with_bounds(self, lower: Tensor, upper: Tensor) -> BoundedOptimizer:
        """A copy of this optimizer whose bounds are its own intersected with ``lower``/``upper`` (``[A]`` or
        ``[H, A]``); this one is left as it is (an agent narrows the bounds per sub-goal phase this way)."""
        narrowed = copy.copy(self)
        narrowed.lower = torch.maximum(self.lower, lower.to(self.lower))
        narrowed.upper = torch.minimum(self.upper, upper.to(self.upper))
        return narrowed

    def initial_mean(self, init: Tensor | None) -> Tensor:
        """``init [H, A]`` moved to device/dtype and clamped, or the middle of the bounds when None."""
        if init is None:
            return (self.lower + self.upper) / 2.0
        if tuple(init.shape) != (self.horizon, self.action_dim):
            raise ValueError(
                f"init must have shape [H, A] = [{self.horizon}, {self.action_dim}], got {tuple(init.shape)}"
            )
        init = init.detach().to(device=self.device, dtype=self.dtype)
        return clamp_bounds(torch.nan_to_num(init), self.lower, self.upper)

    def evaluate(self, objective: ObjectiveFn, actions: Tensor) -> tuple[Tensor, Tensor]:
        """Call the objective on ``actions [N, H, A]``; check shapes; return sanitised (cost ``[N]``, violation ``[N]``)."""
        cost, violation = objective(actions)
        n = actions.shape[0]
        if cost.shape != (n,) or violation.shape != (n,):
            raise ValueError(
                f"objective must return cost [N] and violation [N] with N={n}, "
                f"got {tuple(cost.shape)} and {tuple(violation.shape)}"
            )
        return sanitize(cost.to(self.dtype), violation.to(self.dtype))
