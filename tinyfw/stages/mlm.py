"""``stage=mlm``: make a masked LM for the augmenter from an encoder.

How it is trained and measured, and its cache key: :mod:`tinyfw.artefacts.mlm`. Held-out
quality, before and after, on whole words that are a single word piece (the words the augmenter
asks the masked LM about): 15% of them masked per held-out segment with a fixed seed, top-1 /
top-15 accuracy of the true word at the masked positions.

Outputs: ``<run_dir>/mlm/`` (HF format + tokenizer), ``mlm_metrics.json``; the model is also
published in the content-addressed cache (``<home>/cache/mlm/<key>``), where
``augmenter.mlm=mlm`` finds it.
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from tinyfw.artefacts.mlm import register, train_mlm
from tinyfw.stages import RunContext, StageResult

log = logging.getLogger("tinyfw.mlm")


def run(cfg: DictConfig, ctx: RunContext) -> StageResult:
    metrics, model_dir = train_mlm(cfg, ctx.home, ctx.run_dir, ctx.tracker)
    outputs = {"mlm": str(model_dir)}
    if ctx.is_main:
        outputs["cache"] = str(register(cfg, ctx.home, ctx.run_dir))
        b, a = metrics["heldout_before"], metrics["heldout_after"]
        log.info("MLM done: held-out top-1 %.3f -> %.3f, top-15 %.3f -> %.3f, loss %.3f -> %.3f; %s",
                 b["top1"], a["top1"], b["top15"], a["top15"], metrics["train_loss_initial"],
                 metrics["train_loss_final"], outputs["cache"])
    return StageResult(metrics=metrics, outputs=outputs)
