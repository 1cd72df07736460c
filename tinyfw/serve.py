"""Label texts with an exported student: ``python -m tinyfw.serve EXPORT_DIR [FILE] < texts``.

``EXPORT_DIR``: a directory with ``model.onnx`` (ONNX Runtime) or a PyTorch classifier
(``config.json`` + weights; pruned students included) with its tokenizer, or a ``stage=export``
run / its ``export/`` directory (``--form``; default the int8 ONNX form, else ONNX fp32, else the
PyTorch one). In: one text per line (a tab separates a pair's two sentences); out: one
``label<TAB>probability`` line per text (``--json``: a JSON object with every label's
probability). Sequence classification only. From Python: ``Predictor("runs/…/export/onnx-int8")
.predict(["a fine film"])`` -> ``[{"label": "positive", "score": 0.93, ...}]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Sequence, Union

import numpy as np

Text = Union[str, Sequence[str]]
FORMS = {"onnx_int8": "onnx-int8", "onnx": "onnx", "pruned": "pruned"}  # preference order for an export run


def resolve(path: Union[str, Path], form: str = "") -> Path:
    """The form directory ``path`` names: itself when it holds a model, else the ``form`` (or the
    first of int8, ONNX fp32, pruned PyTorch) of the export run it is."""
    p = Path(path).expanduser()
    if (p / "model.onnx").is_file() or (p / "config.json").is_file():
        return p
    root = p / "export" if (p / "export" / "export.json").is_file() else p
    if not (root / "export.json").is_file():
        raise FileNotFoundError(f"{path}: neither a model directory (model.onnx or config.json) nor a "
                                "stage=export run (export.json)")
    forms = json.loads((root / "export.json").read_text())["forms"]
    if form:
        if form not in forms:
            raise ValueError(f"--form {form}: the export has {sorted(forms)}")
        return Path(forms[form]["path"])
    return Path(next(forms[k]["path"] for k in (*FORMS, "fp32") if k in forms))


def _refuse_token(path: Path) -> None:
    """A token classifier (its ``config.json``'s architectures) is refused in one line: the
    predictor labels whole texts."""
    cfg = path / "config.json"
    if cfg.is_file():
        arch = json.loads(cfg.read_text()).get("architectures") or []
        if any(str(a).endswith("ForTokenClassification") for a in arch):
            raise ValueError(f"{path} holds a token classifier ({arch[0]}): token-classification students are not "
                             "supported by tinyfw.serve yet (it labels whole texts); serve a sequence classifier")


class Predictor:
    """A classifier from an exported directory, its tokenizer and its labels."""

    def __init__(self, path: Union[str, Path], form: str = "", max_length: int = 128, threads: int = 0):
        from transformers import AutoTokenizer

        self.path = resolve(path, form)
        _refuse_token(self.path)
        self.tok = AutoTokenizer.from_pretrained(str(self.path))
        self.max_length = max_length
        if (self.path / "model.onnx").is_file():
            from tinyfw.export.onnx import OrtClassifier

            self.model = OrtClassifier.from_dir(self.path, threads)
        else:
            from transformers import AutoModelForSequenceClassification

            from tinyfw.models.load import load_strict
            from tinyfw.prune.structure import classifier_class

            if threads:
                import torch

                torch.set_num_threads(threads)
            self.model = load_strict(classifier_class(str(self.path), AutoModelForSequenceClassification),
                                     str(self.path)).eval()
        c = self.model.config
        self.labels = [str((c.id2label or {}).get(i, f"LABEL_{i}")) for i in range(c.num_labels)]
        self.regression = c.num_labels == 1 or getattr(c, "problem_type", "") == "regression"

    def logits(self, texts: Sequence[Text]) -> np.ndarray:
        import torch

        pairs = [t for t in texts if not isinstance(t, str)]
        if pairs and len(pairs) != len(texts):
            raise ValueError("a batch mixes single texts and sentence pairs")
        args = ([a for a, _ in texts], [b for _, b in texts]) if pairs else (list(texts),)
        enc = self.tok(*args, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")
        with torch.inference_mode():
            return self.model(**dict(enc)).logits.float().numpy()

    def predict(self, texts: Sequence[Text], batch_size: int = 32) -> List[Dict[str, Any]]:
        """Per text: ``label`` and its ``score`` (softmax probability; the value for regression)
        and ``probs`` per label."""
        out: List[Dict[str, Any]] = []
        for i in range(0, len(texts), batch_size):
            z = self.logits(texts[i:i + batch_size])
            if self.regression:
                out += [{"label": "value", "score": float(v[0])} for v in z]
                continue
            p = np.exp(z - z.max(-1, keepdims=True))
            p /= p.sum(-1, keepdims=True)
            for row in p:
                k = int(row.argmax())
                out.append({"label": self.labels[k], "score": float(row[k]),
                            "probs": {n: float(v) for n, v in zip(self.labels, row)}})
        return out


def read_texts(lines: Iterable[str]) -> Iterator[Text]:
    """Non-empty lines; ``a<TAB>b`` is a sentence pair."""
    for line in lines:
        line = line.rstrip("\n")
        if line.strip():
            yield tuple(line.split("\t", 1)) if "\t" in line else line


def main(argv: Sequence[str] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tinyfw.serve", description=__doc__.split("\n\n")[0])
    ap.add_argument("export_dir", help="an exported form's directory, or a stage=export run")
    ap.add_argument("file", nargs="?", default="-", help="texts, one per line (default: stdin)")
    ap.add_argument("--form", default="", help="onnx_int8 | onnx | pruned | fp32 (for an export run)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--threads", type=int, default=0, help="intra-op threads (0: the runtime's default)")
    ap.add_argument("--json", action="store_true", help="one JSON object per line")
    a = ap.parse_args(argv)
    if a.batch_size < 1:
        ap.error("--batch-size must be >= 1")
    try:  # the texts first: a missing file fails before the model loads
        src = sys.stdin if a.file == "-" else open(a.file, encoding="utf-8")
    except OSError as exc:
        print(f"error: cannot read {a.file}: {exc.strerror}", file=sys.stderr)
        return 2
    try:
        pred = Predictor(a.export_dir, a.form, a.max_length, a.threads)
    except (FileNotFoundError, ValueError) as exc:
        src.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with src:
        batch: List[Text] = []
        for t in read_texts(src):
            batch.append(t)
            if len(batch) == a.batch_size:
                _emit(pred.predict(batch, a.batch_size), a.json)
                batch = []
        if batch:
            _emit(pred.predict(batch, a.batch_size), a.json)
    return 0


def _emit(rows: List[Dict[str, Any]], as_json: bool) -> None:
    for r in rows:
        print(json.dumps(r) if as_json else f"{r['label']}\t{r['score']:.4f}")
    sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
