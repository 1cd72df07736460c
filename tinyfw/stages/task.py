"""``stage=task``: TinyBERT's task-specific distillation (TD) of a student classifier.

Wiring (each piece lives elsewhere: ``tinyfw.artefacts`` for what is cached, the student in
``tinyfw.models.classifier``, the losses in ``tinyfw.distill.steps``, the training set in
``tinyfw.data.trainset``, the budgets in ``tinyfw.train.budget``; ``run`` only connects them):

1. the task (``tinyfw.data.tasks``), the fine-tuned teacher (``ensure_teacher``: cached, or
   fine-tuned now), and the train split — augmented when ``augment=on`` (``ensure_augmented``:
   the cache of ``stage=augment``, built when missing);
2. the student: ``gd=on`` starts from the general-distillation student
   (``task_distill.gd_checkpoint``, else ``ensure_gd_student``: cached or trained now);
   ``gd=off`` from ``task_distill.gd_off_init`` (default ``random``: BERT initialisation, the
   paper's "w/o GD"; ``teacher_layers`` copies mapped teacher layers when widths match). A
   fresh classification head is put on top;
3. ``td=on``: **step 1**, intermediate-layer distillation (embedding + attention + hidden
   losses with ``distill.weights``; the prediction weight is not used here) with
   ``task_distill.step1``; skipped when embd = attn = hidn = 0 ("w/o Trm" and friends are weight
   ablations). **Step 2**, prediction-layer distillation with ``task_distill.step2``: soft
   cross-entropy to the teacher's logits at ``distill.temperature`` (MSE to the teacher's
   output for regression) times ``weights.pred``; ``weights.pred=0`` ("w/o Pred") trains on the
   hard labels instead. The teacher's logits are computed once per training example and cached
   (``<home>/cache/teacher-logits/<key>``, keyed by the teacher and the tokenised train set),
   never recomputed per epoch or per run;
4. ``td=off`` ("w/o TD"): no distillation, the student is fine-tuned on hard labels with
   ``task_distill.finetune`` (on the augmented set when ``augment=on``);
5. evaluation on the dev split every ``eval_every`` steps and at the end of the last phase;
   the best weights by the task's main dev metric (MNLI: matched) are kept and evaluated on
   every labelled split.

Output: ``<run>/student`` — HF format with its head (``AutoModelForSequenceClassification``
loads it with no missing key; checked after saving) + tokenizer + ``README.md`` card.

result.json ``metrics`` (read by ``stage=report``)::

    {"dev": {metric: value}, "test": {...}, "validation_mismatched": {...} (MNLI),
     "teacher": {"dev": {...}, "test": {...}}, "main_metric": "accuracy",
     "retention": student/teacher main metric (test when labelled, else dev),
     "student": {"params", "non_embedding_params"}, "teacher_size": {...},
     "size_ratio": {"params", "non_embedding_params"} (teacher / student),
     "inference": {"student_examples_per_s", "teacher_examples_per_s", "speedup"} (dev set),
     "steps": {"step1": n, "step2": n} | {"finetune": n}, "best_step": n,
     "train_examples": n (distinct rows), "budget": "steps" | "epochs",
     "examples_seen": {phase: n}, "passes": {phase: examples_seen / train_examples},
     "teacher_logits": {"cached": bool, "computed": n},
     "projections": {"source", "loaded", "fresh", "reason"} (step 1 from the GD projections),
     "step1": {"cached": bool, "entry": path, "final": {...}} (cache/td-step1),
     "health": {"collapsed", "reasons", ...}, "collapsed": bool, "dev_curve": [{"step", metric}],
     "init": "gd:<path>" | "random" | "teacher_layers", "wall_time_s": s}

Values are fractions (accuracy 0.91, not 91). Flags gd/td/da sit in result.json ``flags``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from omegaconf import DictConfig, OmegaConf

from tinyfw.artefacts.task_distill import cached_step1, step1_key_parts, teacher_logits
from tinyfw.artefacts.task_distill import fingerprint as task_fingerprint
from tinyfw.artefacts.teacher import ensure_teacher, teacher_metrics
from tinyfw.config import is_on, plain
from tinyfw.data.collate import Collator
from tinyfw.data.tasks import TaskData, encode_splits, evaluate, load_task, predict_logits
from tinyfw.data.trainset import cap_examples, encode_train, with_augmented
from tinyfw.models.classifier import build_classifier, checkpoint_shape, evaluate_all, load_classifier, throughput
from tinyfw.models.load import check_tokenizer
from tinyfw.stages import RunContext, StageResult
from tinyfw.train import checkpoint
from tinyfw.train.budget import examples_seen, phase_budgets

log = logging.getLogger(__name__)


def _weights(cfg: DictConfig) -> Dict[str, float]:
    return {k: float(v) for k, v in OmegaConf.to_container(cfg.distill.weights).items()}


@dataclass
class Setup:
    """What the phases train on and are evaluated on."""

    task: TaskData
    teacher_dir: Path
    tok: Any
    teacher: Any
    collate: Collator
    enc: Dict[str, Any]  # the tokenised evaluation splits
    t_metrics: Dict[str, Any]  # the teacher's, per split
    train: Any  # the tokenised training set (augmented when augment=on, capped)

    @property
    def dev(self) -> Any:
        return self.enc[self.task.dev_split]


@dataclass
class Trained:
    """What the phases did, as result.json reports it."""

    steps: Dict[str, int] = field(default_factory=dict)
    seen: Dict[str, int] = field(default_factory=dict)
    logits: Dict[str, Any] = field(default_factory=dict)
    projections: Dict[str, Any] = field(default_factory=dict)
    step1: Dict[str, Any] = field(default_factory=dict)
    loss_floor: float = 0.0  # the lowest loss the last phase can reach (its health check)
    loss_check: bool = True  # the health check reads the last phase's loss (soft CE or hard CE)
    best_step: Optional[int] = None
    last: Any = None  # the last phase's FitResult

    def record(self, name: str, res: Any, phase: Any) -> None:
        self.steps[name], self.best_step = res.steps, (res.best_eval or {}).get("step")
        self.seen[name] = examples_seen(res, phase)
        self.last = res


# --------------------------------------------------------------------------------------
# load, build


def _teacher_tokenizer(cfg: DictConfig, home: Path, teacher_dir: Path) -> Any:
    if (teacher_dir / "tokenizer_config.json").exists():  # fine-tuned teachers carry their tokenizer
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(str(teacher_dir))
    from tinyfw.models.load import teacher_path, teacher_tokenizer

    return teacher_tokenizer(cfg.teacher, home, teacher_path(cfg.teacher, home))


def load(cfg: DictConfig, ctx: RunContext) -> Setup:
    """The task, the fine-tuned teacher (cached, or fine-tuned now) with its tokenizer and
    metrics, and the training set: augmented when ``augment=on`` (cached, or built now),
    capped at ``task_distill.max_train_examples``."""
    home = ctx.home
    task = load_task(cfg.task, home)
    teacher_dir = ensure_teacher(cfg, home, ctx.tracker, ctx.run_dir / "teacher_ft")
    tok = _teacher_tokenizer(cfg, home, teacher_dir)
    teacher = load_classifier(str(teacher_dir), task)
    check_tokenizer(tok, teacher.config, f"teacher {teacher_dir}", str(teacher_dir))
    collate = Collator(tok.pad_token_id, regression=task.regression)
    enc = encode_splits(task, tok, cfg.task.max_seq_len, task.eval_splits)
    t_metrics = teacher_metrics(teacher_dir)
    if not any(k in t_metrics for k in ("dev", "test")):
        import torch

        with torch.no_grad():
            t_metrics = evaluate_all(teacher, task, enc, collate, cfg.task_distill.eval_batch_size)
    train = task.splits["train"]
    if is_on(cfg.augment):
        from tinyfw.artefacts.augmented import ensure_augmented

        train = with_augmented(train, ensure_augmented(cfg, home, train, task.text_columns, ctx.tracker),
                               task.text_columns)
    train = cap_examples(train, cfg.task_distill.max_train_examples, int(cfg.augmenter.seed))  # shared by run seeds
    return Setup(task, teacher_dir, tok, teacher, collate, enc, t_metrics,
                 encode_train(train, task.text_columns, tok, cfg.task.max_seq_len))


def student_start(cfg: DictConfig, home: Path, tracker: Any = None) -> Tuple[str, str, Any]:
    """Where the student starts: (``init`` for :func:`build_classifier`, its label in
    result.json, its shape). ``gd=on``: the GD student (``task_distill.gd_checkpoint``, else
    the cached one, trained now when missing) in its own shape; ``gd=off``:
    ``task_distill.gd_off_init`` in ``student.shape``."""
    if not is_on(cfg.gd):
        init = plain(cfg.task_distill.gd_off_init)
        return init, init, cfg.student.shape
    src = cfg.task_distill.gd_checkpoint
    if not src:
        from tinyfw.artefacts.gd import ensure_gd_student

        src = str(ensure_gd_student(cfg, home, tracker))
    check_gd_checkpoint(src)
    return src, f"gd:{src}", checkpoint_shape(src)  # the checkpoint's own shape


def check_gd_checkpoint(src: str) -> None:
    """``task_distill.gd_checkpoint`` must be a model directory (checked before any work)."""
    fix = ("point it at a GD student (the student/ directory of a stage=general run), or leave it empty "
           "to use the cached one (trained when missing)")
    if not Path(src).is_dir():
        what = "is not a directory" if Path(src).exists() else "does not exist"
        raise FileNotFoundError(f"task_distill.gd_checkpoint={src} {what}: {fix}")
    if not (Path(src) / "config.json").exists():
        raise FileNotFoundError(f"task_distill.gd_checkpoint={src} has no config.json (not an HF model "
                                f"directory): {fix}")


def build(cfg: DictConfig, ctx: RunContext, s: Setup) -> Tuple[Any, List[int], str]:
    """The student classifier (after ``set_seed(seed)``), checked against the teacher and its
    tokenizer: (model, layer mapping, init label)."""
    from transformers import set_seed

    from tinyfw.models.student import validate_pair

    set_seed(cfg.seed)
    src, init, shape = student_start(cfg, ctx.home, ctx.tracker)
    student, mapping = build_classifier(shape, plain(cfg.student.layer_map), s.teacher, src, s.task)
    check_tokenizer(s.tok, student.config, f"student {init}", init[3:] if init.startswith("gd:") else None,
                    fix="start from a student distilled with this teacher's tokenizer")
    from tinyfw.distill.recipes import check

    inter = bool(cfg.task_distill.get("intermediate", True))  # TD step 1 runs (the recipes' switch)
    attn = _weights(cfg).get("attn", 0.0) if inter else 0.0
    check(cfg.distill, student.config, s.teacher.config, attn, intermediate=inter)
    validate_pair(student.config, s.teacher.config, mapping, attn)
    return student, mapping, init


# --------------------------------------------------------------------------------------
# the phases


def _dev_eval(s: Setup, batch_size: int):
    def dev_eval(mods):
        from tinyfw.models.capture import unwrap

        return evaluate(unwrap(mods["student"]), s.task, s.dev, s.collate, batch_size)

    return dev_eval


def step1(cfg: DictConfig, ctx: RunContext, s: Setup, student: Any, mapping: List[int], init: str,
          phase: Any, common: Dict[str, Any], out: Trained) -> None:
    """TD step 1, intermediate-layer distillation (the embd, attn, hidn weights; skipped when all
    are 0), from the GD projections when they fit; the step-1 student is cached."""
    from tinyfw.distill.objective import Distiller, carry_over_projections
    from tinyfw.distill.steps import feature_loss_fn
    from tinyfw.train.loop import fit

    from tinyfw.distill import recipes

    w = _weights(cfg)
    inter = recipes.feature_weights(cfg.distill, gd=False)
    if not any(v > 0 for v in inter.values()) or not cfg.task_distill.get("intermediate", True):
        return
    d = cfg.distill
    distiller = Distiller(student.config.hidden_size, s.teacher.config.hidden_size, mapping, inter,
                          share_projection=d.share_projection, attn_mode=d.attn_mode, temperature=d.temperature,
                          layer_reduction=d.layer_reduction, fast=bool(cfg.fast_path),
                          **recipes.distiller_kwargs(d, student.config, s.teacher.config))
    gd = init[3:] if init.startswith("gd:") else None
    out.projections = carry_over_projections(distiller, gd)
    if out.projections["loaded"]:
        log.info("TD step 1 starts from the GD projections %s (%s)", out.projections["loaded"],
                 out.projections["source"])
    if out.projections["fresh"] and gd:
        log.warning("TD step 1: fresh random projections %s: %s", out.projections["fresh"], out.projections["reason"])
    log.info("TD step 1 (intermediate layers, weights %s) on %d examples", inter, len(s.train))
    # MiniLM's relations in step 1 (task_distill.intermediate=true) need Q/K/V (not on the fast path)
    loss_fn = feature_loss_fn(inter["attn"] > 0, mapping, log_total=False, fast=bool(cfg.fast_path),
                              need_qkv=recipes.needs_extra(inter))

    def train() -> Dict[str, Any]:
        r1 = fit({"student": student, "distiller": distiller}, loss_fn, s.train, s.collate, phase,
                 out_dir=ctx.run_dir / "step1", frozen={"teacher": s.teacher}, desc="TD step 1", keep_checkpoints=1,
                 log_prefix="step1/", find_unused_parameters=True, **common)  # the pooler and head: unused
        return {"steps": r1.steps, "examples_seen": examples_seen(r1, phase),
                "final": {k: v for k, v in r1.final.items() if k != "step"}}

    parts = step1_key_parts(cfg, s.teacher_dir, init, s.train, mapping, student, phase, common["precision"])
    r = cached_step1(ctx.home, parts, student, train)
    out.steps["step1"], out.seen["step1"] = r["steps"], r["examples_seen"]
    out.step1 = {"cached": r["cached"], "entry": r["entry"], "final": r["final"]}


def step2(cfg: DictConfig, ctx: RunContext, s: Setup, student: Any, phase: Any, common: Dict[str, Any],
          out: Trained) -> None:
    """TD step 2, prediction-layer distillation to the teacher's (cached) logits; the hard
    labels when ``weights.pred`` is 0. The best dev weights are restored."""
    from tinyfw.distill.steps import prediction_loss_fn, soft_entropy
    from tinyfw.train.loop import fit

    pred, temperature, bs = _weights(cfg).get("pred", 0.0), cfg.distill.temperature, cfg.task_distill.eval_batch_size
    train = s.train
    if pred > 0:
        logits, cached = teacher_logits(s.teacher, s.teacher_dir, s.train, s.collate, ctx.home, bs)
        out.logits = {"cached": cached, "computed": 0 if cached else len(s.train)}
        if s.task.token:  # [positions, C] -> one [words, C] list per row
            from tinyfw.data.tokens import positions_per_row

            logits_rows = np.split(logits, np.cumsum(positions_per_row(s.train["labels"]))[:-1])
            train = s.train.add_column("t_logits", [row.tolist() for row in logits_rows])
        else:
            train = s.train.add_column("t_logits", [row.tolist() for row in logits])
        if not s.task.regression:  # the soft targets' entropy: the lowest step-2 loss possible
            out.loss_floor = soft_entropy(logits, float(temperature))
    elif s.task.token:
        from tinyfw.data.tokens import gold_rows

        train = gold_rows(train)
    log.info("TD step 2 (prediction layer, pred weight %s, T=%s)", pred, temperature)
    kind, alpha = str(cfg.distill.get("pred_loss", "soft_ce")), float(cfg.distill.get("hard_label_weight", 0.0))
    loss_fn = prediction_loss_fn(pred, temperature, s.task.regression, fast=bool(cfg.fast_path), kind=kind,
                                 hard_label_weight=alpha)
    if kind != "soft_ce" or alpha > 0:  # the recipes' variants (tinyfw/distill/recipes.py)
        out.loss_check = kind == "soft_ce"  # ln C is soft CE's scale, not KL's or MSE's
        log.info("TD step 2: %s prediction loss, + %s x hard-label loss", kind, alpha)
    r2 = fit({"student": student}, loss_fn, train, s.collate, phase,
             out_dir=ctx.run_dir / "step2", evaluate=_dev_eval(s, bs), desc="TD step 2", eval_key=s.task.main_metric,
             restore_best=True, keep_checkpoints=1, log_prefix="step2/", **common)
    out.record("step2", r2, phase)


def finetune(cfg: DictConfig, ctx: RunContext, s: Setup, student: Any, phase: Any, common: Dict[str, Any],
             out: Trained) -> None:
    """``td=off`` ("w/o TD"): fine-tuning on the hard labels; the best dev weights are restored."""
    from tinyfw.distill.steps import finetune_loss_fn
    from tinyfw.train.loop import fit

    train = s.train
    if s.task.token:
        from tinyfw.data.tokens import gold_rows

        train = gold_rows(train)
    log.info("td=off: fine-tuning the student on hard labels (%d examples)", len(train))
    r = fit({"student": student}, finetune_loss_fn(s.task.regression), train, s.collate, phase,
            out_dir=ctx.run_dir / "finetune", evaluate=_dev_eval(s, cfg.task_distill.eval_batch_size),
            desc="fine-tune", eval_key=s.task.main_metric, restore_best=True, keep_checkpoints=1,
            log_prefix="finetune/", **common)
    out.record("finetune", r, phase)


# --------------------------------------------------------------------------------------
# evaluate, save


def evaluate_student(cfg: DictConfig, s: Setup, student: Any, init: str,
                     out: Trained) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(the student's metrics per labelled split, result.json's ``metrics``: those, its health,
    size and speed against the teacher's, and what the phases did)."""
    import torch

    from tinyfw.models.card import card_size
    from tinyfw.train.health import check as check_health

    bs, task, last = cfg.task_distill.eval_batch_size, s.task, out.last
    student.eval()
    with torch.no_grad():
        s_metrics = evaluate_all(student, task, s.enc, s.collate, bs)
        loss_key = "pred" if any("pred" in h for h in last.history) else "loss"
        health = check_health(predict_logits(student, s.dev, s.collate, bs), task.regression, task.num_labels,
                              [h[loss_key] for h in last.history if loss_key in h] if out.loss_check else None,
                              out.loss_floor)
        speed_s = throughput(student, s.dev, s.collate, bs)
        speed_t = throughput(s.teacher, s.dev, s.collate, bs)
    if health["collapsed"]:
        log.warning("the student COLLAPSED: %s (marked in result.json; the report shows it apart)",
                    "; ".join(health["reasons"]))
    s_size, t_size = card_size(student), card_size(s.teacher)
    main, t_metrics = task.main_metric, s.t_metrics
    ref = "test" if "test" in s_metrics and "test" in t_metrics else "dev"
    retention = None
    if ref in s_metrics and ref in t_metrics and t_metrics[ref].get(main):
        retention = s_metrics[ref][main] / t_metrics[ref][main]
    n = len(s.train)
    return s_metrics, {
        **s_metrics,
        "teacher": {k: v for k, v in t_metrics.items() if isinstance(v, dict)},
        "main_metric": main,
        "retention": retention,
        "retention_split": ref,
        "student": s_size,
        "teacher_size": t_size,
        "size_ratio": {k: t_size[k] / max(1, s_size[k]) for k in s_size},
        "inference": {"student_examples_per_s": round(speed_s, 1), "teacher_examples_per_s": round(speed_t, 1),
                      "speedup": round(speed_s / max(speed_t, 1e-9), 2)},
        "steps": out.steps,
        "best_step": out.best_step,
        "train_examples": n,
        "budget": str(cfg.task_distill.budget),
        "examples_seen": out.seen,
        "passes": {k: round(v / max(1, n), 2) for k, v in out.seen.items()},
        "original_train_examples": len(task.splits["train"]),
        "teacher_logits": out.logits,
        "projections": out.projections,
        "step1": out.step1,
        "health": health,
        "dev_curve": [{k: v for k, v in e.items() if k == "step" or k == main} for e in last.evals],
        "collapsed": health["collapsed"],
        "init": init,
    }


