"""A structurally pruned BERT sequence classifier (fewer heads, FFN neurons) for ``from_pretrained``.

``BertConfig`` cannot express it (head size = ``hidden_size / num_attention_heads``;
transformers 5 dropped ``prune_heads`` / ``pruned_heads``), so two extra config keys record the
structure, rebuilt on load: ``pruned_heads`` (``{"layer": [original head indices removed]}``) and
``layer_intermediate_sizes`` (each layer's FFN width; absent when ``intermediate_size`` holds for
all). Only torch and transformers are imported: ``save_pretrained`` copies this file beside the
weights; ``AutoModelForSequenceClassification.from_pretrained(dir, trust_remote_code=True)``
loads it without tinyfw.
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import torch
from torch import nn
from transformers import BertForSequenceClassification


def _slice(linear: nn.Linear, index: Sequence[int], dim: int) -> nn.Linear:
    """A copy of ``linear`` keeping rows (``dim`` 0: output features) or columns (``dim`` 1:
    input features) ``index``."""
    idx = torch.as_tensor(list(index), dtype=torch.long, device=linear.weight.device)
    w = linear.weight.index_select(dim, idx).detach().clone()
    bias = linear.bias is not None
    out_f, in_f = w.shape
    new = nn.Linear(in_f, out_f, bias=bias, device=w.device, dtype=w.dtype)
    with torch.no_grad():
        new.weight.copy_(w)
        if bias:
            new.bias.copy_(linear.bias if dim == 1 else linear.bias.index_select(0, idx))
    new.weight.requires_grad_(linear.weight.requires_grad)
    return new


def head_size(config) -> int:
    return config.hidden_size // config.num_attention_heads


def remove_heads(layer: nn.Module, heads: Sequence[int], size: int) -> None:
    """Drop the attention heads ``heads`` (indices among the layer's current heads) of one
    ``BertLayer``: rows of Q, K, V and columns of the attention output projection."""
    att = layer.attention
    current = att.self.num_attention_heads
    gone = set(int(h) for h in heads)
    keep = [h for h in range(current) if h not in gone]
    if not keep:
        raise ValueError("cannot remove every attention head of a layer")
    cols = [h * size + i for h in keep for i in range(size)]
    for name in ("query", "key", "value"):
        setattr(att.self, name, _slice(getattr(att.self, name), cols, 0))
    att.output.dense = _slice(att.output.dense, cols, 1)
    att.self.num_attention_heads = len(keep)
    att.self.all_head_size = len(keep) * size


def keep_neurons(layer: nn.Module, keep: Sequence[int]) -> None:
    """Keep the FFN neurons ``keep`` of one ``BertLayer``: rows of the intermediate projection
    and columns of the output projection."""
    if not len(keep):
        raise ValueError("cannot remove every FFN neuron of a layer")
    layer.intermediate.dense = _slice(layer.intermediate.dense, keep, 0)
    layer.output.dense = _slice(layer.output.dense, keep, 1)


def pruned_heads(config) -> Dict[int, List[int]]:
    """``config.pruned_heads`` with integer layer keys (JSON makes them strings)."""
    return {int(k): sorted(int(h) for h in v) for k, v in (getattr(config, "pruned_heads", None) or {}).items() if v}


def layer_sizes(config) -> List[int]:
    """The FFN width of each layer."""
    sizes = getattr(config, "layer_intermediate_sizes", None)
    return [int(s) for s in sizes] if sizes else [config.intermediate_size] * config.num_hidden_layers


def is_pruned(config) -> bool:
    """Whether ``config`` describes a structure ``BertForSequenceClassification`` cannot build."""
    return bool(pruned_heads(config)) or len(set(layer_sizes(config))) > 1


def apply_structure(model: nn.Module, config) -> None:
    """Shrink a freshly built model to the structure ``config`` records (the weights that come
    next fill it)."""
    size = head_size(config)
    sizes = layer_sizes(config)
    for i, layer in enumerate(model.bert.encoder.layer):
        gone = pruned_heads(config).get(i, [])
        if gone:
            remove_heads(layer, gone, size)
        if layer.intermediate.dense.out_features != sizes[i]:
            keep_neurons(layer, range(sizes[i]))


class PrunedBertForSequenceClassification(BertForSequenceClassification):
    """``BertForSequenceClassification`` with the per-layer heads and FFN widths of its config."""

    def __init__(self, config):
        super().__init__(config)
        apply_structure(self, config)
