"""Is a trained classifier healthy, or did it collapse?

A collapsed run predicts one class for every input (or a constant for regression), or its
training loss never left ln C (the loss of a uniform prediction over C classes): the model
learned nothing from its inputs. Such a run is not an ablation result; ``check`` says so, and
the report shows it as collapsed instead of averaging it in.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

import numpy as np

LOSS_STUCK = 0.98  # the loss "stays at ln C": it starts and ends above this share of ln C


def check(dev_logits: np.ndarray, regression: bool, num_labels: int,
          losses: Optional[Sequence[float]] = None) -> Dict[str, Any]:
    """``{"collapsed": bool, "reasons": [...], "dev_pred_classes": n, ...}`` for one run.

    ``dev_logits``: the final model's dev-set outputs ([N, C], or [N, 1] for regression).
    ``losses``: the last training phase's per-step losses (unweighted, hard or soft
    cross-entropy); ``None`` skips the loss criterion.
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
        out.update(loss_first=round(first, 4), loss_last=round(last, 4), ln_c=round(ln_c, 4))
        if not math.isfinite(last):
            out["reasons"].append("the training loss is NaN/inf")
        elif first >= LOSS_STUCK * ln_c and last >= LOSS_STUCK * ln_c:
            out["reasons"].append(f"the training loss stayed at ln {num_labels} = {ln_c:.3f} "
                                  f"(first 10% of steps {first:.3f}, last 10% {last:.3f})")
    out["collapsed"] = bool(out["reasons"])
    return out