def save(cfg: DictConfig, ctx: RunContext, s: Setup, student: Any, mapping: List[int], init: str,
         s_metrics: Dict[str, Any], metrics: Dict[str, Any], out: Path) -> None:
    """``out``: the student in HF format with its head, tokenizer, ``metrics.json`` and card;
    checked to reload strictly and reproduce the trained model's outputs. The phases'
    checkpoints (only for resuming a killed run) are removed."""
    from tinyfw.fsutil import atomic_dir
    from tinyfw.models.card import write_card

    task = s.task
    flags = {"gd": str(cfg.gd), "td": str(cfg.td), "da": str(cfg.augment)}
    with atomic_dir(out, overwrite=True) as tmp:
        student.save_pretrained(tmp)
        s.tok.save_pretrained(tmp)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str) + "\n")
        write_card(tmp, title=f"TinyBERT-style student for {task.name}",
                   summary=(f"Distilled by tinyfw stage=task from the fine-tuned teacher `{s.teacher_dir}` "
                            f"({cfg.teacher.name_or_path}); flags {flags}; init {init}."),
                   task=task.describe(),
                   metrics={**s_metrics, **{f"teacher {k}": v for k, v in metrics["teacher"].items()}},
                   size=metrics["student"],
                   config={**flags, "layer_map": mapping, "weights": _weights(cfg),
                           "temperature": cfg.distill.temperature, "steps": metrics["steps"],
                           "train_examples": len(s.train), "max_seq_len": cfg.task.max_seq_len, "seed": cfg.seed},
                   name=str(out))
    reloaded = load_classifier(str(out), task)  # strict: no missing/unexpected keys
    probe = s.dev.select(range(min(8, len(s.dev))))
    same = np.allclose(predict_logits(reloaded, probe, s.collate), predict_logits(student, probe, s.collate), atol=1e-4)
    if not same:
        raise RuntimeError(f"the saved student {out} does not reproduce the trained model's outputs")
    checkpoint.mark_finished(ctx.run_dir, task_fingerprint(cfg, ctx.home))  # a re-run is still checked
    for phase in ("step1", "step2", "finetune"):  # training state is only for resuming a killed run
        shutil.rmtree(ctx.run_dir / phase / "checkpoints", ignore_errors=True)


