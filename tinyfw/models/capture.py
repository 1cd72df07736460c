"""Capture what Transformer distillation compares: the embedding output, every layer's hidden
state and every layer's **pre-softmax** attention scores ``QKᵀ/√d_k``, with the padding mask.

Mechanism: a custom attention function registered with transformers' ``AttentionInterface``
under the name ``tinyfw_capture`` (with the eager additive mask registered under the same name
in ``AttentionMaskInterface``, so padding is applied, not silently dropped). It performs
exactly the eager computation (same ops, same order: outputs are bit-identical to
``attn_implementation="eager"``) and, while a :func:`capture` call is active, stashes the
scores *before* the mask is added. Outside :func:`capture` it is plain eager attention, so a
model switched to it behaves as before. The same mechanism serves teacher (under
``torch.inference_mode``) and student (with autograd), in fp32 or under bf16 autocast.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

IMPL = "tinyfw_capture"

# The list the running capture() appends scores to (None: no capture active).
_SINK: contextvars.ContextVar[Optional[List[Tensor]]] = contextvars.ContextVar("tinyfw_scores", default=None)
# The fast path's attention (None: the eager one) and the 0-based layers whose scores it keeps (empty: all).
_FAST: contextvars.ContextVar[Optional[frozenset]] = contextvars.ContextVar("tinyfw_fast", default=None)


@dataclass
class Features:
    """One forward's representations, as Transformer distillation reads them."""

    embeddings: Tensor  # [B,T,H] embedding-layer output (hidden_states[0])
    hidden: List[Tensor]  # L x [B,T,H]: output of Transformer layer 1..L
    scores: List[Tensor]  # L x [B,heads,T,T]: pre-softmax QKᵀ/√d_k, no mask added ([] if not asked; None: a layer not asked, fast path)
    mask: Tensor  # [B,T] attention mask (1 = real token) the scores belong to
    logits: Optional[Tensor] = None  # [B,C] sequence classification/regression logits, if any
    # the last layer's query, key and value projections [B,T,H] (heads concatenated), only when
    # capture(need_qkv=True): MiniLM's relation losses
    qkv: Optional[Tuple[Tensor, Tensor, Tensor]] = None


