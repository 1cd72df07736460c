"""The artefacts of task-specific distillation: the teacher's logits for every training example
(``<home>/cache/teacher-logits/<key>``, keyed by the teacher and the tokenised train set:
computed once, never per epoch or per run), the student after TD step 1
(``<home>/cache/td-step1/<key>``, key :func:`step1_key_parts`: a sweep over step-2 settings, as
the paper picks step 2's lr on dev, reuses it), and the ``stage=task`` student, which is not
cached: a run directory's own, checked on resume against :func:`fingerprint`."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Dict, Tuple

import numpy as np
from omegaconf import DictConfig

from tinyfw import cache
from tinyfw.artefacts.keys import settings
from tinyfw.config import plain
from tinyfw.data.collate import Collator
from tinyfw.data.tasks import predict_logits
from tinyfw.models.start import StartPoint

log = logging.getLogger(__name__)

LOGITS_KIND = "teacher-logits"
LOGITS_OUTPUTS = ("logits.npy",)
STEP1_KIND = "td-step1"
STEP1_OUTPUTS = ("student.safetensors", "step1.json")  # what the cache entries hold


def data_digest(enc) -> str:
    """A content hash of the tokenised rows (``input_ids``, ``token_type_ids``)."""
    def chunks():
        for col in ("input_ids", "token_type_ids"):
            if col in enc.column_names:
                for row in enc[col]:
                    yield np.asarray(row, dtype=np.int32).tobytes()
                    yield b"|"

    return cache.digest(chunks())


def model_id(path: Path) -> str:
    """A model directory's identity: a cached teacher's key, else its path and weights' mtime."""
    p = Path(path)
    if "cache" in p.parts and p.parent.name == "teacher":
        return str(p.name)  # a content-addressed teacher: its key is its identity
    w = next((f for f in (p / "model.safetensors", p / "pytorch_model.bin") if f.exists()), None)
    return f"{p.resolve()}:{w.stat().st_mtime_ns if w else 0}"


def logits_key_parts(teacher_dir: Path, enc) -> Dict[str, Any]:
    """The teacher logits' key: the teacher's identity and the digest of the tokenised rows (of a
    token task's: of the word-initial positions too, whose logits are kept)."""
    from tinyfw.data.tokens import IGNORE, is_words

    parts: Dict[str, Any] = {"teacher": model_id(teacher_dir), "data": data_digest(enc), "rows": len(enc)}
    if "labels" in enc.column_names and is_words(enc, ["labels"]):
        parts["positions"] = cache.digest(np.asarray([v != IGNORE for v in row], dtype=np.int8).tobytes()
                                          for row in enc["labels"])
    return parts


def teacher_logits(teacher: Any, teacher_dir: Path, enc, collate: Collator, home: Path,
                   batch_size: int) -> Tuple[np.ndarray, bool]:
    """Teacher logits for every row of ``enc`` (float32 [N, C]; a token classifier: [P, C] over
    the word-initial positions, rows in order) and whether they came from the cache
    (key: :func:`logits_key_parts`)."""
    from tinyfw.data.tokens import positions_per_row

    parts = logits_key_parts(teacher_dir, enc)
    per_token = "positions" in parts  # a token classifier: the logits of the word-initial positions, rows concatenated
    expected = int(positions_per_row(enc["labels"]).sum()) if per_token else len(enc)
    built = {"now": False}

    def build(tmp: Path) -> None:
        built["now"] = True
        logits = predict_logits(teacher, enc, collate, batch_size, desc="teacher logits")
        np.save(tmp / LOGITS_OUTPUTS[0], logits)

    entry = cache.ensure(home, LOGITS_KIND, parts, build)
    logits = np.load(entry / LOGITS_OUTPUTS[0])
    if logits.shape[0] != expected:
        raise RuntimeError(f"cached teacher logits {entry} have {logits.shape[0]} rows for {expected} "
                           f"{'word-initial positions' if per_token else 'examples'}")
    return logits, not built["now"]


