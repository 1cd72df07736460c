"""Loaders for the benchmark's exported forms: the forms an export wrote (``export.json`` of
``stage=export``) and ONNX Runtime fp32 / int8 forms of a random model of a given shape,
exported on the fly. Each loader returns ``(model, tokenizer or None)``; an ONNX model is an
``OrtClassifier`` (``model(**batch).logits``, ``is_onnx``)."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, Tuple

import torch

Loader = Callable[[], Tuple[Any, Any]]


def read_manifest(path: str) -> Dict[str, Any]:
    """``export.json`` of an export: ``path`` is stage=export's run dir or its ``export/`` dir."""
    p = Path(path).expanduser()
    for f in (p / "export.json", p / "export" / "export.json"):
        if f.is_file():
            return json.loads(f.read_text())
    raise FileNotFoundError(f"bench.export_dir={path}: no export.json in it or in its export/ "
                            "(pass the run directory of a stage=export run)")


def onnx_dir(path: str, threads: int = 0) -> Loader:
    """An exported ONNX form (``model.onnx`` + config + tokenizer in ``path``); picklable."""
    return partial(_onnx_dir, path, threads)


def _onnx_dir(path: str, threads: int = 0) -> Tuple[Any, Any]:
    from transformers import AutoTokenizer

    from tinyfw.export.onnx import OrtClassifier

    return OrtClassifier.from_dir(Path(path), threads), AutoTokenizer.from_pretrained(path)


def random_onnx(shape: Any, vocab: int, seed: int, work: Path, int8: bool, threads: int = 0) -> Loader:
    """ONNX (``int8``: + dynamic int8) form of a random 2-label classifier of ``shape``, exported
    into ``work`` once and shared by the fp32 and int8 loaders; picklable."""
    return partial(_random_onnx, shape, vocab, seed, work, int8, threads)


def _random_onnx(shape: Any, vocab: int, seed: int, work: Path, int8: bool, threads: int = 0) -> Tuple[Any, Any]:
    from transformers import AutoConfig, BertForSequenceClassification

    from tinyfw.export.onnx import OrtClassifier, export_classifier
    from tinyfw.export.quantize import quantize_int8
    from tinyfw.models.load import bert_config

    root = Path(work) / f"{shape.num_layers}x{shape.hidden_size}-v{vocab}-s{seed}"
    fp32 = root / "fp32" / "model.onnx"
    if not fp32.exists():
        torch.manual_seed(seed)
        model = BertForSequenceClassification(bert_config(shape, vocab, num_labels=2)).eval()
        model.set_attn_implementation("sdpa")
        export_classifier(model, fp32)
        model.config.save_pretrained(fp32.parent)
    path = fp32
    if int8:
        path = root / "int8" / "model.onnx"
        if not path.exists():
            quantize_int8(fp32, path)
    return OrtClassifier(path, config=AutoConfig.from_pretrained(str(fp32.parent)), threads=threads), None


def meta_model(config: Any) -> Any:
    """A model built from ``config`` on the meta device (no memory): its parameter counts."""
    from transformers import AutoModel, AutoModelForSequenceClassification

    from tinyfw.prune.structure import PrunedBertForSequenceClassification, is_pruned

    cls = AutoModelForSequenceClassification if getattr(config, "num_labels", 0) else AutoModel
    if is_pruned(config):
        cls = PrunedBertForSequenceClassification
        with torch.device("meta"):
            return cls(config)
    with torch.device("meta"):
        return cls.from_config(config)
