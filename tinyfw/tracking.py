"""Weights & Biases runs: mode from config (env ``WANDB_MODE`` wins), files in the run dir.

group = the sweep (or ``logging.wandb.group``), job_type = the stage, tags = ``gd:on``,
``td:off``, ``da:on`` ...; ``gd``/``td``/``da``/task/seed sit at the top of the run config.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional

from omegaconf import DictConfig, OmegaConf

from tinyfw.config import plain


def flags(cfg: DictConfig) -> Dict[str, str]:
    return {"gd": plain(cfg.gd), "td": plain(cfg.td), "da": plain(cfg.augment)}


def wandb_mode(cfg: DictConfig) -> str:
    return os.environ.get("WANDB_MODE") or plain(cfg.logging.wandb.mode)


class Tracker:
    """Thin wrapper so stages log without caring whether wandb is on."""

    def __init__(self, run: Any = None):
        self.run = run
        self._axes: set = set()

    def log(self, metrics: Dict[str, float], step: Optional[int] = None) -> None:
        """Log ``metrics`` at ``step``. Each top-level key prefix (``step1/``, ``step2/``,
        ``train/`` ...) gets its own x-axis ``<prefix>/step``: wandb's own step must only grow,
        so logging TD step 2 from step 1 again under it would drop step 2's points."""
        if self.run is None:
            return
        if step is None:
            self.run.log(metrics)
            return
        axes = {k.split("/", 1)[0] for k in metrics if "/" in k}
        for axis in axes - self._axes:
            self.run.define_metric(f"{axis}/step")
            self.run.define_metric(f"{axis}/*", step_metric=f"{axis}/step")
            self._axes.add(axis)
        self.run.log({**metrics, **{f"{a}/step": step for a in axes}})

    def summary(self, metrics: Dict[str, Any]) -> None:
        if self.run is not None:
            for k, v in metrics.items():
                self.run.summary[k] = v

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None


def start(cfg: DictConfig, run_dir: Path, group: str, enabled: bool = True) -> Tracker:
    """Open a wandb run for this stage (or a no-op tracker when disabled / not rank 0)."""
    mode = wandb_mode(cfg)
    if not enabled or mode == "disabled":
        return Tracker(None)
    import wandb

    f = flags(cfg)
    config = {
        **f,
        "task": cfg.task.name,
        "seed": cfg.seed,
        "stage": plain(cfg.stage),
        "cfg": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
    }
    run = wandb.init(
        project=cfg.logging.wandb.project,
        entity=cfg.logging.wandb.entity,
        group=group,
        job_type=plain(cfg.stage),
        tags=[f"{k}:{v}" for k, v in f.items()],
        config=config,
        dir=str(run_dir),
        mode=mode,
        reinit="finish_previous",
        settings=wandb.Settings(silent=True, console="off"),
    )
    return Tracker(run)
