"""Stages: short functions that wire artefacts, data, models and the training loop together.

Each module exposes ``run(cfg, ctx) -> StageResult``; the work itself lives in the layers below
(README "Architecture"), and no stage imports another (``pipeline`` and ``prune`` run them as
processes with :func:`tinyfw.runner.run_step`; ``task`` and ``prune``'s recovery share
:mod:`tinyfw.td`).
They are imported lazily so that ``--help`` and light stages stay fast.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict

from omegaconf import DictConfig

from tinyfw.tracking import Tracker


@dataclass
class RunContext:
    run_dir: Path  # this run's Hydra output directory
    home: Path  # assets + cache root
    tracker: Tracker
    is_main: bool = True  # rank 0 (or the only process)


@dataclass
class StageResult:
    metrics: Dict[str, Any] = field(default_factory=dict)
    outputs: Dict[str, Any] = field(default_factory=dict)
    unchanged: bool = False  # a finished run asked again: result.json (and .hydra/) stay as they are


STAGES = {
    "info": "tinyfw.stages.info",
    "assets": "tinyfw.stages.assets",
    "general": "tinyfw.stages.general",
    "mlm": "tinyfw.stages.mlm",
    "augment": "tinyfw.stages.augment",
    "teacher": "tinyfw.stages.teacher",
    "task": "tinyfw.stages.task",
    "report": "tinyfw.stages.report",
    "pipeline": "tinyfw.stages.pipeline",
    "bench": "tinyfw.stages.bench",
    "export": "tinyfw.stages.export",
    "prune": "tinyfw.stages.prune",
}


def get(name: str) -> Callable[[DictConfig, RunContext], StageResult]:
    if name not in STAGES:
        raise ValueError(f"unknown stage '{name}'; valid stages: {', '.join(STAGES)}")
    return importlib.import_module(STAGES[name]).run
