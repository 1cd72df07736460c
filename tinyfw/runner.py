"""Runs one stage inside a Hydra job: seeds, wandb, and result.json (ok or failed)."""

from __future__ import annotations

import logging
import os
import time
import traceback
from pathlib import Path
from typing import Any, Dict

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from tinyfw import paths, stages, tracking
from tinyfw.fsutil import atomic_write_json

log = logging.getLogger("tinyfw")


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def sweep_group(cfg: DictConfig) -> str:
    if cfg.logging.wandb.group:
        return cfg.logging.wandb.group
    hc = HydraConfig.get()
    if hc.mode == RunMode.MULTIRUN:
        return Path(hc.sweep.dir).name
    return "single"


def result_record(cfg: DictConfig, status: str, res: stages.StageResult, **extra: Any) -> Dict[str, Any]:
    from tinyfw import dist

    return {
        "stage": tracking._s(cfg.stage),
        "status": status,
        "device": dist.device(),  # where this process trains: cpu | cuda | cuda:LOCAL_RANK
        "flags": tracking.flags(cfg),
        "metrics": res.metrics,
        "outputs": res.outputs,
        **extra,
        "config": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
    }


def run_stage(cfg: DictConfig) -> Dict[str, Any]:
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    from tinyfw import dist

    dist.init()  # torchrun/accelerate launch/SLURM tasks: all ranks join before any stage work
    main = is_main_process()
    from transformers import set_seed

    if cfg.threads > 0:
        import torch

        torch.set_num_threads(int(cfg.threads))
    set_seed(cfg.seed)
    home = paths.home(cfg.home)
    group = sweep_group(cfg)
    tracker = tracking.start(cfg, run_dir, group, enabled=main)
    ctx = stages.RunContext(run_dir=run_dir, home=home, tracker=tracker, is_main=main)
    t0 = time.time()
    stage_name = tracking._s(cfg.stage)
    try:
        res = stages.get(stage_name)(cfg, ctx)
    except BaseException as exc:  # record the failure, then let it propagate (or not, in sweeps)
        res = stages.StageResult()
        err = f"{type(exc).__name__}: {exc}"
        record = result_record(
            cfg, "failed", res, error=err, traceback=traceback.format_exc(),
            wall_time_s=round(time.time() - t0, 2), group=group,
        )
        if main:
            atomic_write_json(run_dir / "result.json", record)
        tracker.summary({"status": "failed", "error": err})
        tracker.finish(exit_code=1)
        log.error("stage %s failed: %s (result.json in %s)", stage_name, err, run_dir)
        if hc.mode == RunMode.MULTIRUN and isinstance(exc, Exception):
            return record  # one failed job must not stop the sweep; the report shows it
        raise
    record = result_record(cfg, "ok", res, wall_time_s=round(time.time() - t0, 2), group=group)
    if main:
        atomic_write_json(run_dir / "result.json", record)
        log.info("result: %s", run_dir / "result.json")
    tracker.summary({"status": "ok", **_flat(res.metrics)})
    tracker.finish()
    return record


def _flat(d: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}/"))
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out[f"{prefix}{k}"] = v
    return out
