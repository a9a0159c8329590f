"""planner/safety.py: the [N, H+1, ...] state dict, and the filter's verdicts on a toy world model."""

from __future__ import annotations

import torch

from envs.panda_env import PANDA
from planner.guardrails import GuardrailSet, MinHeight
from planner.mpc import AgentConfig
from planner.safety import SafetyFilter, predicted_states


class PointWorld:
    """The latent is the hand position; an action moves it 5 cm per unit (the Panda's rule, no clipping box)."""

    def encode(self, obs):
        return torch.as_tensor(obs["ee_pos"], dtype=torch.float64).reshape(1, 3)

    def rollout(self, z0, actions):
        return z0[:, None] + 0.05 * actions[..., :3].cumsum(dim=1)

    def decode(self, z):
        return {"ee_pos": z}


def test_states_start_at_now_and_carry_the_latents():
    world = PointWorld()
    z0 = world.encode({"ee_pos": [0.5, 0.0, 0.3]})
    actions = torch.zeros(4, 2, 4, dtype=torch.float64)
    actions[..., 2] = -1.0
    states = predicted_states(world, z0, world.rollout(z0, actions))
    assert states["ee_pos"].shape == states["latent"].shape == (4, 3, 3)
    assert torch.equal(states["ee_pos"][:, 0], z0.expand(4, 3))
    assert torch.allclose(states["ee_pos"][:, -1, 2], torch.full((4,), 0.2, dtype=torch.float64))


def test_the_filter_refuses_a_command_into_a_floor_and_non_finite_ones():
    world = PointWorld()
    z0 = world.encode({"ee_pos": [0.5, 0.0, 0.3]})
    measured = {"ee_pos": z0[0]}
    safety = SafetyFilter(world, GuardrailSet([MinHeight(0.26)]), AgentConfig(embodiment=PANDA), 4)
    down, up = torch.tensor([0.0, 0.0, -1.0, 1.0]), torch.tensor([0.0, 0.0, 0.5, 1.0])
    info: dict = {}
    assert safety.check(z0, measured, down, info) == (False, "guardrail") and info["filter_worst"] > 0
    assert safety.check(z0, measured, up, {}) == (True, "")
    assert safety.check(z0, measured, torch.tensor([float("nan"), 0.0, 0.0, 1.0]), {}) == (False, "non_finite_action")
    free = SafetyFilter(world, GuardrailSet([]), AgentConfig(embodiment=PANDA), 4)
    assert free.check(z0, measured, down, {}) == (True, "non_finite_action")  # no guardrails: finite is enough


class UncertainHand:
    """A proprio filter stand-in whose hand estimate has a fixed standard deviation."""

    def __init__(self, std: float) -> None:
        self.std = std

    def ee_std(self) -> float:
        return self.std


def test_an_uncertain_hand_is_not_widened_past_the_controllers_box():
    # The Panda's controller clips every command to z >= 5 cm from the true hand, so a table guardrail at 4.5 cm
    # (the box's floor minus the 5 mm path margin) cannot be crossed however uncertain the estimate is: a noisy
    # estimate must not forbid the descent to the 5.5 cm grasp height.
    world = PointWorld()
    z0 = world.encode({"ee_pos": [0.5, 0.0, 0.07]})
    measured = {"ee_pos": z0[0]}
    table = GuardrailSet([MinHeight(0.045)])
    noisy = SafetyFilter(world, table, AgentConfig(embodiment=PANDA), 4, proprio_filter=UncertainHand(0.009))
    assert abs(noisy.margin() - (0.005 + 4 * 0.009)) < 1e-12
    low, high = noisy.reach(z0)
    assert torch.allclose(low, torch.tensor([0.195, -0.455, 0.045], dtype=torch.float64))
    assert torch.allclose(high, torch.tensor([0.855, 0.455, 0.555], dtype=torch.float64))
    assert SafetyFilter(world, table, AgentConfig(embodiment=PANDA), 4, UncertainHand(0.0)).reach(z0) is None
    descend = torch.tensor([0.0, 0.0, -0.3, 1.0])  # to 5.5 cm
    assert noisy.check(z0, measured, descend, {}) == (True, "")
    # A guardrail inside the box still sees the whole widened margin.
    higher = SafetyFilter(
        world, GuardrailSet([MinHeight(0.06)]), AgentConfig(embodiment=PANDA), 4, UncertainHand(0.009)
    )
    assert higher.check(z0, measured, descend, {}) == (False, "guardrail")
