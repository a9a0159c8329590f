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


class KeyedWorld(PointWorld):
    """PointWorld with two quantities decoded one at a time (as the JEPA's probes), counting what is decoded."""

    decode_keys = ("ee_pos", "double")

    def __init__(self) -> None:
        self.decoded: list[tuple[str, int]] = []

    def decode(self, z, keys=None):
        keys = ["ee_pos", "double"] if keys is None else list(keys)
        self.decoded += [(k, z.shape[0]) for k in keys]
        every = {"ee_pos": z, "double": 2.0 * z[..., 0]}
        return {k: every[k] for k in keys}


class EagerWorld(KeyedWorld):
    decode_keys = None  # the same model without the per-key decode: predicted_states returns a plain dict


def test_lazy_states_decode_only_what_is_read_and_equal_the_dict():
    world = KeyedWorld()
    z0 = torch.tensor([[0.5, 0.1, 0.3]], dtype=torch.float64)
    actions = torch.rand(5, 3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    z = world.rollout(z0, actions)
    ref = predicted_states(EagerWorld(), z0, z)
    now: dict = {}
    with torch.no_grad():
        states = predicted_states(world, z0, z, now)
    assert list(states) == list(ref) == ["ee_pos", "double", "latent"] and "double" in states
    assert world.decoded == []  # nothing decoded until read
    assert torch.equal(states["ee_pos"], ref["ee_pos"]) and torch.equal(states["latent"], ref["latent"])
    assert world.decoded == [("ee_pos", 1), ("ee_pos", 5)] and set(now) == {"ee_pos"}
    states["ee_pos"]
    assert len(world.decoded) == 2  # kept
    moved = SafetyFilter(world, GuardrailSet([]), AgentConfig(embodiment=PANDA), 4).commanded(states, actions)
    assert torch.equal(moved["ee_pos"], {**ref, "ee_pos": moved["ee_pos"]}["ee_pos"])
    assert torch.equal(moved["double"], ref["double"]) and torch.equal(states["double"], ref["double"])
    assert [k for k, _ in world.decoded].count("double") == 2  # the copy and the original share one decode
    with torch.no_grad():
        again = predicted_states(world, z0, z, now)
        again["ee_pos"]
    assert world.decoded[-1] == ("ee_pos", 5)  # z0's decode came from `now`
    states["gripper"] = torch.zeros(5, 4)
    assert list(states) == ["ee_pos", "double", "latent", "gripper"] and len(states) == 4
    del states["double"]
    assert "double" not in states and len(dict(states)) == 3
    with torch.enable_grad():
        assert isinstance(predicted_states(world, z0, z), dict)  # gradients: everything at once, as before
