"""Fingerprints: JSON-able dicts of what defines a piece of work (a training run, a cache
entry's unfinished build), compared key by key so that a refusal can name what changed.

Each training stage's fingerprint (``for_gd``, ``for_mlm``, ``for_teacher``, ``for_task``) is
built from the cache key of what it makes (``gd_cache_parts``, ``mlm_cache_parts``, the
teacher's ``cache_key``), keyed like the config (``general.train.lr``), so that checkpoints
refuse to resume another training and say which keys differ. Logging and saving cadence
(``log_every``, ``save_every``, ``num_workers``) never enter.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from omegaconf import DictConfig

CADENCE = ("log_every", "save_every", "num_workers")


def training_parts(train: Any, *also: str) -> Dict[str, Any]:
    """A training sub-config (``TrainCfg``) as a cache key's part: plain values, without the
    logging and saving cadence (nor the keys ``also``), which do not change what it trains."""
    from tinyfw.config import plain

    return {k: v for k, v in plain(train).items() if k not in CADENCE + also}


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


def for_gd(cfg: DictConfig, home: Path) -> Dict[str, Any]:
    """A GD run: the GD student's cache key."""
    from tinyfw.artefacts.gd import gd_cache_parts

    return as_config(gd_cache_parts(cfg, home), {"train": "general.train", "seed": "general.seed"})


def for_mlm(cfg: DictConfig, home: Path) -> Dict[str, Any]:
    """A masked-LM adaptation: the masked LM's cache key."""
    from tinyfw.artefacts.mlm import mlm_cache_parts

    return as_config(mlm_cache_parts(cfg, home), {"base": "mlm.base"})


def for_teacher(cfg: DictConfig) -> Dict[str, Any]:
    """A teacher fine-tune: the fine-tuned teacher's cache key."""
    from tinyfw.artefacts.teacher import cache_key

    return as_config(cache_key(cfg), {"train": "teacher_ft.train", "seed": "teacher_ft.seed"})


def for_task(cfg: DictConfig, home: Path) -> Dict[str, Any]:
    """A ``stage=task`` run: the teacher, the student's starting point (the GD student's key
    when ``gd=on``), the augmented data, the objective and the phases it runs."""
    from tinyfw.config import is_on as on, plain, task_key
    from tinyfw.precision import key_value

    td = cfg.task_distill
    fp: Dict[str, Any] = {"teacher_ft.path": cfg.teacher_ft.path} if cfg.teacher_ft.path else for_teacher(cfg)
    if on(cfg.gd) and td.gd_checkpoint:
        fp["task_distill.gd_checkpoint"] = td.gd_checkpoint
    elif on(cfg.gd):
        fp.update(for_gd(cfg, home))
    else:
        fp.update({"task_distill.gd_off_init": plain(td.gd_off_init), "student": plain(cfg.student)})
    if on(cfg.augment):
        from tinyfw.artefacts.augmented import NOT_IN_KEY

        fp["augmenter"] = {k: v for k, v in plain(cfg.augmenter).items() if k not in NOT_IN_KEY}
        fp["augmenter"]["precision"] = key_value(cfg.augmenter.precision, where="augmenter.precision")
        if str(cfg.augmenter.mlm) == "mlm":  # the masked LM stage=mlm makes
            fp.update(for_mlm(cfg, home))
    phases = ({"step1": training_parts(td.step1), "step2": training_parts(td.step2)} if on(cfg.td)
              else {"finetune": training_parts(td.finetune)})
    own = {k: plain(td[k]) for k in ("max_train_examples", "budget", "group_by_length")}
    own["precision"] = key_value(td.precision, where="task_distill.precision")  # auto: as resolved
    if not td.get("intermediate", True):  # the recipes without TD step 1 (at its default: not in the key)
        own["intermediate"] = False
    fp.update({"task": task_key(cfg.task), "task_distill": {**own, **phases},
               "gd": str(cfg.gd), "td": str(cfg.td), "augment": str(cfg.augment), "seed": int(cfg.seed),
               "precision": key_value(cfg.precision, where="precision")})
    if on(cfg.td):
        from tinyfw.distill.recipes import key_view

        fp["distill"] = key_view(plain(cfg.distill))  # the recipes' keys enter only when set
    return fp
