"""Optimizer and learning-rate schedule of :func:`tinyfw.train.loop.fit`: AdamW without weight
decay on biases and LayerNorm weights; linear warmup, then linear decay to 0 or a constant rate."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence

import torch
from torch import nn

from tinyfw.choices import Schedule, check
from tinyfw.config import plain


def param_groups(modules: Sequence[nn.Module], weight_decay: float) -> List[Dict[str, Any]]:
    """AdamW groups: decay on weight matrices, none on biases and LayerNorm/1-d parameters."""
    decay, no_decay, seen = [], [], set()
    for m in modules:
        for name, p in m.named_parameters():
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if p.ndim < 2 or name.endswith(".bias") or "LayerNorm" in name or "layer_norm" in name:
                no_decay.append(p)
            else:
                decay.append(p)
    if not decay and not no_decay:
        raise ValueError("fit(): the trainable modules have no parameter with requires_grad=True")
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_scheduler(opt: torch.optim.Optimizer, schedule: Any, warmup: int, total: int):
    """Linear warmup over ``warmup`` steps, then linear decay to 0 at ``total`` (``linear``) or
    a constant rate (``constant``: the reference code's TD step 1, which runs without schedule)."""
    from transformers import get_constant_schedule_with_warmup, get_linear_schedule_with_warmup

    if check(Schedule, plain(schedule), "schedule") == "linear":
        return get_linear_schedule_with_warmup(opt, warmup, total)
    return get_constant_schedule_with_warmup(opt, warmup)


def set_up(acc: Any, trainable: Dict[str, nn.Module], frozen: Dict[str, nn.Module], tc: Any, total: int,
           fused: bool = False):
    """Trainable modules in train mode (gradient checkpointing when ``tc`` asks), AdamW and its
    schedule over ``total`` steps, prepared by ``acc`` (DDP-wrapped when distributed; the schedule
    registered for checkpointing); frozen modules in eval mode, without gradients, on the device.
    ``fused``: torch's fused AdamW kernel (one pass over each parameter; the for-loop one otherwise).
    Returns (wrapped trainable modules, optimizer, scheduler, all modules by name for the loss,
    the parameters to clip)."""
    mods = list(trainable.values())
    if tc.grad_checkpointing:
        for m in mods:
            enable = getattr(m, "activation_checkpointing_enable", None) or getattr(m, "gradient_checkpointing_enable", None)
            if enable is not None:  # transformers 5 renamed it
                enable()
    for m in mods:
        m.train()
    opt = torch.optim.AdamW(param_groups(mods, tc.weight_decay), lr=tc.lr, fused=True if fused else None)
    sched = make_scheduler(opt, getattr(tc, "schedule", "linear"), int(round(tc.warmup_ratio * total)), total)
    prepared = acc.prepare(*mods, opt)
    prepared = prepared if isinstance(prepared, (list, tuple)) else (prepared,)
    wrapped, opt = list(prepared[:-1]), prepared[-1]
    acc.register_for_checkpointing(sched)  # stepped once per optimizer step, on every rank
    for m in frozen.values():
        m.eval().requires_grad_(False)
        m.to(acc.device)
    modules: Dict[str, nn.Module] = {**dict(zip(trainable, wrapped)), **frozen}
    params = [p for m in mods for p in m.parameters() if p.requires_grad]
    return wrapped, opt, sched, modules, params
