"""Runs one stage inside a Hydra job: seeds, wandb, and result.json (ok or failed).

Before any stage work the config is validated and ``$TINYFW_HOME`` checked writable. An expected
user error (bad config or input, a missing file, a full or read-only disk) ends the run with one
console line, its traceback in result.json and the run's log; anything else keeps its traceback.
A refused re-run leaves the run already in its directory as it was and writes its own
``refused-<time>-<pid>.json`` (:mod:`tinyfw.rundir`; README "Stages"). Stages that chain others
(``pipeline``, ``prune``; no stage imports another) run them as child processes:
:func:`run_step`, :func:`tinyfw_cmd`, :func:`passthrough_overrides`.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from tinyfw import config, paths, precision, rundir, stages, tracking
from tinyfw.fsutil import atomic_write_json

log = logging.getLogger("tinyfw")
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)
NO_HOME_WRITES = ("info", "report")  # stages that never write below $TINYFW_HOME


def is_main_process() -> bool:
    from tinyfw import dist

    return dist.rank() == 0


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
        "stage": config.plain(cfg.stage),
        "status": status,
        "device": dist.device(),  # where this process trains: cpu | cuda | cuda:LOCAL_RANK
        "flags": tracking.flags(cfg),
        "metrics": res.metrics,
        "outputs": res.outputs,
        "precision": precision.choices(),  # each precision chosen, by config key, with its reason
        **extra,
        "config": OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),
    }


def is_user_error(exc: BaseException) -> bool:
    """An expected user error (bad config or input, a missing file, a full or read-only disk):
    reported in one line, not as a traceback."""
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
        return exc.errno in DISK_ERRNOS or isinstance(exc, (NotADirectoryError, IsADirectoryError))
    return isinstance(exc, (ValueError, FileNotFoundError))


def is_refusal(exc: BaseException) -> bool:
    """A re-run refused because the run directory holds another training (its fingerprint)."""
    from tinyfw.train.checkpoint import ResumeError

    return isinstance(exc, ResumeError)


def _finished_ok(run_dir: Path) -> bool:
    try:
        return json.loads((run_dir / "result.json").read_text()).get("status") == "ok"
    except (OSError, ValueError):
        return False


def explain(exc: BaseException, home: Path) -> str:
    """One line for ``exc``; a disk error names the path and, below the home, ``TINYFW_HOME``."""
    if isinstance(exc, OSError) and exc.errno in DISK_ERRNOS:
        where = exc.filename or ""
        under_home = str(where).startswith(str(home))
        fix = (f"$TINYFW_HOME ({home}) must be a writable directory with free space: set TINYFW_HOME "
               "(or home=) to one" if under_home else
               f"free space there or write the run elsewhere (hydra.run.dir=...); the cache needs space in "
               f"$TINYFW_HOME ({home}) too")
        return f"{type(exc).__name__}: cannot write {where or 'a file'} ({os.strerror(exc.errno)}): {fix}"
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def _to_log_file(message: str) -> None:
    """Write ``message`` (a traceback) to the run's log file only, not to the console."""
    for h in logging.getLogger().handlers:
        if isinstance(h, logging.FileHandler):
            h.emit(logging.makeLogRecord({"name": "tinyfw", "levelno": logging.ERROR, "levelname": "ERROR",
                                          "msg": message}))


def dev_objective(record: Dict[str, Any]) -> Optional[float]:
    """The run's dev main metric (``metrics.dev[metrics.main_metric]``: stage=task, teacher),
    what the Hydra entry returns, so an Optuna sweep (``hydra/sweeper=optuna``) optimises it.
    None for failed runs and stages without one: the sweeper then marks the trial failed."""
    m = record.get("metrics") or {}
    value = (m.get("dev") or {}).get(m.get("main_metric") or "") if record.get("status") == "ok" else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


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
    tracker: Optional[tracking.Tracker] = None
    t0 = time.time()
    stage_name = config.plain(cfg.stage)
    try:
        config.validate(cfg)
        config.check_overrides(cfg, list(hc.overrides.task))
        if stage_name not in NO_HOME_WRITES:
            paths.check_writable(home)
        tracker = tracking.start(cfg, run_dir, group, enabled=main)
        ctx = stages.RunContext(run_dir=run_dir, home=home, tracker=tracker, is_main=main)
        res = stages.get(stage_name)(cfg, ctx)
    except BaseException as exc:  # record the failure, then let it propagate (or not, in sweeps)
        return _failed(cfg, exc, run_dir, home, tracker, group, stage_name, t0, main, hc.mode)
    record = result_record(cfg, "ok", res, wall_time_s=round(time.time() - t0, 2), group=group)
    if main and res.unchanged:  # a finished run asked again: its records stay as they are
        record = json.loads((run_dir / "result.json").read_text())
        log.info("already finished: %s (nothing to do)", run_dir / "result.json")
    elif main:
        rundir.write_record(run_dir, cfg)
        atomic_write_json(run_dir / "result.json", record)
        log.info("result: %s", run_dir / "result.json")
    tracker.summary({"status": "ok", **_flat(res.metrics)})
    tracker.finish()
    return record


