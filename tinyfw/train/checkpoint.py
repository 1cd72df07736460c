"""Checkpoints of the training loop: ``<out_dir>/checkpoints/step-N``.

Each one holds ``accelerator.save_state`` (trainable modules, optimizer, scheduler, RNG of
every process), ``trainer_state.json`` (step, epoch, batches consumed, history, evals, the
best eval and the *fingerprint*: what the run was trained with) and, for ``restore_best``
runs, ``best_weights.pt`` (the best trainable weights so far). It is written into
``step-N.tmp`` by every rank and renamed by rank 0 once all ranks are done.

Resuming checks the fingerprint first: a checkpoint made with another configuration is
refused (:class:`ResumeError`, naming the differing keys), as is one whose tensors do not fit
the model (a width change), instead of silently continuing another training.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch

from tinyfw.fingerprint import differences

log = logging.getLogger("tinyfw.train")
STATE_FILE = "trainer_state.json"
BEST_FILE = "best_weights.pt"
WAYS_OUT = ("use a new run directory (hydra.run.dir=...) or restart from scratch with resume=false "
            "(discards these checkpoints)")


class ResumeError(ValueError):
    """Existing checkpoints belong to another training than the one asked for."""


def listing(ckpt_root: Optional[Path]) -> List[Tuple[int, Path]]:
    """Finished checkpoints below ``ckpt_root``, oldest first."""
    if ckpt_root is None or not ckpt_root.is_dir():
        return []
    out = []
    for p in ckpt_root.iterdir():
        if p.is_dir() and p.name.startswith("step-") and p.name[5:].isdigit() and (p / STATE_FILE).exists():
            out.append((int(p.name[5:]), p))
    return sorted(out)


def check_fingerprint(path: Path, state: Mapping[str, Any], fingerprint: Optional[Dict[str, Any]],
                      desc: str) -> None:
    """Refuse to resume from ``path`` when it was trained with another fingerprint."""
    old = state.get("fingerprint")
    if fingerprint is None:
        return
    if old is None:
        log.warning("%s: %s records no fingerprint (an older checkpoint): resuming it unchecked", desc, path)
        return
    diff = differences(old, fingerprint)
    if diff:
        more = f" and {len(diff) - 4} more" if len(diff) > 4 else ""
        raise ResumeError(
            f"{desc}: {path.parent} holds checkpoints of another training ({'; '.join(diff[:4])}{more}); "
            f"resuming would mix the two: {WAYS_OUT}")


def discard(acc: Any, ckpt_root: Path, desc: str, log: Any) -> None:
    """``resume=false``: remove the checkpoints (rank 0; every rank waits)."""
    if acc.is_main_process and listing(ckpt_root):
        log.info("%s: resume=false, discarding the checkpoints in %s", desc, ckpt_root)
        shutil.rmtree(ckpt_root, ignore_errors=True)
    acc.wait_for_everyone()


def load(acc: Any, path: Path, fingerprint: Optional[Dict[str, Any]], desc: str) -> Tuple[Dict[str, Any], Any]:
    """(trainer state, best weights or None) of the checkpoint ``path``, loaded into ``acc``'s
    objects once its fingerprint matches."""
    state = json.loads((path / STATE_FILE).read_text())
    check_fingerprint(path, state, fingerprint, desc)
    try:
        acc.load_state(str(path))
    except RuntimeError as exc:  # e.g. "size mismatch for ...": the model changed shape
        first = next((ln.strip() for ln in str(exc).splitlines() if "mismatch" in ln or "Missing" in ln),
                     str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        raise ResumeError(f"{desc}: the checkpoint {path} does not fit this model ({first}); {WAYS_OUT}") from exc
    best_file = path / BEST_FILE
    best = torch.load(best_file, map_location="cpu", weights_only=True) if best_file.exists() else None
    return state, best


def save(acc: Any, ckpt_root: Path, step: int, state: Dict[str, Any], best_weights: Any, keep: int) -> None:
    """Write checkpoint ``step-<step>``: every rank saves into ``step-N.tmp``, then rank 0 adds the
    trainer state (and best weights), renames it into place and prunes to the last ``keep``."""
    tmp = ckpt_root / f"step-{step}.tmp"
    dst = ckpt_root / f"step-{step}"
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    acc.save_state(str(tmp))  # every rank writes its own RNG state into tmp
    acc.wait_for_everyone()  # ... and must be done before rank 0 renames tmp
    if acc.is_main_process:
        if best_weights is not None:
            torch.save(best_weights, tmp / BEST_FILE)
        (tmp / STATE_FILE).write_text(json.dumps(state))
        shutil.rmtree(dst, ignore_errors=True)
        os.replace(tmp, dst)
        for _, old in listing(ckpt_root)[:-max(1, keep)]:
            shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()
