"""The TD phases on the training loop: **step 1**, intermediate-layer distillation (its student
cached), **step 2**, prediction-layer distillation to the teacher's cached logits, and the
hard-label fine-tuning of ``td=off``; :class:`Trained` collects what they did. Each phase
writes its loop checkpoints in ``<run_dir>/<phase>``."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
from omegaconf import DictConfig

from tinyfw.artefacts.task_distill import cached_step1, step1_key_parts, teacher_logits
from tinyfw.models.classifier import dev_evaluator
from tinyfw.models.start import StartPoint
from tinyfw.td.setup import Setup, weights
from tinyfw.train.budget import examples_seen

log = logging.getLogger(__name__)


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


def td_precision(cfg: DictConfig) -> str:
    """TD's precision: ``task_distill.precision``, else (null) the global one; ``auto`` resolved."""
    from tinyfw.precision import resolved

    td = cfg.task_distill.precision
    return resolved(td, where="task_distill.precision") if td is not None else resolved(cfg.precision, where="precision")


def step1(cfg: DictConfig, home: Path, run_dir: Path, s: Setup, student: Any, mapping: List[int],
          start: StartPoint, phase: Any, common: Dict[str, Any], out: Trained) -> None:
    """TD step 1, intermediate-layer distillation (the embd, attn, hidn weights; skipped when all
    are 0), from the GD projections when they fit; the step-1 student is cached."""
    from tinyfw.distill import recipes
    from tinyfw.distill.objective import Distiller, carry_over_projections
    from tinyfw.distill.steps import feature_loss_fn
    from tinyfw.train.loop import fit

    inter = recipes.feature_weights(cfg.distill, gd=False)
    if not any(v > 0 for v in inter.values()) or not cfg.task_distill.get("intermediate", True):
        return
    d = cfg.distill
    distiller = Distiller(student.config.hidden_size, s.teacher.config.hidden_size, mapping, inter,
                          share_projection=d.share_projection, attn_mode=d.attn_mode, temperature=d.temperature,
                          layer_reduction=d.layer_reduction, fast=bool(cfg.fast_path),
                          **recipes.distiller_kwargs(d, student.config, s.teacher.config))
    gd = start.gd_dir
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
                 out_dir=run_dir / "step1", frozen={"teacher": s.teacher}, desc="TD step 1", keep_checkpoints=1,
                 log_prefix="step1/", find_unused_parameters=True, **common)  # the pooler and head: unused
        return {"steps": r1.steps, "examples_seen": examples_seen(r1, phase),
                "final": {k: v for k, v in r1.final.items() if k != "step"}}

    parts = step1_key_parts(cfg, s.teacher_dir, start, s.train, mapping, student, phase, common["precision"])
    r = cached_step1(home, parts, student, train)
    out.steps["step1"], out.seen["step1"] = r["steps"], r["examples_seen"]
    out.step1 = {"cached": r["cached"], "entry": r["entry"], "final": r["final"]}


def step2(cfg: DictConfig, home: Path, run_dir: Path, s: Setup, student: Any, phase: Any, common: Dict[str, Any],
          out: Trained) -> None:
    """TD step 2, prediction-layer distillation to the teacher's (cached) logits; the hard
    labels when ``weights.pred`` is 0. The best dev weights are restored."""
    from tinyfw.distill.steps import prediction_loss_fn, soft_entropy
    from tinyfw.train.loop import fit

    pred, temperature, bs = weights(cfg).get("pred", 0.0), cfg.distill.temperature, cfg.task_distill.eval_batch_size
    train = s.train
    if pred > 0:
        logits, cached = teacher_logits(s.teacher, s.teacher_dir, s.train, s.collate, home, bs)
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
             out_dir=run_dir / "step2", evaluate=dev_evaluator("student", s.task, s.dev, s.collate, bs),
             desc="TD step 2", eval_key=s.task.main_metric, restore_best=True, keep_checkpoints=1,
             log_prefix="step2/", **common)
    out.record("step2", r2, phase)


def finetune(cfg: DictConfig, run_dir: Path, s: Setup, student: Any, phase: Any, common: Dict[str, Any],
             out: Trained) -> None:
    """``td=off`` ("w/o TD"): fine-tuning on the hard labels; the best dev weights are restored."""
    from tinyfw.distill.steps import finetune_loss_fn
    from tinyfw.train.loop import fit

    train = s.train
    if s.task.token:
        from tinyfw.data.tokens import gold_rows

        train = gold_rows(train)
    log.info("td=off: fine-tuning the student on hard labels (%d examples)", len(train))
    bs = cfg.task_distill.eval_batch_size
    r = fit({"student": student}, finetune_loss_fn(s.task.regression), train, s.collate, phase,
            out_dir=run_dir / "finetune", evaluate=dev_evaluator("student", s.task, s.dev, s.collate, bs),
            desc="fine-tune", eval_key=s.task.main_metric, restore_best=True, keep_checkpoints=1,
            log_prefix="finetune/", **common)
    out.record("finetune", r, phase)
