"""The masked LM the augmenter asks for candidates: an encoder (``mlm.base``: ``teacher`` = the
teacher config, or a name/path) loaded as a ``BertForMaskedLM`` whose decoder is tied to the
word embeddings (the head's transform layer starts fresh when the checkpoint has none), the
**whole** model fine-tuned with standard masking (``mlm.mask_prob`` of the tokens: 80% [MASK],
10% random, 10% kept; ``DataCollatorForLanguageModeling``) on the unlabeled corpus with the
shared training loop. Held-out quality is measured before and after
(:func:`tinyfw.models.mlm.whole_word_eval`).

Cached in ``<home>/cache/mlm/<key>`` (key: :func:`key_parts`, resume: :func:`fingerprint`), where
``augmenter.mlm=mlm`` finds it through :func:`ensure_mlm` (which trains it when absent).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import torch
from omegaconf import DictConfig

from tinyfw import cache, paths
from tinyfw.artefacts.corpus import corpus_parts, corpus_segments
from tinyfw.artefacts.keys import as_config, settings
from tinyfw.config import plain
from tinyfw.fsutil import atomic_dir, atomic_write_json

log = logging.getLogger("tinyfw.mlm")
KIND = "mlm"


def _precision(cfg: DictConfig) -> str:
    """``mlm.precision`` (null: the global one), ``auto`` resolved (tinyfw/precision.py)."""
    from tinyfw.precision import resolved

    own = cfg.mlm.get("precision")
    return resolved(own, where="mlm.precision") if own not in (None, "") else resolved(cfg.precision, where="precision")


def base_identity(cfg: DictConfig) -> Dict[str, Any]:
    if cfg.mlm.base == "teacher":
        return {"teacher": plain(cfg.teacher)}
    return {"name_or_path": str(cfg.mlm.base)}


def key_parts(cfg: DictConfig, home: Optional[Path] = None) -> Dict[str, Any]:
    """Everything the masked LM depends on (the cache key)."""
    mlm = settings(cfg.mlm)
    mlm["precision"] = _precision(cfg)
    return {"base": base_identity(cfg), "corpus": corpus_parts(cfg.corpus, home), "mlm": mlm, "v": 2}


CONFIG_NAMES = {"base": "mlm.base"}


def fingerprint(cfg: DictConfig, home: Optional[Path] = None) -> Dict[str, Any]:
    """What a resumed adaptation is checked against: :func:`key_parts` named by config key."""
    return as_config(key_parts(cfg, home), CONFIG_NAMES)


def base_path_and_tokenizer(cfg: DictConfig, home: Path) -> Tuple[str, Any]:
    from tinyfw.models.load import load_tokenizer, teacher_path, teacher_tokenizer

    if cfg.mlm.base == "teacher":
        path = teacher_path(cfg.teacher, home)
        return path, teacher_tokenizer(cfg.teacher, home, path)
    path = paths.resolve_name_or_path(str(cfg.mlm.base), home)
    return path, load_tokenizer(path, home)


def masking_collate(tok: Any, mask_prob: float):
    """The masked-LM collate: ``mask_prob`` of the tokens (80% [MASK], 10% random, 10% kept;
    ``DataCollatorForLanguageModeling``) -> input_ids, attention_mask, labels (-100 elsewhere).
    Shared by ``stage=mlm`` and DistilBERT-style GD."""
    from transformers import DataCollatorForLanguageModeling

    collator = DataCollatorForLanguageModeling(tok, mlm=True, mlm_probability=mask_prob)

    def collate(rows):
        return collator([{"input_ids": r["input_ids"]} for r in rows])

    return collate


def train_mlm(cfg: DictConfig, home: Path, out_dir: Path, tracker: Any = None) -> Tuple[Dict[str, Any], Path]:
    """Adapt the base encoder into a masked LM in ``out_dir`` (mlm/, checkpoints/)."""
    from tinyfw.data.corpus import segment_stats
    from tinyfw.models.load import check_positions, check_tokenizer
    from tinyfw.models.mlm import MaskedPositionsLoss, load_as_masked_lm, whole_word_eval
    from tinyfw.train.loop import fit, make_accelerator

    out_dir = Path(out_dir)
    path, tok = base_path_and_tokenizer(cfg, home)
    if tok.mask_token_id is None:
        raise ValueError(f"the tokenizer of {path} has no [MASK] token; a masked LM needs one")
    torch.manual_seed(cfg.mlm.seed)
    model, new_keys = load_as_masked_lm(path)
    check_tokenizer(tok, model.config, f"masked-LM base {path}", path)
    check_positions(cfg.corpus.max_seq_len, "corpus.max_seq_len", **{"masked-LM base": model.config})
    precision = _precision(cfg)
    acc = make_accelerator(precision)
    train_ds, held = corpus_segments(cfg.corpus, tok, home, cfg.mlm.seed, max(cfg.corpus.heldout_fraction, 1e-9),
                                     streaming=False)
    collate = masking_collate(tok, cfg.mlm.mask_prob)

    def loss_fn(modules, batch):
        return modules["mlm"](**batch), {}

    n_eval = int(cfg.mlm.eval_examples)
    before = whole_word_eval(model, tok, held, n_eval, seed=cfg.mlm.seed)
    log.info("MLM held-out before: %s (new head weights: %s)", before, new_keys)
    model.train()
    res = fit({"mlm": MaskedPositionsLoss(model)}, loss_fn, train_ds, collate, cfg.mlm.train, precision=precision,
              fast=bool(cfg.fast_path), out_dir=out_dir, tracker=tracker, seed=cfg.mlm.seed, desc="MLM", accelerator=acc,
              fingerprint=fingerprint(cfg, home), resume=cfg.resume)
    after = whole_word_eval(model, tok, held, n_eval, seed=cfg.mlm.seed)
    log.info("MLM held-out after: %s", after)
    model_dir = out_dir / "mlm"
    if acc.is_main_process:
        with atomic_dir(model_dir, overwrite=True) as tmp:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
    metrics: Dict[str, Any] = {
        "base": path,
        "new_head_keys": new_keys,
        "heldout_before": before,
        "heldout_after": after,
        "train_loss_initial": res.mean("loss", first=0.1),
        "train_loss_final": res.mean("loss", last=0.1),
        "steps": res.steps,
        "tokens": res.tokens,
        "tokens_per_s": round(res.tokens_per_s, 1),
        "train_wall_time_s": round(res.wall_time_s, 2),
        "resumed_from": res.resumed_from,
        "corpus": {"train": segment_stats(train_ds), "heldout": segment_stats(held)},
        "precision": precision,
    }
    if acc.is_main_process:
        atomic_write_json(out_dir / "mlm_metrics.json", metrics)
    return metrics, model_dir


OUTPUTS = ("mlm", "mlm_metrics.json")  # what the cache entry holds


def register(cfg: DictConfig, home: Path, out_dir: Path) -> Path:
    """Copy a finished ``stage=mlm`` run's masked LM into the cache (once); its directory there."""
    return cache.register(home, KIND, key_parts(cfg, home), out_dir, OUTPUTS) / "mlm"


def ensure_mlm(cfg: DictConfig, home: Path, tracker: Any = None) -> Path:
    """The adapted masked LM (HF directory) for ``cfg``: from the cache, else trained now (its
    checkpoints in ``mlm-work/<key>`` make it resumable). Every rank of a distributed run
    trains; rank 0 registers the result."""
    entry = cache.ensure_made(home, KIND, key_parts(cfg, home), lambda work: train_mlm(cfg, home, work, tracker),
                              lambda work, tmp: cache.copy_outputs(work, tmp, OUTPUTS))
    return entry / "mlm"
