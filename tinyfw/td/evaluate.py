"""The TD student's result metrics: every labelled split, its health, its size and speed against
the teacher's, and what the phases did (result.json's ``metrics``, listed in
:mod:`tinyfw.stages.task`)."""

from __future__ import annotations

import logging
from typing import Any, Dict, Tuple

from omegaconf import DictConfig

from tinyfw.data.tasks import predict_logits
from tinyfw.models.classifier import evaluate_all, throughput
from tinyfw.models.start import StartPoint
from tinyfw.td.phases import Trained
from tinyfw.td.setup import Setup

log = logging.getLogger(__name__)


def evaluate_student(cfg: DictConfig, s: Setup, student: Any, start: StartPoint,
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
        "init": start.label,
    }
