"""``python -m tinyfw stage=<name> [group=option ...] [key=value ...]``: the one entry point."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import hydra
from omegaconf import DictConfig, OmegaConf

from tinyfw import config, rundir

# the config tree ships inside the package (package data), so an installed wheel finds it too;
# users add their own config directories with `hydra.searchpath=[file:///DIR]`
CONF_DIR = Path(__file__).resolve().parent / "conf"

config.register()
if not OmegaConf.has_resolver("tinyfw_run_id"):
    OmegaConf.register_new_resolver("tinyfw_run_id", rundir.run_id, use_cache=True)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def _hydra_main(cfg: DictConfig) -> Optional[float]:
    from tinyfw.runner import dev_objective, run_stage

    return dev_objective(run_stage(cfg))  # the sweep objective (hydra/sweeper=optuna)


def main() -> None:
    if not (CONF_DIR / "config.yaml").exists():
        sys.exit(
            f"tinyfw: config tree not found at {CONF_DIR}; the installation is incomplete "
            "(reinstall tinyfw: `pip install .` from its repository, or its wheel)."
        )
    _hydra_main()


if __name__ == "__main__":
    main()
