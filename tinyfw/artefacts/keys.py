"""The one normaliser of every artefact's cache key and resume fingerprint.

An artefact's key parts are config sub-trees passed through :func:`settings` (plain values,
cadence left out at any depth) plus the identities of its inputs; its fingerprint is the same
parts with the top-level names of the config keys they come from (:func:`as_config`), so that a
refused resume names ``general.train.lr``.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping

from tinyfw.config import plain
from tinyfw.fingerprint import CADENCE


def _drop_cadence(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _drop_cadence(x) for k, x in v.items() if k not in CADENCE}
    return v


def settings(node: Any, *leave_out: str) -> Dict[str, Any]:
    """A config sub-tree (``cfg.general.train``, ``cfg.mlm``) as a key's part: resolved plain
    values (enums as strings) without the cadence keys (``fingerprint.CADENCE``, at any depth)
    nor the top-level keys ``leave_out`` (settings that change nothing the artefact holds)."""
    return {k: v for k, v in _drop_cadence(plain(node)).items() if k not in leave_out}


def as_config(parts: Mapping[str, Any], names: Mapping[str, str]) -> Dict[str, Any]:
    """A key's ``parts`` with top-level keys renamed to the config keys they come from
    (``{"train": "general.train"}``): the artefact's resume fingerprint."""
    return {names.get(k, k): v for k, v in parts.items()}
