"""Sequence classifiers: a task's head settings, strict loading with a label-order check, the
TD student (a student encoder with a fresh classification head), evaluation on every labelled
split (and the training loop's dev evaluation) and inference throughput. Every function takes explicit arguments (no config)."""

from __future__ import annotations

import logging
import re
import time
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from tinyfw.data.collate import Collator
from tinyfw.data.tasks import TaskData, evaluate, predict_logits

log = logging.getLogger(__name__)

ALLOW_NEW_HEAD = ("classifier.", "bert.pooler.")  # a fresh head; encoders saved without a pooler


def split_key(task: TaskData, split: str) -> str:
    """Name of a split in result metrics: the dev split is ``dev``."""
    return "dev" if split == task.dev_split else split


def head_kwargs(task: TaskData) -> Dict[str, Any]:
    if task.token:  # a tag per token: no problem_type (the token head's loss is always cross-entropy)
        return {"num_labels": task.num_labels, "id2label": dict(enumerate(task.label_names)),
                "label2id": {n: i for i, n in enumerate(task.label_names)}}
    if task.regression:
        return {"num_labels": 1, "problem_type": "regression"}
    return {"num_labels": task.num_labels, "problem_type": "single_label_classification",
            "id2label": dict(enumerate(task.label_names)),
            "label2id": {n: i for i, n in enumerate(task.label_names)}}


def is_token_model(path: str) -> bool:
    """Whether the HF model directory ``path`` holds a token classifier (its architectures)."""
    from transformers import AutoConfig

    return any(a.endswith("ForTokenClassification") for a in AutoConfig.from_pretrained(path).architectures or [])


def load_classifier(path: str, task: Optional[TaskData] = None, new_head: bool = False):
    """A ``AutoModelForSequenceClassification`` (``AutoModelForTokenClassification`` for a
    token task, or a token checkpoint when no task is given) from ``path`` (strict:
    missing/unexpected keys fail). ``new_head``: the checkpoint is a bare encoder and the head
    is initialised."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    from tinyfw.models.load import load_strict

    from tinyfw.prune.structure import classifier_class

    token = task.token if task is not None else is_token_model(path)
    kwargs = head_kwargs(task) if (new_head and task is not None) else {}
    cls = AutoModelForTokenClassification if token else classifier_class(path, AutoModelForSequenceClassification)
    model = load_strict(cls, path,
                        allow_new=ALLOW_NEW_HEAD if new_head else (), **kwargs)
    if task is not None and model.config.num_labels != task.num_labels:
        raise ValueError(f"{path} has {model.config.num_labels} outputs but task '{task.name}' needs "
                         f"{task.num_labels}; fine-tune a teacher for this task (stage=teacher)")
    if task is not None and not new_head:
        check_label_names(model.config, task, path)
    return model


def _label(name: Any) -> str:
    return str(name).strip().lower().replace("-", "_").replace(" ", "_")


def check_label_names(config: Any, task: TaskData, path: str) -> None:
    """Refuse a classifier whose ``id2label`` names other classes, or the task's in another order
    (the reference code's MNLI trap: outputs read as the wrong classes). Generic names
    (``LABEL_0`` ...) cannot be checked and are only logged."""
    if task.regression:
        return
    names = [str((config.id2label or {}).get(i, f"LABEL_{i}")) for i in range(config.num_labels)]
    if all(re.fullmatch(r"LABEL_\d+", n) for n in names):
        log.warning("%s names no labels (id2label %s): cannot check its output order against task '%s' %s",
                    path, names, task.name, task.label_names)
        return
    if [_label(n) for n in names] == [_label(n) for n in task.label_names]:
        return
    same = sorted(map(_label, names)) == sorted(map(_label, task.label_names))
    raise ValueError(
        f"{path} labels its outputs {names} but task '{task.name}' has {task.label_names}"
        f"{' (the same labels in another order)' if same else ''}: its predictions would be read as the wrong "
        f"classes. Use a teacher fine-tuned with the task's label order (teacher_ft.path='' fine-tunes one)"
        f"{', or declare the task with task.labels=[' + ','.join(names) + ']' if same else ''}")


def checkpoint_shape(path: str) -> Any:
    """The student shape (``num_layers``, ``hidden_size``, ...) of the HF model directory ``path``."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(path)
    return SimpleNamespace(num_layers=config.num_hidden_layers, hidden_size=config.hidden_size,
                           intermediate_size=config.intermediate_size, num_heads=config.num_attention_heads,
                           max_position_embeddings=config.max_position_embeddings)


def build_classifier(shape: Any, layer_map: Union[str, Sequence[int]], teacher: Any, init: str,
                     task: TaskData) -> Tuple[Any, List[int]]:
    """The student encoder of ``shape`` (``init``: ``random``, ``teacher_layers`` or a checkpoint
    directory, see :func:`tinyfw.models.student.build_student`) under a fresh classification
    head for ``task``, with eager attention; returns (model, layer mapping)."""
    from transformers import BertForSequenceClassification, BertForTokenClassification

    from tinyfw.models.student import build_student, layer_mapping

    mapping = layer_mapping(layer_map, shape.num_layers, teacher.config.num_hidden_layers)
    encoder = build_student(shape, teacher, init, mapping)  # strict load for a checkpoint path
    config = encoder.config
    for k, v in head_kwargs(task).items():
        setattr(config, k, v)
    config.num_labels = task.num_labels
    model = (BertForTokenClassification if task.token else BertForSequenceClassification)(config)
    state = encoder.state_dict()
    if task.token:  # a token head reads every position: the encoder has no pooler there
        state = {k: v for k, v in state.items() if not k.startswith("pooler.")}
    model.bert.load_state_dict(state, strict=True)
    model.requires_grad_(True)
    model.set_attn_implementation("eager")
    return model, mapping


def evaluate_all(model: Any, task: TaskData, enc: Dict[str, Any], collate: Collator,
                 batch_size: int = 128) -> Dict[str, Dict[str, float]]:
    """Metrics on every labelled evaluation split: ``{"dev": ..., "test": ..., ...}``."""
    out = {}
    for s in task.eval_splits:
        if task.labelled(s):
            out[split_key(task, s)] = evaluate(model, task, enc[s], collate, batch_size)
    return out


def dev_evaluator(key: str, task: TaskData, dev: Any, collate: Collator, batch_size: int):
    """The training loop's ``evaluate``: the task's metrics of ``mods[key]`` (unwrapped from
    its DDP / compile wrappers) on the tokenised ``dev`` split."""
    def dev_eval(mods: Dict[str, Any]) -> Dict[str, float]:
        from tinyfw.models.capture import unwrap

        return evaluate(unwrap(mods[key]), task, dev, collate, batch_size)

    return dev_eval


def scores(model: Any, task: TaskData, enc: Dict[str, Any], collate: Collator, batch_size: int) -> Dict[str, Any]:
    """A classifier saved without its metrics (an external teacher, ``teacher_ft.path``) scored
    now: :func:`evaluate_all` with no gradients, and the task's ``main_metric``."""
    import torch

    with torch.no_grad():
        out: Dict[str, Any] = evaluate_all(model, task, enc, collate, batch_size)
    out["main_metric"] = task.main_metric
    return out


def throughput(model: Any, enc: Any, collate: Collator, batch_size: int) -> float:
    """Examples per second of one pass of ``model`` over ``enc`` (batched, as evaluation runs)."""
    t0 = time.perf_counter()
    predict_logits(model, enc, collate, batch_size, desc="timing")
    return len(enc) / max(time.perf_counter() - t0, 1e-9)
