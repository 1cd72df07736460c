"""Fingerprints: JSON-able dicts of what defines a piece of work (a training run, a cache
entry's unfinished build), compared key by key so that a refusal can name what changed."""

from __future__ import annotations

import json
from typing import Any, Dict, List, Mapping, Optional


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
        out.update(_flat(v, f"{prefix}{k}."))
    return out


def _short(v: Any, n: int = 60) -> str:
    s = "(absent)" if v is _ABSENT else json.dumps(v, default=str)
    return s if len(s) <= n else s[: n - 3] + "..."


_ABSENT = object()


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> List[str]:
    """``key: old -> new`` for every dotted key whose value differs between two fingerprints."""
    a, b = _flat(dict(old)), _flat(dict(new))
    keys = sorted(k for k in set(a) | set(b) if a.get(k, _ABSENT) != b.get(k, _ABSENT))
    return [f"{k}: {_short(a.get(k, _ABSENT))} -> {_short(b.get(k, _ABSENT))}" for k in keys]


def as_config(parts: Mapping[str, Any], names: Mapping[str, str]) -> Dict[str, Any]:
    """A cache key's ``parts`` with top-level keys renamed to the config keys they come from
    (``{"train": "general.train"}``), so that a refusal names ``general.train.lr``."""
    return {names.get(k, k): v for k, v in parts.items()}
