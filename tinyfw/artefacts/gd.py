"""The general-distillation (GD) student: a pre-trained teacher distilled into a student on
an unlabeled corpus with the Transformer-distillation losses (embedding, attention, hidden)
and no prediction loss (:func:`train_gd`, what ``stage=general`` runs).

A GD run writes ``student/`` (HF format + tokenizer: ``AutoModel.from_pretrained`` loads it),
``projections.pt`` (the W_e/W_h state dict of :class:`Distiller`, kept out of the student) +
``projections.json``, ``gd_metrics.json`` and ``checkpoints/``. The student is cached in
``<home>/cache/gd-student/<key>`` (key: :func:`key_parts`, resume: :func:`fingerprint`) with its projections beside
it, so that ``stage=task gd=on`` finds it via :func:`ensure_gd_student`, which trains it there
when absent.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from omegaconf import DictConfig

from tinyfw import cache
from tinyfw.artefacts.corpus import corpus_parts, corpus_segments
from tinyfw.artefacts.keys import as_config, settings
from tinyfw.config import plain
from tinyfw.fsutil import atomic_dir, atomic_write_json
from tinyfw.precision import key_value, resolved

log = logging.getLogger("tinyfw.general")
KIND = "gd-student"
LOSSES = ("embd", "attn", "hidn", "rel_attn", "rel_value", "mlm", "mlm_soft", "total")


def key_parts(cfg: DictConfig, home: Optional[Path] = None) -> Dict[str, Any]:
    """Everything the GD student depends on (the cache key). With ``home``, local corpus
    files enter by path, size and mtime."""
    corpus = corpus_parts(cfg.corpus, home)
    from tinyfw.distill.recipes import key_view

    distill = key_view(plain(cfg.distill))  # the recipes' keys enter only when set
    distill["weights"].pop("pred", None)  # no prediction loss in GD
    for k in ("pred_loss", "hard_label_weight"):  # TD step 2's (recipes): not GD's
        distill.pop(k, None)
    extra = {}
    if float(cfg.distill.weights.get("mlm_soft", 0.0)) > 0:  # the teacher is then stage=mlm's masked LM
        from tinyfw.artefacts import mlm

        extra["teacher_mlm"] = mlm.key_parts(cfg, home)
    return {**extra,
        "teacher": plain(cfg.teacher),
        "student": {"shape": plain(cfg.student.shape), "init": str(cfg.student.init),
                    "layer_map": plain(cfg.student.layer_map)},
        "distill": distill,
        "corpus": corpus,
        "train": settings(cfg.general.train),
        "seed": int(cfg.general.seed),
        "precision": key_value(cfg.precision, where="precision"),
    }


CONFIG_NAMES = {"train": "general.train", "seed": "general.seed"}


def fingerprint(cfg: DictConfig, home: Optional[Path] = None) -> Dict[str, Any]:
    """What a resumed GD run is checked against: :func:`key_parts` named by config key."""
    return as_config(key_parts(cfg, home), CONFIG_NAMES)


def _heldout_eval(loss_fn, data, collate, batch_size: int, max_batches: int = 16):
    def evaluate(modules):
        sums: Dict[str, float] = {}
        n = 0
        for i in range(0, min(len(data), batch_size * max_batches), batch_size):
            rows = [data[j] for j in range(i, min(i + batch_size, len(data)))]
            batch = {k: v.to(next(modules["student"].parameters()).device) for k, v in collate(rows).items()}
            _, logs = loss_fn(modules, batch)
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + v
            n += 1
        return {f"heldout_{k}": v / max(n, 1) for k, v in sums.items()}

    return evaluate


def _models(cfg: DictConfig, home: Path) -> Tuple[Any, Any, Any, Any, list]:
    """(teacher, tokenizer, student, distiller, layer mapping), checked against each other
    before anything heavy."""
    from tinyfw.distill.objective import Distiller
    from tinyfw.models.load import check_positions, check_tokenizer, load_teacher
    from tinyfw.models.student import build_student, layer_mapping, student_config, validate_pair

    from tinyfw.distill import recipes

    weights = recipes.feature_weights(cfg.distill, gd=True)
    teacher, tok = load_teacher(cfg.teacher, home)
    shape = cfg.student.shape
    recipes.check(cfg.distill, student_config(shape, teacher.config), teacher.config, weights["attn"])
    if weights["mlm_soft"] > 0:  # DistilBERT: the teacher with its MLM head (stage=mlm's masked LM; after the checks)
        teacher = _teacher_mlm(cfg, home, tok)
    teacher.eval().requires_grad_(False)
    tcfg = teacher.config  # load_teacher checked that the tokenizer is the teacher's
    mapping = layer_mapping(plain(cfg.student.layer_map), shape.num_layers, tcfg.num_hidden_layers)
    validate_pair(student_config(shape, tcfg), tcfg, mapping, weights["attn"])
    init, init_layers, note = recipes.resolve_init(str(cfg.student.init), shape, tcfg, mapping)
    if note:
        log.info("GD student init %s", note)
    torch.manual_seed(cfg.general.seed)
    student = build_student(shape, teacher, init, init_layers)
    validate_pair(student.config, tcfg, mapping, weights["attn"])
    check_positions(cfg.corpus.max_seq_len, "corpus.max_seq_len", teacher=tcfg, student=student.config)
    if os.path.isdir(str(cfg.student.init)):  # a checkpoint: it must know the teacher's tokenizer too
        check_tokenizer(tok, student.config, f"student.init={cfg.student.init}", str(cfg.student.init))
    distiller = Distiller(shape.hidden_size, tcfg.hidden_size, mapping, {**weights, "pred": 0.0},
                          share_projection=cfg.distill.share_projection, attn_mode=cfg.distill.attn_mode,
                          temperature=cfg.distill.temperature, layer_reduction=cfg.distill.layer_reduction,
                          fast=bool(cfg.fast_path), **recipes.distiller_kwargs(cfg.distill, student.config, tcfg))
    return teacher, tok, student, distiller, mapping


def _teacher_mlm(cfg: DictConfig, home: Path, tok: Any) -> Any:
    """The teacher as a masked LM (DistilBERT's soft targets): the masked LM ``stage=mlm`` makes
    from the teacher (cached, trained now when missing), checked against the teacher's tokenizer."""
    from tinyfw.artefacts.mlm import ensure_mlm
    from tinyfw.models.load import check_tokenizer, load_strict

    from transformers import AutoModelForMaskedLM

    if str(cfg.mlm.base) != "teacher":
        raise ValueError(f"distill.weights.mlm_soft > 0 distils the teacher's own masked LM, but mlm.base="
                         f"{cfg.mlm.base}: set mlm.base=teacher (or distill.weights.mlm_soft=0)")
    path = str(ensure_mlm(cfg, home))
    model = load_strict(AutoModelForMaskedLM, path)
    check_tokenizer(tok, model.config, f"teacher masked LM {path}", path)
    if getattr(model, "cls", None) is None:
        raise TypeError(f"teacher masked LM {path} has no BERT-style `cls` head")
    return model


def _recipe_step(cfg: DictConfig, tok: Any, weights: Dict[str, float], mapping: list, collate: Any, loss_fn: Any):
    """(collate, loss_fn) for the other recipes' GD losses: Q/K/V capture for MiniLM's relations;
    ``stage=mlm``'s masking for DistilBERT's masked-LM losses. The defaults otherwise."""
    from tinyfw.distill.recipes import needs_extra
    from tinyfw.distill.steps import feature_loss_fn

    if not needs_extra(weights):
        return collate, loss_fn
    mlm = weights["mlm"] > 0 or weights["mlm_soft"] > 0
    if mlm:
        from tinyfw.artefacts.mlm import masking_collate

        collate = masking_collate(tok, float(cfg.mlm.mask_prob))
    qkv = weights["rel_attn"] > 0 or weights["rel_value"] > 0
    return collate, feature_loss_fn(weights["attn"] > 0, mapping, need_qkv=qkv, mlm=mlm)


def _save(cfg: DictConfig, out_dir: Path, student: Any, tok: Any, distiller: Any, teacher: Any, mapping: list) -> Path:
    """``student/`` (HF format + tokenizer), ``projections.pt`` and ``projections.json``."""
    student_dir = out_dir / "student"
    with atomic_dir(student_dir, overwrite=True) as tmp:
        student.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    tmp_p = out_dir / ".projections.pt.tmp"
    torch.save(distiller.state_dict(), tmp_p)
    os.replace(tmp_p, out_dir / "projections.pt")
    atomic_write_json(out_dir / "projections.json", {
        "mapping": mapping, "share_projection": bool(cfg.distill.share_projection),
        "student_hidden": cfg.student.shape.hidden_size, "teacher_hidden": teacher.config.hidden_size,
        "keys": list(distiller.state_dict()),
    })
    return student_dir


def train_gd(cfg: DictConfig, home: Path, out_dir: Path, tracker: Any = None) -> Tuple[Dict[str, Any], Path]:
    """Run GD into ``out_dir`` (student/, projections.pt, checkpoints/); returns (metrics, student dir).
    Every process of a distributed run calls it; only the main one writes the outputs."""
    from tinyfw.data.collate import Collator
    from tinyfw.data.corpus import segment_stats
    from tinyfw.distill.steps import feature_loss_fn
    from tinyfw.models.card import param_counts
    from tinyfw.train.loop import fit, make_accelerator

    out_dir = Path(out_dir)
    if cfg.corpus.streaming and cfg.general.train.max_steps <= 0:
        raise ValueError("a streaming corpus has no length, so epochs cannot be counted: "
                         "set general.train.max_steps > 0 (or corpus.streaming=false)")
    teacher, tok, student, distiller, mapping = _models(cfg, home)
    # a zero loss weight leaves parameters out of the loss (W_h and the top layer's value, output
    # and FFN without hidn, W_e without embd): DDP must then look for unused parameters
    weights = distiller.weights
    unused = any(weights[k] <= 0 for k in ("embd", "attn", "hidn"))
    precision = resolved(cfg.precision, where="precision")  # auto: bf16 where native (tinyfw/precision.py)
    acc = make_accelerator(precision, find_unused_parameters=unused)
    c = cfg.corpus
    train_ds, held = corpus_segments(c, tok, home, cfg.general.seed, c.heldout_fraction, c.streaming,
                                     rank=acc.process_index, world_size=acc.num_processes)
    collate = Collator(tok.pad_token_id)
    loss_fn = feature_loss_fn(need_scores=weights["attn"] > 0, mapping=mapping, fast=bool(cfg.fast_path))
    collate, loss_fn = _recipe_step(cfg, tok, weights, mapping, collate, loss_fn)
    evaluate = None
    if held is not None and not c.streaming and len(held) > 0:
        evaluate = _heldout_eval(loss_fn, held, collate, cfg.general.train.batch_size)
    corpus_stats = segment_stats(train_ds) if not c.streaming else {}
    if acc.is_main_process:
        log.info("GD: teacher %s (%d layers) -> student %dx%d, mapping %s, corpus %s",
                 cfg.teacher.name_or_path, teacher.config.num_hidden_layers, cfg.student.shape.num_layers,
                 cfg.student.shape.hidden_size, mapping, corpus_stats)
    res = fit({"student": student, "distiller": distiller}, loss_fn, train_ds, collate, cfg.general.train,
              precision=precision, out_dir=out_dir, tracker=tracker, seed=cfg.general.seed,
              frozen={"teacher": teacher}, evaluate=evaluate, desc="GD", accelerator=acc,
              fingerprint=fingerprint(cfg, home), resume=cfg.resume, fast=bool(cfg.fast_path))
    student_dir = out_dir / "student"
    if acc.is_main_process:
        _save(cfg, out_dir, student, tok, distiller, teacher, mapping)
    acc.wait_for_everyone()
    frac = 0.1
    metrics: Dict[str, Any] = {
        "initial": {k: res.mean(k, first=frac) for k in LOSSES if any(k in h for h in res.history)},
        "final": {k: res.mean(k, last=frac) for k in LOSSES if any(k in h for h in res.history)},
        "steps": res.steps,
        "tokens": res.tokens,
        "tokens_per_s": round(res.tokens_per_s, 1),
        "train_wall_time_s": round(res.wall_time_s, 2),
        "resumed_from": res.resumed_from,
        "mapping": mapping,
        "student_params": {k: n for k, n in param_counts(student).items() if k != "embedding"},
        "teacher_params": {k: n for k, n in param_counts(teacher).items() if k != "embedding"},
        "corpus": corpus_stats,
        "precision": precision,
    }
    if res.evals:
        metrics["heldout"] = {k: v for k, v in res.evals[-1].items() if k != "step"}
    if acc.is_main_process:
        atomic_write_json(out_dir / "gd_metrics.json", metrics)
    return metrics, student_dir


OUTPUTS = ("student", "projections.pt", "projections.json", "gd_metrics.json")  # what the cache entry holds


def register(cfg: DictConfig, home: Path, out_dir: Path) -> Path:
    """Copy a finished GD run's student + projections into the cache (once); the entry."""
    return cache.register(home, KIND, key_parts(cfg, home), out_dir, OUTPUTS)


def ensure_gd_student(cfg: DictConfig, home: Path, tracker: Any = None) -> Path:
    """The GD student directory (HF format) for ``cfg``: from the cache when present, else
    trained now (same code as ``stage=general``; its checkpoints in ``gd-work/<key>`` make it
    resumable) and cached. Its projections lie beside it (``<dir>/../projections.pt``). In a
    distributed run every process must call this: all ranks train, rank 0 copies the result
    into the cache."""
    parts = key_parts(cfg, home)
    entry = cache.ensure_made(home, KIND, parts, lambda work: train_gd(cfg, home, work, tracker),
                              lambda work, tmp: cache.copy_outputs(work, tmp, OUTPUTS),
                              work=cache.work_path(home, "gd", parts))
    return entry / "student"
