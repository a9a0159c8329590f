"""Guardrails: hard (or soft) constraints on predicted states and actions, their registry and their evaluation.

State convention: ``states`` maps a name to a tensor ``[N, H+1, ...]``: index 0 is the current (measured or encoded)
state, identical across N, and ``1..H`` are the predicted states after each action of ``actions [N, H, A]``.
Keys: ``"ee_pos" [N, H+1, 3]`` metres, ``"cube_pos" [N, H+1, 3]``, ``"gripper" [N, H+1]`` finger opening.
A guardrail returns its violation ``[N, H] >= 0`` (0 = satisfied); position guardrails judge indices ``1..H``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import Tensor

from planner.registry import lookup

States = Mapping[str, Tensor]
GuardrailFn = Callable[[States, Tensor], Tensor]
Vector = float | Sequence[float] | Tensor


class Guardrail:
    """A constraint on a batch of imagined trajectories. Subclasses implement :meth:`violation`.

    Args:
        name: unique name in a :class:`GuardrailSet` (defaults to the class's registry name or class name).
        hard: a hard constraint (feasibility first in every optimizer) if True, else a penalty term.
        weight: multiplies the summed violation when soft.
    """

    registry_name: str = ""
    # False (the default): a constraint on where things are, judged at every point of a path (the audit: every
    # physics substep; the safety filter: points along each checked segment, widened by its path margin). True: a
    # constraint between two control ticks (a per-step rate such as MaxStepDisplacement), judged on tick states.
    judged_per_tick: bool = False

    def __init__(self, name: str | None = None, hard: bool = True, weight: float = 1.0) -> None:
        self.name = name or self.registry_name or type(self).__name__
        self.hard = bool(hard)
        self.weight = float(weight)
        if not (self.weight >= 0.0 and math.isfinite(self.weight)):
            raise ValueError(f"guardrail {self.name!r}: weight must be a finite number >= 0, got {weight!r}")

    def violation(self, states: States, actions: Tensor) -> Tensor:
        """``states`` values ``[N, H+1, ...]``, ``actions [N, H, A]`` -> violation ``[N, H] >= 0``."""
        raise NotImplementedError

    def signed_margin(self, states: States, actions: Tensor) -> Tensor:
        """Signed distance to the constraint ``[N, H]``: > 0 room left, < 0 violated (for logs and plots).

        The default knows only the violation, so it reports ``-violation`` (0 when satisfied)."""
        return -self.violation(states, actions)

    def get(self, states: States, key: str) -> Tensor:
        """``states[key]``, or a KeyError naming the key, this guardrail and the keys that are there."""
        if key not in states:
            raise KeyError(f"guardrail {self.name!r} needs state {key!r}, but states only has {sorted(states)}")
        return states[key]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, hard={self.hard}, weight={self.weight})"


def _vec(value: Vector, like: Tensor) -> Tensor:
    """A python number/list (or tensor) as a tensor on ``like``'s device and dtype."""
    return torch.as_tensor(value, device=like.device, dtype=like.dtype)


def _plain(value: Vector) -> Vector:
    """A box corner as given, but a sequence (a hydra ListConfig, slow to read) as a list of floats."""
    return value if isinstance(value, Tensor) else [float(v) for v in value]  # type: ignore[union-attr]


def _check_box(owner: str, low: Vector, high: Vector) -> None:
    """Raise ValueError unless ``low`` and ``high`` are finite 3-vectors with ``low < high``."""
    lo, hi = torch.as_tensor(low, dtype=torch.float64), torch.as_tensor(high, dtype=torch.float64)
    ok = lo.shape == (3,) and hi.shape == (3,) and bool(torch.isfinite(lo).all() and torch.isfinite(hi).all())
    if not ok or not bool((lo < hi).all()):
        raise ValueError(
            f"{owner}: low and high must be finite 3-vectors with low < high, got low={low!r}, high={high!r}"
        )


def _finite(owner: str, key: str, value: Any, low: float = -math.inf) -> float:
    """``value`` as a float, or a ValueError naming the parameter: NaN or inf must never reach a comparison, where
    NaN would read as "satisfied"."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{owner}: {key} must be a finite number, got {value!r}") from None
    if not (math.isfinite(out) and out >= low):
        bound = "" if low == -math.inf else f" >= {low:g}"
        raise ValueError(f"{owner}: {key} must be a finite number{bound}, got {value!r}")
    return out


_REGISTRY: dict[str, Callable[..., Guardrail]] = {}
T = TypeVar("T")


def register_guardrail(name: str) -> Callable[[T], T]:
    """Decorator registering a :class:`Guardrail` subclass, or a plain ``fn(states, actions) -> [N, H]``, as ``name``.

    A registered function is built by :func:`make_guardrail` through :func:`guardrail_from_function`.
    """

    def decorate(obj: T) -> T:
        if name in _REGISTRY:
            raise ValueError(f"a guardrail named {name!r} is already registered")
        if isinstance(obj, type) and issubclass(obj, Guardrail):
            obj.registry_name = name
            _REGISTRY[name] = obj
        elif callable(obj):
            fn: GuardrailFn = obj  # type: ignore[assignment]
            _REGISTRY[name] = lambda hard=True, weight=1.0: guardrail_from_function(fn, name, hard, weight)
        else:
            raise TypeError(f"register_guardrail({name!r}) expects a Guardrail subclass or a function, got {obj!r}")
        return obj

    return decorate


def make_guardrail(name: str, **kwargs: Any) -> Guardrail:
    """Build the guardrail registered as ``name`` with ``kwargs``; the error lists the known names."""
    return lookup(_REGISTRY, "guardrail", name)(**kwargs)


class FunctionGuardrail(Guardrail):
    """A guardrail around a plain function ``fn(states, actions) -> [N, H]`` (negative values count as 0)."""

    def __init__(self, fn: GuardrailFn, name: str, hard: bool = True, weight: float = 1.0) -> None:
        super().__init__(name=name, hard=hard, weight=weight)
        self.fn = fn

    def violation(self, states: States, actions: Tensor) -> Tensor:
        v = self.fn(states, actions)
        if not isinstance(v, Tensor):
            return v  # GuardrailSet.evaluate refuses it with a TypeError naming this guardrail
        return torch.where(torch.isfinite(v), v, torch.full_like(v, math.inf)).clamp_min(0.0)  # -inf is no pass


def guardrail_from_function(fn: GuardrailFn, name: str, hard: bool = True, weight: float = 1.0) -> Guardrail:
    """Wrap ``fn(states, actions) -> [N, H]`` as a :class:`Guardrail`."""
    return FunctionGuardrail(fn, name=name, hard=hard, weight=weight)


@register_guardrail("workspace_box")
class WorkspaceBox(Guardrail):
    """Keep ``key`` (default the end effector) inside ``[low + margin, high - margin]``.

    Violation ``[N, H]``: Euclidean distance (metres) from the position to the shrunk box, 0 inside.
    """

    def __init__(
        self,
        low: Vector,
        high: Vector,
        margin: float = 0.0,
        key: str = "ee_pos",
        name: str | None = None,
        hard: bool = True,
        weight: float = 1.0,
    ) -> None:
        super().__init__(name=name, hard=hard, weight=weight)
        _check_box(self.name, low, high)
        self.low, self.high = _plain(low), _plain(high)
        self.margin, self.key = _finite(self.name, "margin", margin, 0.0), key

    def violation(self, states: States, actions: Tensor) -> Tensor:
        pos = self.get(states, self.key)[:, 1:]  # [N, H, 3]
        outside = (_vec(self.low, pos) + self.margin - pos).clamp_min(0) + (
            pos - _vec(self.high, pos) + self.margin
        ).clamp_min(0)
        return torch.linalg.vector_norm(outside, dim=-1)

    def signed_margin(self, states: States, actions: Tensor) -> Tensor:
        pos = self.get(states, self.key)[:, 1:]
        room = torch.minimum(pos - (_vec(self.low, pos) + self.margin), _vec(self.high, pos) - self.margin - pos)
        return room.min(dim=-1).values


@register_guardrail("keep_out_box")
class KeepOutBox(Guardrail):
    """Keep every position in ``bodies`` out of the box ``[low - margin, high + margin]``.

    Violation ``[N, H]``: penetration depth summed over bodies; for one body, the smallest distance (over the
    axes and both faces) it would have to move to leave the box, > 0 strictly inside, 0 outside.

    ``margin`` (default 1 cm) is a planning band, removed by the executed-violation audit. The box's outside is not
    convex, so a straight step judged at ``interpolate`` points can cut a corner between two of them, by at most
    half the spacing along one axis: 6.25 mm for a full 5 cm step at 4 points. The default covers that.
    """

    def __init__(
        self,
        low: Vector,
        high: Vector,
        bodies: Sequence[str] = ("ee_pos", "cube_pos"),
        margin: float = 0.01,
        interpolate: int = 4,
        name: str | None = None,
        hard: bool = True,
        weight: float = 1.0,
    ) -> None:
        super().__init__(name=name, hard=hard, weight=weight)
        _check_box(self.name, low, high)
        if isinstance(bodies, str) or len(bodies) == 0:
            raise ValueError(f"{self.name}: bodies must be a non-empty list of state keys, got {bodies!r}")
        if int(interpolate) < 1:
            raise ValueError(f"{self.name}: interpolate must be >= 1, got {interpolate!r}")
        self.low, self.high, self.bodies = _plain(low), _plain(high), tuple(bodies)
        self.margin = _finite(self.name, "margin", margin, 0.0)
        self.interpolate = int(interpolate)

    def _inside_by(self, pos: Tensor) -> Tensor:
        """Signed depth ``[...]`` of positions ``[..., 3]`` in the widened box: > 0 inside, < 0 outside by this much
        along some axis."""
        into = torch.minimum(pos - (_vec(self.low, pos) - self.margin), _vec(self.high, pos) + self.margin - pos)
        return into.min(dim=-1).values

    def _depth(self, pos: Tensor) -> Tensor:
        """Penetration depth ``[...]`` of positions ``[..., 3]`` (0 outside)."""
        return self._inside_by(pos).clamp_min(0)

    def violation(self, states: States, actions: Tensor) -> Tensor:
        """Deepest penetration along each step's straight segment (``interpolate`` points per step), so a fast
        step cannot cut a corner of the box between two states that are both outside it."""
        total: Tensor | None = None
        frac = torch.arange(1, self.interpolate + 1, dtype=actions.dtype, device=actions.device) / self.interpolate
        for key in self.bodies:
            path = self.get(states, key)  # [N, H+1, 3]
            start, end = path[:, :-1, None], path[:, 1:, None]  # [N, H, 1, 3]
            points = start + frac.to(path.dtype)[:, None] * (end - start)  # [N, H, K, 3]
            depth = self._depth(points).amax(dim=-1)  # [N, H]
            total = depth if total is None else total + depth
        assert total is not None
        return total

    def signed_margin(self, states: States, actions: Tensor) -> Tensor:
        out: Tensor | None = None
        for key in self.bodies:
            room = -self._inside_by(self.get(states, key)[:, 1:])  # > 0: outside by at least this along some axis
            out = room if out is None else torch.minimum(out, room)
        assert out is not None
        return out


@register_guardrail("min_height")
class MinHeight(Guardrail):
    """Keep the z coordinate of ``key`` (default the end effector) at or above ``z_min + margin``; violation in
    metres. ``margin`` is a planning band the audit removes. Its default is 0: the allowed half-space is convex, so a
    straight step between two allowed points stays allowed, and what the real path adds (its curve between ticks,
    an action in flight, sensor noise) is covered by the safety filter's path margin on the hand
    (the robot's ``Embodiment.path_margin`` unless ``planner.mpc.AgentConfig.path_margin`` overrides it), which applies to every guardrail, custom ones included."""

    def __init__(
        self,
        z_min: float,
        key: str = "ee_pos",
        margin: float = 0.0,
        name: str | None = None,
        hard: bool = True,
        weight: float = 1.0,
    ) -> None:
        super().__init__(name=name, hard=hard, weight=weight)
        self.z_min, self.key = _finite(self.name, "z_min", z_min), key
        self.margin = _finite(self.name, "margin", margin, 0.0)

    def violation(self, states: States, actions: Tensor) -> Tensor:
        return (self.z_min + self.margin - self.get(states, self.key)[:, 1:, 2]).clamp_min(0)

    def signed_margin(self, states: States, actions: Tensor) -> Tensor:
        return self.get(states, self.key)[:, 1:, 2] - self.z_min - self.margin


@register_guardrail("max_step_displacement")
class MaxStepDisplacement(Guardrail):
    """Limit how far ``key`` (default the end effector) moves per step: violation ``|p_t - p_{t-1}| - max_step``."""

    judged_per_tick = True  # a rate between control ticks, not a region: judged on tick states

    def __init__(
        self, max_step: float, key: str = "ee_pos", name: str | None = None, hard: bool = True, weight: float = 1.0
    ) -> None:
        super().__init__(name=name, hard=hard, weight=weight)
        self.max_step, self.key = _finite(self.name, "max_step", max_step, 0.0), key
        if not self.max_step > 0:
            raise ValueError(f"{self.name}: max_step must be a finite number > 0, got {max_step!r}")

    def violation(self, states: States, actions: Tensor) -> Tensor:
        pos = self.get(states, self.key)  # [N, H+1, 3]
        step = torch.linalg.vector_norm(pos[:, 1:] - pos[:, :-1], dim=-1)  # [N, H]
        return (step - self.max_step).clamp_min(0)

    def signed_margin(self, states: States, actions: Tensor) -> Tensor:
        pos = self.get(states, self.key)
        return self.max_step - torch.linalg.vector_norm(pos[:, 1:] - pos[:, :-1], dim=-1)


class GuardrailSet:
    """An ordered collection of uniquely named guardrails, evaluated together.

    Accepts a list of guardrails or a mapping (as hydra builds from a config group); ``None`` means none.
    """

    def __init__(self, guardrails: Iterable[Guardrail] | Mapping[str, Guardrail] | None = None) -> None:
        items = list(guardrails.values() if isinstance(guardrails, Mapping) else (guardrails or []))
        names = [g.name for g in items]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"guardrail names must be unique; repeated: {duplicates}")
        for g in items:
            if not isinstance(g, Guardrail):
                raise TypeError(f"expected Guardrail instances, got {g!r}")
        self.guardrails: list[Guardrail] = items

    def __len__(self) -> int:
        return len(self.guardrails)

    def __iter__(self) -> Iterator[Guardrail]:
        return iter(self.guardrails)

    def evaluate(self, states: States, actions: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        """Evaluate every guardrail on ``states`` (values ``[N, H+1, ...]``) and ``actions [N, H, A]``.

        Returns ``hard_violation [N]`` (sum over hard guardrails and steps), ``soft_penalty [N]`` (sum over soft
        guardrails of ``weight * violation`` summed over steps) and the per-guardrail violations ``{name: [N, H]}``.
        A NaN or infinite violation counts as +inf (never as satisfied).
        """
        n, h = actions.shape[0], actions.shape[1]
        hard = actions.new_zeros(n)
        soft = actions.new_zeros(n)
        per: dict[str, Tensor] = {}
        for g in self.guardrails:
            v = g.violation(states, actions)
            if not isinstance(v, Tensor):
                raise TypeError(
                    f"guardrail {g.name!r} returned {type(v).__name__}; violation() must return a torch tensor [N, H]"
                )
            if v.shape != (n, h):
                raise ValueError(f"guardrail {g.name!r} returned shape {tuple(v.shape)}, expected [N, H] = [{n}, {h}]")
            v = v.to(actions.dtype)
            v = torch.where(torch.isfinite(v), v, torch.full_like(v, math.inf)).clamp_min(0)  # NaN, -inf: +inf
            per[g.name] = v
            if g.hard:
                hard = hard + v.sum(dim=1)
            else:
                soft = soft + g.weight * v.sum(dim=1)
        return hard, soft, per


class _LazyStates(Mapping[str, Tensor]):
    """A states mapping whose values are built on first access (and kept), so a large entry no guardrail reads,
    such as the latents, is never copied."""

    def __init__(self, keys: list[str], build: Callable[[str], Tensor]) -> None:
        self._keys, self._build, self._built = keys, build, {}

    def __getitem__(self, key: str) -> Tensor:
        if key not in self._keys:
            raise KeyError(key)
        if key not in self._built:
            self._built[key] = self._build(key)
        return self._built[key]

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


# Offsets of a cube around a point, in units of the margin: its 27 lattice points (corners, edge and face centres,
# the centre). A region the point must stay out of or inside, with faces along the axes (a box, a floor, a ceiling)
# and no thinner than the margin, meets the cube only if it holds one of them, so checking these 27 points checks
# the whole cube, and with it the ball of radius ``margin`` around the point.
_LATTICE = torch.cartesian_prod(*[torch.tensor([-1.0, 0.0, 1.0])] * 3)  # [27, 3]


def widened_path_violation(
    guardrails: GuardrailSet | Iterable[Guardrail],
    states: States,
    actions: Tensor,
    margin: float | Tensor,
    key: str = "ee_pos",
    points: int = 4,
    reach: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Hard violations of a commanded path, widened by ``margin`` around ``key`` (the controlled body).

    ``states`` values ``[N, H+1, ...]`` (index 0 the start), ``actions [N, H, A]``, ``margin`` metres (a number or
    ``[N, H]``). A guardrail judged along a path is judged at ``points`` points of each step's straight segment,
    each widened to the 27 lattice points of a cube of half-width ``margin``; the real path, within ``margin`` of
    that segment, cannot then cross it unnoticed. ``reach`` (``low [3]``, ``high [3]``): a box the body cannot leave
    whatever the estimate says (the controller's clipping box grown by its tracking margin); the widened points are
    clamped into it, so an uncertain estimate does not forbid what the controller itself rules out. Guardrails judged
    per tick see ``states`` as they are. Soft guardrails are not judged here. Returns ``hard [N]`` (summed over
    guardrails and steps) and ``{name: [N, H]}``; NaN or inf count as +inf.
    """
    gset = guardrails if isinstance(guardrails, GuardrailSet) else GuardrailSet(guardrails)
    hard_guards = [g for g in gset if g.hard]
    n, h = actions.shape[0], actions.shape[1]
    total = actions.new_zeros(n)
    per: dict[str, Tensor] = {}
    if not hard_guards:
        return total, per
    per_tick = GuardrailSet([g for g in hard_guards if g.judged_per_tick])
    along = GuardrailSet([g for g in hard_guards if not g.judged_per_tick])
    if len(per_tick):
        _, _, per = per_tick.evaluate(states, actions)
    if len(along):
        ee = states[key]  # [N, H+1, 3]
        frac = torch.arange(1, points + 1, dtype=ee.dtype, device=ee.device) / points  # [K]
        start, end = ee[:, :-1, None], ee[:, 1:, None]  # [N, H, 1, 3]
        along_path = start + frac[:, None] * (end - start)  # [N, H, K, 3]
        m = torch.as_tensor(margin, dtype=ee.dtype, device=ee.device)
        m = m.expand(n, h) if m.dim() == 2 else m.expand(n, h).clone()
        offsets = _LATTICE.to(ee.device, ee.dtype)  # [27, 3]
        widened = along_path[:, :, :, None] + m[:, :, None, None, None] * offsets  # [N, H, K, 27, 3]
        if reach is not None:
            # Clamping a lattice cube into a box gives the lattice of their intersection (both axis-aligned).
            widened = torch.maximum(torch.minimum(widened, reach[1].to(widened)), reach[0].to(widened))
        count = points * len(offsets)

        def one_step(name: str) -> Tensor:
            """``states[name]`` with each (step, point) as a one-step trajectory: ``[N*H*M, 2, ...]``."""
            value = states[name]
            if name == key:
                first = ee[:, :-1, None, None].expand(n, h, points, len(offsets), 3)
                pair = torch.stack([first, widened], dim=4)  # [N, H, K, 27, 2, 3]
            else:
                tail = value.shape[2:]
                first = value[:, :-1].reshape(n, h, 1, 1, *tail).expand(n, h, points, len(offsets), *tail)
                last = value[:, 1:].reshape(n, h, 1, 1, *tail).expand(n, h, points, len(offsets), *tail)
                pair = torch.stack([first, last], dim=4)
            return pair.reshape(n * h * count, 2, *pair.shape[5:])

        flat = _LazyStates(list(states), one_step)  # only what a guardrail reads is built (never the latents)
        a = actions[:, :, None].expand(n, h, count, actions.shape[-1]).reshape(n * h * count, 1, actions.shape[-1])
        _, _, along_per = along.evaluate(flat, a)
        for name, v in along_per.items():
            per[name] = v.reshape(n, h, count).amax(dim=-1)
    for g in hard_guards:
        total = total + per[g.name].sum(dim=1)
    return total, per


def safety_check(
    guardrails: GuardrailSet | Iterable[Guardrail], states: States, actions: Tensor
) -> tuple[bool, float, dict[str, float]]:
    """Check one action on one measured state (the agent's safety filter).

    ``actions``: ``[A]`` (then every state value is ``[2, ...]``: now and predicted next) or ``[1, 1, A]`` (states
    ``[1, 2, ...]``). Returns (ok: no hard violation, total hard violation, ``{name: violation}`` for all).
    """
    if actions.dim() == 1:
        actions = actions[None, None]
        states = {k: v.unsqueeze(0) for k, v in states.items()}
    gset = guardrails if isinstance(guardrails, GuardrailSet) else GuardrailSet(guardrails)
    hard, _, per = gset.evaluate(states, actions)
    violation = float(hard.sum())
    return violation <= 0.0, violation, {k: float(v.sum()) for k, v in per.items()}
