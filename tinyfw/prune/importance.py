"""How much each attention head and FFN neuron of a BERT classifier matters, and which to
remove for a target.

- ``gradient`` (Michel et al. 2019): a gate ξ = 1 multiplies each head's output (and each FFN
  neuron's activation); importance = Σ over batches of |∂L/∂ξ|, L the cross-entropy to the
  labels (MSE for regression). Head scores are normalised per layer (L2), as Michel et al. do,
  so that layers compare when heads are ranked across them.
- ``weight``: the L2 norm of the weights a head (its Q, K, V rows and output columns) or a
  neuron (its intermediate row and output column) owns — needs no data.

Every function takes explicit arguments (no config).
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Tuple

import torch

Scores = Tuple[torch.Tensor, List[torch.Tensor]]  # head scores [layers, heads]; FFN scores per layer


def _gates(model: Any):
    """Hooks that multiply each layer's head outputs and FFN activations by gates (ones that
    require grad); returns (head gates, ffn gates, hook handles)."""
    heads, ffn, handles = [], [], []
    for layer in model.bert.encoder.layer:
        n, d = layer.attention.self.num_attention_heads, layer.attention.self.attention_head_size
        g = torch.ones(n, requires_grad=True)
        f = torch.ones(layer.intermediate.dense.out_features, requires_grad=True)

        def pre(mod, args, g=g, n=n, d=d):  # the attention context [B, T, n·d] before the output projection
            x = args[0]
            return ((x.view(*x.shape[:-1], n, d) * g.view(n, 1)).view(x.shape),) + tuple(args[1:])

        def post(mod, args, out, f=f):  # the FFN activations [B, T, ffn]
            return out * f

        handles.append(layer.attention.output.dense.register_forward_pre_hook(pre))
        handles.append(layer.intermediate.register_forward_hook(post))
        heads.append(g)
        ffn.append(f)
    return heads, ffn, handles


def gradient_scores(model: Any, batches: Iterable[Dict[str, torch.Tensor]], regression: bool = False) -> Scores:
    """|∂L/∂ξ| summed over ``batches`` (each with ``labels``), per head and per FFN neuron.
    The model's weights get no gradient and are left unchanged."""
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    req = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    heads, ffn, handles = _gates(model)
    h_score = [torch.zeros_like(g) for g in heads]
    f_score = [torch.zeros_like(f) for f in ffn]
    n = 0
    try:
        for b in batches:
            feeds = {k: b[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in b}
            logits = model(**feeds).logits
            y = b["labels"]
            loss = F.mse_loss(logits.view(-1).float(), y.float()) if regression else F.cross_entropy(logits.float(), y)
            grads = torch.autograd.grad(loss, heads + ffn)
            for acc, gr in zip(h_score + f_score, grads):
                acc += gr.abs()
            n += 1
    finally:
        for h in handles:
            h.remove()
        for p, r in zip(model.parameters(), req):
            p.requires_grad_(r)
        model.train(was_training)
    if n == 0:
        raise ValueError("no batch to score heads and neurons on (empty data split)")
    return _stack(h_score), f_score


def weight_scores(model: Any) -> Scores:
    """L2 norm of the weights each head and FFN neuron owns."""
    h_score, f_score = [], []
    with torch.no_grad():
        for layer in model.bert.encoder.layer:
            a = layer.attention
            n, d = a.self.num_attention_heads, a.self.attention_head_size
            rows = sum(getattr(a.self, k).weight.view(n, d, -1).pow(2).sum((1, 2)) for k in ("query", "key", "value"))
            cols = a.output.dense.weight.view(-1, n, d).pow(2).sum((0, 2))
            h_score.append((rows + cols).sqrt())
            f_score.append((layer.intermediate.dense.weight.pow(2).sum(1) + layer.output.dense.weight.pow(2).sum(0)).sqrt())
    return _stack(h_score), f_score


def _stack(per_layer: List[torch.Tensor]) -> torch.Tensor:
    """Per-layer head scores as [layers, max heads] (missing heads: +inf, never chosen)."""
    width = max(len(s) for s in per_layer)
    out = torch.full((len(per_layer), width), float("inf"))
    for i, s in enumerate(per_layer):
        out[i, : len(s)] = s.detach()
    return out


def normalise_layers(h: torch.Tensor) -> torch.Tensor:
    """Head scores divided by their layer's L2 norm (finite entries only)."""
    finite = torch.where(torch.isfinite(h), h, torch.zeros_like(h))
    norm = finite.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return torch.where(torch.isfinite(h), h / norm, h)


def heads_to_remove(h: torch.Tensor, counts: List[int], per_layer: int = 0, total: int = 0) -> Dict[int, List[int]]:
    """The least important heads to remove: keep ``per_layer`` in every layer, or ``total`` over
    all layers ranked together (at least one per layer); ``counts``: each layer's current heads.
    0 for both: none."""
    if per_layer and total:
        raise ValueError("set prune.heads_per_layer or prune.heads, not both")
    out: Dict[int, List[int]] = {}
    if per_layer:
        for i, c in enumerate(counts):
            if per_layer < c:
                order = torch.argsort(h[i, :c])  # ascending importance
                out[i] = sorted(int(x) for x in order[: c - per_layer])
    elif total:
        if total < len(counts) or total > sum(counts):
            raise ValueError(f"prune.heads={total} must be between {len(counts)} (one per layer) and {sum(counts)}")
        hn = normalise_layers(h)
        cand = sorted(((float(hn[i, j]), i, j) for i, c in enumerate(counts) for j in range(c)))
        left = list(counts)
        for _, i, j in cand:
            if sum(left) == total:
                break
            if left[i] > 1:
                out.setdefault(i, []).append(j)
                left[i] -= 1
        out = {i: sorted(v) for i, v in out.items()}
    return out


def neurons_to_keep(f: List[torch.Tensor], size: int) -> Dict[int, List[int]]:
    """The ``size`` most important FFN neurons of every layer (0 or no fewer than there are: all)."""
    out = {}
    for i, s in enumerate(f):
        if 0 < size < len(s):
            out[i] = sorted(int(x) for x in torch.argsort(s, descending=True)[:size])
    return out


def calibration_batches(task: Any, tok: Any, split: str, n: int, bs: int, seq: int) -> List[Dict[str, Any]]:
    """Collated batches of ``bs`` of the first ``n`` rows (``n`` <= 0: all) of the task's labelled
    ``split`` (``dev`` or ``train``, ``prune.data``), tokenised at ``seq``: the data of the
    gradient importance."""
    from tinyfw.data.collate import Collator
    from tinyfw.data.tasks import tokenize

    name = task.dev_split if split == "dev" else "train"
    ds = task.splits[name]
    if not task.labelled(name):
        raise ValueError(f"prune.data={split}: the task's {name} split has no labels; use the other split")
    ds = ds.select(range(min(n, len(ds)))) if n > 0 else ds
    enc = tokenize(ds, task.text_columns, tok, seq)
    rows = [dict(zip(enc.column_names, vals)) for vals in zip(*[enc[c] for c in enc.column_names])]
    collate = Collator(tok.pad_token_id, task.regression)
    return [collate(rows[i:i + bs]) for i in range(0, len(rows), bs)]


def choose(scores: Scores, model: Any, per_layer: int = 0, total: int = 0,
           ffn_size: int = 0) -> Tuple[Dict[int, List[int]], Dict[int, List[int]]]:
    """(heads to remove, FFN neurons to keep) per layer of ``model`` for its ``scores``."""
    from tinyfw.prune.structure import heads_per_layer

    h, f = scores
    return heads_to_remove(h, heads_per_layer(model), per_layer=per_layer, total=total), neurons_to_keep(f, ffn_size)


def overlap(a: Dict[int, List[int]], b: Dict[int, List[int]]) -> float:
    """The share of ``a``'s (layer, index) choices that ``b`` makes too (1.0 when ``a`` is empty)."""
    sa = {(i, j) for i, v in a.items() for j in v}
    sb = {(i, j) for i, v in b.items() for j in v}
    return len(sa & sb) / len(sa) if sa else 1.0


def removal_record(chosen: Dict[str, Tuple[Dict[int, List[int]], Dict[int, List[int]]]],
                   ffn_sizes: List[int]) -> Dict[str, Any]:
    """Per criterion, the heads removed and the FFN neurons removed per layer (``ffn_sizes``:
    the widths before), and, when both criteria ran, their head choices' overlap."""
    removed: Dict[str, Any] = {k: {"heads": {str(i): v for i, v in h.items()},
                                   "ffn_removed": {str(i): ffn_sizes[i] - len(v) for i, v in n.items()}}
                               for k, (h, n) in chosen.items()}
    if "gradient" in chosen:
        removed["head_overlap_gradient_vs_weight"] = overlap(chosen["gradient"][0], chosen["weight"][0])
    return removed
