"""``python -m tinyfw stage=<name> [group=option ...] [key=value ...]``: the one entry point."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import hydra
from omegaconf import DictConfig, OmegaConf

from tinyfw import config, rundir



def _conf_dir() -> Path:
    """The Hydra config tree: the copy a wheel ships inside the package (``tinyfw/conf``, mapped
    from the top-level tree by setup.py), else a checkout's top-level ``conf/`` (also what an
    editable install reads). Users add their own directories with `hydra.searchpath=[file:///DIR]`."""
    package = Path(__file__).resolve().parent
    packaged = package / "conf"
    return packaged if (packaged / "config.yaml").is_file() else package.parent / "conf"


CONF_DIR = _conf_dir()

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
