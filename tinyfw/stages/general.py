"""``stage=general``: general distillation (GD) of a pre-trained teacher into a student on an
unlabeled corpus, with the Transformer-distillation losses (embedding, attention, hidden) and
no prediction loss (:mod:`tinyfw.artefacts.gd`).

Outputs in the run directory: ``student/`` (HF format + tokenizer: ``AutoModel.from_pretrained``
loads it), ``projections.pt`` (the W_e/W_h state dict of :class:`Distiller`, kept out of the
student) + ``projections.json``, ``checkpoints/`` (resume: re-run with the same
``hydra.run.dir``). The student is also registered in the content-addressed cache
(``<home>/cache/gd-student/<key>``) so that ``stage=task gd=on`` finds it.
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from tinyfw.artefacts.gd import register, train_gd
from tinyfw.stages import RunContext, StageResult

log = logging.getLogger("tinyfw.general")


def run(cfg: DictConfig, ctx: RunContext) -> StageResult:
    metrics, student_dir = train_gd(cfg, ctx.home, ctx.run_dir, ctx.tracker)
    outputs = {"student": str(student_dir), "projections": str(ctx.run_dir / "projections.pt")}
    if ctx.is_main:
        outputs["cache"] = str(register(cfg, ctx.home, ctx.run_dir))
        i, f = metrics["initial"], metrics["final"]
        log.info("GD done: total loss %.4f -> %.4f over %d steps, %.0f tokens/s; student in %s",
                 i.get("total", float("nan")), f.get("total", float("nan")), metrics["steps"],
                 metrics["tokens_per_s"], student_dir)
    return StageResult(metrics=metrics, outputs=outputs)
