"""Run-directory names that never collide and that all ranks of one launch agree on."""

from __future__ import annotations

import hashlib
import os
import time
import uuid


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
