"""Content-addressed cache of shared artefacts, built once under a file lock.

Layout: ``<root>/cache/<kind>/<key>/`` where ``key`` is a hash of everything that
determines the artefact (config sub-trees, input identities, seed). An entry is complete
or absent: the builder writes into a temporary directory that is renamed into place.
``<key>/key.json`` records what the hash was made of. Temporary directories left by a killed
build (``.<key>.tmp-*``) are removed when the entry is next built. Resumable work of an entry
being built lives in ``<root>/cache/<kind>-work/<key>`` (:func:`work_dir`). An artefact that
takes work to make (training, augmenting) goes through :func:`ensure_made`, a finished run's
outputs through :func:`register`. Clear the cache with ``rm -r <root>/cache`` (or one ``<kind>``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence

from filelock import FileLock

from tinyfw.fingerprint import differences, normalise
from tinyfw.fsutil import atomic_dir, atomic_write_json

log = logging.getLogger("tinyfw.cache")
WORK_FILE = "work.json"


def digest(chunks: Iterable[bytes]) -> str:
    """The one content hash: 16 hex digits of the SHA-256 of ``chunks`` in order."""
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return h.hexdigest()[:16]


def key_of(parts: Mapping[str, Any]) -> str:
    """An entry's key: the :func:`digest` of ``parts`` as sorted JSON."""
    return digest([json.dumps(parts, sort_keys=True, default=str).encode()])


def entry(root: Path, kind: str, parts: Mapping[str, Any]) -> Path:
    return root / "cache" / kind / key_of(parts)


_SOLO: list = []  # entries being built by rank 0 alone while the other ranks wait


def _world() -> int:
    from tinyfw import dist

    return dist.init()  # under torchrun the process group may not be up yet


def ensure(
    root: Path,
    kind: str,
    parts: Mapping[str, Any],
    build: Callable[[Path], None],
    prepare: Optional[Callable[[], None]] = None,
    info: Optional[Dict[str, Any]] = None,
) -> Path:
    """Return the cache entry for ``parts``, calling ``build(tmp_dir)`` once if it is absent.

    Concurrent callers (parallel sweep jobs) wait on a lock; only the first builds. ``info``
    (a dict) receives ``built`` (whether this call built the entry) and ``waited_s`` (time
    spent waiting for another job's build).

    ``prepare()`` is for work that every rank of a distributed job must do together (training
    under DDP: it runs collectives, so it cannot sit behind a lock one rank holds): when given
    and a process group with more than one rank is up, every rank must call ``ensure``; rank 0
    decides under the lock whether the entry is missing, then all ranks run ``prepare()``, then
    rank 0 alone runs ``build(tmp)`` (e.g. copying what ``prepare`` wrote) and all ranks wait
    for it. In a single process it is simply ``prepare()`` then ``build(tmp)`` under the lock.

    In a distributed job without ``prepare``, rank 0 alone builds and the other ranks wait for
    the entry (transformers 5's ``save_pretrained`` writes nothing on ranks other than 0 once a
    process group is up, so a build there would be empty); work split across ranks goes
    through ``prepare``.
    """
    final = entry(root, kind, parts)
    info = info if info is not None else {}
    info.update(built=False, waited_s=0.0)
    world = _world()
    if prepare is not None and world > 1:  # rank 0 decides for all: no early return here
        return _ensure_collective(final, parts, build, prepare, info)
    if final.exists():
        return final
    if world > 1 and _rank() != 0:
        return _wait_for(final)
    if prepare is not None:
        inner = build

        def build(tmp: Path) -> None:  # noqa: F811 - prepare first, same lock
            prepare()
            inner(tmp)
    final.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with FileLock(str(final) + ".lock"):
        if final.exists():
            _waited(final, t0, info)
            return final
        _SOLO.append(f"{kind}/{final.name}" if world > 1 else "")
        try:
            _build_locked(final, parts, build)
            info["built"] = True
        finally:
            _SOLO.pop()
    return final


def _build_locked(final: Path, parts: Mapping[str, Any], build: Callable[[Path], None]) -> None:
    """Build ``final`` (its lock held): first remove what killed builds of it left behind."""
    for orphan in final.parent.glob(f".{final.name}.tmp-*"):
        log.info("removing %s, left by an interrupted build", orphan)
        shutil.rmtree(orphan, ignore_errors=True)
    with atomic_dir(final) as tmp:
        build(tmp)
        atomic_write_json(tmp / "key.json", dict(parts))


def _waited(final: Path, t0: float, info: Dict[str, Any]) -> None:
    info["waited_s"] = round(time.monotonic() - t0, 2)
    if info["waited_s"] >= 1:
        log.info("waited %.1f s for another job's build of %s; using it", info["waited_s"], final)


