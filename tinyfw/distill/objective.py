"""The Transformer-distillation objective: learnable projections + weighted sum of the losses.

The projections W_e (embeddings) and W_h (hidden states) are parameters of :class:`Distiller`,
not of the student: save ``distiller.state_dict()`` beside the student, never inside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from tinyfw.distill import losses as L
from tinyfw.choices import AttnMode, LayerReduction, check
from tinyfw.distill.losses import (attention_loss, attention_loss_fast, embedding_loss, hidden_loss, token_mse_fast,
                                   valid_cells)
from tinyfw.models.capture import Features

WEIGHT_KEYS = ("embd", "attn", "hidn", "pred", "rel_attn", "rel_value", "mlm", "mlm_soft")


def _projection(d_in: int, d_out: int) -> nn.Linear:
    lin = nn.Linear(d_in, d_out)
    nn.init.normal_(lin.weight, std=0.02)  # BERT's initialiser, as for the student's own layers
    nn.init.zeros_(lin.bias)
    return lin


class Distiller(nn.Module):
    """Holds the learnable projections W_e, W_h (separate by default; ``share_projection`` uses
    one, as the reference code does) and the loss weights; computes the unweighted losses and
    the weighted total. A loss with weight 0 is removed: not computed, no projection built.

    Attention and hidden losses compare student layer m with teacher layer ``mapping[m-1]``
    (1-based) and are combined over the mapped layers by ``layer_reduction``: ``sum`` (default,
    the reference code: L = embd + Σ_m attn_m + Σ_m hidn_m, so each layer weighs as much as the
    embedding term) or ``mean`` (the layer terms divided by M, i.e. the embedding term weighs
    M times a layer). The prediction loss is not here: TD step 2 computes it
    (:func:`~tinyfw.distill.steps.prediction_loss_fn`); a ``pred`` weight must be 0, and
    ``temperature`` is only checked (> 0), so that a bad ``distill.temperature`` fails before TD
    step 1. ``attn_mode`` (masked | reference) applies to all token-level losses.
    ``fast`` (masked mode): the same losses computed with the valid cells built once per batch
    (:func:`~tinyfw.distill.losses.valid_cells`; equal up to rounding, tests/test_fast_path.py).
    """

    def __init__(
        self,
        student_hidden: int,
        teacher_hidden: int,
        mapping: Sequence[int],
        weights: Mapping[str, float],
        share_projection: bool = False,
        attn_mode: str = "masked",
        temperature: float = 1.0,
        layer_reduction: str = "sum",
        attn_loss: str = "mse",
        hidn_loss: str = "mse",
        relation_heads: int = 0,
        mlm_temperature: float = 2.0,
        vocab_size: int = 0,
        fast: bool = False,
    ) -> None:
        super().__init__()
        unknown = set(weights) - set(WEIGHT_KEYS)
        if unknown:
            raise ValueError(f"unknown loss weights {sorted(unknown)}: valid keys are {', '.join(WEIGHT_KEYS)}")
        self.weights: Dict[str, float] = {k: float(weights.get(k, 0.0)) for k in WEIGHT_KEYS}
        negative = {k: v for k, v in self.weights.items() if v < 0}
        if negative:
            raise ValueError(f"loss weights must be >= 0, got {negative}")
        if self.weights["pred"] > 0:
            raise ValueError("the Distiller computes the feature losses; the prediction loss is TD step 2's "
                             "(tinyfw.distill.steps.prediction_loss_fn): pass pred=0")
        attn_mode = check(AttnMode, attn_mode, "distill.attn_mode")
        if temperature <= 0:
            raise ValueError(f"distill.temperature must be > 0, got {temperature}")
        self.layer_reduction = check(LayerReduction, layer_reduction, "distill.layer_reduction")
        self.mapping = [int(x) for x in mapping]
        self.share_projection = bool(share_projection)
        self.attn_mode = attn_mode
        self.attn_loss, self.hidn_loss = str(attn_loss), str(hidn_loss)
        self.relation_heads, self.mlm_temperature = int(relation_heads), float(mlm_temperature)
        self.fast = bool(fast)
        use_e, use_h = self.weights["embd"] > 0, self.weights["hidn"] > 0
        if self.hidn_loss == "cosine" and student_hidden == teacher_hidden:
            use_h = False  # DistilBERT: cosine of equal widths, no W_h
        self.mlm_head = self._recipe_modules(student_hidden, vocab_size)
        self.proj_e: Optional[nn.Linear] = None
        self.proj_h: Optional[nn.Linear] = None
        if self.share_projection and (use_e or use_h):
            self.proj = _projection(student_hidden, teacher_hidden)
        else:
            self.proj = None
            if use_e:
                self.proj_e = _projection(student_hidden, teacher_hidden)
            if use_h:
                self.proj_h = _projection(student_hidden, teacher_hidden)

    def projection(self, which: str) -> Optional[nn.Linear]:
        """The projection used for ``embd`` or ``hidn`` (None when that loss is off)."""
        return self.proj if self.share_projection else (self.proj_e if which == "embd" else self.proj_h)

    def _layers(self, s: Features, t: Features, kind: str):
        s_list, t_list = getattr(s, kind), getattr(t, kind)
        if len(s_list) != len(self.mapping):
            raise ValueError(
                f"student has {len(s_list)} layers of {kind} but the layer mapping has {len(self.mapping)} entries"
                + (" (captured with need_scores=False?)" if kind == "scores" and not s_list else "")
            )
        if max(self.mapping) > len(t_list):
            raise ValueError(
                f"layer mapping {self.mapping} needs teacher layer {max(self.mapping)}, "
                f"the teacher provides {len(t_list)} layers of {kind}"
                + (" (captured with need_scores=False?)" if kind == "scores" and not t_list else "")
            )
        return [(s_list[m], t_list[n - 1]) for m, n in enumerate(self.mapping)]

    def _reduce(self, per_layer) -> Tensor:
        stacked = torch.stack(per_layer)
        return stacked.sum() if self.layer_reduction == "sum" else stacked.mean()

    def forward(self, s: Features, t: Features, mlm: Optional[Tuple[Tensor, ...]] = None
                ) -> Tuple[Tensor, Dict[str, Tensor]]:
        """``(total, {"embd", "attn", "hidn", ..., "total"})``: the active losses unweighted, the weighted total."""
        mask, mode = s.mask, self.attn_mode
        if tuple(s.mask.shape) != tuple(t.mask.shape):
            raise ValueError(f"student and teacher ran on different batches: masks {tuple(s.mask.shape)} vs {tuple(t.mask.shape)}")
        losses: Dict[str, Tensor] = {}
        w = self.weights
        if self.fast and mode == "masked" and (self.attn_loss, self.hidn_loss) == ("mse", "mse"):
            return self._forward_fast(s, t, losses, mlm)  # the variants (KL, cosine) take the path below
        if w["embd"] > 0:
            losses["embd"] = embedding_loss(s.embeddings, t.embeddings, self.projection("embd"), mask, mode=mode)
        if w["attn"] > 0:
            pairs = self._layers(s, t, "scores")
            losses["attn"] = self._reduce([self._attn_pair(a, b, mask, mode) for a, b in pairs])
        if w["hidn"] > 0:
            proj = self.projection("hidn")
            pairs = self._layers(s, t, "hidden")
            losses["hidn"] = self._reduce([self._hidn_pair(a, b, proj, mask, mode) for a, b in pairs])
        return self._total(s, t, losses, mlm)

    def _forward_fast(self, s: Features, t: Features, losses: Dict[str, Tensor],
                      mlm: Optional[Tuple[Tensor, ...]]) -> Tuple[Tensor, Dict[str, Tensor]]:
        w = self.weights
        tokens, cells = valid_cells(s.mask)
        if w["embd"] > 0:
            losses["embd"] = token_mse_fast(s.embeddings, t.embeddings, self.projection("embd"), tokens)
        if w["attn"] > 0:
            losses["attn"] = self._reduce([attention_loss_fast(a, b, cells) for a, b in self._layers(s, t, "scores")])
        if w["hidn"] > 0:
            proj = self.projection("hidn")
            losses["hidn"] = self._reduce([token_mse_fast(a, b, proj, tokens) for a, b in self._layers(s, t, "hidden")])
        return self._total(s, t, losses, mlm)

    def _total(self, s: Features, t: Features, losses: Dict[str, Tensor],
               mlm: Optional[Tuple[Tensor, ...]]) -> Tuple[Tensor, Dict[str, Tensor]]:
        w = self.weights
        losses.update(self._recipe_losses(s, t, mlm))
        if not losses:
            raise ValueError("no distillation loss is active: every weight is 0; set at least one of "
                             "distill.weights.{embd,attn,hidn} > 0")
        total = sum(w[k] * v for k, v in losses.items())
        losses["total"] = total
        return total, losses


    # ---- the other recipes' losses (issue 23): variants of attn/hidn, MiniLM relations, MLM ----

    def _recipe_modules(self, student_hidden: int, vocab_size: int) -> Optional[nn.Module]:
        if self.attn_loss not in ("mse", "kl") or self.hidn_loss not in ("mse", "cosine"):
            raise ValueError(f"unknown distill.attn_loss {self.attn_loss!r} (mse | kl) or "
                             f"distill.hidn_loss {self.hidn_loss!r} (mse | cosine)")
        if self.attn_loss == "kl" and self.attn_mode == "reference" and self.weights["attn"] > 0:
            raise ValueError("distill.attn_mode=reference reproduces the reference code's scores MSE only: "
                             "use distill.attn_mode=masked with distill.attn_loss=kl")
        if (self.weights["rel_attn"] > 0 or self.weights["rel_value"] > 0) and self.relation_heads < 1:
            raise ValueError("MiniLM's relation losses need distill.relation_heads >= 1 (resolved from 0 = auto "
                             "by tinyfw.distill.recipes.relation_heads)")
        if self.weights["mlm"] > 0 or self.weights["mlm_soft"] > 0:
            if vocab_size < 1:
                raise ValueError("the masked-LM losses (distill.weights.mlm, mlm_soft) need the vocabulary size")
            return StudentMLMHead(student_hidden, vocab_size)
        return None

    def _attn_pair(self, a: Tensor, b: Tensor, mask: Tensor, mode: str) -> Tensor:
        return L.attention_kl(a, b, mask) if self.attn_loss == "kl" else attention_loss(a, b, mask, mode=mode)

    def _hidn_pair(self, a: Tensor, b: Tensor, proj: Optional[nn.Module], mask: Tensor, mode: str) -> Tensor:
        return L.hidden_cosine(a, b, proj, mask) if self.hidn_loss == "cosine" else hidden_loss(a, b, proj, mask, mode=mode)

    def _recipe_losses(self, s: Features, t: Features, mlm: Optional[Tuple[Tensor, ...]]) -> Dict[str, Tensor]:
        """MiniLM's last-layer relations (``rel_attn``: Q·K, ``rel_value``: V·V; from
        ``Features.qkv``) and DistilBERT's masked-LM losses (``mlm``: the student's, ``mlm_soft``:
        soft targets of the teacher's MLM; ``mlm`` = (the student's last hidden states and the
        teacher's MLM logits at the masked positions, the student's word embeddings, the labels)
        as (s_hidden, word_embeddings, t_logits, labels))."""
        w, out = self.weights, {}
        if w["rel_attn"] > 0 or w["rel_value"] > 0:
            if s.qkv is None or t.qkv is None:
                raise ValueError("MiniLM's relation losses need the last layer's Q/K/V: capture(need_qkv=True)")
            (sq, sk, sv), (tq, tk, tv), r = s.qkv, t.qkv, self.relation_heads
            if w["rel_attn"] > 0:
                out["rel_attn"] = L.relation_kl(sq, sk, tq, tk, s.mask, r)
            if w["rel_value"] > 0:
                out["rel_value"] = L.relation_kl(sv, sv, tv, tv, s.mask, r)
        if w["mlm"] > 0 or w["mlm_soft"] > 0:
            if mlm is None:
                raise ValueError("the masked-LM losses need the masked positions' logits and labels (GD with masking)")
            s_hidden, word_embeddings, t_logits, labels = mlm
            if labels.numel() == 0:  # no token masked in this batch: a zero that keeps the graph
                zero = s_hidden.sum() * 0.0 + self.mlm_head.bias.sum() * 0.0
                return {**out, **{k: zero for k in ("mlm", "mlm_soft") if w[k] > 0}}
            s_logits = self.mlm_head(s_hidden, word_embeddings)
            if w["mlm"] > 0:
                out["mlm"] = L.mlm_loss(s_logits, labels)
            if w["mlm_soft"] > 0:
                out["mlm_soft"] = L.mlm_soft_loss(s_logits, t_logits, self.mlm_temperature)
        return out


class StudentMLMHead(nn.Module):
    """The student's masked-LM head during GD (DistilBERT): dense + GELU + LayerNorm, then the
    decoder tied to the student's word embeddings (passed at call time) plus an own bias. It
    lives in the :class:`Distiller` (saved in ``projections.pt``), never in the student."""

    def __init__(self, hidden: int, vocab_size: int) -> None:
        super().__init__()
        self.dense = _projection(hidden, hidden)
        self.norm = nn.LayerNorm(hidden, eps=1e-12)
        self.bias = nn.Parameter(torch.zeros(vocab_size))

    def forward(self, h: Tensor, word_embeddings: Tensor) -> Tensor:
        x = self.norm(nn.functional.gelu(self.dense(h)))
        return nn.functional.linear(x, word_embeddings, self.bias)


def carry_over_projections(distiller: Distiller, gd_dir: Optional[str | Path]) -> Dict[str, Any]:
    """Start ``distiller``'s projections from a GD run's (``projections.pt`` + ``projections.json``
    in ``gd_dir`` or beside it, as ``stage=general`` saves them), as the reference code does when
    TD loads the general-distilled student. Each projection that exists on both sides with the
    same shape and the same sharing is loaded; the rest stay fresh, and why is returned:
    ``{"source", "loaded": [...], "fresh": [...], "reason"}``."""
    import json

    mine = [k for k in ("proj", "proj_e", "proj_h") if getattr(distiller, k) is not None]
    info: Dict[str, Any] = {"source": None, "loaded": [], "fresh": mine, "reason": ""}
    if not mine:
        info["reason"] = "no projection in use (embd and hidn weights are 0)"
        return info
    if gd_dir is None:
        info["reason"] = "no GD student (gd=off)"
        return info
    here = Path(gd_dir)
    found = next((d for d in (here, here.parent) if (d / "projections.pt").is_file()), None)
    if found is None:
        info["reason"] = f"no projections.pt in or beside {here}"
        return info
    info["source"] = str(found / "projections.pt")
    meta_file = found / "projections.json"
    meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
    if "share_projection" in meta and bool(meta["share_projection"]) != distiller.share_projection:
        info["reason"] = (f"GD used share_projection={bool(meta['share_projection'])}, TD uses "
                          f"{distiller.share_projection}")
        return info
    state = torch.load(found / "projections.pt", map_location="cpu", weights_only=True)
    own = distiller.state_dict()
    def fits(name: str) -> bool:  # every tensor of that projection, same shape
        keys = [k for k in own if k.startswith(name + ".")]
        return all(k in state and state[k].shape == own[k].shape for k in keys)

    loaded = [k for k in mine if fits(k)]
    take = {k: state[k] for k in own if k.split(".")[0] in loaded}
    if take:
        distiller.load_state_dict({**own, **take})
    info["loaded"] = [k for k in mine if k in loaded]
    info["fresh"] = [k for k in mine if k not in loaded]
    if info["fresh"]:
        shapes = {k: tuple(v.shape) for k, v in state.items() if k.endswith(".weight")}
        info["reason"] = (f"{', '.join(info['fresh'])} not in {info['source']} with this shape "
                          f"(GD projections: {shapes or 'none'}; TD needs "
                          f"{ {k: tuple(own[k + '.weight'].shape) for k in info['fresh']} })")
    return info
