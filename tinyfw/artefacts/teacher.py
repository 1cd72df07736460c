"""The fine-tuned teacher: the pre-trained teacher encoder (``teacher=...``) with a
sequence-classification head (a token-classification head for ``task.type=token``) (``num_labels`` classes, or one output with
``problem_type="regression"``), trained with ``teacher_ft.train`` on the original (not
augmented) train split through the shared loop, evaluated on dev every ``eval_every`` steps and
at the end; the best weights by the task's main dev metric are kept and evaluated on every
labelled split. Saved in HF format (model + tokenizer + README.md card + ``metrics.json``) in
the cache ``<home>/cache/teacher/<key>``, key = the teacher's identity, the task config,
``teacher_ft.train`` (its cadence left out), precision and seed (:func:`key_parts`; resumed
fine-tunes are checked against the same parts, :func:`fingerprint`). ``teacher_ft.path`` points
to an already fine-tuned teacher instead.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any, Dict, Optional

from omegaconf import DictConfig, OmegaConf

from tinyfw import cache, dist
from tinyfw.artefacts.keys import as_config, settings
from tinyfw.config import task_key
from tinyfw.data.collate import Collator
from tinyfw.data.tasks import encode_splits, load_task
from tinyfw.models.classifier import dev_evaluator, evaluate_all, load_classifier
from tinyfw.precision import resolved

log = logging.getLogger(__name__)

KIND = "teacher"
METRICS_FILE = "metrics.json"
OUTPUTS = ("config.json", METRICS_FILE, "README.md")  # the entry: an HF directory (+ weights, tokenizer)


def teacher_identity(cfg: DictConfig) -> Dict[str, Any]:
    t = cfg.teacher
    ident: Dict[str, Any] = {"name_or_path": t.name_or_path, "tokenizer": t.tokenizer}
    if t.name_or_path == "random":
        ident["shape"] = OmegaConf.to_container(t.shape)
    return ident


def key_parts(cfg: DictConfig, home: Optional[Path] = None) -> Dict[str, Any]:
    """The fine-tuned teacher's key; a task read from files (``task.files``) enters by the files'
    content too (:func:`~tinyfw.data.textfile.content_digest`), registry tasks by name. (``home``:
    the artefacts' common signature; the teacher's key does not use it.)"""
    from tinyfw.data.textfile import content_digest

    key = {
        "teacher": teacher_identity(cfg),
        "task": task_key(cfg.task),
        "train": settings(cfg.teacher_ft.train),  # eval_every stays: the dev evals pick the kept weights
        "precision": resolved(cfg.precision, where="precision"),
        "seed": int(cfg.teacher_ft.seed),
    }
    files = dict(cfg.task.files or {})
    if files:
        key["task_files"] = {split: content_digest(path) for split, path in sorted(files.items())}
    return key


CONFIG_NAMES = {"train": "teacher_ft.train", "seed": "teacher_ft.seed"}


def fingerprint(cfg: DictConfig, home: Optional[Path] = None) -> Dict[str, Any]:
    """What a resumed fine-tune is checked against: :func:`key_parts` named by config key."""
    return as_config(key_parts(cfg, home), CONFIG_NAMES)


def finetune(cfg: DictConfig, home: Path, out: Path, work_dir: Path, tracker: Any = None) -> Dict[str, Any]:
    """Fine-tune the teacher and save the best checkpoint (HF format) into ``out``."""
    import torch
    from transformers import set_seed

    from tinyfw.models.card import card_size
    from tinyfw.models.load import check_positions, teacher_path, teacher_tokenizer
    from tinyfw.train.loop import fit

    task = load_task(cfg.task, home)
    base = teacher_path(cfg.teacher, home)
    set_seed(cfg.teacher_ft.seed)
    model = load_classifier(base, task, new_head=True)
    tok = teacher_tokenizer(cfg.teacher, home, base, model.config)
    check_positions(cfg.task.max_seq_len, "task.max_seq_len", teacher=model.config)
    enc = encode_splits(task, tok, cfg.task.max_seq_len)
    collate = Collator(tok.pad_token_id, regression=task.regression)
    bs = cfg.task_distill.eval_batch_size

    def loss_fn(mods, batch):
        if task.token:  # per-token cross-entropy over gold tags (-1: untagged, ignored like -100)
            from tinyfw.distill.steps import hard_loss

            inputs = {k: v for k, v in batch.items() if k != "labels"}
            return hard_loss(mods["model"](**inputs).logits, batch["labels"]), {}
        return mods["model"](**batch).loss, {}

    dev_eval = dev_evaluator("model", task, enc[task.dev_split], collate, bs)
    log.info("fine-tuning teacher %s on %s (%d examples)", base, task.name, len(enc["train"]))
    res = fit({"model": model}, loss_fn, enc["train"], collate, cfg.teacher_ft.train,
              precision=resolved(cfg.precision, where="precision"), fast=bool(cfg.fast_path),
              out_dir=work_dir, tracker=tracker, seed=cfg.teacher_ft.seed, evaluate=dev_eval, desc="teacher",
              eval_key=task.main_metric, restore_best=True, keep_checkpoints=1, log_prefix="teacher/",
              fingerprint=fingerprint(cfg, home), resume=cfg.resume)
    model.eval()
    with torch.no_grad():
        metrics: Dict[str, Any] = evaluate_all(model, task, enc, collate, bs)
    size = card_size(model)
    metrics.update({"main_metric": task.main_metric, "best_step": (res.best_eval or {}).get("step"),
                    "steps": res.steps, "train_examples": len(enc["train"]), "train_wall_s": round(res.wall_time_s, 1),
                    **size})
    if dist.rank() != 0:
        return metrics  # distributed: rank 0 alone writes the checkpoint
    _save(cfg, out, model, tok, task, metrics, size, base)
    return metrics


def _save(cfg: DictConfig, out: Path, model: Any, tok: Any, task: Any, metrics: Dict[str, Any],
          size: Dict[str, int], base: str) -> None:
    from tinyfw.models.card import write_card

    shutil.rmtree(out, ignore_errors=True)  # a half-written one from an interrupted run
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    write_card(out, title=f"Fine-tuned teacher for {task.name}",
               summary=f"`{cfg.teacher.name_or_path}` fine-tuned on `{task.name}` by tinyfw stage=teacher.",
               task=task.describe(), metrics={k: v for k, v in metrics.items() if isinstance(v, dict)}, size=size,
               config={"base": base, "lr": cfg.teacher_ft.train.lr, "batch_size": cfg.teacher_ft.train.batch_size,
                       "epochs": cfg.teacher_ft.train.epochs, "max_steps": cfg.teacher_ft.train.max_steps,
                       "max_seq_len": cfg.task.max_seq_len, "seed": cfg.teacher_ft.seed, "precision": resolved(cfg.precision, where="precision")},
               name="TEACHER_DIR")
    load_classifier(str(out), task)  # the saved checkpoint reloads strictly with its head


def ensure_teacher(cfg: DictConfig, home: Path, tracker: Any = None, work_dir: Optional[Path] = None,
                   info: Optional[Dict[str, Any]] = None) -> Path:
    """The fine-tuned teacher for ``cfg.task``: ``teacher_ft.path`` when set, else the cache
    entry (fine-tuned now when missing; ``work_dir`` holds the loop's checkpoints meanwhile).
    ``info`` receives ``built`` and ``waited_s`` (see :func:`tinyfw.cache.ensure`)."""
    if cfg.teacher_ft.path:
        if info is not None:
            info.update(built=False, waited_s=0.0)
        from tinyfw.models.load import local_model

        try:
            return Path(local_model(cfg.teacher_ft.path, home, "teacher_ft.path", fix=" with its classification head"))
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{exc}: point it at a fine-tuned teacher (an HF directory with its "
                                    "classification head), or leave it empty to fine-tune one") from None

    def collect(work: Path, tmp: Path) -> None:  # rank 0 wrote work/model
        for f in (work / "model").iterdir():
            shutil.move(str(f), tmp / f.name)
        shutil.rmtree(work / "model", ignore_errors=True)
        shutil.rmtree(work / "checkpoints", ignore_errors=True)  # kept on failure: a re-run resumes

    # every rank of a distributed run trains; the work dir given is the run's own: kept
    return cache.ensure_made(home, KIND, key_parts(cfg, home), lambda work: finetune(cfg, home, work / "model", work, tracker),
                             collect, work=work_dir, keep_work=work_dir is not None, info=info)


def teacher_metrics(path: Path) -> Dict[str, Any]:
    """The metrics saved with a fine-tuned teacher (empty for an external one)."""
    f = Path(path) / METRICS_FILE
    return json.loads(f.read_text()) if f.exists() else {}