def td_precision(cfg: DictConfig) -> str:
    """TD's precision: ``task_distill.precision``, else (null) the global one; ``auto`` resolved."""
    from tinyfw.precision import resolved

    td = cfg.task_distill.precision
    return resolved(td, where="task_distill.precision") if td is not None else resolved(cfg.precision, where="precision")


def finished_result(run_dir: Path) -> StageResult:
    """A finished run asked again with the same settings: its result, nothing trained. Its
    result.json stays as it is (``unchanged``); without one, the saved student's metrics."""
    record = run_dir / "result.json"
    old = json.loads(record.read_text()) if record.exists() else {}
    log.info("%s holds a finished run of these settings: nothing to train", run_dir)
    if old.get("status") == "ok":
        return StageResult(metrics=old["metrics"], outputs=old["outputs"], unchanged=True)
    metrics = json.loads((run_dir / "student" / "metrics.json").read_text())
    return StageResult(metrics=metrics, outputs={"student": str(run_dir / "student")})


def run(cfg: DictConfig, ctx: RunContext) -> StageResult:
    t_start = time.time()
    td = cfg.task_distill
    phases = phase_budgets(td, ("step1", "step2") if is_on(cfg.td) else ("finetune",))  # checked before any work
    if is_on(cfg.gd) and td.gd_checkpoint:
        check_gd_checkpoint(td.gd_checkpoint)
    fp = task_fingerprint(cfg, ctx.home)
    if checkpoint.finished(ctx.run_dir, fp, "stage=task", resume=cfg.resume):  # another training: refused
        return finished_result(ctx.run_dir)
    s = load(cfg, ctx)
    student, mapping, init = build(cfg, ctx, s)
    precision = td_precision(cfg)
    common = dict(precision=precision, tracker=ctx.tracker, seed=cfg.seed, group_by_length=bool(td.group_by_length),
                  fingerprint=fp, resume=cfg.resume, fast=bool(cfg.fast_path))
    trained = Trained()
    if is_on(cfg.td):
        step1(cfg, ctx, s, student, mapping, init, phases["step1"], common, trained)
        step2(cfg, ctx, s, student, phases["step2"], common, trained)
    else:
        finetune(cfg, ctx, s, student, phases["finetune"], common, trained)
    s_metrics, metrics = evaluate_student(cfg, s, student, init, trained)
    out = ctx.run_dir / "student"
    if ctx.is_main:
        save(cfg, ctx, s, student, mapping, init, s_metrics, metrics, out)
    metrics["wall_time_s"] = round(time.time() - t_start, 1)
    for split in ("dev", "test"):
        if split in s_metrics:
            log.info("student %s %s (teacher %s)", split, s_metrics[split], metrics["teacher"].get(split))
    return StageResult(metrics=metrics, outputs={"student": str(out), "teacher": str(s.teacher_dir)})
