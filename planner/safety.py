"""The safety filter in front of the robot: the chosen action is checked against every hard guardrail on the measured
state before it runs, judged by the model's one-step prediction and by where the robot's controller sends the hand
(its path widened by a margin measured for the controller, the command in flight and the proprio estimate); the same
command check serves the planner's objective. Also the ``[N, H+1, ...]`` state dict every check reads."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from planner.guardrails import GuardrailSet, widened_path_violation


def predicted_states(
    world_model: Any, z0: Tensor, z: Tensor, now: dict[str, Tensor] | None = None
) -> MutableMapping[str, Tensor]:
    """Decoded quantities ``[N, H+1, ...]`` (index 0: now, from ``z0 [1, *latent]``; then the rollout ``z [N, H,
    *latent]``) plus the latents themselves under ``"latent"``.

    A world model that names its ``decode_keys`` and decodes a subset (``decode(z, keys=...)``, the JEPA's probes)
    gets :class:`PredictedStates` outside autograd: each quantity is decoded when first read, so one no cost term or
    guardrail reads (the cube, when its cost weight is 0 and no guardrail names it) costs nothing. Otherwise (another
    model, or gradients through the decode): a plain dict of everything.
    ``now``: the decode of ``z0``, per key, kept by the caller across calls with the same ``z0`` (filled here).
    """
    if getattr(world_model, "decode_keys", None) is not None and not torch.is_grad_enabled():
        return PredictedStates(world_model, z0, z, now)
    now_all = world_model.decode(z0)
    pred = world_model.decode(z)
    n = z.shape[0]
    states = {k: _with_now(now_all[k], pred[k], n) for k in pred}
    states["latent"] = _with_now(z0, z, n)
    return states


def _with_now(now: Tensor, pred: Tensor, n: int) -> Tensor:
    """``now [1, ...]`` before each of the ``n`` rows of ``pred [n, H, ...]``: ``[n, H+1, ...]``."""
    return torch.cat([now.unsqueeze(1).expand(n, 1, *now.shape[1:]), pred], dim=1)


class PredictedStates(MutableMapping[str, Tensor]):
    """The states :func:`predicted_states` returns for a model that decodes one quantity at a time: each key is
    decoded (``now`` and the rollout) on first read and kept; an assigned value replaces it; :meth:`replaced` gives
    a copy with some values replaced that shares what either decodes later."""

    def __init__(self, world_model: Any, z0: Tensor, z: Tensor, now: dict[str, Tensor] | None = None) -> None:
        self._model, self._z0, self._z = world_model, z0, z
        self._now = {} if now is None else now
        self._decoded: dict[str, Tensor] = {}  # shared with the copies made by replaced()
        self._keys = [*world_model.decode_keys, "latent"]
        self._set: dict[str, Tensor] = {}

    def __getitem__(self, key: str) -> Tensor:
        if key in self._set:
            return self._set[key]
        if key not in self._keys:
            raise KeyError(key)
        if key not in self._decoded:
            n = self._z.shape[0]
            if key == "latent":
                self._decoded[key] = _with_now(self._z0, self._z, n)
            else:
                if key not in self._now:
                    self._now[key] = self._model.decode(self._z0, keys=[key])[key]
                pred = self._model.decode(self._z, keys=[key])[key]
                self._decoded[key] = _with_now(self._now[key], pred, n)
        return self._decoded[key]

    def __setitem__(self, key: str, value: Tensor) -> None:
        if key not in self._keys:
            self._keys.append(key)
        self._set[key] = value

    def __delitem__(self, key: str) -> None:
        if key not in self._keys:
            raise KeyError(key)
        self._keys.remove(key)
        self._set.pop(key, None)
        self._decoded.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._keys))

    def __len__(self) -> int:
        return len(self._keys)

    def replaced(self, **values: Tensor) -> PredictedStates:
        """A copy with ``values`` in place of (or beside) its own; nothing is decoded for it."""
        out = copy.copy(self)
        out._keys = [*self._keys, *(k for k in values if k not in self._keys)]
        out._set = {**self._set, **values}
        return out


def replaced(states: Mapping[str, Tensor], **values: Tensor) -> Mapping[str, Tensor]:
    """``states`` with ``values`` in place of its own (``{**states, **values}``, without decoding the rest of a
    :class:`PredictedStates`)."""
    if isinstance(states, PredictedStates):
        return states.replaced(**values)
    return {**states, **values}


class SafetyFilter:
    """Checks commands against ``guardrails`` with the robot's controller rule.

    ``config``: the agent's settings (``planner.mpc.AgentConfig``: ``embodiment``, ``path_margin``, ``action_delay``,
    ``delay_margin``, ``estimate_sigmas``); ``proprio_filter``: the agent's estimator (its hand uncertainty widens the
    margin), or None.
    """

    def __init__(
        self, world_model: Any, guardrails: GuardrailSet, config: Any, action_dim: int, proprio_filter: Any = None
    ) -> None:
        self.world_model, self.guardrails, self.config = world_model, guardrails, config
        self.action_dim, self.proprio_filter = int(action_dim), proprio_filter

    # ------------------------------------------------------------------------------------------- the command check
    def command(self, ee: Tensor, actions: Tensor) -> Tensor:
        """Where the controller sends the hand from ``ee [..., 3]`` under ``actions [..., A]`` (the robot's rule)."""
        if self.config.embodiment is None:
            raise ValueError("checking commands against guardrails needs config.embodiment (the controller rule)")
        return self.config.embodiment.commanded_torch(ee, actions)

    def commanded(
        self, states: Mapping[str, Tensor], actions: Tensor, in_flight: Tensor | None = None
    ) -> Mapping[str, Tensor]:
        """``states`` with each predicted hand position replaced by the commanded one (previous + scale * a). With
        a command ``in_flight [A]`` (action delay), each action starts where that command ends instead."""
        ee = states["ee_pos"]
        actions = actions.to(ee.device)
        previous = ee[:, :-1]
        if in_flight is not None:
            first = self.command(ee[:, :1], in_flight)
            previous, ee = previous + (first - ee[:, :1]), torch.cat([first, ee[:, 1:]], dim=1)
        target = self.command(previous, actions)
        return replaced(states, ee_pos=torch.cat([ee[:, :1], target], dim=1))

    def in_flight(self, last_action: np.ndarray | None, like: Tensor) -> Tensor | None:
        """The command sent last tick, which the robot executes now under a one-step delay (None without one;
        at an episode's first step, the hold the delayed robot executes)."""
        if self.config.action_delay <= 0:
            return None
        if last_action is None:
            return like.new_zeros(self.action_dim)
        return torch.as_tensor(last_action, dtype=like.dtype, device=like.device)

    def tracking_margin(self) -> float:
        """Metres the real hand path strays from its commanded segment (with or without a command in flight)."""
        name = "delay_margin" if self.config.action_delay > 0 else "path_margin"
        margin = getattr(self.config, name)
        if margin is None:  # the robot's own, measured
            margin = getattr(self.config.embodiment, name)
        return float(margin)

    def margin(self) -> float:
        """Metres kept clear around each commanded hand position: the tracking margin plus ``estimate_sigmas``
        standard deviations of the proprio filter's hand estimate."""
        margin = self.tracking_margin()
        if self.proprio_filter is not None:
            margin += self.config.estimate_sigmas * self.proprio_filter.ee_std()
        return margin

    def reach(self, like: Tensor) -> tuple[Tensor, Tensor] | None:
        """The box the hand cannot leave whatever the estimate says, while the proprio estimate is uncertain (None
        otherwise). The controller clips every command into ``[ee_low, ee_high]`` from the hand's true position, so
        the real path stays within the tracking margin of that box, and an uncertain estimate is never widened past
        it: noisy proprio near the table must not forbid a descent the controller's own floor bounds. With clean
        sensors the check stays as it was measured (the box would also absorb the decoded hand's millimetre errors
        at the floor; that change is not measured)."""
        if self.proprio_filter is None or self.proprio_filter.ee_std() <= 0.0:
            return None
        grow, body = self.tracking_margin(), self.config.embodiment
        low = [v - grow for v in body.ee_low]  # in Python floats: rounded once, like the guardrails' own bounds
        high = [v + grow for v in body.ee_high]
        return (
            torch.tensor(low, dtype=like.dtype, device=like.device),
            torch.tensor(high, dtype=like.dtype, device=like.device),
        )

    def path_violation(self, states: Mapping[str, Tensor], actions: Tensor, last_action: np.ndarray | None) -> Tensor:
        """The planner's command check: hard violation ``[N]`` of the widened commanded paths of ``actions [N, H,
        A]`` from the predicted ``states`` (which must have ``ee_pos``)."""
        commanded = self.commanded(states, actions, self.in_flight(last_action, actions))
        reach = self.reach(commanded["ee_pos"])
        return widened_path_violation(self.guardrails, commanded, actions, self.margin(), reach=reach)[0]

    # ------------------------------------------------------------------------------------------- before execution
    @torch.no_grad()
    def check(
        self,
        z0: Tensor,
        measured: dict[str, Tensor],
        action: Tensor,
        info: dict[str, Any],
        last_action: np.ndarray | None = None,
    ) -> tuple[bool, str]:
        """The filter: ``action [A]`` must satisfy every hard guardrail on the ``measured`` state, judged both by
        the model's one-step prediction and by where the controller is commanded to put the hand. Writes
        ``filter_violation``, ``filter_margin``, ``in_flight_violation`` and ``filter_worst`` into ``info``."""
        if len(self.guardrails) == 0:
            return bool(torch.isfinite(action).all()), "non_finite_action"
        if not torch.isfinite(action).all():
            return False, "non_finite_action"
        a = action[None, None].to(device=z0.device, dtype=z0.dtype)
        predicted = predicted_states(self.world_model, z0, self.world_model.rollout(z0, a))
        now = {k: v.to(z0.dtype) for k, v in measured.items()}
        for key, value in now.items():  # the measured state replaces the model's estimate at index 0
            if key in predicted:
                predicted[key] = torch.cat(
                    [value.reshape(1, 1, *predicted[key].shape[2:]), predicted[key][:, 1:]], dim=1
                )
        worst = 0.0
        hard, _, per = self.guardrails.evaluate(predicted, a)
        if float(hard.sum()) > worst:
            worst = float(hard.sum())
            info["filter_violation"] = {k: float(v.sum()) for k, v in per.items()}
        if "ee_pos" in predicted:
            # Where the controller sends the hand, widened by the path margin; under a delay, the command in flight
            # (it runs now, from the measured hand) and then the chosen one from where that one ends.
            in_flight = self.in_flight(last_action, a)
            commanded, acts = self.commanded(predicted, a), a
            if in_flight is not None:
                first = self.command(commanded["ee_pos"][:, :1], in_flight)
                second = self.command(first, a)
                commanded = {k: torch.cat([v[:, :1], v], dim=1) for k, v in predicted.items()}
                commanded["ee_pos"] = torch.cat([predicted["ee_pos"][:, :1], first, second], dim=1)
                acts = torch.cat([in_flight[None, None].to(a), a], dim=1)
            margin = self.margin()
            info["filter_margin"] = margin
            hard, per = widened_path_violation(self.guardrails, commanded, acts, margin, reach=self.reach(a))
            if in_flight is not None:
                info["in_flight_violation"] = float(sum(float(v[:, 0].sum()) for v in per.values()))
            if float(hard.sum()) > worst:
                worst = float(hard.sum())
                info["filter_violation"] = {k: float(v.sum()) for k, v in per.items()}
        info["filter_worst"] = worst
        if worst > 0:
            return False, "guardrail"
        return True, ""

    @torch.no_grad()
    def violation_now(self, z0: Tensor, measured: dict[str, Tensor]) -> tuple[float, dict[str, float]]:
        """Hard violation of the measured state itself (holding still there), total and per guardrail."""
        if len(self.guardrails) == 0:
            return 0.0, {}
        hold = torch.zeros(1, 1, self.action_dim, dtype=z0.dtype, device=z0.device)
        states = predicted_states(self.world_model, z0, z0[:, None])
        for key, value in measured.items():
            if key in states:
                v = value.to(z0.dtype).reshape(1, 1, *states[key].shape[2:])
                states[key] = torch.cat([v, v], dim=1)
        hard, _, per = self.guardrails.evaluate(states, hold)
        return float(hard.sum()), {g.name: float(per[g.name].sum()) for g in self.guardrails if g.hard}

    def judge(
        self,
        z0: Tensor,
        measured: dict[str, Tensor],
        action: Tensor,
        info: dict[str, Any],
        last_action: np.ndarray | None = None,
    ) -> tuple[bool, str]:
        """``check``, then recovery: when the measured state already breaks a guardrail (holding still breaks it
        too), an action the filter refused, or a plan with no feasible sample, runs if it strictly reduces the
        violation and worsens no guardrail (then ``info["recovery"]``, and ``no_feasible_plan`` is cleared)."""
        ok, reason = self.check(z0, measured, action, info, last_action)
        if not ok or info.get("no_feasible_plan", False):
            now, now_per = self.violation_now(z0, measured)
            after = info.get("filter_violation", {})
            no_worse = all(after.get(name, 0.0) <= now_per.get(name, 0.0) + 1e-9 for name in now_per)
            if now > 0 and no_worse and info.get("filter_worst", math.inf) < now:
                ok, reason = True, ""
                info["no_feasible_plan"] = False
                info["recovery"] = True
        return ok, reason
