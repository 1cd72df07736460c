"""Writing a student's exported forms: the vocabulary-pruned HF form, the ONNX fp32 / int8
forms (config and tokenizer beside ``model.onnx``) and each form's model card. Every function
takes explicit arguments (no config); each directory is written atomically."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

from tinyfw.data.tasks import TaskData
from tinyfw.export.forms import DIRS, LABELS
from tinyfw.fsutil import atomic_dir
from tinyfw.models.classifier import load_classifier

log = logging.getLogger(__name__)


def _save_hf(out: Path, model: Any, tok: Any, extra: Dict[str, str]) -> None:
    with atomic_dir(out, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        for name, text in extra.items():
            (tmp / name).write_text(text)


def _save_onnx(out: Path, write: Callable[[Path], Any], model: Any, tok: Any) -> Path:
    """``write(path)`` makes ``model.onnx``; config and tokenizer go beside it."""
    with atomic_dir(out, overwrite=True) as tmp:
        write(tmp / "model.onnx")
        model.config.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return out / "model.onnx"


def pruned_form(student_dir: Path, task: TaskData, tok: Any, texts: Sequence[Any], out: Path) -> Dict[str, Any]:
    """The student with only the word pieces ``texts`` use (plus the special tokens) in ``out``
    (``kept_ids.json``: new id -> original id); returns the vocabulary sizes and the number of
    texts checked to split as before."""
    from tinyfw.export import vocab

    texts = list(texts)
    keep = vocab.keep_ids(tok, vocab.used_token_ids(tok, texts))
    ptok = vocab.prune_tokenizer(tok, keep)
    checked = vocab.check_same_tokens(tok, ptok, keep, texts)
    model = vocab.prune_embeddings(load_classifier(str(student_dir), task), keep)
    _save_hf(out, model, ptok, {"kept_ids.json": json.dumps(keep) + "\n"})
    log.info("vocabulary pruning: %d of %d word pieces kept (%d texts)", len(keep), len(tok), len(texts))
    return {"vocab": {"before": len(tok), "after": len(keep)}, "same_tokens_texts": checked}


def onnx_forms(base: Any, tok: Any, out: Path, opset: int, threads: int, int8: bool,
               per_channel: bool) -> Dict[str, Any]:
    """The ONNX fp32 (and, with ``int8``, dynamic int8) forms of ``base`` in ``out``; returns
    ``{key: (OrtClassifier, tok)}``."""
    from tinyfw.export.onnx import OrtClassifier, export_classifier
    from tinyfw.export.quantize import quantize_int8

    base.set_attn_implementation("sdpa")  # opset 23: ONNX's Attention op
    fp32 = _save_onnx(out / DIRS["onnx"], lambda p: export_classifier(base, p, opset), base, tok)
    forms = {"onnx": (OrtClassifier(fp32, threads=threads), tok)}
    if int8:
        q = _save_onnx(out / DIRS["onnx_int8"], lambda p: quantize_int8(fp32, p, per_channel), base, tok)
        forms["onnx_int8"] = (OrtClassifier(q, threads=threads), tok)
    return forms


def form_card(out: Path, key: str, task: TaskData, metrics: Dict[str, Any], size: Dict[str, int],
              info: Dict[str, Any], *, source: str, base_model: str, datasets: List[str], license: str) -> None:
    """A form's README.md with Hugging Face metadata (base model, datasets, metrics, license)."""
    from tinyfw.models.card import hub_metadata, write_card

    settings = {"source": source, "vocabulary": f"{info['vocab']['after']} of {info['vocab']['before']} word pieces",
                **({"onnx opset": info["onnx"]["opset"]} if key.startswith("onnx") else {}),
                **({"quantization": "dynamic int8 (ONNX Runtime quantize_dynamic: MatMul, Gather)"} if key == "onnx_int8" else {})}
    meta = hub_metadata(model_name=f"tinyfw-{task.name}-{DIRS[key]}", task=task.describe(), metrics=metrics,
                        base_model=base_model, datasets=datasets, license=license,
                        tags=["onnx"] if key.startswith("onnx") else ["vocabulary-pruning"])
    usage = ("import onnxruntime as ort\nfrom transformers import AutoTokenizer\n"
             f'tok = AutoTokenizer.from_pretrained("{out}")\n'
             f'sess = ort.InferenceSession("{out}/model.onnx")\n'
             'logits = sess.run(None, dict(tok(["a fine film"], return_tensors="np")))[0]') if key.startswith("onnx") else ""
    write_card(out, title=f"{LABELS[key]} student for {task.name}",
               summary=f"Exported by tinyfw stage=export from `{source}` ({LABELS[key]}).",
               task=task.describe(), metrics=metrics, size=size, config=settings, name=str(out),
               metadata=meta, usage=usage)
