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
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

import torch

from tinyfw.fingerprint import differences

log = logging.getLogger("tinyfw.train")
STATE_FILE = "trainer_state.json"
FINISHED_FILE = "finished.json"  # a finished run's fingerprint, kept once its checkpoints are gone
BEST_FILE = "best_weights.pt"
WAYS_OUT = ("use a new run directory (hydra.run.dir=...) or restart from scratch with resume=false "
            "(discards these checkpoints)")


class ResumeError(ValueError):
    """Existing checkpoints belong to another training than the one asked for."""


class CheckpointError(ValueError):
    """A checkpoint's file cannot be read (truncated by a kill or a full disk while saving)."""


def unreadable(path: Path) -> Optional[CheckpointError]:
    """The error naming the first file of checkpoint ``path`` that cannot be read, with the ways
    out (the previous checkpoint, ``resume=false``); None when every file reads."""
    from safetensors.torch import load_file

    for f in sorted(p for p in path.iterdir() if p.is_file()):
        try:
            if f.suffix == ".safetensors":
                load_file(str(f))
            elif f.suffix in (".bin", ".pt", ".pkl"):
                torch.load(f, map_location="cpu", weights_only=False)  # this run's own files
            elif f.suffix == ".json":
                json.loads(f.read_text())
        except Exception as exc:  # noqa: BLE001 - whatever the reader says, the file is damaged
            why = " ".join(f"{type(exc).__name__}: {exc}".split())[:160]
            older = [p for _, p in listing(path.parent) if p != path]
            back = f"remove {path} to resume from {older[-1].name}, or " if older else ""
            return CheckpointError(f"the checkpoint file {f} cannot be read ({why}): it is truncated or damaged "
                                   f"(a kill or a full disk while saving); {back}pass resume=false to start over "
                                   "(discards the checkpoints)")
    return None


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
    try:
        state = json.loads((path / STATE_FILE).read_text())
    except ValueError:
        raise unreadable(path) or ValueError(f"{path / STATE_FILE} cannot be read") from None
    check_fingerprint(path, state, fingerprint, desc)
    try:
        acc.load_state(str(path))
    except Exception as exc:  # noqa: BLE001 - a damaged file, or "size mismatch for ...": the model changed shape
        damaged = unreadable(path)
        if damaged is not None:
            raise damaged from exc
        if not isinstance(exc, RuntimeError):
            raise
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


def mark_finished(run_dir: Path, fingerprint: Mapping[str, Any]) -> None:
    """Record that ``run_dir`` holds a finished training of ``fingerprint`` (for runs that then
    delete their checkpoints: a re-run is still checked against it)."""
    from tinyfw.fingerprint import normalise
    from tinyfw.fsutil import atomic_write_json

    atomic_write_json(Path(run_dir) / FINISHED_FILE, {"fingerprint": normalise(fingerprint)})


def finished(run_dir: Path, fingerprint: Mapping[str, Any], desc: str, resume: bool = True) -> bool:
    """Whether ``run_dir`` holds a finished training of ``fingerprint`` (a re-run returns at once);
    another one is refused (:class:`ResumeError`, as for checkpoints). ``resume=False`` forgets it."""
    from tinyfw.fingerprint import normalise

    record = Path(run_dir) / FINISHED_FILE
    if not record.exists():
        return False
    if not resume:
        record.unlink()
        return False
    diff = differences(json.loads(record.read_text())["fingerprint"], normalise(fingerprint))
    if diff:
        more = f" and {len(diff) - 4} more" if len(diff) > 4 else ""
        raise ResumeError(f"{desc}: {run_dir} holds a finished run of another training ({'; '.join(diff[:4])}{more}); "
                          f"re-running there would relabel it: {WAYS_OUT.replace('these checkpoints', 'that run')}")
    return True


def drop_checkpoints(run_dir: Path, phases: Iterable[str]) -> None:
    """Remove the loop checkpoints of a finished run's phases (``<run_dir>/<phase>/checkpoints``:
    training state is only for resuming a killed run)."""
    for phase in phases:
        shutil.rmtree(Path(run_dir) / phase / "checkpoints", ignore_errors=True)
