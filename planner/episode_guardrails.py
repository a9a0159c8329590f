"""Guardrails placed anew each episode from its start and goal (e.g. a keep-out box across the straight path)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from planner.guardrails import KeepOutBox, register_guardrail


@register_guardrail("keep_out_on_path")
class KeepOutOnPath(KeepOutBox):
    """A keep-out box centred on the straight line from the hand's start to its goal, so the planner must detour.

    ``size`` is the box's edge (metres), shrunk on short paths to half the path length so neither the start nor
    the goal is ever inside. Call :meth:`place` at each episode start (the apps do).
    """

    def __init__(
        self,
        size: float = 0.08,
        bodies: Sequence[str] = ("ee_pos",),
        margin: float = 0.01,
        name: str | None = None,
        hard: bool = True,
        weight: float = 1.0,
    ) -> None:
        super().__init__(
            [0.0, 0.0, 0.0], [1e-6, 1e-6, 1e-6], bodies=bodies, margin=margin, name=name, hard=hard, weight=weight
        )
        self.size = float(size)
        if not self.size > 0:
            raise ValueError(f"{self.name}: size must be > 0, got {size!r}")

    def place(self, start: np.ndarray, goal: np.ndarray) -> None:
        """Centre the box between ``start`` and ``goal`` (both ``[3]``)."""
        start, goal = np.asarray(start, dtype=float), np.asarray(goal, dtype=float)
        length = float(np.linalg.norm(goal - start))
        # the box itself (``size``) is what the world forbids; ``margin`` widens it for planning, and both must
        # leave the start and the goal outside
        half = max(0.5 * min(self.size, 0.5 * length - 2 * self.margin), 1e-3)
        centre = 0.5 * (start + goal)
        self.low, self.high = (centre - half).tolist(), (centre + half).tolist()
