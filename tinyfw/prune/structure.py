"""Removing attention heads and FFN neurons from a BERT classifier for real (weights sliced,
no masks), recording the structure in its config, and loading a pruned checkpoint.

A model whose heads were pruned, or whose FFN widths differ between layers, becomes a
:class:`~tinyfw.prune.modeling_pruned_bert.PrunedBertForSequenceClassification` (saved with its
code and ``auto_map``, so ``from_pretrained(dir, trust_remote_code=True)`` loads it anywhere).
FFN pruning to one width in every layer and no head pruning keeps a plain
``BertForSequenceClassification`` (``intermediate_size`` changes), which loads with no flag.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence

from tinyfw.prune.modeling_pruned_bert import (
    PrunedBertForSequenceClassification, head_size, is_pruned, keep_neurons, layer_sizes, pruned_heads, remove_heads,
)

PrunedBertForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")


def _layers(model: Any) -> List[Any]:
    if not hasattr(model, "bert") or not hasattr(model, "classifier"):
        raise TypeError(f"structured pruning supports BERT sequence classifiers, not {type(model).__name__} "
                        "(token classification: not yet)")
    return list(model.bert.encoder.layer)


def heads_per_layer(model: Any) -> List[int]:
    return [layer.attention.self.num_attention_heads for layer in _layers(model)]


def ffn_sizes(model: Any) -> List[int]:
    return [layer.intermediate.dense.out_features for layer in _layers(model)]


def prune(model: Any, heads: Dict[int, Sequence[int]], neurons: Dict[int, Sequence[int]]) -> Any:
    """Remove ``heads`` (layer -> indices among its current heads) and keep only ``neurons``
    (layer -> FFN indices to keep; layers not named keep all) of ``model``; the config records
    the result (``pruned_heads`` in original head indices, ``intermediate_size`` or
    ``layer_intermediate_sizes``). Returns the model (a pruned class when BERT's config cannot
    express it)."""
    layers, cfg = _layers(model), model.config
    size = head_size(cfg)
    done = pruned_heads(cfg)
    for i, gone in heads.items():
        if not gone:
            continue
        original = [h for h in range(cfg.num_attention_heads) if h not in done.get(i, [])]
        remove_heads(layers[i], gone, size)
        done[i] = sorted(done.get(i, []) + [original[h] for h in gone])
    for i, keep in neurons.items():
        keep_neurons(layers[i], sorted(int(k) for k in keep))
    cfg.pruned_heads = {str(k): v for k, v in sorted(done.items())}
    sizes = ffn_sizes(model)
    if len(set(sizes)) == 1:
        cfg.intermediate_size = sizes[0]
        if hasattr(cfg, "layer_intermediate_sizes"):
            del cfg.layer_intermediate_sizes
    else:
        cfg.layer_intermediate_sizes = sizes
    if not done:
        del cfg.pruned_heads
    return as_pruned_class(model) if is_pruned(cfg) else model


def as_pruned_class(model: Any) -> Any:
    """``model`` as a :class:`PrunedBertForSequenceClassification` (same weights)."""
    if isinstance(model, PrunedBertForSequenceClassification):
        return model
    attn = model.config._attn_implementation
    model.config.architectures = ["PrunedBertForSequenceClassification"]
    new = PrunedBertForSequenceClassification(model.config)
    new.load_state_dict(model.state_dict(), strict=True)
    new.set_attn_implementation(attn)
    return new.train(model.training)


def classifier_class(path: str, default: Any) -> Any:
    """The class that loads the classifier at ``path``: the pruned class when its config records
    a structure BERT's cannot, else ``default``."""
    from transformers import AutoConfig

    return PrunedBertForSequenceClassification if is_pruned(AutoConfig.from_pretrained(path)) else default


def load_pruned(path: str, **kwargs: Any) -> Any:
    """A classifier saved by :func:`prune` (or a plain one), strict about missing and
    unexpected keys."""
    from transformers import AutoModelForSequenceClassification

    from tinyfw.models.load import load_strict

    return load_strict(classifier_class(path, AutoModelForSequenceClassification), path, **kwargs)


def structure(config: Any) -> Dict[str, Any]:
    """Heads and FFN width per layer, as a record."""
    gone = pruned_heads(config)
    heads = [config.num_attention_heads - len(gone.get(i, [])) for i in range(config.num_hidden_layers)]
    return {"heads": heads, "ffn": layer_sizes(config), "head_size": head_size(config)}


def check_targets(heads: Sequence[int], ffn: Sequence[int], heads_per_layer: int = 0, total: int = 0,
                  ffn_size: int = 0) -> None:
    """Refuse, in one line naming the key, pruning targets (``prune.heads_per_layer``,
    ``prune.heads``, ``prune.ffn_size``; 0 = not set) that a student with ``heads`` attention
    heads and ``ffn`` FFN neurons per layer cannot meet, or that remove nothing."""
    has = f"the student has {list(heads)} heads and {list(ffn)} FFN neurons per layer"
    if heads_per_layer > max(heads):
        raise ValueError(f"prune.heads_per_layer={heads_per_layer} but {has}: keep at most {max(heads)} per layer")
    if total and not len(heads) <= total <= sum(heads):
        raise ValueError(f"prune.heads={total} must be between {len(heads)} (one per layer) and {sum(heads)}: {has}")
    if ffn_size > max(ffn):
        raise ValueError(f"prune.ffn_size={ffn_size} but {has}: keep at most {max(ffn)} per layer")
    if not (0 < heads_per_layer < max(heads) or 0 < total < sum(heads) or 0 < ffn_size < max(ffn)):
        raise ValueError(f"prune.heads_per_layer={heads_per_layer}, prune.heads={total}, prune.ffn_size={ffn_size} "
                         f"remove nothing ({has}): set one below the student's count")


def flops(config: Any, seq_len: int, pooler: bool = True, num_labels: int = 0) -> Dict[str, int]:
    """:func:`tinyfw.bench.measure.analytic_flops` for a (possibly) pruned config: per layer
    Q, K, V, output 4·h·(heads·d), FFN 2·h·ffn, attention matmuls 4·seq²·heads·d."""
    s = structure(config)
    h, d = config.hidden_size, s["head_size"]
    linear = sum(2 * seq_len * (4 * h * n * d + 2 * h * f) for n, f in zip(s["heads"], s["ffn"]))
    attention = sum(4 * seq_len * seq_len * n * d for n in s["heads"])
    head = 2 * h * h * int(pooler) + 2 * h * num_labels
    return {"linear": linear, "attention": attention, "head": head, "total": linear + attention + head}


def summary(model: Any, seq_len: int) -> Dict[str, Any]:
    """A classifier's ``structure``, parameter counts and FLOPs per sequence of ``seq_len``."""
    from tinyfw.models.card import param_counts

    return {"structure": structure(model.config), "params": param_counts(model),
            "flops": flops(model.config, seq_len, num_labels=model.config.num_labels)}


def save_pruned(model: Any, tok: Any, out: Path, pruning: Dict[str, Any]) -> None:
    """``out``: the pruned classifier, its tokenizer and ``pruning.json`` (``pruning``); checked
    to reload (:func:`load_pruned`) with the same parameter counts."""
    import json

    from tinyfw.fsutil import atomic_dir
    from tinyfw.models.card import param_counts

    model.eval()
    with atomic_dir(out, overwrite=True) as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "pruning.json").write_text(json.dumps(pruning, indent=1) + "\n")
    if param_counts(load_pruned(str(out))) != param_counts(model):
        raise RuntimeError(f"{out} reloads with other parameter counts than the pruned model")
