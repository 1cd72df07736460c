"""The distillation recipes (``tinybert``, ``distilbert``, ``minilm``) as settings of one
objective: the loss variants and weights a recipe turns on (``conf/recipe/`` sets them), the
checks that refuse a teacher/student pair the chosen losses cannot handle (MiniLM's relation
heads among them), and how the new keys stay out of the default path's cache keys. What each
recipe does: README.md, "Other recipes".
"""

from __future__ import annotations

import math
from typing import Any, Dict

# the keys added for the recipes (issue 23) and their defaults; at these values they enter no
# cache key or fingerprint, so the TinyBERT path keeps its keys
NEW_DISTILL = {"recipe": "tinybert", "pred_loss": "soft_ce", "attn_loss": "mse", "hidn_loss": "mse",
               "hard_label_weight": 0.0, "relation_heads": 0, "mlm_temperature": 2.0}
NEW_WEIGHTS = {"rel_attn": 0.0, "rel_value": 0.0, "mlm": 0.0, "mlm_soft": 0.0}
LABEL_ONLY = ("recipe",)  # names the report's rows; the values it sets define the work


def key_view(distill: Dict[str, Any]) -> Dict[str, Any]:
    """A plain ``distill`` dict as cache keys take it: the recipe label and every new key at its
    default dropped (so keys made before the recipes existed stay the same)."""
    out = {k: v for k, v in distill.items()
           if k not in LABEL_ONLY and not (k in NEW_DISTILL and v == NEW_DISTILL[k])}
    if isinstance(out.get("weights"), dict):
        out["weights"] = {k: v for k, v in out["weights"].items()
                          if not (k in NEW_WEIGHTS and float(v) == NEW_WEIGHTS[k])}
    return out


def relation_heads(requested: int, teacher_heads: int, teacher_width: int, student_width: int) -> int:
    """The MiniLM relation-head count: ``requested`` when > 0 (it must divide both widths),
    else the largest count <= ``teacher_heads`` dividing both widths."""
    if requested < 0:
        raise ValueError(f"distill.relation_heads={requested}: must be >= 0 (0: auto)")
    if requested > 0:
        if teacher_width % requested or student_width % requested:
            g = math.gcd(teacher_width, student_width)
            ok = [r for r in range(1, g + 1) if g % r == 0]
            raise ValueError(f"distill.relation_heads={requested} must divide both widths (teacher "
                             f"{teacher_width}, student {student_width}): use one of {ok} or 0 (auto)")
        return requested
    g = math.gcd(teacher_width, student_width)
    return max(r for r in range(1, min(teacher_heads, g) + 1) if g % r == 0)


def _w(distill: Any, key: str) -> float:
    return float(distill.weights.get(key, 0.0) if hasattr(distill.weights, "get") else getattr(distill.weights, key, 0.0))


def check(distill: Any, student_config: Any, teacher_config: Any, attn_weight: float,
          intermediate: bool = True) -> None:
    """Refuse, in one line naming the recipe that can, a teacher/student pair the chosen
    losses cannot handle (``attn_weight``: the attention loss's weight where it applies)."""
    sh, th = student_config.num_attention_heads, teacher_config.num_attention_heads
    sw, tw = student_config.hidden_size, teacher_config.hidden_size
    if intermediate and attn_weight > 0 and sh != th:
        name = "attention probabilities KL" if str(distill.attn_loss) == "kl" else "attention MSE"
        raise ValueError(f"{name} needs equal head counts (teacher {th}, student {sh}): use recipe=minilm "
                         "or distill.weights.attn=0")
    if intermediate and (_w(distill, "rel_attn") > 0 or _w(distill, "rel_value") > 0):
        relation_heads(int(distill.relation_heads), th, tw, sw)  # raises when it does not divide
    if int(distill.relation_heads) < 0:
        raise ValueError(f"distill.relation_heads={distill.relation_heads}: must be >= 0 (0: auto)")
    for k in ("hard_label_weight", "mlm_temperature"):
        if float(distill[k]) < 0 or (k == "mlm_temperature" and float(distill[k]) == 0):
            raise ValueError(f"distill.{k}={distill[k]}: must be {'> 0' if k == 'mlm_temperature' else '>= 0'}")


def distiller_kwargs(distill: Any, student_config: Any, teacher_config: Any) -> Dict[str, Any]:
    """The :class:`~tinyfw.distill.objective.Distiller` keyword arguments of the loss variants."""
    kw: Dict[str, Any] = {"attn_loss": str(distill.attn_loss), "hidn_loss": str(distill.hidn_loss),
                          "mlm_temperature": float(distill.mlm_temperature),
                          "vocab_size": int(student_config.vocab_size)}
    if _w(distill, "rel_attn") > 0 or _w(distill, "rel_value") > 0:
        kw["relation_heads"] = relation_heads(int(distill.relation_heads), teacher_config.num_attention_heads,
                                              teacher_config.hidden_size, student_config.hidden_size)
    return kw


def feature_weights(distill: Any, gd: bool) -> Dict[str, float]:
    """The feature-loss weights of GD (``gd``: with the masked-LM ones) or TD step 1."""
    keys = ("embd", "attn", "hidn", "rel_attn", "rel_value") + (("mlm", "mlm_soft") if gd else ())
    return {k: _w(distill, k) for k in keys}


def needs_extra(weights: Dict[str, float]) -> bool:
    """Whether these weights need more than the default capture (Q/K/V or masked-LM logits)."""
    return any(weights.get(k, 0.0) > 0 for k in ("rel_attn", "rel_value", "mlm", "mlm_soft"))


def every_other(n_student: int, n_teacher: int) -> list:
    """DistilBERT's init: student layer m <- teacher layer 2m-1 (1-based: 1, 3, 5, ...)."""
    layers = [2 * m - 1 for m in range(1, n_student + 1)]
    if layers[-1] > n_teacher:
        raise ValueError(f"student.init=every_other needs a teacher with >= {layers[-1]} layers for a "
                         f"{n_student}-layer student (teacher has {n_teacher}): use fewer student layers "
                         "or student.init=teacher_layers")
    return layers


def resolve_init(init: str, shape: Any, teacher_config: Any, mapping: list):
    """(init for ``build_student``, the teacher layers it copies, a note): ``every_other`` copies
    every other teacher layer when hidden size, FFN size and head count match, else starts random."""
    if str(init) != "every_other":
        return str(init), list(mapping), ""
    diffs = [f"{k} {getattr(shape, a)} vs teacher {getattr(teacher_config, k)}"
             for a, k in (("hidden_size", "hidden_size"), ("intermediate_size", "intermediate_size"),
                          ("num_heads", "num_attention_heads"))
             if getattr(shape, a) != getattr(teacher_config, k)]
    if diffs:
        return "random", list(mapping), f"every_other: widths differ ({'; '.join(diffs)}): random init"
    layers = every_other(shape.num_layers, teacher_config.num_hidden_layers)
    return "teacher_layers", layers, f"every_other: teacher layers {layers}"
