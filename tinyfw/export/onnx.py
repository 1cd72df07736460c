"""ONNX export of a BERT classifier and ONNX Runtime sessions that stand in for it.

``export_classifier`` uses torch's dynamo exporter (``torch.onnx.export(dynamo=True)``, needs
``onnxscript``) with dynamic batch and sequence axes; at opset 23 attention becomes ONNX's
``Attention`` op. ``OrtClassifier`` runs the file with ONNX Runtime (all graph optimisations
on) behind the interface of a ``...ForSequenceClassification`` (``model(**batch).logits``), so
the task evaluation and the benchmark use it unchanged.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator, Optional

import torch

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
MODEL_FILE = "model.onnx"


def export_classifier(model: Any, out: Path, opset: int = 23, seq_len: int = 16) -> Path:
    """Write ``model`` (eval mode, CPU) to ``out`` as one self-contained ONNX file with inputs
    ``input_ids``, ``attention_mask``, ``token_type_ids`` ([batch, sequence], int64) and output
    ``logits`` ([batch, labels])."""
    from torch.export import Dim

    model = model.eval().cpu()
    example = {k: torch.ones(2, seq_len, dtype=torch.long) for k in INPUTS}
    example["token_type_ids"].zero_()
    batch, seq = Dim("batch"), Dim("sequence")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with quiet():
        torch.onnx.export(model, (), str(out), kwargs=example, dynamo=True, external_data=False, opset_version=opset,
                          dynamic_shapes={k: {0: batch, 1: seq} for k in INPUTS},
                          input_names=list(INPUTS), output_names=["logits"])
    return out


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the exporter's and quantizer's progress chatter (stdout, warnings, INFO logs of
    torch.onnx, onnx_ir, onnxscript and the root logger ONNX Runtime's quantizer uses)."""
    names = ("", "torch.onnx", "onnx_ir", "onnxscript")
    levels = {n: logging.getLogger(n).level for n in names}
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            for n in names:
                logging.getLogger(n).setLevel(logging.ERROR)
            yield
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


def opset_of(path: Path) -> int:
    import onnx

    m = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in m.opset_import if o.domain in ("", "ai.onnx"))


GRAPH_LEVELS = ("basic", "extended", "all")  # ORT_ENABLE_BASIC / _EXTENDED / _ALL


def session(path: Path, threads: int = 0, level: str = "all") -> Any:
    """An ONNX Runtime CPU session, graph optimisations at ``level`` (``ORT_ENABLE_ALL`` by
    default), ``threads`` intra-op threads (0: as many as torch uses)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, f"ORT_ENABLE_{level.upper()}")
    so.intra_op_num_threads = threads or torch.get_num_threads()
    so.inter_op_num_threads = 1
    so.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


class OrtClassifier(torch.nn.Module):
    """An ONNX classifier behind the ``...ForSequenceClassification`` call interface:
    ``model(input_ids=..., attention_mask=..., token_type_ids=...).logits`` (a CPU tensor).
    ``config`` is the HF config saved beside the file (labels, shape)."""

    is_onnx = True

    def __init__(self, path: Path, config: Any = None, threads: int = 0, level: str = "all"):
        super().__init__()
        self.path = Path(path)
        self.session = session(self.path, threads, level)
        self.options = {"intra_op_threads": threads or torch.get_num_threads(), "graph_optimization": level}
        self.feeds = [i.name for i in self.session.get_inputs()]
        if config is None:
            from transformers import AutoConfig

            config = AutoConfig.from_pretrained(str(self.path.parent))
        self.config = config

    @classmethod
    def from_dir(cls, path: Path, threads: int = 0) -> "OrtClassifier":
        return cls(Path(path) / MODEL_FILE, threads=threads)

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                token_type_ids: Optional[torch.Tensor] = None, **_: Any) -> SimpleNamespace:
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        if given["attention_mask"] is None:
            given["attention_mask"] = torch.ones_like(input_ids)
        if given["token_type_ids"] is None:
            given["token_type_ids"] = torch.zeros_like(input_ids)
        feeds = {k: given[k].detach().cpu().numpy() for k in self.feeds}
        return SimpleNamespace(logits=torch.from_numpy(self.session.run(None, feeds)[0]))

    def reconfigure(self, threads: int, level: str) -> None:
        """A new session over the same file with these options (``options`` records them)."""
        self.session = session(self.path, threads, level)
        self.options = {"intra_op_threads": threads, "graph_optimization": level}

    def size_bytes(self) -> int:
        """The ONNX file plus any external-data files beside it."""
        return sum(f.stat().st_size for f in self.path.parent.glob(self.path.name + "*"))