def ensure_made(root: Path, kind: str, parts: Mapping[str, Any], make: Callable[[Path], Any],
                collect: Callable[[Path, Path], Any], work: Optional[Path] = None, keep_work: bool = False,
                info: Optional[Dict[str, Any]] = None) -> Path:
    """The entry ``<kind>/<key of parts>`` of an artefact that takes work to make; when it is
    missing, every rank runs ``make(work)`` (resumable work: a training's checkpoints, finished
    shards), then rank 0 alone runs ``collect(work, tmp)`` into the entry (see :func:`ensure`).

    ``work`` defaults to :func:`work_path` ``(root, kind, parts)``; it is removed once the entry
    is there, unless ``keep_work`` (a run directory's own outputs). ``info`` as for
    :func:`ensure`."""
    final = entry(root, kind, parts)
    if present(final):  # also inside another entry's solo build, where a collective would hang
        if info is not None:
            info.update(built=False, waited_s=0.0)
        return final
    work = work if work is not None else work_path(root, kind, parts)
    ensure(root, kind, parts, lambda tmp: collect(work, tmp), prepare=lambda: make(work), info=info)
    if not keep_work and work.exists() and _rank() == 0:
        shutil.rmtree(work, ignore_errors=True)
    return final


def register(root: Path, kind: str, parts: Mapping[str, Any], src: Path, names: Sequence[str]) -> Path:
    """Copy a finished run's outputs ``names`` (files or directories in ``src``; the first is
    required) into the entry ``<kind>/<key of parts>``, once; the entry."""
    return ensure(root, kind, parts, lambda tmp: copy_outputs(src, tmp, names))


def copy_outputs(src: Path, dst: Path, names: Sequence[str]) -> None:
    """Copy ``names`` of ``src`` into ``dst``: the first must exist, the others when they do."""
    for i, name in enumerate(names):
        path = src / name
        if path.is_dir() or i == 0 and not path.exists():
            shutil.copytree(path, dst / name)
        elif path.exists():
            shutil.copy2(path, dst / name)


def work_path(root: Path, kind: str, parts: Mapping[str, Any]) -> Path:
    """``<root>/cache/<kind>-work/<key of parts>``: where an entry's resumable work lives."""
    return root / "cache" / f"{kind}-work" / key_of(parts)


def work_dir(root: Path, kind: str, parts: Mapping[str, Any], defines: Optional[Mapping[str, Any]] = None,
             resume: bool = True) -> Path:
    """``<root>/cache/<kind>-work/<key of parts>``: the resumable work of an entry being built.

    ``work.json`` records what defines the work (``parts`` and ``defines``, e.g. a shard size
    that changes what a finished shard holds); work left with another definition is refused
    (a ValueError naming the differing keys) unless ``resume`` is false, which discards it.
    Every rank of a distributed job calls it; rank 0 alone writes.
    """
    from tinyfw import dist

    work = work_path(root, kind, parts)
    want = normalise({**dict(parts), **dict(defines or {})})
    record = work / WORK_FILE
    if not resume and work.exists():
        if _rank() == 0:
            log.info("resume=false: discarding the unfinished work in %s", work)
            shutil.rmtree(work, ignore_errors=True)
        dist.barrier()
    if record.exists():
        diff = differences(json.loads(record.read_text()), want)
        if diff:
            raise ValueError(f"{work} holds unfinished work made with other settings ({'; '.join(diff[:4])}): "
                             "set them back to resume it, or pass resume=false to discard it")
    elif _rank() == 0:
        work.mkdir(parents=True, exist_ok=True)
        atomic_write_json(record, want)
    return work


def present(final: Path) -> bool:
    """Whether the entry ``final`` exists, as rank 0 sees it: in a distributed run the answer is
    broadcast, so every rank takes the same branch before a collective build (a file that
    appears between two ranks' own checks would otherwise split them and hang both)."""
    if _world() <= 1 or any(_SOLO):  # one process, or rank 0 alone inside a solo build
        return final.exists()
    import torch.distributed as dist

    seen = [final.exists() if dist.get_rank() == 0 else False]
    dist.broadcast_object_list(seen, src=0)
    return bool(seen[0])


def _rank() -> int:
    from tinyfw import dist

    return dist.rank()


def _wait_for(final: Path, poll_s: float = 0.5) -> Path:
    """Rank 0 builds ``final``; wait until it appears."""
    t0 = last = time.monotonic()
    while not final.exists():
        time.sleep(poll_s)
        if time.monotonic() - last > 60:
            last = time.monotonic()
            log.info("rank %d: waiting %.0f s for rank 0 to build %s", _rank(), last - t0, final)
    return final


def _ensure_collective(final: Path, parts: Mapping[str, Any], build: Callable[[Path], None],
                       prepare: Callable[[], None], info: Optional[Dict[str, Any]] = None) -> Path:
    import torch.distributed as dist

    info = info if info is not None else {}

    solo = [k for k in _SOLO if k]
    if solo:  # the other ranks are waiting for rank 0: a collective here would hang
        raise RuntimeError(
            f"cache entry {final} needs every rank (it trains), but it was requested while rank 0 "
            f"builds {solo[-1]} alone; ensure it on all ranks before that build")
    rank = dist.get_rank()
    lock = FileLock(str(final) + ".lock")
    missing = [False]
    if rank == 0:
        final.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        lock.acquire()  # other jobs asking for the same entry wait here
        missing = [not final.exists()]
        if not missing[0]:
            _waited(final, t0, info)
    try:
        dist.broadcast_object_list(missing, src=0)
        if missing[0]:
            prepare()
            dist.barrier()
            if rank == 0:
                _build_locked(final, parts, build)
            info["built"] = True
    finally:
        if rank == 0:
            lock.release()
    dist.barrier()
    return final
