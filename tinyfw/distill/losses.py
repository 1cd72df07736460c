"""TinyBERT's distillation losses, each defined once: ``embd``, ``hidn``, ``attn`` (one mapped
layer pair) and the prediction loss (:func:`soft_loss`: soft cross-entropy, or MSE to the
teacher's output for a one-output head), which both the :class:`~tinyfw.distill.objective.Distiller`
and TD step 2 (:func:`tinyfw.distill.steps.prediction_loss_fn`) call.

Weights live elsewhere (the Distiller); these return unweighted values, computed in fp32
whatever the input dtype (bf16 autocast included).

Padding. ``mode="masked"`` (default) counts real tokens only: embedding/hidden MSE averages
over real tokens × features; attention MSE masks padded query rows *and* key columns and
averages over valid cells × heads. Padding the same batch longer therefore leaves every loss
unchanged. ``mode="reference"`` reproduces the reference implementation: plain means over all
positions, padding included; for attention the additive mask is applied first (padded key
columns -> -10000) and every score <= -100 is then set to 0 (so padded columns vanish but
padded query rows stay, and the mean divides by padded cells too: the loss depends on the
padding length).

Teacher tensors may come from ``torch.inference_mode``: the ops below never save a teacher
tensor for backward, so they mix with the student's autograd graph.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MODES = ("masked", "reference")


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown loss mode {mode!r}: use one of {', '.join(MODES)}")


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
