"""Run directories: names that never collide and that all ranks of one launch agree on, and
the guard (:class:`RunDirGuard`) that keeps an existing run's record until a new run there is
accepted."""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, read_write


def run_id() -> str:
    """``YYYY-MM-DD/HH-MM-SS-xxxxxx`` for ``hydra.run.dir``/``hydra.sweep.dir``.

    A single process gets a random suffix, so two runs started in the same second differ.
    Ranks started by torchrun/accelerate (``LOCAL_RANK`` set) share a parent process (the
    launcher's agent): they take its start time and pid, so every rank writes into one
    directory. Multi-node launches should pass ``hydra.run.dir`` explicitly.
    """
    if "LOCAL_RANK" in os.environ:
        ppid = os.getppid()
        try:
            import psutil

            started = psutil.Process(ppid).create_time()
        except Exception:  # pragma: no cover - psutil ships with accelerate
            started = time.time()
        key = f"{ppid}-{os.environ.get('TORCHELASTIC_RUN_ID', '')}-{os.environ.get('MASTER_PORT', '')}"
        suffix = hashlib.sha1(key.encode()).hexdigest()[:6]
    else:
        started = time.time()
        suffix = uuid.uuid4().hex[:6]
    return time.strftime("%Y-%m-%d/%H-%M-%S", time.localtime(started)) + f"-{suffix}"


# --------------------------------------------------------------------------------------
# a run directory that already holds a run: its record is kept until the new one is accepted

_DEFERRED: dict = {}  # {"run_dir": Path, "subdir": str} while Hydra's .hydra/ writing is held back


class RunDirGuard(Callback):
    """Hydra callback (``hydra.callbacks``, run mode), before Hydra writes anything:

    - a run directory that cannot be written ends the command in one line naming
      ``hydra.run.dir`` (Hydra's own log file would fail with a traceback);
    - in a directory that already holds a run (``.hydra/config.yaml``), Hydra's writing of
      ``.hydra/`` is held back: :func:`write_record` writes it once the new run is accepted, so a
      refused re-run leaves the existing record byte for byte as it was."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _DEFERRED.clear()
        run = Path(os.path.abspath(str(OmegaConf.select(config, "hydra.run.dir"))))
        check_writable(run)
        subdir = config.hydra.output_subdir
        if subdir is not None and (run / str(subdir) / "config.yaml").exists():
            _DEFERRED.update(run_dir=run, subdir=str(subdir))
            with read_write(config.hydra):
                config.hydra.output_subdir = None


def check_writable(run: Path) -> None:
    """End the command (one line on stderr, exit 1) when ``run`` cannot be created or written."""
    try:
        run.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=run)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        sys.stderr.write(f"tinyfw: the run directory {run} is not writable ({exc.strerror or exc}): make it "
                         "writable, or pass hydra.run.dir=<a writable directory>\n")
        raise SystemExit(1) from None


def held_back(run_dir: Path) -> bool:
    """Whether ``run_dir`` held a run when this command started (its ``.hydra/`` not yet rewritten)."""
    return _DEFERRED.get("run_dir") == Path(run_dir)


def write_record(run_dir: Path, cfg: DictConfig) -> None:
    """Write the ``.hydra/`` record Hydra held back (config, hydra config, overrides), as Hydra
    would have at the start; nothing when nothing was held back."""
    from hydra.core.hydra_config import HydraConfig

    from tinyfw.fsutil import atomic_write_text

    if not held_back(run_dir):
        return
    out = Path(run_dir) / _DEFERRED.pop("subdir")
    _DEFERRED.clear()
    hydra_cfg = OmegaConf.create(OmegaConf.to_container(HydraConfig.instance().cfg))  # a writable copy
    hydra_cfg.hydra.output_subdir = out.name
    atomic_write_text(out / "config.yaml", OmegaConf.to_yaml(cfg))
    atomic_write_text(out / "hydra.yaml", OmegaConf.to_yaml(hydra_cfg))
    atomic_write_text(out / "overrides.yaml", OmegaConf.to_yaml(hydra_cfg.hydra.overrides.task))
