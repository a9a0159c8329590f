"""The benchmark app end to end on the real configs: results stream, resume, summary; and the CLI's errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from planner.apps import benchmark
from planner.cli import CONFIG_DIR

TINY = ["planner.num_samples=16", "planner.num_elites=4", "planner.iterations=1", "planner.horizon=3"]


def compose_benchmark(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose(config_name="benchmark", overrides=overrides, return_hydra_config=False)


def run_cfg(tmp_path: Path, episodes: int, extra: list[str] = ()) -> list[dict]:
    cfg = compose_benchmark(["task=reach", f"episodes={episodes}", f"out={tmp_path}", *TINY, *extra])
    return benchmark.run(cfg)


def test_benchmark_streams_resumes_and_summarizes(tmp_path):
    summary = run_cfg(tmp_path, episodes=1)
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == 1
    summary = run_cfg(tmp_path, episodes=2)  # resume: only seed 1 is new
    rows = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert sorted(r["seed"] for r in rows) == [0, 1]
    assert len(summary) == 1
    row = summary[0]
    for field in benchmark.SUMMARY_FIELDS:
        assert field in row, field
    assert row["episodes"] == 2 and row["executed_violations"] == 0
    assert 0.0 <= row["success_ci95"][0] <= row["success_rate"] <= row["success_ci95"][1] <= 1.0
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    assert row["guardrails"] == "default" and row["cost"] == "oracle"  # named from the settings, as on the CLI
    assert "| reach | cem | oracle |" in (tmp_path / "summary.md").read_text()


def test_a_different_budget_is_a_different_cell(tmp_path):
    run_cfg(tmp_path, episodes=1)
    with pytest.raises(SystemExit, match="append=true"):  # another cell's summary is not mixed in unasked
        run_cfg(tmp_path, episodes=1, extra=["planner.num_samples=12"])
    summary = run_cfg(tmp_path, episodes=1, extra=["planner.num_samples=12", "append=true"])
    assert len(summary) == 2 and {r["episodes"] for r in summary} == {1}
    assert len({r["config"] for r in summary}) == 2


def test_a_killed_run_loses_only_the_partial_line(tmp_path):
    run_cfg(tmp_path, episodes=1)
    with (tmp_path / "results.jsonl").open("a") as f:
        f.write('{"task": "reach", "seed": 1, "succ')  # a line cut short by a kill
    summary = run_cfg(tmp_path, episodes=2)
    assert summary[0]["episodes"] == 2


def test_summarize_groups_cells_and_counts():
    rows = [
        {
            "task": "reach",
            "planner": "cem",
            "world_model": "oracle",
            "guardrails": "default",
            "faults": "none",
            "seed": s,
            "success": s % 2 == 0,
            "steps": 3,
            "plan_ms_all": [10.0, 20.0],
            "executed_violations": 0,
            "predicted_violations": 1,
            "fallbacks": 1,
            "final_distance": 0.01,
        }
        for s in range(4)
    ]
    (row,) = benchmark.summarize(rows, "test")
    assert row["success_rate"] == 0.5 and row["predicted_violations"] == 4 and row["plan_ms_p50"] == 15.0


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "planner.cli", *args], capture_output=True, text=True, timeout=300)


def test_cli_lists_subcommands_and_rejects_unknown_ones():
    assert "benchmark" in run_cli("--help").stdout
    result = run_cli("benchmarks")
    assert result.returncode != 0 and "known: demo, benchmark" in result.stderr


@pytest.mark.parametrize(
    ("override", "message"),
    [("task=pick_and_place", "known: pick_place"), ("planner=cme", "planner"), ("episdoes=3", "episdoes")],
)
def test_cli_config_mistakes_get_one_clear_error_and_write_nothing(tmp_path, override, message):
    result = subprocess.run(
        [sys.executable, "-m", "planner.cli", "benchmark", override, f"out={tmp_path / 'out'}", "episodes=1", *TINY],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []  # no out folder, no cli.log, no outputs/ in the current directory


def test_task_weights_override_the_cost_for_their_task_only():
    from planner.apps.factory import task_cost_weights

    push = compose_benchmark(["task=push", "world_model=jepa"])
    pick = compose_benchmark(["task=pick_place", "world_model=jepa"])
    assert task_cost_weights(push)["ee_to_target"] == 10.0
    assert task_cost_weights(pick)["ee_to_target"] == 1.0
    typo = compose_benchmark(["task=push", "world_model=jepa", "+cost.task_weights.psuh={ee_to_target: 2}"])
    with pytest.raises(ValueError, match="psuh"):
        task_cost_weights(typo)


def test_phase_weights_apply_in_their_phase_only_and_unknown_phases_are_refused():
    from planner.apps.factory import build_run, goal_schedule, phase_weights

    cfg = compose_benchmark(["task=pick_place", "world_model=jepa"])
    assert phase_weights(cfg) == {"close": {"ee_to_target": 20.0}}
    run = build_run(cfg, image_size=64)
    run.env.reset(seed=0)
    schedule = goal_schedule(cfg, run.env, run.world_model)
    assert schedule.phases == ["above", "around", "close", "lift", "carry"]
    run.agent.reset(schedule)
    ee_weight = {}
    for index, phase in enumerate(schedule.phases):
        schedule.index = index
        ee_weight[phase] = run.agent._cost_function(schedule.current()).terms["ee_to_target"][1]
    assert ee_weight == {"above": 1.0, "around": 1.0, "close": 20.0, "lift": 1.0, "carry": 1.0}
    assert run.agent.config.regrasp_below == 0.03  # pick_place holds the cube; push does not
    assert (
        build_run(compose_benchmark(["task=push", "world_model=jepa"]), image_size=64).agent.config.regrasp_below
        is None
    )
    typo = compose_benchmark(["task=pick_place", "world_model=jepa", "+cost.phase_weights.clsoe={gripper: 1}"])
    with pytest.raises(ValueError, match="clsoe"):
        phase_weights(typo)
    term_typo = compose_benchmark(["task=pick_place", "world_model=jepa", "+cost.phase_weights.lift={ee_to_targt: 5}"])
    with pytest.raises(ValueError, match="ee_to_targt"):
        phase_weights(term_typo)
    not_a_mapping = compose_benchmark(["task=pick_place", "world_model=jepa", "+cost.phase_weights.lift=5"])
    with pytest.raises(ValueError, match="mapping"):
        phase_weights(not_a_mapping)


def test_the_cost_group_is_read_once_into_frozen_settings_and_its_overrides_still_apply():
    import dataclasses

    from planner.apps.settings import RunSettings

    cfg = compose_benchmark(
        [
            "task=pick_place",
            "world_model=jepa",
            "cost.schedule.switch_distance=0.02",
            "cost.schedule.switch_steps=null",
            "+cost.schedule.regrasp_below=0.01",
            "cost.phase_action_bounds.lift.gripper=[-1.0,-0.7]",
            "cost.use_latent_goal=false",
            "replan_every=2",
            "faults=action_delay",
        ]
    )
    s = RunSettings.from_config(cfg)
    assert (s.schedule.switch_distance, s.schedule.switch_steps, s.schedule.regrasp_below) == (0.02, None, 0.01)
    assert s.bounds.action_names == ("dx", "dy", "dz", "gripper")
    assert s.bounds.per_phase["lift"] == ([-1.0, -1.0, -1.0, -1.0], [1.0, 1.0, 1.0, -0.7])
    assert s.cost.use_latent_goal is False and s.cost.phase_weights == {"close": {"ee_to_target": 20.0}}
    assert (s.agent.replan_every, s.agent.action_delay) == (2, 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.schedule.switch_distance = 1.0  # type: ignore[misc]
    oracle = RunSettings.from_config(compose_benchmark(["task=push", "cost=state"]))
    assert oracle.cost.weights["cube_to_target"] == 3.0 and oracle.schedule.switch_steps == 25


def test_the_summary_counts_exactly_the_seeds_asked_for(tmp_path):
    run_cfg(tmp_path, episodes=2)  # seeds 0, 1
    (row,) = run_cfg(tmp_path, episodes=1, extra=["seed=1"])  # resumed: seed 1 is done, seed 0 not asked for
    assert row["episodes"] == 1
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 2  # nothing re-run


def test_a_foreign_line_in_results_is_skipped_with_a_warning(tmp_path):
    run_cfg(tmp_path, episodes=1)
    with (tmp_path / "results.jsonl").open("a") as f:
        f.write('{"note": "copied from somewhere else"}\n')
    with pytest.warns(UserWarning, match=r"skipped 1 line\(s\) that are not episode rows \(line 2\)"):
        (row,) = run_cfg(tmp_path, episodes=1)
    assert row["episodes"] == 1


def test_out_refuses_a_summary_another_command_wrote(tmp_path):
    (tmp_path / "summary.json").write_text('{"mse": 0.1}')
    with pytest.raises(SystemExit, match="not a benchmark summary"):
        run_cfg(tmp_path, episodes=1)


def test_the_cell_label_shows_overridden_guardrail_parameters():
    from hydra.core.hydra_config import HydraConfig

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(
            config_name="benchmark",
            overrides=["guardrails.min_height.z_min=0.15", "+guardrails.c._target_=planner.guardrails.MinHeight"]
            + ["+guardrails.c.z_min=0.2"],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    assert benchmark.run_key(cfg)["guardrails"] == "default+c(z_min=0.2)[min_height.z_min=0.15]"


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (["world_model=jepa"], ["world_model=jepa", "cost=latent"]),  # the JEPA's default cost is the latent cost
        ([], ["guardrails=keep_out", "~guardrails.keep_out"]),  # the default set, however it was assembled
        (["planner=cem_cpu"], ["planner.num_samples=64", "planner.num_elites=8", "planner.horizon=4"]),
    ],
)
def test_equal_settings_get_equal_labels_and_cells(one, other):
    if other[-1] == "planner.horizon=4":
        other = [*other, "planner.iterations=2"]
    assert benchmark.run_key(compose_benchmark(one)) == benchmark.run_key(compose_benchmark(other))


def test_labels_name_what_differs_from_the_shipped_configs():
    extra = ["+guardrails.ceiling._target_=planner.guardrails.MinHeight", "+guardrails.ceiling.z_min=0.3"]
    assert benchmark.run_key(compose_benchmark(extra))["guardrails"] == "default+ceiling(z_min=0.3)"  # not "default"
    assert benchmark.run_key(compose_benchmark(["guardrails=none"]))["guardrails"] == "none"
    key = benchmark.run_key(compose_benchmark(["guardrails=keep_out", "~guardrails.max_step"]))
    assert key["guardrails"] == "keep_out-max_step"
    key = benchmark.run_key(compose_benchmark(["cost.weights.gripper=3"]))
    assert key["cost"] == "oracle[weights.gripper=3]"
    assert benchmark.run_key(compose_benchmark(["world_model=jepa", "cost=state"]))["cost"] == "state"


def test_summary_has_the_safe_control_gym_violation_metrics():
    base = {"task": "reach", "success": True, "steps": 5, "plan_ms_all": [1.0], "predicted_violations": 0}
    rows = [{**base, "seed": s, "executed_violations": 0, "fallbacks": 0, "final_distance": 0.0} for s in range(50)]
    (row,) = benchmark.summarize(rows, "test")
    assert row["violation_episodes"] == 0 and row["violation_steps_per_episode"] == 0.0
    assert row["violation_episode_rate_ub95"] == pytest.approx(1 - 0.05 ** (1 / 50), abs=1e-4)  # ~3/N
    rows[0]["executed_violations"], rows[1]["executed_violations"] = 3, 1
    (row,) = benchmark.summarize(rows, "test")
    assert row["violation_episodes"] == 2 and row["violation_episode_rate"] == 0.04
    assert row["violation_steps_per_episode"] == pytest.approx(4 / 50)
    assert 0.04 < row["violation_episode_rate_ub95"] < 0.2


def test_a_sweep_shares_its_out_and_hydra_writes_nothing_of_its_own(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "planner.cli", "benchmark", "-m", "planner=cem,mppi", "task=reach", "episodes=1"]
        + [f"out={tmp_path / 'out'}", "planner.num_samples=16", "planner.iterations=1", "planner.horizon=3"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert sorted(r["planner"] for r in summary) == ["cem", "mppi"]  # the second job appended, not refused
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no outputs/, multirun/ or cli.log beside it
    assert not list((tmp_path / "out").glob("*.log"))


def test_quiet_hydra_overrides_go_before_the_users_and_after_flags():
    from planner.cli import HYDRA_QUIET, with_quiet_hydra

    assert with_quiet_hydra(["-m", "a=1", "~b"]) == ["-m", *HYDRA_QUIET, "a=1", "~b"]
    assert with_quiet_hydra(["a=1", "--cfg", "job"]) == ["--cfg", "job", *HYDRA_QUIET, "a=1"]
    assert with_quiet_hydra(["--info"]) == ["--info"]


def test_surprise_scores_count_flags_after_displacing_pushes_only():
    from planner.apps.benchmark import surprise_scores

    def row(push_step, moved, surprises, reperceived=()):
        events = [] if push_step is None else [{"kind": "push", "step": push_step, "moved_m": moved}]
        return {"fault_events": events, "surprise_steps": list(surprises), "reperceived_steps": list(reperceived)}

    rows = [
        row(3, 0.07, [4]),  # flagged one step after the push
        row(3, 0.07, [], reperceived=[6]),  # a re-perception 3 steps after counts; delay 3
        row(3, 0.07, [7]),  # too late: missed, and an alarm outside the window
        row(3, 0.005, []),  # the fingers held the cube: not scored
        row(None, None, [10, 20]),  # a clean episode with two surprises
    ]
    scores = surprise_scores(rows)
    assert scores["pushes_displacing"] == 3
    assert scores["push_detected_rate"] == 2 / 3
    assert scores["push_detect_delay_steps"] == 2.0
    assert scores["surprises_per_episode_outside_pushes"] == round(3 / 5, 3)
    assert surprise_scores([row(None, None, [])])["push_detected_rate"] is None
    assert scores["false_alarms_per_episode"] is None  # rows without the true-cube label
    labelled = [{**r, "cube_event_steps": []} for r in rows]
    labelled[4]["cube_event_steps"] = [9]  # the true cube moved by itself at step 9: the flag at 10 is explained
    scores = surprise_scores(labelled)
    assert scores["surprises_per_episode_outside_pushes"] == round(3 / 5, 3)
    assert scores["false_alarms_per_episode"] == round(2 / 5, 3)  # step 7 of row 3 and step 20


def test_a_cube_moved_by_itself_is_told_from_one_carried_or_pushed_by_the_hand():
    from planner.apps.episode import cube_moved_by_itself

    def state(ee, cube):
        return {"ee_pos": ee, "cube_pos": cube}

    start = state([0.4, 0.0, 0.1], [0.4, 0.0, 0.05])
    assert not cube_moved_by_itself(start, state([0.45, 0.0, 0.1], [0.45, 0.0, 0.05]))  # carried or pushed along
    assert cube_moved_by_itself(start, state([0.4, 0.0, 0.1], [0.44, 0.0, 0.05]))  # knocked 4 cm, hand still
    assert cube_moved_by_itself(start, state([0.4, 0.0, 0.1], [0.4, 0.0, 0.02]))  # dropped 3 cm
    assert not cube_moved_by_itself(start, state([0.4, 0.0, 0.1], [0.41, 0.0, 0.05]))  # 1 cm: within the threshold
    assert not cube_moved_by_itself({"ee_pos": [0, 0, 0]}, {"ee_pos": [1, 0, 0]})  # no cube in the scene


def test_the_cell_hash_follows_what_the_mode_reads():
    from hydra import compose, initialize_config_dir

    from planner.apps.benchmark import config_hash
    from planner.cli import CONFIG_DIR

    def cell(*overrides):
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
            return config_hash(compose(config_name="benchmark", overrides=["world_model=jepa", *overrides]))

    # the goal-photo readout is read by the goal-photo modes only: perceived cells keep their hash (and results)
    assert cell("subgoals=perceived") == cell("subgoals=perceived", "perception.photo_readout=[]")
    assert cell("subgoals=none") != cell("subgoals=none", "perception.photo_readout=[]")
    # the perceived agent's own switches leave the other modes' cells alone, and count for perceived ones
    assert cell("subgoals=privileged") == cell("subgoals=privileged", "perception.watch_moved=false")
    assert cell("subgoals=perceived") != cell("subgoals=perceived", "perception.watch_moved=false")
    assert cell("subgoals=none") == cell("subgoals=none", "perception.knock_distance=.inf")
    assert cell("subgoals=perceived") != cell("subgoals=perceived", "perception.knock_distance=.inf")
    # the safety filter's noise margin changes behaviour: a changed value is another cell, the default keeps its hash
    assert cell("estimate_sigmas=1") != cell() == cell("estimate_sigmas=4.0")
