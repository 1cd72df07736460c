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
from typing import Any, Callable, Mapping

from filelock import FileLock

from tinyfw.fsutil import atomic_dir, atomic_write_json


def key_of(parts: Mapping[str, Any]) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def entry(root: Path, kind: str, parts: Mapping[str, Any]) -> Path:
    return root / "cache" / kind / key_of(parts)


def ensure(
    root: Path, kind: str, parts: Mapping[str, Any], build: Callable[[Path], None]
) -> Path:
    """Return the cache entry for ``parts``, calling ``build(tmp_dir)`` once if it is absent.

    Concurrent callers (parallel sweep jobs) wait on a lock; only the first builds.
    """
    final = entry(root, kind, parts)
    if final.exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if final.exists():
            return final
        with atomic_dir(final) as tmp:
            build(tmp)
            atomic_write_json(tmp / "key.json", dict(parts))
    return final