def _failed(cfg: DictConfig, exc: BaseException, run_dir: Path, home: Path, tracker: Any, group: str,
            stage_name: str, t0: float, main: bool, mode: RunMode) -> Dict[str, Any]:
    """Record a failed stage (result.json, wandb, log); re-raise it, or in a sweep return it.
    A user error reaches the console as one line (SystemExit); its traceback stays in
    result.json and the log file."""
    err = explain(exc, home)
    tb = traceback.format_exc()
    # a refusal (another training there), or bad input next to a finished run: that run stays as it was
    refused = rundir.held_back(run_dir) and (is_refusal(exc) or is_user_error(exc) and _finished_ok(run_dir))
    record = result_record(cfg, "refused" if refused else "failed", stages.StageResult(), error=err, traceback=tb,
                           wall_time_s=round(time.time() - t0, 2), group=group)
    where = run_dir / "result.json"
    if refused:  # the run already there stays as it was: this command's record goes beside it
        where = run_dir / f"refused-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.json"
        record["overrides"] = list(HydraConfig.get().overrides.task)
    if main:
        try:
            if not refused:
                rundir.write_record(run_dir, cfg)
            atomic_write_json(where, record)
        except OSError as write_exc:  # a full disk: say so rather than hide the first error
            log.error("could not write %s: %s", where, write_exc)
    if tracker is not None:
        tracker.summary({"status": record["status"], "error": err})
        tracker.finish(exit_code=1)
    if refused:
        log.error("stage %s refused: %s (the run in %s is unchanged; this refusal: %s)", stage_name, err, run_dir,
                  where.name)
    else:
        log.error("stage %s failed: %s (result.json in %s)", stage_name, err, run_dir)
    if mode == RunMode.MULTIRUN and isinstance(exc, Exception):
        return record  # one failed job must not stop the sweep; the report shows it
    if is_user_error(exc):
        _to_log_file(tb)
        raise SystemExit(1) from exc
    raise exc


def _flat(d: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}/"))
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out[f"{prefix}{k}"] = v
    return out


# --------------------------------------------------------------------------------------
# other stages as child processes (stage=pipeline, stage=prune)


def passthrough(overrides: Sequence[str], skip: Sequence[str]) -> List[str]:
    """``overrides`` minus ``stage=``, ``hydra.*`` and those starting with one of ``skip``."""
    drop = ("stage=", "hydra.", *skip)
    return [o for o in overrides if not o.startswith(drop)]


def passthrough_overrides(skip: Sequence[str] = ()) -> List[str]:
    """This job's command-line overrides for a child step: :func:`passthrough` of them."""
    return passthrough(HydraConfig.get().overrides.task, skip)


def tinyfw_cmd(*args: str) -> List[str]:
    return [sys.executable, "-m", "tinyfw", *args]


def run_step(name: str, cmd: List[str], log_dir: Path) -> float:
    """Run one step as a subprocess (output teed to ``<log_dir>/<name>.log``); raise on failure."""
    log.info("step %s: %s", name, " ".join(cmd[2:]))
    t0 = time.time()
    log_file = log_dir / f"{name}.log"
    with log_file.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "HYDRA_FULL_ERROR": "1"})
        assert proc.stdout is not None
        for line in proc.stdout:
            f.write(line)
            sys.stdout.write(f"[{name}] {line}")
        rc = proc.wait()
    if rc != 0:
        raise RuntimeError(f"step '{name}' failed (exit {rc}); see {log_file}")
    return round(time.time() - t0, 1)
