"""Guardrail values on hand-made states, the registry, GuardrailSet evaluation and the single-step safety check."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from planner.guardrails import (
    Guardrail,
    GuardrailSet,
    KeepOutBox,
    MaxStepDisplacement,
    MinHeight,
    WorkspaceBox,
    guardrail_from_function,
    make_guardrail,
    register_guardrail,
    safety_check,
)


def states_from(ee: list[list[float]], cube: list[list[float]] | None = None, dtype=torch.float32) -> dict:
    """One trajectory (N = 1) of H+1 positions -> states dict with [1, H+1, 3] values."""
    out = {"ee_pos": torch.tensor([ee], dtype=dtype)}
    if cube is not None:
        out["cube_pos"] = torch.tensor([cube], dtype=dtype)
    return out


def actions_for(states: dict, a: int = 4) -> Tensor:
    h = states["ee_pos"].shape[1] - 1
    return torch.zeros(states["ee_pos"].shape[0], h, a, dtype=states["ee_pos"].dtype)


def test_workspace_box_distance_outside() -> None:
    g = WorkspaceBox(low=[0.0, 0.0, 0.0], high=[1.0, 1.0, 1.0])
    s = states_from([[5.0, 5.0, 5.0], [0.5, 0.5, 0.5], [1.3, 0.5, -0.4], [1.0, 1.0, 1.0]])
    v = g.violation(s, actions_for(s))
    assert v.shape == (1, 3)
    assert torch.allclose(v, torch.tensor([[0.0, 0.5, 0.0]]))  # index 0 (the current state) is not judged
    v_margin = WorkspaceBox([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], margin=0.1).violation(s, actions_for(s))
    assert torch.allclose(v_margin, torch.tensor([[0.0, math.hypot(0.4, 0.5), math.sqrt(3) * 0.1]]))


def test_keep_out_box_penetration_depth() -> None:
    g = KeepOutBox(low=[0.0, 0.0, 0.0], high=[1.0, 1.0, 1.0], margin=0.0, interpolate=1)  # end states only
    ee = [[0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0.9, 0.5, 0.5], [2.0, 0.5, 0.5]]
    cube = [[0.0, 0.0, 0.0], [0.5, 0.2, 0.5], [3.0, 3.0, 3.0], [0.5, 0.5, 0.95]]
    s = states_from(ee, cube)
    v = g.violation(s, actions_for(s))
    assert torch.allclose(v, torch.tensor([[0.5 + 0.2, 0.1, 0.05]]))
    only_ee = KeepOutBox([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], bodies=["ee_pos"], margin=0.1, interpolate=1)
    assert torch.allclose(only_ee.violation(s, actions_for(s)), torch.tensor([[0.6, 0.2, 0.0]]))


def test_keep_out_box_catches_a_step_that_cuts_through_it() -> None:
    # both end states are outside the unit box, but the straight step between them crosses its middle
    s = states_from([[-0.5, 0.5, 0.5], [1.5, 0.5, 0.5]], [[5.0, 5.0, 5.0], [5.0, 5.0, 5.0]])
    assert float(KeepOutBox([0, 0, 0], [1, 1, 1], margin=0.0, interpolate=1).violation(s, actions_for(s))) == 0.0
    assert float(
        KeepOutBox([0, 0, 0], [1, 1, 1], margin=0.0, interpolate=4).violation(s, actions_for(s))
    ) == pytest.approx(0.5)


def test_min_height_and_max_step() -> None:
    s = states_from([[0.0, 0.0, 0.5], [0.0, 0.0, 0.02], [0.0, 0.3, 0.2], [0.0, 0.3, 0.2]])
    assert torch.allclose(MinHeight(z_min=0.05).violation(s, actions_for(s)), torch.tensor([[0.03, 0.0, 0.0]]))
    v = MaxStepDisplacement(max_step=0.2).violation(s, actions_for(s))
    assert torch.allclose(v, torch.tensor([[0.28, math.hypot(0.3, 0.18) - 0.2, 0.0]]))


def test_missing_key_names_key_and_guardrail() -> None:
    s = states_from([[0.0, 0.0, 0.0], [0.1, 0.1, 0.1]])
    with pytest.raises(KeyError, match="keep_out_box.*cube_pos"):
        KeepOutBox([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]).violation(s, actions_for(s))


def test_plain_lists_follow_input_device_and_dtype() -> None:
    g = KeepOutBox(low=[0, 0, 0], high=[1, 1, 1], bodies=["ee_pos"], margin=0)  # as hydra passes them
    s = states_from([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]], dtype=torch.float64)
    v = g.violation(s, actions_for(s))
    assert v.dtype == torch.float64 and float(v) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="low < high"):
        KeepOutBox(low=[1, 0, 0], high=[0, 1, 1])


def test_registry_and_function_guardrails() -> None:
    @register_guardrail("test_gripper_open")
    def gripper_open(states: dict, actions: Tensor) -> Tensor:
        return 0.04 - states["gripper"][:, 1:]

    g = make_guardrail("test_gripper_open", hard=False, weight=2.0)
    assert isinstance(g, Guardrail) and g.name == "test_gripper_open" and not g.hard
    s = {"gripper": torch.tensor([[0.08, 0.01, 0.06]])}
    assert torch.allclose(g.violation(s, torch.zeros(1, 2, 4)), torch.tensor([[0.03, 0.0]]))  # negative -> 0
    assert make_guardrail("min_height", z_min=0.1).name == "min_height"
    with pytest.raises(KeyError, match="keep_out_box.*min_height.*workspace_box"):
        make_guardrail("no_such_guardrail")
    with pytest.raises(ValueError, match="already registered"):
        register_guardrail("min_height")(MinHeight)


def test_set_evaluate_hard_soft_and_nan() -> None:
    hard = MinHeight(z_min=0.1)
    soft = MaxStepDisplacement(max_step=0.05, hard=False, weight=10.0)
    nan = guardrail_from_function(lambda s, a: torch.where(a[..., 0] > 0, torch.nan, 0.0), "nan_when_pushing")
    gset = GuardrailSet([hard, soft, nan])
    ee = torch.tensor([[[0.0, 0.0, 0.2], [0.0, 0.0, 0.05], [0.0, 0.0, 0.05]]]).repeat(2, 1, 1)  # [2, 3, 3]
    actions = torch.zeros(2, 2, 4)
    actions[1, 1, 0] = 1.0
    h, s, per = gset.evaluate({"ee_pos": ee}, actions)
    assert h.shape == (2,) and s.shape == (2,)
    assert float(h[0]) == pytest.approx(0.1) and math.isinf(float(h[1]))
    assert float(s[0]) == pytest.approx(10.0 * 0.1)
    assert set(per) == {"min_height", "max_step_displacement", "nan_when_pushing"}
    assert per["min_height"].shape == (2, 2)
    with pytest.raises(ValueError, match="unique"):
        GuardrailSet([MinHeight(0.1), MinHeight(0.2)])
    assert len(GuardrailSet({"a": MinHeight(0.1, name="a")})) == 1


def test_safety_check_single_step() -> None:
    gset = GuardrailSet([KeepOutBox([0, 0, 0], [1, 1, 1], bodies=["ee_pos"], margin=0), MinHeight(0.0, hard=False)])
    ok, v, per = safety_check(gset, {"ee_pos": torch.tensor([[2.0, 2.0, 2.0], [0.9, 0.5, 0.5]])}, torch.zeros(4))
    assert not ok and v == pytest.approx(0.1) and per["keep_out_box"] == pytest.approx(0.1)
    ok, v, _ = safety_check(gset, {"ee_pos": torch.tensor([[[2.0, 2.0, 2.0], [1.5, 0.5, 0.5]]])}, torch.zeros(1, 1, 4))
    assert ok and v == 0.0


def test_box_corners_from_a_hydra_list_are_plain_floats_with_the_same_violations():
    from omegaconf import OmegaConf

    low, high = [0.25, -0.40, 0.045], [0.80, 0.40, 0.45]
    pos = torch.rand(8, 5, 3, generator=torch.Generator().manual_seed(0)) - 0.2
    states, actions = {"ee_pos": pos, "cube_pos": pos.flip(0)}, torch.zeros(8, 4, 4)
    for cls in (WorkspaceBox, KeepOutBox):
        plain = cls(low, high)
        hydra = cls(OmegaConf.create(low), OmegaConf.create(high))
        assert hydra.low == low and hydra.high == high and type(hydra.low) is list
        assert torch.equal(hydra.violation(states, actions), plain.violation(states, actions))
