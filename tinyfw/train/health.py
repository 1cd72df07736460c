"""Is a trained classifier healthy, or did it collapse?

A collapsed run predicts one class for every input (or a constant for regression), or its
training loss never left ln C (the loss of a uniform prediction over C classes) although its
targets were far from uniform: the model learned nothing from its inputs. Such a run is not an ablation result; ``check`` says so, and
the report shows it as collapsed instead of averaging it in.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

import numpy as np

LOSS_STUCK = 0.98  # the loss "stays at ln C": it starts and ends above this share of ln C


def check(dev_logits: np.ndarray, regression: bool, num_labels: int,
          losses: Optional[Sequence[float]] = None, loss_floor: float = 0.0) -> Dict[str, Any]:
    """``{"collapsed": bool, "reasons": [...], "dev_pred_classes": n, ...}`` for one run.

    ``dev_logits``: the final model's dev-set outputs ([N, C], or [N, 1] for regression).
    ``losses``: the last training phase's per-step losses (unweighted, hard or soft
    cross-entropy); ``None`` skips the loss criterion. ``loss_floor``: the lowest loss the
    targets allow (0 for hard labels; the teachers' mean entropy for soft targets): the loss
    is "stuck" when it stays within 2% of ln C measured from that floor, and the criterion is
    skipped when the targets themselves are nearly uniform (floor within 0.05 of ln C).
    """
    out: Dict[str, Any] = {"collapsed": False, "reasons": []}
    logits = np.asarray(dev_logits, dtype=np.float64)
    if logits.size and not np.isfinite(logits).all():
        out["reasons"].append("the dev outputs contain NaN/inf")
    if regression:
        spread = float(np.nanstd(logits)) if logits.size else 0.0
        out["dev_pred_std"] = spread
        if logits.size > 1 and spread < 1e-6:
            out["reasons"].append(f"every dev prediction is the same value ({float(logits.reshape(-1)[0]):.4g})")
    elif logits.size:
        preds = logits.argmax(-1)
        classes = np.unique(preds)
        out["dev_pred_classes"] = int(len(classes))
        if len(preds) > 1 and len(classes) == 1 and num_labels > 1:
            out["reasons"].append(f"every dev prediction is class {int(classes[0])}")
    if losses is not None and len(losses) and not regression and num_labels > 1:
        vals = np.asarray(losses, dtype=np.float64)
        n = max(1, int(round(0.1 * len(vals))))
        first, last = float(np.mean(vals[:n])), float(np.mean(vals[-n:]))
        ln_c = math.log(num_labels)
        out.update(loss_first=round(first, 4), loss_last=round(last, 4), ln_c=round(ln_c, 4),
                   loss_floor=round(float(loss_floor), 4))
        span = ln_c - loss_floor
        stuck = loss_floor + LOSS_STUCK * span
        if not math.isfinite(last):
            out["reasons"].append("the training loss is NaN/inf")
        elif span > 0.05 and first >= stuck and last >= stuck:
            out["reasons"].append(f"the training loss stayed at ln {num_labels} = {ln_c:.3f} "
                                  f"(first 10% of steps {first:.3f}, last 10% {last:.3f})")
    out["collapsed"] = bool(out["reasons"])
    return out
