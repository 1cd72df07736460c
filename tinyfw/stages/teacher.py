"""``stage=teacher``: fine-tune the pre-trained teacher encoder on the task.

The fine-tuned teacher is a cached artefact (:mod:`tinyfw.artefacts.teacher`: how it is
trained, saved and keyed), so ``stage=task`` finds it (``ensure_teacher``) and builds it itself
when missing. ``teacher_ft.path`` points to an already fine-tuned teacher instead; it is
evaluated here.

result.json ``metrics``: ``{"dev": {...}, "test": {...}, <other eval splits>, "main_metric",
"best_step", "steps", "train_examples", "params", "non_embedding_params", "cached"}``;
``outputs``: ``{"teacher": path}``.
"""

from __future__ import annotations

import logging
from typing import Any, Dict

from omegaconf import DictConfig

from tinyfw.artefacts.teacher import ensure_teacher, teacher_metrics
from tinyfw.data.collate import Collator
from tinyfw.data.tasks import encode_splits, load_task
from tinyfw.models.classifier import load_classifier, scores
from tinyfw.stages import RunContext, StageResult

log = logging.getLogger(__name__)


def run(cfg: DictConfig, ctx: RunContext) -> StageResult:
    info: Dict[str, Any] = {}
    path = ensure_teacher(cfg, ctx.home, ctx.tracker, ctx.run_dir / "teacher_ft", info)
    metrics = teacher_metrics(path)
    if not metrics:  # an external teacher (teacher_ft.path): evaluate it here
        from tinyfw.models.load import teacher_tokenizer

        task = load_task(cfg.task, ctx.home)
        model = load_classifier(str(path), task)
        tok = teacher_tokenizer(cfg.teacher, ctx.home, str(path), model.config)
        metrics = scores(model, task, encode_splits(task, tok, cfg.task.max_seq_len),
                         Collator(tok.pad_token_id, task.regression), cfg.task_distill.eval_batch_size)
    for split in ("dev", "test"):
        if split in metrics:
            log.info("teacher %s: %s", split, metrics[split])
    # cached: fine-tuned earlier, or by another job while this one waited (waited_s)
    return StageResult(metrics={**metrics, "cached": not info["built"], "waited_s": info["waited_s"]},
                       outputs={"teacher": str(path)})
