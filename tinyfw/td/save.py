"""The TD student's saved form: HF format with its head, the teacher's tokenizer,
``metrics.json`` and a model card, checked to reload strictly and reproduce the trained model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
from omegaconf import DictConfig

from tinyfw.data.tasks import predict_logits
from tinyfw.models.classifier import load_classifier
from tinyfw.models.start import StartPoint
from tinyfw.td.setup import Setup, weights


def save(cfg: DictConfig, s: Setup, student: Any, mapping: List[int], start: StartPoint,
         s_metrics: Dict[str, Any], metrics: Dict[str, Any], out: Path) -> None:
    """``out``: the student in HF format with its head, tokenizer, ``metrics.json`` and card;
    checked to reload strictly and reproduce the trained model's outputs."""
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
                            f"({cfg.teacher.name_or_path}); flags {flags}; init {start.label}."),
                   task=task.describe(),
                   metrics={**s_metrics, **{f"teacher {k}": v for k, v in metrics["teacher"].items()}},
                   size=metrics["student"],
                   config={**flags, "layer_map": mapping, "weights": weights(cfg),
                           "temperature": cfg.distill.temperature, "steps": metrics["steps"],
                           "train_examples": len(s.train), "max_seq_len": cfg.task.max_seq_len, "seed": cfg.seed},
                   name=str(out))
    reloaded = load_classifier(str(out), task)  # strict: no missing/unexpected keys
    probe = s.dev.select(range(min(8, len(s.dev))))
    same = np.allclose(predict_logits(reloaded, probe, s.collate), predict_logits(student, probe, s.collate), atol=1e-4)
    if not same:
        raise RuntimeError(f"the saved student {out} does not reproduce the trained model's outputs")
