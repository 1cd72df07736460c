"""The one training loop, on Accelerate, used by every training stage (GD, MLM adaptation,
teacher fine-tuning, TD steps 1 and 2): :func:`fit` trains ``trainable`` modules with a
caller's ``loss_fn`` beside ``frozen`` ones, under one precision, with resumable checkpoints
(same result as an uninterrupted run), periodic evaluation and best-weight restoring.
:mod:`tinyfw.train.batches` picks each micro-step's examples, :mod:`tinyfw.train.optim` the
optimizer and schedule, :mod:`tinyfw.train.checkpoint` writes and reads checkpoints.

The contract (arguments, data, checkpoints, ranks, gradient accumulation) and a usage
example: docs/internals.md, "The training loop".
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

from tinyfw.config import plain
from tinyfw.fingerprint import normalise
from tinyfw.precision import PRECISIONS
from tinyfw.train import checkpoint, optim
from tinyfw.train.batches import count_tokens, epoch_examples, plan

log = logging.getLogger("tinyfw.train")

LossFn = Callable[[Dict[str, nn.Module], Any], Tuple[torch.Tensor, Mapping[str, float]]]


@dataclass
class FitResult:
    steps: int  # optimizer steps done
    history: List[Dict[str, float]]  # one record per optimizer step: step, loss, logs, lr
    final: Dict[str, float]  # the last history record
    tokens: int  # tokens (attention-mask ones) seen across all processes
    tokens_per_s: float  # over the steps run in this call
    wall_time_s: float  # of the steps run in this call
    evals: List[Dict[str, Any]] = field(default_factory=list)  # {"step": n, **metrics}
    best_eval: Optional[Dict[str, Any]] = None
    resumed_from: Optional[int] = None  # step of the checkpoint resumed from
    total_steps: int = 0

    def mean(self, key: str = "loss", first: Optional[float] = None, last: Optional[float] = None) -> float:
        """Mean of ``key`` over the first or last fraction of the history (e.g. last=0.1)."""
        vals = [h[key] for h in self.history if key in h]
        if not vals:
            return float("nan")
        n = max(1, int(round(len(vals) * (first or last or 1.0))))
        sel = vals[:n] if first else vals[-n:]
        return float(sum(sel) / len(sel))


def make_accelerator(precision: str = "fp32", cpu: Optional[bool] = None, find_unused_parameters: bool = False):
    """An ``Accelerator`` with ``precision`` (fp32|bf16|fp16); CPU when asked or when
    ``ACCELERATE_USE_CPU`` is set or no GPU is present. ``find_unused_parameters``: DDP looks
    for trainable parameters the loss did not reach after every forward (slower; without it
    DDP fails at the second step of such a model)."""
    from accelerate import Accelerator

    precision = plain(precision)
    if precision not in PRECISIONS:  # `auto` is resolved before (tinyfw/precision.py)
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    if cpu is None:
        cpu = os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes") or not torch.cuda.is_available()
    if precision == "fp16" and cpu:  # Accelerate would silently run fp32
        raise ValueError("precision=fp16 needs a GPU (on CPU it would silently run in fp32); "
                         "use precision=bf16 on CPU")
    # Accelerate keeps one process-wide state and refuses a second precision; stages run one
    # after another in a process (pipeline, tests), so start each fit from a fresh state
    # (the distributed PartialState, i.e. the process group, is kept).
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state()
    from accelerate.utils import DistributedDataParallelKwargs

    ddp = DistributedDataParallelKwargs(find_unused_parameters=bool(find_unused_parameters))
    return Accelerator(mixed_precision="no" if precision == "fp32" else precision, cpu=cpu, kwargs_handlers=[ddp])


def _state_of(modules: Dict[str, nn.Module]) -> Dict[str, Dict[str, torch.Tensor]]:
    return {k: {n: t.detach().to("cpu", copy=True) for n, t in m.state_dict().items()} for k, m in modules.items()}


@dataclass
class _State:
    """Where a training stands: what each checkpoint's ``trainer_state.json`` records (and the
    best weights, kept beside it for ``restore_best``)."""

    step: int = 0  # optimizer steps done
    epoch: int = 0
    consumed: int = 0  # micro-batches of this epoch done
    tokens: int = 0
    history: List[Dict[str, float]] = field(default_factory=list)
    evals: List[Dict[str, Any]] = field(default_factory=list)
    best: Optional[Dict[str, Any]] = None  # the best eval record
    best_weights: Optional[Dict[str, Dict[str, torch.Tensor]]] = None

    def to_json(self, total: int, final: bool, fingerprint: Any) -> Dict[str, Any]:
        return {"step": self.step, "epoch": self.epoch, "consumed": self.consumed, "tokens": self.tokens,
                "total_steps": total, "history": self.history, "evals": self.evals, "best_eval": self.best,
                "final": final, "fingerprint": fingerprint}

    @classmethod
    def from_json(cls, st: Mapping[str, Any], best_weights: Any) -> "_State":
        return cls(st["step"], st["epoch"], st["consumed"], st["tokens"], st["history"], st.get("evals", []),
                   st.get("best_eval"), best_weights)


@dataclass
class _Options:
    """``fit``'s keyword arguments that the loop reads."""

    tracker: Any = None
    evaluate: Optional[Callable[[Dict[str, nn.Module]], Dict[str, float]]] = None
    desc: str = "train"
    eval_key: str = ""
    eval_mode: str = "max"
    restore_best: bool = False
    keep_checkpoints: int = 2
    log_prefix: str = ""
    ckpt_root: Optional[Path] = None
    fingerprint: Any = None


