"""The exported forms of a student compared: every labelled split's metrics per form, the
dev logits of each form against the form it was made from, and the table of ``export.md``.
Every function takes explicit arguments (no config)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterator

import numpy as np

from tinyfw.data.collate import Collator
from tinyfw.data.tasks import TaskData, encode_splits, predict_logits
from tinyfw.models.classifier import evaluate_all

LABELS = {"fp32": "student fp32 (PyTorch)", "pruned": "pruned vocabulary (PyTorch)",
          "onnx": "ONNX Runtime fp32", "onnx_int8": "ONNX Runtime int8 (dynamic)"}
DIRS = {"pruned": "pruned", "onnx": "onnx", "onnx_int8": "onnx-int8"}


def student_origin(student: Path) -> Dict[str, Any]:
    """What the student's own run recorded (``<run>/result.json`` beside ``<run>/student``):
    its task, teacher setting and fine-tuned teacher; empty when there is none."""
    res = student.parent / "result.json"
    if not res.is_file():
        return {}
    rec = json.loads(res.read_text())
    c = rec.get("config") or {}
    return {"task": (c.get("task") or {}).get("name"), "teacher": (c.get("teacher") or {}).get("name_or_path"),
            "teacher_dir": (rec.get("outputs") or {}).get("teacher")}


def task_texts(task: TaskData) -> Iterator[Any]:
    """Every text (or sentence pair) of every split of the task."""
    cols = task.text_columns
    for split in task.splits.values():
        columns = [split[c] for c in cols]
        yield from (columns[0] if len(cols) == 1 else zip(*columns))


def checks(models: Dict[str, Any], task: TaskData, seq: int, bs: int, atol: float) -> Dict[str, float]:
    """Dev-set logits of each form against the form it was made from; fails when the pruned
    model is not exact or ONNX fp32 is off by more than ``atol``."""
    logits = {}
    for key, (m, t) in models.items():
        enc = encode_splits(task, t, seq, [task.dev_split])[task.dev_split]
        logits[key] = predict_logits(m, enc, Collator(t.pad_token_id, task.regression), bs)
    src = "pruned" if "pruned" in logits else "fp32"
    out: Dict[str, float] = {}
    for key, ref, limit in (("pruned", "fp32", 1e-5), ("onnx", src, atol), ("onnx_int8", src, None)):
        if key in logits:
            diff = out[f"{key}_max_abs_diff"] = float(np.abs(logits[key] - logits[ref]).max())
            if limit is not None and diff > limit:
                raise RuntimeError(f"the {LABELS[key]} form's dev logits differ from the {LABELS[ref]} form's by "
                                   f"{diff:.2e} (limit {limit:g}{', export.atol' if key == 'onnx' else ''})")
    if "onnx_int8" in logits and not task.regression:
        out["int8_dev_agreement"] = float((logits["onnx_int8"].argmax(-1) == logits[src].argmax(-1)).mean())
    return out


def evaluate_forms(models: Dict[str, Any], task: TaskData, seq: int, bs: int) -> Dict[str, Dict[str, Any]]:
    """Every labelled eval split's metrics per form, and each form's main-metric change
    against fp32 (on test when labelled, else dev)."""
    forms = {}
    for key, (m, t) in models.items():
        enc = encode_splits(task, t, seq, task.eval_splits)
        forms[key] = evaluate_all(m, task, enc, Collator(t.pad_token_id, task.regression), bs)
    ref, main = ("test" if "test" in forms["fp32"] else "dev"), task.main_metric
    for f in forms.values():
        f["delta"] = f[ref][main] - forms["fp32"][ref][main] if ref in f and ref in forms["fp32"] else None
    return forms


def forms_table(forms: Dict[str, Dict[str, Any]], main: str) -> str:
    """``export.md``'s table: each form's vocabulary, size and main metric, and its change."""
    lines = ["| form | vocabulary | size MB | dev " + main + " | test " + main + " | Δ vs fp32 (points) |",
             "|---|---|---|---|---|---|"]
    for key, f in forms.items():
        cell = lambda s: "—" if s not in f else f"{100 * f[s][main]:.1f}"  # noqa: E731
        delta = "—" if f.get("delta") is None else f"{100 * f['delta']:+.1f}"
        lines.append(f"| {LABELS[key]} | {f['vocab']} | {f['size_bytes'] / 1e6:.2f} | {cell('dev')} | {cell('test')} | {delta} |")
    return "\n".join(lines) + "\n"
