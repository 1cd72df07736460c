"""Content-addressed cache of shared artefacts, built once under a file lock.

Layout: ``<root>/cache/<kind>/<key>/`` where ``key`` is a hash of everything that
determines the artefact (config sub-trees, input identities, seed). An entry is complete
or absent: the builder writes into a temporary directory that is renamed into place.
``<key>/key.json`` records what the hash was made of. Clear the cache with
``rm -r <root>/cache`` (or one ``<kind>``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from filelock import FileLock

from tinyfw.fsutil import atomic_dir, atomic_write_json


def key_of(parts: Mapping[str, Any]) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


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
) -> Path:
    """Return the cache entry for ``parts``, calling ``build(tmp_dir)`` once if it is absent.

    Concurrent callers (parallel sweep jobs) wait on a lock; only the first builds.

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
    world = _world()
    if prepare is not None and world > 1:  # rank 0 decides for all: no early return here
        return _ensure_collective(final, parts, build, prepare)
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
    with FileLock(str(final) + ".lock"):
        if final.exists():
            return final
        _SOLO.append(f"{kind}/{final.name}" if world > 1 else "")
        try:
            with atomic_dir(final) as tmp:
                build(tmp)
                atomic_write_json(tmp / "key.json", dict(parts))
        finally:
            _SOLO.pop()
    return final


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
    import logging
    import time

    t0 = last = time.monotonic()
    while not final.exists():
        time.sleep(poll_s)
        if time.monotonic() - last > 60:
            last = time.monotonic()
            logging.getLogger("tinyfw.cache").info("rank %d: waiting %.0f s for rank 0 to build %s",
                                                   _rank(), last - t0, final)
    return final


def _ensure_collective(final: Path, parts: Mapping[str, Any], build: Callable[[Path], None],
                       prepare: Callable[[], None]) -> Path:
    import torch.distributed as dist

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
        lock.acquire()  # other jobs asking for the same entry wait here
        missing = [not final.exists()]
    try:
        dist.broadcast_object_list(missing, src=0)
        if missing[0]:
            prepare()
            dist.barrier()
            if rank == 0:
                with atomic_dir(final) as tmp:
                    build(tmp)
                    atomic_write_json(tmp / "key.json", dict(parts))
    finally:
        if rank == 0:
            lock.release()
    dist.barrier()
    return final