class _Trainer:
    """One ``fit`` call: the set-up, then the loop in named parts, as Lightning's step hooks and
    torchdistill's ``forward_process`` / ``post_forward_process``: :meth:`micro_step` (forward +
    backward of one micro-batch), :meth:`optimizer_step`, :meth:`log_step`, :meth:`evaluate`,
    :meth:`save`; :meth:`resume` and :meth:`finish` around them."""

    def __init__(self, acc: Any, trainable: Dict[str, nn.Module], frozen: Dict[str, nn.Module], loss_fn: LossFn,
                 dataset: Any, collate_fn: Callable[[list], Any], tc: Any, seed: int, shuffle: bool,
                 group_by_length: bool, opts: _Options, fast: bool = False):
        self.acc, self.trainable, self.loss_fn, self.tc, self.opts = acc, trainable, loss_fn, tc, opts
        self.dataset, self.collate_fn = dataset, collate_fn
        self.accum = max(1, int(tc.grad_accum))
        self.batches, self.micro_per_epoch, self.total = plan(dataset, tc, acc.num_processes, acc.process_index,
                                                              seed, shuffle, group_by_length)
        self.wrapped, self.opt, self.sched, self.modules, self.params = optim.set_up(acc, trainable, frozen, tc,
                                                                                    self.total, fused=fast)
        self.state = _State()
        self.resumed_from: Optional[int] = None
        self.sums: Dict[str, float] = {}  # of the accumulation group so far: loss, logs, _tokens
        self.n_micro = 0  # micro-batches in the accumulation group so far

    def resume(self, resume: bool) -> None:
        """Continue from the latest checkpoint (after checking its fingerprint), or discard them all."""
        root, acc = self.opts.ckpt_root, self.acc
        if root is not None and not resume:  # every rank: rank 0 removes, all wait
            checkpoint.discard(acc, root, self.opts.desc, log)
        existing = checkpoint.listing(root)
        if not existing:
            return
        self.resumed_from, path = existing[-1]
        self.state = s = _State.from_json(*checkpoint.load(acc, path, self.opts.fingerprint, self.opts.desc))
        if acc.is_main_process:
            log.info("%s: resumed from %s (step %d, epoch %d, %d batches in)", self.opts.desc, path, s.step, s.epoch,
                     s.consumed)

    def run(self) -> FitResult:
        """Train up to ``total`` steps (evaluating first on a fresh start), then evaluate, save, finish."""
        from tqdm.auto import tqdm

        if self.resumed_from is None:
            self.evaluate()  # step 0: where training starts (a collapse shows as no change from here)
        self.bar = tqdm(total=self.total, initial=self.state.step, desc=self.opts.desc,
                        disable=not self.acc.is_main_process, dynamic_ncols=True)
        t0, tokens0, step0 = time.perf_counter(), self.state.tokens, self.state.step
        self.window = (time.perf_counter(), self.state.tokens)  # the tokens/s of the last log_every steps
        while self.state.step < self.total:
            self.epoch()
        self.bar.close()
        wall = time.perf_counter() - t0
        if self.resumed_from is None or self.resumed_from < self.total:
            self.evaluate()
            self.save(final=True)
        tps = (self.state.tokens - tokens0) / wall if self.state.step > step0 and wall > 0 else 0.0
        return self.finish(tps, wall)

    def epoch(self) -> None:
        """The rest of the current epoch's batches, up to the end of training; a checkpoint at the
        epoch's last batch (or the data running out) moves on to the next epoch."""
        s, tc = self.state, self.tc
        got_any = False
        for raw in epoch_examples(self.dataset, self.batches, s.epoch, s.consumed, tc.batch_size, tc.num_workers):
            got_any = True
            last_of_epoch = self.micro_per_epoch is not None and s.consumed + 1 == self.micro_per_epoch
            if not self.micro_step(raw, last_of_epoch):
                continue
            self.log_step(self.optimizer_step())
            if tc.eval_every and s.step % tc.eval_every == 0 and s.step < self.total:
                self.evaluate()
            if s.step == self.total:
                return
            if tc.save_every and s.step % tc.save_every == 0:
                if last_of_epoch:
                    s.epoch, s.consumed = s.epoch + 1, 0
                self.save()
                if last_of_epoch:
                    return
        if not got_any and s.consumed == 0:
            raise ValueError("fit(): the dataset yielded no batch in an epoch")
        s.epoch, s.consumed = s.epoch + 1, 0

    def _group_size(self) -> int:
        """Micro-batches in the current accumulation group: ``grad_accum``, fewer for the last group
        of a map-style epoch (each group's mean loss is what one optimizer step follows)."""
        if not self.micro_per_epoch:
            return self.accum
        return min(self.accum, self.micro_per_epoch - (self.state.consumed - self.n_micro))

    def micro_step(self, raw: list, last_of_epoch: bool) -> bool:
        """Collate, forward (``loss_fn`` under autocast) and backward of one micro-batch, its loss
        scaled by the group size; gradients are synchronised across ranks only on the group's last
        micro-batch (DDP ``no_sync`` before). Returns whether the group is complete.

        Not ``Accelerator.accumulate``: its ``backward`` divides every loss by the fixed
        ``gradient_accumulation_steps`` (a short last group would weigh less than a full one), and
        it ends a group at an epoch's end only for a DataLoader it prepared (ours skips the
        consumed batches of a resumed epoch without collating them)."""
        from accelerate.utils import send_to_device

        acc = self.acc
        sync = self.n_micro + 1 == self.accum or last_of_epoch
        batch = send_to_device(self.collate_fn(raw), acc.device)
        n_tok = count_tokens(batch)
        with contextlib.ExitStack() as no_sync:
            if not sync and acc.num_processes > 1:
                for m in self.wrapped:
                    no_sync.enter_context(acc.no_sync(m))
            with acc.autocast():
                loss, logs = self.loss_fn(self.modules, batch)
            acc.backward(loss / self._group_size())
        self.state.consumed += 1
        self.n_micro += 1
        sums = self.sums
        sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        sums["_tokens"] = sums.get("_tokens", 0.0) + n_tok
        return sync

    def optimizer_step(self) -> Dict[str, float]:
        """Clip, step optimizer and scheduler; the step's history record: ``loss`` and the logs
        averaged over its micro-batches on every rank, ``lr``."""
        tc, acc, s = self.tc, self.acc, self.state
        if tc.max_grad_norm and tc.max_grad_norm > 0:
            acc.clip_grad_norm_(self.params, tc.max_grad_norm)
        self.opt.step()
        self.sched.step()
        self.opt.zero_grad(set_to_none=True)
        s.step += 1
        keys = sorted(self.sums)
        vec = torch.tensor([self.sums[k] for k in keys], dtype=torch.float64, device=acc.device)
        if acc.num_processes > 1:
            vec = acc.reduce(vec, reduction="sum")
        red = dict(zip(keys, vec.tolist()))
        s.tokens += int(red.pop("_tokens"))
        denom = self.n_micro * acc.num_processes
        rec = {"step": s.step, **{k: v / denom for k, v in red.items()}, "lr": self.sched.get_last_lr()[0]}
        s.history.append(rec)
        self.sums, self.n_micro = {}, 0
        return rec

    def log_step(self, rec: Dict[str, float]) -> None:
        """Rank 0: progress bar; every ``log_every`` steps (and the last) loss and tokens/s to the
        bar and the tracker (``<log_prefix>train/...``)."""
        if not self.acc.is_main_process:
            return
        step, now = self.state.step, time.perf_counter()
        self.bar.update(1)
        if step % max(1, self.tc.log_every) == 0 or step == self.total:
            tps = (self.state.tokens - self.window[1]) / max(now - self.window[0], 1e-9)
            self.window = (now, self.state.tokens)
            self.bar.set_postfix(loss=f"{rec['loss']:.4f}", tok_s=f"{tps:.0f}")
            if self.opts.tracker is not None:
                p = self.opts.log_prefix
                self.opts.tracker.log({f"{p}train/{k}": v for k, v in rec.items() if k != "step"}
                                   | {f"{p}train/tokens_per_s": tps}, step=step)

    def evaluate(self) -> None:
        """``evaluate(modules)`` in eval mode under autocast; the record joins ``evals`` and the
        tracker (``<log_prefix>eval/...``); a better ``eval_key`` becomes the best (with its weights
        for ``restore_best``)."""
        o, s = self.opts, self.state
        if o.evaluate is None:
            return
        for m in self.wrapped:
            m.eval()
        with torch.no_grad(), self.acc.autocast():
            metrics = dict(o.evaluate(self.modules))
        for m in self.wrapped:
            m.train()
        rec = {"step": s.step, **metrics}
        s.evals.append(rec)
        if o.tracker is not None and self.acc.is_main_process:
            o.tracker.log({f"{o.log_prefix}eval/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))},
                          step=s.step)
        key = o.eval_key or next(iter(metrics), "")
        if key in metrics:
            best = s.best
            if best is None or (metrics[key] > best[key] if o.eval_mode == "max" else metrics[key] < best[key]):
                s.best = rec
                if o.restore_best:
                    s.best_weights = _state_of(self.trainable)

    def save(self, final: bool = False) -> None:
        """Checkpoint ``step-N`` (``checkpoint.save``: written aside, renamed, older ones pruned)."""
        o = self.opts
        if o.ckpt_root is None:
            return
        checkpoint.save(self.acc, o.ckpt_root, self.state.step, self.state.to_json(self.total, final, o.fingerprint),
                        self.state.best_weights if o.restore_best else None, o.keep_checkpoints)

    def finish(self, tokens_per_s: float, wall: float) -> FitResult:
        """Restore the best weights (``restore_best``), drop Accelerate's wrappers, the result."""
        s = self.state
        if self.opts.restore_best and s.best_weights is not None:
            for k, m in self.trainable.items():
                m.load_state_dict(s.best_weights[k])
        for m in self.wrapped:  # mixed precision patched forward() with autocast in place: undo it, so the
            self.acc.unwrap_model(m, keep_fp32_wrapper=False)  # caller's model runs (and saves) as it loads
        res = FitResult(steps=s.step, history=s.history, final=s.history[-1] if s.history else {}, tokens=s.tokens,
                        tokens_per_s=tokens_per_s, wall_time_s=wall, evals=s.evals, best_eval=s.best,
                        resumed_from=self.resumed_from, total_steps=self.total)
        self.acc.wait_for_everyone()
        return res


def fit(
    trainable: Dict[str, nn.Module],
    loss_fn: LossFn,
    dataset: Any,
    collate_fn: Callable[[list], Any],
    train_cfg: Any,
    precision: str = "fp32",
    out_dir: Optional[str | Path] = None,
    tracker: Any = None,
    seed: int = 42,
    frozen: Optional[Dict[str, nn.Module]] = None,
    evaluate: Optional[Callable[[Dict[str, nn.Module]], Dict[str, float]]] = None,
    desc: str = "train",
    accelerator: Any = None,
    eval_key: str = "",
    eval_mode: str = "max",
    restore_best: bool = False,
    keep_checkpoints: int = 2,
    shuffle: bool = True,
    log_prefix: str = "",
    group_by_length: bool = False,
    fingerprint: Optional[Mapping[str, Any]] = None,
    resume: bool = True,
    find_unused_parameters: bool = False,
    fast: bool = False,
) -> FitResult:
    """Train ``trainable`` on ``dataset`` with ``loss_fn``; see the module docstring."""
    from accelerate.utils import set_seed

    from tinyfw.config import train_errors

    bad = train_errors(train_cfg)
    if bad:
        raise ValueError(f"fit(): {'; '.join(bad)}")
    frozen = dict(frozen or {})
    clash = set(trainable) & set(frozen)
    if clash:
        raise ValueError(f"fit(): module names used both as trainable and frozen: {sorted(clash)}")
    acc = accelerator or make_accelerator(precision, find_unused_parameters=find_unused_parameters)
    if find_unused_parameters and not getattr(getattr(acc, "ddp_handler", None), "find_unused_parameters", False):
        raise ValueError("fit(find_unused_parameters=True) with an own accelerator: make it with "
                         "make_accelerator(precision, find_unused_parameters=True)")
    if getattr(acc, "_models", None) or getattr(acc, "_custom_objects", None):
        raise ValueError("fit(): pass a fresh Accelerator (make_accelerator) per fit() call; this one "
                         "already holds models, and its checkpoints would mix two trainings")
    set_seed(seed)
    opts = _Options(tracker=tracker, evaluate=evaluate, desc=desc, eval_key=eval_key, eval_mode=eval_mode,
                    restore_best=restore_best, keep_checkpoints=keep_checkpoints, log_prefix=log_prefix,
                    ckpt_root=Path(out_dir) / "checkpoints" if out_dir is not None else None,
                    fingerprint=normalise(fingerprint))
    trainer = _Trainer(acc, trainable, frozen, loss_fn, dataset, collate_fn, train_cfg, seed, shuffle,
                       group_by_length, opts, fast)
    trainer.resume(resume)
    return trainer.run()
