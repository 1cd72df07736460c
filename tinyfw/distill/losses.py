"""TinyBERT's distillation losses, each defined once: ``embd``, ``hidn``, ``attn`` (one mapped
layer pair), the prediction losses (:func:`soft_loss` and its variants) and the other recipes'
losses, which the :class:`~tinyfw.distill.objective.Distiller` and TD step 2 call. They return
unweighted values computed in fp32; ``mode`` (``masked`` | ``reference``) says how padding
counts, and teacher tensors may come from ``torch.inference_mode``: docs/internals.md,
"Distillation losses and padding".
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tinyfw.choices import AttnMode, PredLoss, check


def _check_mode(mode: str) -> None:
    check(AttnMode, mode, "loss mode")


def _token_mse(s: Tensor, t: Tensor, proj: Optional[nn.Module], mask: Tensor, mode: str) -> Tensor:
    _check_mode(mode)
    s = proj(s) if proj is not None else s
    if s.shape != t.shape:
        raise ValueError(f"student {tuple(s.shape)} and teacher {tuple(t.shape)} shapes differ (projection?)")
    sq = (s.float() - t.float()).pow(2)
    if mode == "reference":
        return sq.mean()
    valid = mask.to(device=sq.device, dtype=torch.bool).unsqueeze(-1)
    n = valid.sum() * sq.shape[-1]
    return torch.where(valid, sq, 0.0).sum() / n.clamp_min(1)


def embedding_loss(s_emb: Tensor, t_emb: Tensor, proj: Optional[nn.Module], mask: Tensor, mode: str = "masked") -> Tensor:
    """MSE(proj(E_S), E_T) over real tokens ([B,T,H'] vs [B,T,H]; ``proj`` None = identity)."""
    return _token_mse(s_emb, t_emb, proj, mask, mode)


def hidden_loss(s_h: Tensor, t_h: Tensor, proj: Optional[nn.Module], mask: Tensor, mode: str = "masked") -> Tensor:
    """MSE(proj(H_S), H_T) over real tokens of one mapped layer pair."""
    return _token_mse(s_h, t_h, proj, mask, mode)


def attention_loss(s_scores: Tensor, t_scores: Tensor, mask: Tensor, mode: str = "masked") -> Tensor:
    """MSE of pre-softmax attention scores [B,h,T,T] of one mapped layer pair, mean over heads.

    ``masked``: only cells whose query row and key column are both real tokens count, and the
    mean is over those cells (× heads). ``reference``: see the module docstring.
    """
    _check_mode(mode)
    if s_scores.shape != t_scores.shape:
        raise ValueError(
            f"attention scores differ in shape: student {tuple(s_scores.shape)} vs teacher "
            f"{tuple(t_scores.shape)} (equal head counts are required; or set distill.weights.attn=0)"
        )
    s, t = s_scores.float(), t_scores.float()
    keep = mask.to(device=s.device, dtype=torch.bool)
    if mode == "reference":
        pad_cols = ~keep[:, None, None, :]
        s = s.masked_fill(pad_cols, -10000.0)
        t = t.masked_fill(pad_cols, -10000.0)
        s = torch.where(s <= -1e2, 0.0, s)
        t = torch.where(t <= -1e2, 0.0, t)
        return (s - t).pow(2).mean()
    valid = keep[:, None, :, None] & keep[:, None, None, :]  # [B,1,T,T]
    sq = torch.where(valid, (s - t).pow(2), 0.0)
    n = valid.sum() * s.shape[1]
    return sq.sum() / n.clamp_min(1)


def prediction_loss(s_logits: Tensor, t_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Soft cross-entropy −softmax(z_T/t)·log_softmax(z_S/t), summed over classes, mean over batch."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    target = F.softmax(t_logits.float() / temperature, dim=-1)
    logp = F.log_softmax(s_logits.float() / temperature, dim=-1)
    return -(target * logp).sum(-1).mean()


def regression_loss(s_out: Tensor, t_out: Tensor) -> Tensor:
    """MSE of the student's output to the teacher's (not to gold labels), e.g. STS-B."""
    s, t = s_out.float().reshape(-1), t_out.float().reshape(-1)
    if s.shape != t.shape:
        raise ValueError(f"student {tuple(s_out.shape)} and teacher {tuple(t_out.shape)} outputs differ")
    return (s - t).pow(2).mean()


def soft_loss(s_logits: Tensor, t_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """The prediction-layer loss: :func:`regression_loss` when the head has one output
    (regression), else :func:`prediction_loss` at ``temperature``."""
    if t_logits.shape[-1] == 1:
        return regression_loss(s_logits, t_logits)
    return prediction_loss(s_logits, t_logits, temperature)


# ---- the other recipes' loss variants (issue 23; tinyfw/distill/recipes.py picks them) -------------
# Each is masked like the default: only real tokens (attention: valid query rows x key columns)
# count, so padding the same batch longer leaves it unchanged.


def _kl_rows(t_logits: Tensor, s_logits: Tensor, keep_cols: Tensor) -> Tensor:
    """KL(softmax(t) ‖ softmax(s)) per row over the columns ``keep_cols`` (broadcast bool) only."""
    t = t_logits.float().masked_fill(~keep_cols, -1e9)  # finite: no inf - inf in the masked cells
    s = s_logits.float().masked_fill(~keep_cols, -1e9)
    p_t, logp_t, logp_s = F.softmax(t, -1), F.log_softmax(t, -1), F.log_softmax(s, -1)
    return torch.where(keep_cols, p_t * (logp_t - logp_s), 0.0).sum(-1)


def _kl_valid_mean(t_logits: Tensor, s_logits: Tensor, mask: Tensor) -> Tensor:
    """:func:`_kl_rows` of [B,h,T,T] logits over the valid key columns, mean over valid query
    rows × heads (``mask`` [B,T], 1 = real token)."""
    keep = mask.to(device=s_logits.device, dtype=torch.bool)
    kl = _kl_rows(t_logits, s_logits, keep[:, None, None, :])  # [B,h,T]
    rows = keep[:, None, :].expand_as(kl)
    return torch.where(rows, kl, 0.0).sum() / rows.sum().clamp_min(1)


def prediction_kl(s_logits: Tensor, t_logits: Tensor, temperature: float = 1.0) -> Tensor:
    """KL(softmax(z_T/t) ‖ softmax(z_S/t)), summed over classes, mean over the batch (no t² factor)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logp_t = F.log_softmax(t_logits.float() / temperature, dim=-1)
    logp_s = F.log_softmax(s_logits.float() / temperature, dim=-1)
    return (logp_t.exp() * (logp_t - logp_s)).sum(-1).mean()


def logits_mse(s_logits: Tensor, t_logits: Tensor) -> Tensor:
    """MSE of the student's logits to the teacher's, mean over batch × classes."""
    if s_logits.shape != t_logits.shape:
        raise ValueError(f"student {tuple(s_logits.shape)} and teacher {tuple(t_logits.shape)} logits differ")
    return (s_logits.float() - t_logits.float()).pow(2).mean()


def prediction_variant(s_logits: Tensor, t_logits: Tensor, temperature: float = 1.0, kind: str = "soft_ce") -> Tensor:
    """The prediction loss ``kind`` (soft_ce: :func:`soft_loss`, kl, mse); a one-output head
    (regression) always takes MSE to the teacher's output."""
    kind = check(PredLoss, kind, "distill.pred_loss")
    if kind == "soft_ce" or t_logits.shape[-1] == 1:
        return soft_loss(s_logits, t_logits, temperature)
    if kind == "kl":
        return prediction_kl(s_logits, t_logits, temperature)
    return logits_mse(s_logits, t_logits)  # mse


def attention_kl(s_scores: Tensor, t_scores: Tensor, mask: Tensor) -> Tensor:
    """KL(teacher ‖ student) of the attention probabilities of one mapped layer pair: each
    valid query row's softmax over the valid key columns of the pre-softmax scores [B,h,T,T];
    mean over valid rows × heads."""
    if s_scores.shape != t_scores.shape:
        raise ValueError(
            f"attention scores differ in shape: student {tuple(s_scores.shape)} vs teacher "
            f"{tuple(t_scores.shape)} (equal head counts are required; or set distill.weights.attn=0)"
        )
    return _kl_valid_mean(t_scores, s_scores, mask)


def hidden_cosine(s_h: Tensor, t_h: Tensor, proj: Optional[nn.Module], mask: Tensor) -> Tensor:
    """Mean over real tokens of 1 − cos(proj(H_S), H_T) (DistilBERT's cosine loss; ``proj``
    None = identity, for equal widths)."""
    s = proj(s_h) if proj is not None else s_h
    if s.shape != t_h.shape:
        raise ValueError(f"student {tuple(s.shape)} and teacher {tuple(t_h.shape)} shapes differ (projection?)")
    cos = F.cosine_similarity(s.float(), t_h.float(), dim=-1)  # [B,T]
    valid = mask.to(device=cos.device, dtype=torch.bool)
    return torch.where(valid, 1.0 - cos, 0.0).sum() / valid.sum().clamp_min(1)


def _relation_heads(x: Tensor, heads: int) -> Tensor:
    b, t, d = x.shape
    if d % heads:
        raise ValueError(f"width {d} is not divisible by {heads} relation heads (distill.relation_heads)")
    return x.float().view(b, t, heads, d // heads).transpose(1, 2)  # [B,r,T,d/r]


def relation_logits(x: Tensor, y: Tensor, heads: int) -> Tensor:
    """x_r y_rᵀ / √d_r per relation head r: [B,T,D] x2 -> [B,r,T,T] (D split into ``heads``)."""
    xr, yr = _relation_heads(x, heads), _relation_heads(y, heads)
    return xr @ yr.transpose(-1, -2) / math.sqrt(xr.shape[-1])


def relation_kl(s_x: Tensor, s_y: Tensor, t_x: Tensor, t_y: Tensor, mask: Tensor, heads: int) -> Tensor:
    """MiniLM(-v2) relation transfer: KL(softmax(t_x t_yᵀ/√d_t) ‖ softmax(s_x s_yᵀ/√d_s)) per
    relation head, the concatenated [B,T,D] projections (Q and K: attention; V and V: value
    relation) split into the same ``heads`` on both sides (so head counts and widths may
    differ); mean over valid query rows × heads, padded key columns excluded."""
    return _kl_valid_mean(relation_logits(t_x, t_y, heads), relation_logits(s_x, s_y, heads), mask)


def mlm_soft_loss(s_logits: Tensor, t_logits: Tensor, temperature: float = 2.0) -> Tensor:
    """DistilBERT's soft-target loss at the masked positions ([N, vocab] rows):
    KL(softmax(z_T/t) ‖ softmax(z_S/t)) · t², mean over rows."""
    return prediction_kl(s_logits, t_logits, temperature) * temperature ** 2


def mlm_loss(s_logits: Tensor, labels: Tensor) -> Tensor:
    """The student's masked-LM cross-entropy at the masked positions ([N, vocab] vs [N])."""
    return F.cross_entropy(s_logits.float(), labels)


# The fast path (``Distiller(fast=True)``, masked mode): the same values (up to rounding), with the
# valid cells built once per batch instead of once per loss and layer, fused ``mse_loss`` when
# the batch has no padding (GD's packed segments), and no fp32 copy of the teacher's scores.

def valid_cells(mask: Tensor) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """(real tokens [B,T,1], valid attention cells [B,1,T,T]) as 0/1 floats, or (None, None)
    when every token is real (then every cell counts)."""
    keep = mask.to(dtype=torch.bool)
    if bool(keep.all()):
        return None, None
    k = keep.to(torch.float32)
    return k.unsqueeze(-1), (k[:, None, :, None] * k[:, None, None, :])


def token_mse_fast(s: Tensor, t: Tensor, proj: Optional[nn.Module], tokens: Optional[Tensor]) -> Tensor:
    """:func:`embedding_loss` / :func:`hidden_loss` (masked) with ``tokens`` from :func:`valid_cells`."""
    s = proj(s) if proj is not None else s
    if s.shape != t.shape:
        raise ValueError(f"student {tuple(s.shape)} and teacher {tuple(t.shape)} shapes differ (projection?)")
    if tokens is None:
        return F.mse_loss(s.float(), t.float())
    d = (s.float() - t).mul_(tokens)
    return d.square().sum() / (tokens.sum() * d.shape[-1]).clamp_min(1)


def attention_loss_fast(s_scores: Tensor, t_scores: Tensor, cells: Optional[Tensor]) -> Tensor:
    """:func:`attention_loss` (masked) with ``cells`` from :func:`valid_cells`."""
    if s_scores.shape != t_scores.shape:
        raise ValueError(
            f"attention scores differ in shape: student {tuple(s_scores.shape)} vs teacher "
            f"{tuple(t_scores.shape)} (equal head counts are required; or set distill.weights.attn=0)"
        )
    if cells is None:
        return F.mse_loss(s_scores.float(), t_scores.float())
    d = (s_scores.float() - t_scores).mul_(cells)
    return d.square().sum() / (cells.sum() * d.shape[1]).clamp_min(1)