def _capture_attention(
    module: nn.Module,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Optional[Tensor],
    scaling: Optional[float] = None,
    dropout: float = 0.0,
    **kwargs: Any,
):
    """Eager attention (as in transformers' BERT) that also hands the raw scores to capture()."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    fast = _FAST.get()
    if fast is not None:
        return _fast_attention(module, query, key, value, attention_mask, scaling, dropout, fast)
    scores = torch.matmul(query, key.transpose(2, 3)) * scaling
    sink = _SINK.get()
    if sink is not None:
        sink.append(scores)
    weights = scores + attention_mask if attention_mask is not None else scores
    weights = nn.functional.softmax(weights, dim=-1)
    weights = nn.functional.dropout(weights, p=dropout, training=module.training)
    out = torch.matmul(weights, value).transpose(1, 2).contiguous()
    return out, weights


def _fast_attention(module: nn.Module, query: Tensor, key: Tensor, value: Tensor, attention_mask: Optional[Tensor],
                    scaling: float, dropout: float, layers: frozenset):
    """The fast path's attention: the scale applied to the query ([B,h,T,d]) instead of the
    scores ([B,h,T,T]: a pass less forward and backward; exact for d = 64, rounding otherwise);
    a layer whose scores nobody reads (``layers``: the 0-based ones wanted, empty = all; or no
    capture active) stashes None in its place and, when no dropout applies (eval, a frozen
    teacher), runs torch's fused ``scaled_dot_product_attention``. With dropout it keeps the eager
    ops, so it draws the same dropout masks as the former path."""
    sink = _SINK.get()
    idx = getattr(module, "layer_idx", None)
    keep = sink is not None and not (layers and idx is not None and idx not in layers)
    p = dropout if module.training else 0.0
    if not keep and p == 0.0:
        if sink is not None:
            sink.append(None)
        out = nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask, scale=scaling)
        return out.transpose(1, 2).contiguous(), None
    scores = torch.matmul(query * scaling, key.transpose(2, 3))
    if sink is not None:
        sink.append(scores if keep else None)
    weights = scores + attention_mask if attention_mask is not None else scores
    weights = nn.functional.softmax(weights, dim=-1)
    weights = nn.functional.dropout(weights, p=p, training=module.training)
    return torch.matmul(weights, value).transpose(1, 2).contiguous(), weights


AttentionInterface.register(IMPL, _capture_attention)
AttentionMaskInterface.register(IMPL, eager_mask)


class fast_attention:
    """Within it, a model switched to the capturing attention runs the fast path's attention
    without capturing (:func:`_fast_attention`: the same dropout draws as the eager one; torch's
    fused kernel in eval): TD step 2."""

    def __enter__(self):
        self._tokens = (_SINK.set(None), _FAST.set(frozenset()))

    def __exit__(self, *exc):
        _FAST.reset(self._tokens[1])
        _SINK.reset(self._tokens[0])


def unwrap(model: nn.Module) -> nn.Module:
    """The HF model inside DDP / Accelerate / torch.compile wrappers."""
    while True:
        inner = getattr(model, "module", None)
        if not isinstance(inner, nn.Module):
            inner = getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def enable_capture(model: nn.Module) -> nn.Module:
    """Switch ``model`` (any wrapper) to the capturing attention; a no-op when already on.

    Behaviour outside :func:`capture` is eager attention, so this is safe to leave on. The
    attention implementation is not saved with the model (``save_pretrained`` is unaffected).
    """
    hf = unwrap(model)
    config = getattr(hf, "config", None)
    if config is None or not hasattr(hf, "set_attn_implementation"):
        raise TypeError(f"capture needs a transformers PreTrainedModel, got {type(hf).__name__}")
    if config._attn_implementation != IMPL:
        hf.set_attn_implementation(IMPL)
        if config._attn_implementation != IMPL:
            raise TypeError(
                f"{type(hf).__name__} does not support custom attention functions "
                "(transformers' AttentionInterface); it cannot be used for distillation"
            )
    return model


def capture(
    model: nn.Module,
    input_ids: Tensor,
    attention_mask: Optional[Tensor],
    token_type_ids: Optional[Tensor] = None,
    need_scores: bool = True,
    need_qkv: bool = False,
    fast: bool = False,
    layers: Optional[Sequence[int]] = None,
) -> Features:
    """Run ``model`` once and return its :class:`Features`.

    Works for ``BertModel``, ``BertForSequenceClassification`` and ``BertForMaskedLM`` (any
    model whose self-attention goes through transformers' ``AttentionInterface``), plain or
    wrapped by DDP/Accelerate. Does not change the model's outputs. The caller chooses the
    grad mode: ``torch.inference_mode()`` for the teacher, autograd for the student.
    ``logits`` is filled only for 2-D (sequence-level) logits; MLM logits are left out.
    ``need_qkv``: also the last layer's Q/K/V projections (forward hooks, only then).

    ``fast``: the fast path's attention (:func:`_fast_attention`: same values up to rounding);
    with ``layers`` (1-based) only those layers' scores are kept, the others' entries are None.
    """
    enable_capture(model)
    if attention_mask is None:
        attention_mask = torch.ones_like(input_ids)
    sink: Optional[List[Tensor]] = [] if need_scores else None
    token = _SINK.set(sink)
    qkv, hooks = _hook_last_qkv(model) if need_qkv else ({}, [])
    fast_token = _FAST.set(frozenset(i - 1 for i in layers or ()) if fast else None)
    try:
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=token_type_ids,
            output_hidden_states=True,
            return_dict=True,
        )
    finally:
        _SINK.reset(token)
        for h in hooks:
            h.remove()
        _FAST.reset(fast_token)
    states = out.hidden_states
    if states is None:
        raise RuntimeError(f"{type(unwrap(model)).__name__} returned no hidden states")
    n_layers = len(states) - 1
    scores = sink or []
    if need_scores and len(scores) != n_layers:
        raise RuntimeError(
            f"captured {len(scores)} attention score tensors for {n_layers} layers: the model's "
            "attention does not go (only) through transformers' AttentionInterface"
        )
    logits = getattr(out, "logits", None)
    if logits is not None and logits.dim() != 2:
        logits = None
    return Features(
        embeddings=states[0], hidden=list(states[1:]), scores=list(scores), mask=attention_mask, logits=logits,
        qkv=(qkv["query"], qkv["key"], qkv["value"]) if need_qkv else None,
    )


def last_self_attention(model: nn.Module) -> nn.Module:
    """The last layer's self-attention module (with ``query``, ``key``, ``value`` linears)."""
    base = getattr(unwrap(model), "base_model", unwrap(model))
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    attn = getattr(getattr(layers[-1], "attention", None), "self", None) if layers else None
    if attn is None or not all(isinstance(getattr(attn, n, None), nn.Module) for n in ("query", "key", "value")):
        raise TypeError(f"{type(unwrap(model)).__name__} has no BERT-style encoder.layer[-1].attention.self."
                        "{query,key,value}: MiniLM's relation losses cannot read its Q/K/V")
    return attn


def _hook_last_qkv(model: nn.Module):
    """Forward hooks stashing the last layer's Q/K/V projection outputs ({name: [B,T,H]})."""
    attn, out = last_self_attention(model), {}
    def keep(name):
        return lambda _mod, _inp, y: out.__setitem__(name, y)
    return out, [getattr(attn, n).register_forward_hook(keep(n)) for n in ("query", "key", "value")]
