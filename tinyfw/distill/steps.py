"""The distillation steps as ``loss_fn(modules, batch) -> (loss, logs)`` for
:func:`tinyfw.train.loop.fit`: feature distillation (GD and TD step 1: the teacher's and the
student's captured features through :class:`~tinyfw.distill.objective.Distiller`), prediction
distillation (TD step 2: soft targets, or the hard labels when the prediction weight is 0) and
hard-label fine-tuning (``td=off``); and the soft targets' entropy, the lowest step-2 loss.
Every function takes explicit arguments (no config)."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np
import torch

from tinyfw.models.capture import Features, capture


def clone_features(feats: Features, layers: Optional[Sequence[int]] = None) -> Features:
    """Teacher features made under inference_mode, as ordinary tensors autograd may save.
    Only the mapped ``layers`` (1-based; None: all) are copied; the others are never read."""
    keep = set(layers) if layers is not None else None

    def c(i: int, x: torch.Tensor) -> torch.Tensor:
        return x.clone() if keep is None or i + 1 in keep else x

    return Features(
        embeddings=feats.embeddings.clone(),
        hidden=[c(i, h) for i, h in enumerate(feats.hidden)],
        scores=[c(i, s) for i, s in enumerate(feats.scores)],
        mask=feats.mask.clone(),
        logits=None,
    )


def feature_loss_fn(need_scores: bool, mapping: Optional[Sequence[int]] = None, log_total: bool = True,
                    fast: bool = False, need_qkv: bool = False, mlm: bool = False):
    """Modules ``teacher`` (frozen), ``student`` and ``distiller``: teacher forward under
    inference_mode, student forward, :class:`Distiller` -> (total, unweighted losses; with
    ``log_total`` the weighted total too, as ``total``). ``mapping``: the teacher layers the
    distiller reads (only those are copied out of inference mode). ``fast``: the teacher under
    ``no_grad`` (its tensors enter the loss without a copy), only the mapped layers' scores
    captured, the fast attention (:func:`~tinyfw.models.capture.capture`); the default losses
    only (ignored with ``need_qkv`` or ``mlm``). The other recipes (``tinyfw.distill.recipes``):
    ``need_qkv``: both sides also capture the last layer's Q/K/V (MiniLM's relations); ``mlm``:
    the batch carries masked inputs and ``labels`` (``stage=mlm``'s masking), the teacher is a
    masked LM (its ``cls`` head gives the soft targets at the masked positions) and the
    Distiller's student MLM head reads the student's last hidden states there."""
    from tinyfw.models.capture import unwrap

    fast = fast and not (need_qkv or mlm)

    def loss_fn(modules: Dict[str, torch.nn.Module], batch: Dict[str, torch.Tensor]):
        args = (batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        if fast:
            with torch.no_grad():
                t = capture(modules["teacher"], *args, need_scores=need_scores, fast=True, layers=mapping)
            s = capture(modules["student"], *args, need_scores=need_scores, fast=True)
            total, losses = modules["distiller"](s, t)
            return total, {k: float(v.detach()) for k, v in losses.items() if log_total or k != "total"}
        where = batch["labels"] != -100 if mlm else None
        with torch.inference_mode():
            t = capture(modules["teacher"], *args, need_scores=need_scores, need_qkv=need_qkv)
            t_mlm = unwrap(modules["teacher"]).cls(t.hidden[-1][where]) if mlm else None
        qkv = tuple(x.clone() for x in t.qkv) if t.qkv is not None else None
        t = clone_features(t, mapping)
        t.qkv = qkv
        s = capture(modules["student"], *args, need_scores=need_scores, need_qkv=need_qkv)
        extra = None
        if mlm:
            emb = unwrap(modules["student"]).get_input_embeddings().weight
            extra = (s.hidden[-1][where], emb, t_mlm.clone(), batch["labels"][where])
        total, losses = modules["distiller"](s, t, mlm=extra)
        return total, {k: float(v.detach()) for k, v in losses.items() if log_total or k != "total"}

    return loss_fn


def hard_loss(logits, labels, regression: bool = False):
    """Cross-entropy to hard labels (MSE for ``regression``); per token for [B, T, C] logits."""
    return _hard_loss(logits, labels, regression)


def _model_inputs(batch: Dict[str, Any]) -> Dict[str, Any]:
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}


def _forward(model: torch.nn.Module, batch: Dict[str, Any], fast: bool) -> torch.Tensor:
    """The model's logits; ``fast``: under the fast path's attention (:class:`~tinyfw.models.capture.fast_attention`)."""
    if not fast:
        return model(**_model_inputs(batch)).logits
    from tinyfw.models.capture import enable_capture, fast_attention

    enable_capture(model)
    with fast_attention():
        return model(**_model_inputs(batch)).logits


def _hard_loss(logits, labels, regression: bool):
    import torch.nn.functional as F

    if logits.dim() == 3:  # token task: cross-entropy over the gold tags (-100 and -1 ignored), mean over words
        labels = labels.to(logits.device).masked_fill(labels.to(logits.device) < 0, -100)
        if not bool((labels >= 0).any()):
            return logits.float().sum() * 0.0  # no gold tag in the batch (augmented rows carry none)
        return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
    if regression:
        return F.mse_loss(logits.view(-1).float(), labels.float())
    return F.cross_entropy(logits.float(), labels)


def _soft_positions(logits: torch.Tensor, batch: Dict[str, Any]) -> torch.Tensor:
    """The student's logits where the teacher's soft targets are: every row ([B, C]), or for a
    token task ([B, T, C]) the word-initial positions (``labels != -100``) in row order."""
    if logits.dim() == 3:
        return logits[batch["labels"].to(logits.device) != -100]
    return logits


def prediction_loss_fn(pred_weight: float, temperature: float, regression: bool, fast: bool = False,
                       kind: str = "soft_ce", hard_label_weight: float = 0.0):
    """Module ``student``; batches carry the teacher's logits (``t_logits``): the prediction
    loss ``kind`` (:func:`~tinyfw.distill.losses.prediction_variant`; the default soft_ce is the
    Distiller's :func:`~tinyfw.distill.losses.soft_loss`: soft cross-entropy at ``temperature``,
    MSE to the teacher's output for a one-output head; the recipes' kl | mse) times
    ``pred_weight``, plus the hard-label loss times ``hard_label_weight`` (α; each logged
    unweighted); ``pred_weight`` 0 ("w/o Pred"): the hard labels alone (``regression``: MSE to
    them). A token classifier: the soft loss per word-initial position (``labels != -100``; the
    batch's ``t_logits`` are those positions' teacher logits, concatenated), mean over them.
    ``fast``: the student's attention on the fast path (:class:`~tinyfw.models.capture.fast_attention`:
    the same dropout draws)."""
    from tinyfw.distill.losses import prediction_variant

    def loss_fn(mods, batch):
        logits = _forward(mods["student"], batch, fast)
        if pred_weight <= 0:  # "w/o Pred": hard labels
            return _hard_loss(logits, batch["labels"], regression), {}
        soft = prediction_variant(_soft_positions(logits, batch), batch["t_logits"].to(logits.device), temperature, kind)
        logs = {"pred": float(soft.detach())}
        total = pred_weight * soft
        if hard_label_weight > 0:
            hard = _hard_loss(logits, batch["labels"], regression)
            logs["hard"] = float(hard.detach())
            total = total + hard_label_weight * hard
        return total, logs

    return loss_fn


def finetune_loss_fn(regression: bool):
    """Module ``student``: cross-entropy to the hard labels (MSE for regression)."""

    def loss_fn(mods, batch):
        return _hard_loss(mods["student"](**_model_inputs(batch)).logits, batch["labels"], regression), {}

    return loss_fn


def soft_entropy(logits: np.ndarray, temperature: float) -> float:
    """Mean entropy of softmax(logits / T) over rows: the soft cross-entropy's lower bound."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    z = z - z.max(-1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    return float(-(p * np.log(np.clip(p, 1e-12, None))).sum(-1).mean())
