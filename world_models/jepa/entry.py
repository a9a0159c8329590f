"""The hydra entry point the JEPA's command-line modules share (``python -m world_models.jepa.collect|train``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def hydra_entry(config_name: str, task: Callable[[Any], Any]) -> None:
    """Run ``task`` on ``configs/<config_name>.yaml`` with the command line's hydra overrides. ``task`` itself is the
    hydra task function, so the job keeps its module's name (``collect``, ``train``)."""
    import hydra

    hydra.main(config_path=str(CONFIG_DIR), config_name=config_name, version_base="1.3")(task)()
