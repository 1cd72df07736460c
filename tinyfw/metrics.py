"""Task metrics through scikit-learn / scipy (never by hand).

``compute(names, predictions, labels)`` returns ``{name: value}``: ``accuracy`` (share of exact
matches); ``f1`` (binary, of the positive class, index 1, as in GLUE MRPC/QQP); ``mcc``
(Matthews, CoLA); ``pearson`` / ``spearman`` (regression outputs, STS-B); ``acc_and_f1`` (mean
of accuracy and F1: MRPC/QQP's main metric); ``corr`` (mean of Pearson and Spearman: STS-B's).
``predictions`` are class indices (``argmax`` of the logits, ``predictions_from_logits``) or
floats for regression. Values are fractions in [0, 1] (correlations in [-1, 1]), not percentages.
"""

from __future__ import annotations

import math
from typing import Dict, Iterable, Sequence

import numpy as np

CLASSIFICATION = ("accuracy", "f1", "mcc", "acc_and_f1")
REGRESSION = ("pearson", "spearman", "corr")
ALL = CLASSIFICATION + REGRESSION


def predictions_from_logits(logits: np.ndarray, regression: bool) -> np.ndarray:
    logits = np.asarray(logits)
    if regression:
        return logits.reshape(-1).astype(np.float64)
    return logits.argmax(-1)


def _corr(fn, p: np.ndarray, y: np.ndarray) -> float:
    if len(p) < 2 or np.std(p) == 0 or np.std(y) == 0:
        return 0.0  # undefined (constant input): report no correlation rather than NaN
    r = float(fn(p, y)[0])
    return 0.0 if math.isnan(r) else r


def compute(names: Iterable[str], predictions: Sequence, labels: Sequence) -> Dict[str, float]:
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    names = list(names)
    unknown = [n for n in names if n not in ALL]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; valid: {list(ALL)}")
    p, y = np.asarray(predictions), np.asarray(labels)
    if len(p) != len(y):
        raise ValueError(f"{len(p)} predictions for {len(y)} labels")
    if len(y) == 0:
        raise ValueError("cannot compute metrics on an empty split")
    out: Dict[str, float] = {}
    for name in names:
        if name == "accuracy":
            out[name] = float(accuracy_score(y, p))
        elif name == "f1":
            out[name] = float(f1_score(y, p, pos_label=1, average="binary", zero_division=0))
        elif name == "mcc":
            out[name] = float(matthews_corrcoef(y, p))
        elif name == "acc_and_f1":
            out[name] = (float(accuracy_score(y, p)) + float(f1_score(y, p, zero_division=0))) / 2
        elif name == "pearson":
            out[name] = _corr(pearsonr, p.astype(float), y.astype(float))
        elif name == "spearman":
            out[name] = _corr(spearmanr, p.astype(float), y.astype(float))
        elif name == "corr":
            out[name] = (_corr(pearsonr, p.astype(float), y.astype(float))
                         + _corr(spearmanr, p.astype(float), y.astype(float))) / 2
    return out


TOKEN = ("token_accuracy", "entity_f1", "entity_precision", "entity_recall")


def token_compute(names: Iterable[str], predictions: Sequence[Sequence[str]], labels: Sequence[Sequence[str]],
                  scheme: str = None) -> Dict[str, float]:
    """Token-task metrics over sentences of tag names: ``token_accuracy`` (scikit-learn, over
    words) and ``entity_precision`` / ``entity_recall`` / ``entity_f1`` (micro over entities,
    seqeval in strict mode with ``scheme`` ``IOB2`` or ``IOBES``: an entity counts when its
    type and both boundaries match)."""
    from sklearn.metrics import accuracy_score

    names = list(names)
    unknown = [n for n in names if n not in TOKEN]
    if unknown:
        raise ValueError(f"unknown token metric(s) {unknown}; valid: {list(TOKEN)}")
    if len(predictions) != len(labels) or any(len(p) != len(y) for p, y in zip(predictions, labels)):
        raise ValueError("predicted and gold sentences differ in number or length")
    flat_y = [t for s in labels for t in s]
    if not flat_y:
        raise ValueError("cannot compute metrics on an empty split")
    out: Dict[str, float] = {}
    if "token_accuracy" in names:
        out["token_accuracy"] = float(accuracy_score(flat_y, [t for s in predictions for t in s]))
    entity = [n for n in names if n.startswith("entity_")]
    if entity:
        from seqeval.metrics import f1_score, precision_score, recall_score
        from seqeval.scheme import IOB2, IOBES

        if scheme not in ("IOB2", "IOBES"):
            raise ValueError(f"entity metrics need an IOB2 or IOBES tag set, got scheme {scheme}")
        kw = dict(mode="strict", scheme=IOB2 if scheme == "IOB2" else IOBES, zero_division=0)
        y, p = [list(s) for s in labels], [list(s) for s in predictions]
        fns = {"entity_f1": f1_score, "entity_precision": precision_score, "entity_recall": recall_score}
        for n in entity:
            out[n] = float(fns[n](y, p, **kw))
    return out