def step1_key_parts(cfg: DictConfig, teacher_dir: Path, start: StartPoint, enc, mapping, student: Any,
                    train_cfg: Any, precision: Any) -> Dict[str, Any]:
    """Everything the student after TD step 1 depends on (the cache key); the start point as
    its origin and, for a GD student, that model's identity (else the origin again)."""
    gd = start.gd_dir
    distill = plain(cfg.distill)
    return {
        "teacher": model_id(teacher_dir),
        "init": {"kind": start.origin.value, "model": model_id(Path(gd)) if gd else start.origin.value},
        "data": data_digest(enc), "rows": len(enc),
        "student": {k: getattr(student.config, k) for k in ("num_hidden_layers", "hidden_size", "intermediate_size",
                                                              "num_attention_heads", "num_labels", "vocab_size")},
        "mapping": list(mapping),
        "distill": {"weights": {k: distill["weights"][k] for k in ("embd", "attn", "hidn")},
                    **{k: distill[k] for k in ("attn_mode", "layer_reduction", "share_projection")}},
        "train": settings(train_cfg, "eval_every"),  # step 1 evaluates nothing
        "group_by_length": bool(cfg.task_distill.group_by_length),
        "precision": str(precision), "seed": int(cfg.seed), "v": 1,
        **_recipe_parts(distill),
    }


def _recipe_parts(distill: Dict[str, Any]) -> Dict[str, Any]:
    """The recipes' step-1 settings (attention/hidden variants, MiniLM relations), only those
    not at their defaults: the default path's step-1 key stays the same."""
    from tinyfw.distill.recipes import key_view

    view = key_view(distill)
    own = {k: view[k] for k in ("attn_loss", "hidn_loss", "relation_heads") if k in view}
    rel = {k: view["weights"][k] for k in ("rel_attn", "rel_value") if k in view["weights"]}
    return {"recipe": {**own, **({"weights": rel} if rel else {})}} if (own or rel) else {}


def cached_step1(home: Path, parts: Dict[str, Any], student: Any, train: Callable[[], Dict[str, Any]]) -> Dict[str, Any]:
    """Run TD step 1 (``train() -> {"steps", "examples_seen", "final"}``) unless the student it
    produces for ``parts`` is cached; either way ``student`` ends with the step-1 weights."""
    from safetensors.torch import load_file, save_file

    trained: Dict[str, Any] = {}

    def make(_work: Path) -> None:  # every rank of a distributed run trains (checkpoints: the run's step1/)
        trained.update(train())

    def collect(_work: Path, tmp: Path) -> None:
        save_file({k: v.detach().cpu().contiguous() for k, v in student.state_dict().items()},
                  str(tmp / STEP1_OUTPUTS[0]))
        (tmp / STEP1_OUTPUTS[1]).write_text(json.dumps(trained, indent=2) + "\n")

    entry = cache.ensure_made(home, STEP1_KIND, parts, make, collect)
    if trained:
        return {**trained, "cached": False, "entry": str(entry)}
    student.load_state_dict(load_file(str(entry / STEP1_OUTPUTS[0])), strict=True)  # a cache hit
    log.info("TD step 1: reused the cached step-1 student %s", entry)
    return {**json.loads((entry / STEP1_OUTPUTS[1]).read_text()), "cached": True, "entry": str(entry)}


def fingerprint(cfg: DictConfig, home: Path) -> Dict[str, Any]:
    """What a ``stage=task`` run is checked against (resume, and a finished run asked again): the
    teacher's, the starting point's (the GD student's when ``gd=on``), the augmented data's and
    the masked LM's fingerprints, the objective and the phases it runs (eval_every included: the
    dev evals pick the student's kept weights)."""
    from tinyfw.artefacts import augmented, gd, mlm, teacher
    from tinyfw.config import is_on as on, task_key
    from tinyfw.precision import key_value

    td = cfg.task_distill
    fp: Dict[str, Any] = {"teacher_ft.path": cfg.teacher_ft.path} if cfg.teacher_ft.path else teacher.fingerprint(cfg)
    if on(cfg.gd) and td.gd_checkpoint:
        fp["task_distill.gd_checkpoint"] = td.gd_checkpoint
    elif on(cfg.gd):
        fp.update(gd.fingerprint(cfg, home))
    else:
        fp.update({"task_distill.gd_off_init": plain(td.gd_off_init), "student": plain(cfg.student)})
    if on(cfg.augment):
        fp["augmenter"] = augmented.augmenter_settings(cfg)
        if str(cfg.augmenter.mlm) == "mlm":  # the masked LM stage=mlm makes
            fp.update(mlm.fingerprint(cfg, home))
    phases = ({"step1": settings(td.step1), "step2": settings(td.step2)} if on(cfg.td)
              else {"finetune": settings(td.finetune)})
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
