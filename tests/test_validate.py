"""Config validation: each of issue 13's silent wrong configs is one error naming the key, before anything runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from planner.apps.validate import ConfigError, check
from planner.cli import CONFIG_DIR


def compose_benchmark(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(config_name="benchmark", overrides=overrides)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["episodes=abc"], "episodes must be an integer >= 1, got 'abc'"),
        (["episodes=-3"], "episodes must be an integer >= 1, got -3"),
        (["episodes=0"], "episodes must be an integer >= 1, got 0"),
        (["episodes=2.7"], "episodes must be an integer >= 1, got 2.7"),
        (["seed=-1"], "seed must be an integer >= 0"),
        (["replan_every=0"], "replan_every must be an integer >= 1, got 0"),
        (["estimate_sigmas=-1"], "estimate_sigmas must be a finite number >= 0, got -1"),
        (["faults=obs_noise", "faults.obs_noise=-5"], "faults.obs_noise must be a finite number >= 0, got -5"),
        (["+faults.obs_nosie=8"], "faults.obs_nosie is not a known key"),
        (["faults=frozen_frames", "faults.frozen_frame_prob=1.5"], "faults.frozen_frame_prob must be"),
        (["faults=action_delay", "faults.action_delay=2"], "faults.action_delay must be an integer >= 0 and <= 1"),
        (["+cost.weights.ee_to_targt=1"], "cost.weights.ee_to_targt is not a known cost term"),
        (["cost.weights.ee_to_target=-1"], "cost.weights.ee_to_target must be a finite number >= 0, got -1"),
        (["cost.schedule.switch_steps=0"], "cost.schedule.switch_steps must be an integer >= 1"),
        (["+cost.foo=1"], "cost.foo is not a known key"),
        (["guardrails.min_height.z_min=nan"], "guardrails.min_height.z_min must be a finite number, got nan"),
        (["guardrails=keep_out", "guardrails.keep_out.margin=-0.01"], "guardrails.keep_out: .*margin must be"),
        (["+guardrails.min_height.bogus=1"], "guardrails.min_height.bogus is not a known key"),
        (["+guardrails.x._target_=collections.OrderedDict"], "not a Guardrail subclass"),
        (
            ["+guardrails.x._target_=no.such.Guardrail"],
            "guardrails.x._target_ 'no.such.Guardrail': no module named 'no'",
        ),
        (
            ["+guardrails.x._target_=planner.guardrails.Nope"],
            "module 'planner.guardrails' .* has no 'Nope'; it defines",
        ),
        (["plugins=[no_such_plugin_module]"], "plugins: no module named 'no_such_plugin_module'"),
        (["planner.num_elites=500"], r"planner \(cem\): num_elites \(500\) must be <= num_samples"),
        (["planner.horizon=0"], "planner.horizon must be an integer >= 1"),
        (["+planner.foo=1"], "planner.foo is not a known key"),
        (["+env.foo=1"], "env.foo is not a known key"),
        (["env.action_scale=0"], "env.action_scale must be a finite number > 0"),
        (["+world_model.foo=1"], "world_model.foo is not a known key"),
        (["+foo=1"], "foo is not a known key"),
        (["append=yes"], "append must be true or false"),
    ],
)
def test_every_bad_value_is_one_error_naming_its_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        check(compose_benchmark(overrides), "benchmark")


def test_the_shipped_configs_pass():
    for overrides in ([], ["guardrails=keep_out"], ["world_model=jepa", "faults=push"], ["planner=mppi"]):
        check(compose_benchmark(overrides), "benchmark")
    check(compose_benchmark(["faults=action_delay", *FLOOR]), "benchmark")


FLOOR = ["+guardrails.floor._target_=examples.custom_guardrail.Floor", "+guardrails.floor.z_min=0.15"]


def test_a_guardrail_target_that_is_not_a_guardrail_never_runs(tmp_path):
    """The issue's `+guardrails.x._target_=shutil.copy` copied a file before the type check; now nothing is called."""
    source, copy = tmp_path / "a.txt", tmp_path / "b.txt"
    source.write_text("x")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "planner.cli",
            "benchmark",
            f"out={tmp_path / 'out'}",
            "episodes=1",
            "+guardrails.x._target_=shutil.copy",
            f"+guardrails.x.src={source}",
            f"+guardrails.x.dst={copy}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert result.returncode != 0 and "not a Guardrail subclass" in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not copy.exists()  # nothing was called
    assert not (tmp_path / "out").exists()  # nothing written: no results, no folder, no log


def test_world_models_declare_what_they_read():
    """The apps build a run from what a world model declares (reads_pixels, reads_sim_state), not from its name:
    every name a config may give has a builder and a class that declares both."""
    from planner.apps.factory import WORLD_MODEL_BUILDERS
    from world_models.base import WORLD_MODELS, world_model_class

    assert set(WORLD_MODEL_BUILDERS) == set(WORLD_MODELS)
    for name in WORLD_MODELS:
        cls = world_model_class(name)
        assert isinstance(cls.reads_pixels, bool) and isinstance(cls.reads_sim_state, bool)
        assert cls.reads_pixels != cls.reads_sim_state  # a learned model reads frames, the oracle the true state
    with pytest.raises(ValueError, match="unknown world_model 'sim'; known: oracle, jepa"):
        world_model_class("sim")
