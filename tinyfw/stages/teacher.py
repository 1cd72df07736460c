"""``stage=teacher``: fine-tune the pre-trained teacher encoder on the task.

The encoder (``teacher=...``) gets a sequence-classification head (``num_labels`` classes,
or one output with ``problem_type="regression"``), is trained with ``teacher_ft.train`` on the
original (not augmented) train split through the shared loop, evaluated on dev every
``eval_every`` steps and at the end; the best weights by the task's main dev metric are kept
and evaluated on every labelled split. Saved in HF format (model + tokenizer + README.md card
+ ``metrics.json``) in the content-addressed cache ``<home>/cache/teacher/<key>``, key = the
teacher's identity, the task config, ``teacher_ft.train``, precision and seed, so
``stage=task`` finds it (``ensure_teacher``) and builds it itself when missing.
``teacher_ft.path`` points to an already fine-tuned teacher instead.

result.json ``metrics``: ``{"dev": {...}, "test": {...}, <other eval splits>, "main_metric",
"best_step", "steps", "train_examples", "params", "non_embedding_params", "cached"}``;
``outputs``: ``{"teacher": path}``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any, Dict, Optional

from omegaconf import DictConfig, OmegaConf

from tinyfw import cache, paths
from tinyfw.data.tasks import Collator, TaskData, encode_splits, evaluate, load_task
from tinyfw.stages import RunContext, StageResult

log = logging.getLogger(__name__)

ALLOW_NEW_HEAD = ("classifier.", "bert.pooler.")  # a fresh head; encoders saved without a pooler
METRICS_FILE = "metrics.json"


def split_key(task: TaskData, split: str) -> str:
    """Name of a split in result metrics: the dev split is ``dev``."""
    return "dev" if split == task.dev_split else split


def head_kwargs(task: TaskData) -> Dict[str, Any]:
    if task.regression:
        return {"num_labels": 1, "problem_type": "regression"}
    return {"num_labels": task.num_labels, "problem_type": "single_label_classification",
            "id2label": dict(enumerate(task.label_names)),
            "label2id": {n: i for i, n in enumerate(task.label_names)}}


def load_classifier(path: str, task: Optional[TaskData] = None, new_head: bool = False):
    """A ``AutoModelForSequenceClassification`` from ``path`` (strict: missing/unexpected keys
    fail). ``new_head``: the checkpoint is a bare encoder and the head is initialised."""
    from transformers import AutoModelForSequenceClassification

    from tinyfw.models.load import load_strict

    kwargs = head_kwargs(task) if (new_head and task is not None) else {}
    model = load_strict(AutoModelForSequenceClassification, path,
                        allow_new=ALLOW_NEW_HEAD if new_head else (), **kwargs)
    if task is not None and model.config.num_labels != task.num_labels:
        raise ValueError(f"{path} has {model.config.num_labels} outputs but task '{task.name}' needs "
                         f"{task.num_labels}; fine-tune a teacher for this task (stage=teacher)")
    if task is not None and not new_head:
        check_label_names(model.config, task, path)
    return model


def _label(name: Any) -> str:
    return str(name).strip().lower().replace("-", "_").replace(" ", "_")


def check_label_names(config: Any, task: TaskData, path: str) -> None:
    """Refuse a classifier whose ``id2label`` names other classes, or the task's in another order
    (the reference code's MNLI trap: outputs read as the wrong classes). Generic names
    (``LABEL_0`` ...) cannot be checked and are only logged."""
    if task.regression:
        return
    names = [str((config.id2label or {}).get(i, f"LABEL_{i}")) for i in range(config.num_labels)]
    if all(re.fullmatch(r"LABEL_\d+", n) for n in names):
        log.warning("%s names no labels (id2label %s): cannot check its output order against task '%s' %s",
                    path, names, task.name, task.label_names)
        return
    if [_label(n) for n in names] == [_label(n) for n in task.label_names]:
        return
    same = sorted(map(_label, names)) == sorted(map(_label, task.label_names))
    raise ValueError(
        f"{path} labels its outputs {names} but task '{task.name}' has {task.label_names}"
        f"{' (the same labels in another order)' if same else ''}: its predictions would be read as the wrong "
        f"classes. Use a teacher fine-tuned with the task's label order (teacher_ft.path='' fine-tunes one)"
        f"{', or declare the task with task.labels=[' + ','.join(names) + ']' if same else ''}")


def evaluate_all(model: Any, task: TaskData, enc: Dict[str, Any], collate: Collator,
                 batch_size: int = 128) -> Dict[str, Dict[str, float]]:
    """Metrics on every labelled evaluation split: ``{"dev": ..., "test": ..., ...}``."""
    out = {}
    for s in task.eval_splits:
        if task.labelled(s):
            out[split_key(task, s)] = evaluate(model, task, enc[s], collate, batch_size)
    return out


def teacher_tokenizer(cfg: DictConfig, home: Path, path: str, config: Any = None):
    """The teacher's tokenizer (``teacher.tokenizer``, else the one at ``path``); with the
    model's ``config``, checked to be that model's (:func:`tinyfw.models.load.check_tokenizer`)."""
    from tinyfw.models.load import check_tokenizer, load_tokenizer

    own = not cfg.teacher.tokenizer or cfg.teacher.name_or_path == "random"
    tok = load_tokenizer(path if own else cfg.teacher.tokenizer, home)
    if config is not None:
        check_tokenizer(tok, config, f"teacher {path}", path, own=own,
                        fix="use the teacher's own tokenizer (teacher.tokenizer='')")
    return tok


def teacher_identity(cfg: DictConfig) -> Dict[str, Any]:
    t = cfg.teacher
    ident: Dict[str, Any] = {"name_or_path": t.name_or_path, "tokenizer": t.tokenizer}
    if t.name_or_path == "random":
        ident["shape"] = OmegaConf.to_container(t.shape)
    return ident


def cache_key(cfg: DictConfig) -> Dict[str, Any]:
    return {
        "teacher": teacher_identity(cfg),
        "task": OmegaConf.to_container(cfg.task, resolve=True),
        "train": OmegaConf.to_container(cfg.teacher_ft.train, resolve=True, enum_to_str=True),
        "precision": str(cfg.precision),
        "seed": int(cfg.teacher_ft.seed),
    }


def finetune(cfg: DictConfig, home: Path, out: Path, work_dir: Path, tracker: Any = None) -> Dict[str, Any]:
    """Fine-tune the teacher and save the best checkpoint (HF format) into ``out``."""
    import torch
    from transformers import set_seed

    from tinyfw import fingerprint
    from tinyfw.models.card import param_counts, write_card
    from tinyfw.models.load import teacher_path
    from tinyfw.train.loop import fit

    task = load_task(cfg.task, home)
    base = teacher_path(cfg.teacher, home)
    set_seed(cfg.teacher_ft.seed)
    model = load_classifier(base, task, new_head=True)
    tok = teacher_tokenizer(cfg, home, base, model.config)
    enc = encode_splits(task, tok, cfg.task.max_seq_len)
    collate = Collator(tok.pad_token_id, regression=task.regression)
    bs = cfg.task_distill.eval_batch_size

    def loss_fn(mods, batch):
        return mods["model"](**batch).loss, {}

    def dev_eval(mods):
        from tinyfw.models.capture import unwrap

        return evaluate(unwrap(mods["model"]), task, enc[task.dev_split], collate, bs)

    log.info("fine-tuning teacher %s on %s (%d examples)", base, task.name, len(enc["train"]))
    res = fit({"model": model}, loss_fn, enc["train"], collate, cfg.teacher_ft.train, precision=str(cfg.precision),
              out_dir=work_dir, tracker=tracker, seed=cfg.teacher_ft.seed, evaluate=dev_eval, desc="teacher",
              eval_key=task.main_metric, restore_best=True, keep_checkpoints=1, log_prefix="teacher/",
              fingerprint=fingerprint.for_teacher(cfg), resume=cfg.resume)
    model.eval()
    with torch.no_grad():
        metrics: Dict[str, Any] = evaluate_all(model, task, enc, collate, bs)
    size = param_counts(model)
    metrics.update({"main_metric": task.main_metric, "best_step": (res.best_eval or {}).get("step"),
                    "steps": res.steps, "train_examples": len(enc["train"]), "train_wall_s": round(res.wall_time_s, 1),
                    **size})
    if int(os.environ.get("RANK", "0")) != 0:
        return metrics  # distributed: rank 0 alone writes the checkpoint
    shutil.rmtree(out, ignore_errors=True)  # a half-written one from an interrupted run
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    write_card(out, title=f"Fine-tuned teacher for {task.name}",
               summary=f"`{cfg.teacher.name_or_path}` fine-tuned on `{task.name}` by tinyfw stage=teacher.",
               task=task.describe(), metrics={k: v for k, v in metrics.items() if isinstance(v, dict)}, size=size,
               config={"base": base, "lr": cfg.teacher_ft.train.lr, "batch_size": cfg.teacher_ft.train.batch_size,
                       "epochs": cfg.teacher_ft.train.epochs, "max_steps": cfg.teacher_ft.train.max_steps,
                       "max_seq_len": cfg.task.max_seq_len, "seed": cfg.teacher_ft.seed, "precision": str(cfg.precision)},
               name="TEACHER_DIR")
    load_classifier(str(out), task)  # the saved checkpoint reloads strictly with its head
    return metrics


def ensure_teacher(cfg: DictConfig, home: Path, tracker: Any = None, work_dir: Optional[Path] = None,
                   info: Optional[Dict[str, Any]] = None) -> Path:
    """The fine-tuned teacher for ``cfg.task``: ``teacher_ft.path`` when set, else the cache
    entry (fine-tuned now when missing; ``work_dir`` holds the loop's checkpoints meanwhile).
    ``info`` receives ``built`` and ``waited_s`` (see :func:`tinyfw.cache.ensure`)."""
    if cfg.teacher_ft.path:
        if info is not None:
            info.update(built=False, waited_s=0.0)
        try:
            return Path(paths.resolve_name_or_path(cfg.teacher_ft.path, home, key="teacher_ft.path"))
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{exc}: point it at a fine-tuned teacher (an HF directory with its "
                                    "classification head), or leave it empty to fine-tune one") from None

    key = cache_key(cfg)
    wd = work_dir or home / "cache" / "teacher-work" / cache.key_of(key)

    def prepare() -> None:  # every rank of a distributed run trains; rank 0 writes wd/model
        finetune(cfg, home, wd / "model", wd, tracker)

    def build(tmp: Path) -> None:
        for f in (wd / "model").iterdir():
            shutil.move(str(f), tmp / f.name)
        shutil.rmtree(wd / "model", ignore_errors=True)
        shutil.rmtree(wd / "checkpoints", ignore_errors=True)  # kept on failure: a re-run resumes

    return cache.ensure(home, "teacher", key, build, prepare=prepare, info=info)


def teacher_metrics(path: Path) -> Dict[str, Any]:
    f = Path(path) / METRICS_FILE
    return json.loads(f.read_text()) if f.exists() else {}


def run(cfg: DictConfig, ctx: RunContext) -> StageResult:
    info: Dict[str, Any] = {}
    path = ensure_teacher(cfg, ctx.home, ctx.tracker, ctx.run_dir / "teacher_ft", info)
    metrics = teacher_metrics(path)
    if not metrics:  # an external teacher (teacher_ft.path): evaluate it here
        import torch

        task = load_task(cfg.task, ctx.home)
        model = load_classifier(str(path), task)
        tok = teacher_tokenizer(cfg, ctx.home, str(path), model.config)
        with torch.no_grad():
            metrics = evaluate_all(model, task, encode_splits(task, tok, cfg.task.max_seq_len),
                                   Collator(tok.pad_token_id, task.regression), cfg.task_distill.eval_batch_size)
        metrics["main_metric"] = task.main_metric
    for split in ("dev", "test"):
        if split in metrics:
            log.info("teacher %s: %s", split, metrics[split])
    # cached: fine-tuned earlier, or by another job while this one waited (waited_s)
    return StageResult(metrics={**metrics, "cached": not info["built"], "waited_s": info["waited_s"]},
                       outputs={"teacher": str(path)})
