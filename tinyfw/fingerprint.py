"""Fingerprints: JSON-able dicts of what defines a piece of work (a training run, a cache
entry's unfinished build), compared key by key so that a refusal can name what changed.

The comparison helpers only; what a fingerprint holds is each artefact's business
(``tinyfw/artefacts``: its cache key's parts, named by config key). Cadence (``CADENCE``: how
often a job logs, saves and evaluates nothing it keeps, how many loaders it runs) never enters
a fingerprint, and a record written before that rule (a checkpoint whose fingerprint holds
``log_every``) still compares equal. Imports nothing of tinyfw.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional

# settings that change how a job runs, never what it makes: left out of every cache key and
# fingerprint (tinyfw.artefacts.keys.settings) and of every comparison (differences)
CADENCE = ("log_every", "save_every", "num_workers", "num_proc")


def normalise(fingerprint: Optional[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
    """``fingerprint`` as it reads back from JSON (enums and paths as strings)."""
    if fingerprint is None:
        return None
    return json.loads(json.dumps(fingerprint, sort_keys=True, default=str))


def _flat(d: Any, prefix: str = "") -> Dict[str, Any]:
    if not isinstance(d, dict) or not d:
        return {prefix.rstrip("."): d}
    out: Dict[str, Any] = {}
    for k, v in d.items():
        if k not in CADENCE:
            out.update(_flat(v, f"{prefix}{k}."))
    return out


def _short(v: Any, n: int = 60) -> str:
    s = "(absent)" if v is _ABSENT else json.dumps(v, default=str)
    return s if len(s) <= n else s[: n - 3] + "..."


_ABSENT = object()


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> List[str]:
    """``key: old -> new`` for every dotted key whose value differs between two fingerprints
    (cadence keys, at any depth, are not compared)."""
    a, b = _flat(dict(old)), _flat(dict(new))
    keys = sorted(k for k in set(a) | set(b) if a.get(k, _ABSENT) != b.get(k, _ABSENT))
    return [f"{k}: {_short(a.get(k, _ABSENT))} -> {_short(b.get(k, _ABSENT))}" for k in keys]
