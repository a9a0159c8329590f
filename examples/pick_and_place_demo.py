"""Pick-and-place with the MPC agent: one episode, an MP4 and PNG plots (the same as `jepa-mpc demo`).

python examples/pick_and_place_demo.py [hydra overrides, e.g. world_model=oracle planner=mppi seed=3]
"""

import sys

from hydra import compose, initialize_config_dir

from planner.apps import demo
from planner.cli import CONFIG_DIR


def main(overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        cfg = compose(config_name="demo", overrides=["task=pick_place", *overrides])
    return demo.run(cfg)


if __name__ == "__main__":
    summary = main(sys.argv[1:])
    print("success" if summary["success"] else "no success", "->", summary["video"])
