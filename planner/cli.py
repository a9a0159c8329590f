"""The ``jepa-mpc`` console script: one subcommand per app, each driven by hydra overrides.

jepa-mpc demo task=pick_place planner=cem
jepa-mpc benchmark task=reach episodes=10 out=runs/reach
jepa-mpc benchmark -m planner=cem,mppi task=reach
jepa-mpc benchmark -m hydra/launcher=joblib shard=0/2,1/2 task=reach out=runs/reach
jepa-mpc summarize out=runs/reach
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"

# subcommand -> ("module:function" taking the composed DictConfig, primary config name, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": ("planner.apps.demo:run", "demo", "run one planning episode; write a video and plots"),
    "benchmark": ("planner.apps.benchmark:run", "benchmark", "success rates over seeded episodes; resumable"),
    "summarize": ("planner.apps.shards:summarize_app", "summarize", "rebuild an out's summary from its results"),
    "experts": ("planner.apps.experts:run", "experts", "scripted-expert success per task"),
    "collect": ("world_models.jepa.collect:collect", "collect", "collect episodes for JEPA training; resumable"),
    "train": ("world_models.jepa.train:train", "train", "pretrain the JEPA world model; resumable"),
    "eval-model": ("world_models.jepa.evaluate:evaluate", "eval_model", "evaluate a JEPA checkpoint on held-out data"),
}
# Hydra writes nothing of its own (no run folder, no .hydra/, no <app>.log): each app creates its outputs itself,
# after its config is checked, so a config mistake leaves no file behind. Prepended, so a user's override still wins.
HYDRA_QUIET = ["hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=stdout"]
PASSTHROUGH: dict[str, tuple[str, str]] = {
    "bench-speed": ("planner.bench_speed", "time our CEM/MPPI against pytorch_mppi (argparse options)"),
}


def _usage() -> str:
    lines = ["usage: jepa-mpc <subcommand> [hydra overrides...]", "", "subcommands:"]
    for name, (_, _, text) in SUBCOMMANDS.items():
        lines.append(f"  {name:<12} {text}")
    for name, (_, text) in PASSTHROUGH.items():
        lines.append(f"  {name:<12} {text}")
    lines.append("\n`jepa-mpc <subcommand> --help` shows its config; `--cfg job` prints it resolved.")
    return "\n".join(lines)


def _hydra_entry(target: str, config_name: str) -> Callable[[], None]:
    import hydra
    from omegaconf import DictConfig

    module_name, function_name = target.split(":")
    function = getattr(importlib.import_module(module_name), function_name)

    @hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base=None)
    def entry(cfg: DictConfig) -> None:
        function(cfg)

    return entry


def with_quiet_hydra(args: list[str]) -> list[str]:
    """``args`` with :data:`HYDRA_QUIET` before the user's overrides (argparse takes hydra's overrides as one run of
    positionals, so flags such as ``-m`` and ``--cfg job`` stay in front of them). ``--info`` runs nothing: as given."""
    if "--info" in args or "-i" in args:
        return list(args)

    def is_override(arg: str) -> bool:
        return not arg.startswith("-") and ("=" in arg or arg.startswith("~"))

    flags = [a for a in args if not is_override(a)]
    return [*flags, *HYDRA_QUIET, *[a for a in args if is_override(a)]]


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return
    name, rest = argv[0], argv[1:]
    if not sys.stderr.isatty():  # progress bars in a log (CI): one refresh per 30 s, not megabytes of \r updates
        os.environ.setdefault("TQDM_MININTERVAL", "30")
    if name in PASSTHROUGH:
        module = importlib.import_module(PASSTHROUGH[name][0])
        module.main(rest)
        return
    if name not in SUBCOMMANDS:
        known = ", ".join([*SUBCOMMANDS, *PASSTHROUGH])
        sys.exit(f"jepa-mpc: unknown subcommand {name!r}; known: {known}")
    target, config_name, _ = SUBCOMMANDS[name]
    sys.argv = [f"jepa-mpc {name}", *with_quiet_hydra(rest)]
    _hydra_entry(target, config_name)()


if __name__ == "__main__":
    main()
