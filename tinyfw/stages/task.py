"""``stage=task``: TinyBERT's task-specific distillation (TD) of a student classifier.

Wiring (each piece lives in :mod:`tinyfw.td`: ``setup`` for the teacher and the training set,
``start`` for the student's starting point, ``phases`` for the training, ``evaluate`` and
``save`` for the student; ``run`` only connects them and writes the record):

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
     "init": "gd:<path>" | "random" | "teacher_layers" (``StartPoint.label``), "wall_time_s": s}

Values are fractions (accuracy 0.91, not 91). Flags gd/td/da sit in result.json ``flags``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from omegaconf import DictConfig

from tinyfw.artefacts.task_distill import fingerprint as task_fingerprint
from tinyfw.config import is_on
from tinyfw.stages import RunContext, StageResult
from tinyfw.td import phases as td
from tinyfw.td.evaluate import evaluate_student
from tinyfw.td.save import save
from tinyfw.td.setup import load
from tinyfw.td.start import build, check_gd_checkpoint
from tinyfw.train import checkpoint
from tinyfw.train.budget import phase_budgets

log = logging.getLogger(__name__)


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
    c = cfg.task_distill
    phases = phase_budgets(c, ("step1", "step2") if is_on(cfg.td) else ("finetune",))  # checked before any work
    if is_on(cfg.gd) and c.gd_checkpoint:
        check_gd_checkpoint(c.gd_checkpoint)
    fp = task_fingerprint(cfg, ctx.home)
    if checkpoint.finished(ctx.run_dir, fp, "stage=task", resume=cfg.resume):  # another training: refused
        return finished_result(ctx.run_dir)
    s = load(cfg, ctx.home, ctx.tracker, ctx.run_dir / "teacher_ft")
    student, mapping, start = build(cfg, ctx.home, ctx.tracker, s)
    common = dict(precision=td.td_precision(cfg), tracker=ctx.tracker, seed=cfg.seed, fingerprint=fp,
                  group_by_length=bool(c.group_by_length), resume=cfg.resume, fast=bool(cfg.fast_path))
    trained = td.Trained()
    if is_on(cfg.td):
        td.step1(cfg, ctx.home, ctx.run_dir, s, student, mapping, start, phases["step1"], common, trained)
        td.step2(cfg, ctx.home, ctx.run_dir, s, student, phases["step2"], common, trained)
    else:
        td.finetune(cfg, ctx.run_dir, s, student, phases["finetune"], common, trained)
    s_metrics, metrics = evaluate_student(cfg, s, student, start, trained)
    out = ctx.run_dir / "student"
    if ctx.is_main:
        save(cfg, s, student, mapping, start, s_metrics, metrics, out)
        checkpoint.mark_finished(ctx.run_dir, fp)  # a re-run is still checked
        checkpoint.drop_checkpoints(ctx.run_dir, ("step1", "step2", "finetune"))
    metrics["wall_time_s"] = round(time.time() - t_start, 1)
    for split in ("dev", "test"):
        if split in s_metrics:
            log.info("student %s %s (teacher %s)", split, s_metrics[split], metrics["teacher"].get(split))
    return StageResult(metrics=metrics, outputs={"student": str(out), "teacher": str(s.teacher_dir)})
