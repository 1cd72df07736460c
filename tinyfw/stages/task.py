"""``stage=task``: TinyBERT's task-specific distillation (TD) of a student classifier.

Wiring only: the pieces live in :mod:`tinyfw.td` (``setup`` for the teacher and the training
set, ``start`` for the student's starting point, ``phases`` for the training, ``evaluate`` and
``save`` for the student); ``run`` connects them and writes the record. The steps and the
output: docs/internals.md "Task-specific distillation"; result.json's ``metrics``: its "Run
records" section; switches and budgets: README "Tasks and task-specific distillation".
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
