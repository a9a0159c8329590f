"""Write your own guardrail: a ceiling the hand must stay under, used by the planner with no change to it.

python examples/custom_guardrail.py [--episodes 3] [--out runs/custom_guardrail]
"""

import argparse

from planner.guardrails import Guardrail, register_guardrail


@register_guardrail("ceiling")
class Ceiling(Guardrail):
    """The fingertips stay below ``z_max`` metres. Violation [N, H] in metres; 0 means satisfied."""

    def __init__(self, z_max: float = 0.3, **kwargs) -> None:
        super().__init__(**kwargs)
        self.z_max = z_max

    def violation(self, states, actions):
        return (states["ee_pos"][:, 1:, 2] - self.z_max).clamp_min(0.0)  # states: [N, H+1, 3], index 0 = now

    def signed_margin(self, states, actions):
        """Room left under the ceiling [N, H] (metres, > 0 inside), for the logs and the demo's margin plot."""
        return self.z_max - states["ee_pos"][:, 1:, 2]


@register_guardrail("floor")
class Floor(Guardrail):
    """The fingertips stay above ``z_min`` metres: MinHeight's formula, as a custom guardrail (no margin of its own;
    the safety filter's path margin covers it like any other). Violation [N, H] in metres."""

    def __init__(self, z_min: float = 0.15, **kwargs) -> None:
        super().__init__(**kwargs)
        self.z_min = z_min

    def violation(self, states, actions):
        return (self.z_min - states["ee_pos"][:, 1:, 2]).clamp_min(0.0)

    def signed_margin(self, states, actions):
        return states["ee_pos"][:, 1:, 2] - self.z_min


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--out", default="runs/custom_guardrail")
    parser.add_argument("--world-model", default="oracle")
    parser.add_argument("--overrides", nargs="*", default=[])
    args = parser.parse_args()

    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from planner.apps import benchmark
    from planner.cli import CONFIG_DIR

    overrides = ["task=reach", f"episodes={args.episodes}", f"out={args.out}", f"world_model={args.world_model}"]
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(config_name="benchmark", overrides=[*overrides, *args.overrides])
    # Hydra `_target_` is all the planner needs; from the command line the same is
    #   jepa-mpc benchmark +guardrails.ceiling._target_=my_module.Ceiling +guardrails.ceiling.z_max=0.3
    # and the summary labels it default+ceiling(z_max=0.3) either way (the label is derived from the guardrail set)
    with open_dict(cfg):
        cfg.guardrails.ceiling = {"_target_": f"{__name__}.Ceiling", "z_max": 0.3}  # hands start below 0.3 m
    summary = benchmark.run(cfg)
    assert summary[0]["executed_violations"] == 0, "the ceiling was crossed"


if __name__ == "__main__":
    main()
