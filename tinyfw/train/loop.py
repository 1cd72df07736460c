"""The one training loop, on Accelerate, used by every training stage (GD, MLM adaptation,
teacher fine-tuning, TD steps 1 and 2).

Usage::

    from tinyfw.train.loop import fit

    def loss_fn(modules, batch):            # modules = trainable + frozen, by name
        s = modules["student"](**batch)
        loss = ...
        return loss, {"mse": loss.item()}    # logs: floats, averaged per optimizer step

    res = fit({"student": student, "distiller": distiller}, loss_fn, dataset, collate,
              train_cfg, precision="bf16", out_dir=run_dir, tracker=ctx.tracker, seed=42,
              frozen={"teacher": teacher}, evaluate=None)
    res.history[-1]["loss"], res.tokens_per_s, res.steps

Contract:

- ``trainable``: modules whose ``requires_grad`` parameters are optimised (AdamW, no weight
  decay on biases and LayerNorm weights; linear warmup, then linear decay to 0 or, with
  ``schedule=constant``, a constant rate). They are trained
  in place: after ``fit`` the caller's objects hold the trained weights, and their forward is
  the plain one again (the bf16/fp16 autocast wrapper Accelerate adds is removed).
- ``frozen``: put in ``eval()`` with ``requires_grad=False`` and moved to the device; never
  wrapped in DDP and never saved in checkpoints. Every ``loss_fn`` call runs under
  ``accelerator.autocast()``, so frozen and trainable forwards share the precision
  (``fp32`` | ``bf16`` | ``fp16``). Run the teacher forward under ``torch.inference_mode()``
  yourself (and ``.clone()`` what enters the autograd graph).
- ``dataset``: a map-style dataset (``len`` + ``ds[i]`` / ``__getitems__``) or an iterable
  one. ``collate_fn(list_of_examples) -> dict of tensors`` runs in the main process, right
  before the step, so a collate that draws random numbers (MLM masking) stays reproducible
  across resume. Map-style data is shuffled per epoch from ``seed + epoch`` and sharded by
  rank: each optimizer micro-step consumes one *global* batch of ``batch_size x processes``
  examples, rank r taking slice r (so N processes with ``batch_size`` b see exactly what one
  process with ``b*N`` sees; a short last global batch is padded by wrapping around when
  N > 1). Iterable data is NOT sharded here: pass it already split per rank
  (``datasets.distributed.split_dataset_by_node``), and set ``max_steps``.
- ``train_cfg`` (``tinyfw.config.TrainCfg``): ``batch_size`` per process, ``grad_accum``,
  ``lr``, ``weight_decay``, ``warmup_ratio``, ``schedule`` (linear | constant),
  ``max_grad_norm`` (<=0: no clipping),
  ``epochs`` (may be fractional) or ``max_steps`` (>0 wins; counts optimizer steps),
  ``log_every``, ``save_every`` (0: checkpoint only at the end), ``eval_every`` (0: evaluate
  only at the end), ``num_workers``, ``grad_checkpointing``.
- Checkpoints (``tinyfw.train.checkpoint``): ``out_dir/checkpoints/step-N``
  (``accelerator.save_state``: trainable modules, optimizer, scheduler, RNG of every process;
  ``trainer_state.json``: epoch, batches consumed, history, evals, ``fingerprint``; with
  ``restore_best`` the best weights so far). Written to ``step-N.tmp`` and renamed; the last
  ``keep_checkpoints`` are kept. When ``out_dir/checkpoints`` holds one, ``fit`` resumes from
  the latest: a killed run restarted with the same arguments ends where an uninterrupted
  run ends (same parameters, same loss history, same restored best weights). A finished
  run's final checkpoint makes a re-run return at once. ``fingerprint`` (a JSON-able dict of
  what defines the training, chosen by the caller) is stored with each checkpoint; resuming
  with another one raises :class:`~tinyfw.train.checkpoint.ResumeError` naming the differing
  keys, and so does a checkpoint whose tensors do not fit the model. ``resume=False``
  discards existing checkpoints and trains from scratch.
- Rank 0 alone logs (tracker, progress bar) and writes checkpoints; every rank returns the
  same ``FitResult``. ``ACCELERATE_USE_CPU=true`` (or ``cpu=True``) keeps ``torchrun`` on
  CPU with gloo.
- ``evaluate(modules) -> dict`` runs before the first step (step 0, so a run that never
  leaves its starting point shows it), every ``eval_every`` steps and at the end (its
  metrics go to the tracker as ``eval/<name>``); ``eval_key`` + ``eval_mode`` pick the best,
  and ``restore_best=True`` reloads the best trainable weights at the end (kept with each
  checkpoint, so a resumed or re-run job restores the same ones).
- ``group_by_length``: map-style batches of similar length (``input_ids``), in random order.
- ``accelerator``: optional, a fresh one per ``fit`` (``make_accelerator(precision)``), for
  callers that need the rank before training (e.g. to shard a streaming corpus).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import nn

from tinyfw.fingerprint import normalise
from tinyfw.train import checkpoint

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


def make_accelerator(precision: str = "fp32", cpu: Optional[bool] = None):
    """An ``Accelerator`` with ``precision`` (fp32|bf16|fp16); CPU when asked or when
    ``ACCELERATE_USE_CPU`` is set or no GPU is present."""
    from accelerate import Accelerator

    precision = getattr(precision, "value", precision)
    if precision not in ("fp32", "bf16", "fp16"):
        raise ValueError(f"precision must be fp32, bf16 or fp16, got '{precision}'")
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
    # heads that a loss leaves out (a classifier's pooler + head in TD step 1) get no gradient:
    # DDP must be told, or it fails at the next step (one process simply skips them)
    from accelerate.utils import DistributedDataParallelKwargs

    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(mixed_precision="no" if precision == "fp32" else precision, cpu=cpu, kwargs_handlers=[ddp])


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

    name = str(getattr(schedule, "value", schedule))
    if name == "linear":
        return get_linear_schedule_with_warmup(opt, warmup, total)
    if name == "constant":
        return get_constant_schedule_with_warmup(opt, warmup)
    raise ValueError(f"unknown schedule {name!r}: use linear or constant")


def _count_tokens(batch: Any) -> int:
    if isinstance(batch, Mapping):
        if "attention_mask" in batch:
            return int(batch["attention_mask"].sum())
        if "input_ids" in batch:
            return int(batch["input_ids"].numel())
    return 0


class _Batches:
    """Deterministic per-epoch batches of a map-style dataset, sharded by rank.

    With ``lengths`` (one per example) batches are length-grouped: the shuffled order is cut
    into mega-batches of ``GROUP`` global batches, each sorted by length and cut into batches
    whose order is shuffled again, so a batch holds examples of similar length (less padding)
    while the data order stays random (as ``group_by_length`` in transformers' Trainer).
    """

    GROUP = 50

    def __init__(self, n: int, batch_size: int, world: int, rank: int, seed: int, shuffle: bool,
                 lengths: Optional[Sequence[int]] = None):
        self.n, self.bs, self.world, self.rank, self.seed, self.shuffle = n, batch_size, world, rank, seed, shuffle
        self.global_bs = batch_size * world
        self.lengths = list(lengths) if lengths is not None else None
        if self.lengths is not None and len(self.lengths) != n:
            raise ValueError(f"group_by_length: {len(self.lengths)} lengths for {n} examples")

    def __len__(self) -> int:
        return math.ceil(self.n / self.global_bs)

    def _global(self, epoch: int) -> List[List[int]]:
        gbs = self.global_bs
        if not self.shuffle:
            order = list(range(self.n))
            return [order[i : i + gbs] for i in range(0, self.n, gbs)]
        g = torch.Generator().manual_seed(self.seed + epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        if self.lengths is None:
            return [order[i : i + gbs] for i in range(0, self.n, gbs)]
        out: List[List[int]] = []
        mega = gbs * self.GROUP
        for m in range(0, self.n, mega):
            chunk = sorted(order[m : m + mega], key=lambda i: -self.lengths[i])
            group = [chunk[i : i + gbs] for i in range(0, len(chunk), gbs)]
            perm = torch.randperm(len(group), generator=g).tolist()
            out.extend(group[p] for p in perm)
        short = [b for b in out if len(b) < gbs]  # at most one: keep it last, as without grouping
        return [b for b in out if len(b) == gbs] + short

    def epoch(self, epoch: int) -> List[List[int]]:
        out = []
        for idx in self._global(epoch):
            if self.world > 1 and len(idx) < self.global_bs:  # equal work on every rank
                idx = idx + self._global(epoch)[0][: self.global_bs - len(idx)]
            out.append(idx[self.rank * self.bs : (self.rank + 1) * self.bs])
        return out


def _lengths(dataset: Any) -> List[int]:
    """Tokens per example (``input_ids``) of a map-style dataset, for length grouping."""
    names = getattr(dataset, "column_names", None)
    if names is not None:
        if "input_ids" not in names:
            raise ValueError("group_by_length needs an input_ids column")
        return [len(x) for x in dataset["input_ids"]]
    return [len(dataset[i]["input_ids"]) for i in range(len(dataset))]


def _identity(x: Any) -> Any:
    return x


def _epoch_iter(dataset: Any, batches: Optional[_Batches], epoch: int, skip: int, bs: int, num_workers: int) -> Iterator[list]:
    """Lists of raw examples for one epoch, the first ``skip`` batches left out."""
    from torch.utils.data import DataLoader

    # an own generator: creating a DataLoader iterator must not draw from the global RNG
    # (a resumed run creates it at a different point than an uninterrupted one)
    gen = torch.Generator().manual_seed(epoch)
    if batches is not None:
        plan = batches.epoch(epoch)[skip:]
        yield from DataLoader(dataset, batch_sampler=plan, collate_fn=_identity, num_workers=num_workers, generator=gen)
        return
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    it = iter(DataLoader(dataset, batch_size=bs, collate_fn=_identity, num_workers=num_workers, generator=gen))
    for _ in range(skip):  # raw examples only: the collate (and its RNG) is not run for them
        if next(it, None) is None:
            return
    yield from it


def _state_of(modules: Dict[str, nn.Module]) -> Dict[str, Dict[str, torch.Tensor]]:
    return {k: {n: t.detach().to("cpu", copy=True) for n, t in m.state_dict().items()} for k, m in modules.items()}


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
) -> FitResult:
    """Train ``trainable`` on ``dataset`` with ``loss_fn``; see the module docstring."""
    from accelerate.utils import send_to_device, set_seed
    from tqdm.auto import tqdm

    from tinyfw.config import train_errors

    bad = train_errors(train_cfg)
    if bad:
        raise ValueError(f"fit(): {'; '.join(bad)}")
    frozen = dict(frozen or {})
    clash = set(trainable) & set(frozen)
    if clash:
        raise ValueError(f"fit(): module names used both as trainable and frozen: {sorted(clash)}")
    acc = accelerator or make_accelerator(precision)
    if getattr(acc, "_models", None) or getattr(acc, "_custom_objects", None):
        raise ValueError("fit(): pass a fresh Accelerator (make_accelerator) per fit() call; this one "
                         "already holds models, and its checkpoints would mix two trainings")
    set_seed(seed)
    tc = train_cfg
    accum = max(1, int(tc.grad_accum))
    iterable = not hasattr(dataset, "__len__")
    if iterable and tc.max_steps <= 0:
        raise ValueError("fit(): an iterable (streaming) dataset has no length; set train.max_steps > 0")
    lengths = _lengths(dataset) if (not iterable and group_by_length) else None
    batches = None if iterable else _Batches(len(dataset), tc.batch_size, acc.num_processes, acc.process_index, seed,
                                             shuffle, lengths)
    if batches is not None and len(dataset) == 0:
        raise ValueError("fit(): the training dataset is empty")
    micro_per_epoch = len(batches) if batches is not None else None
    steps_per_epoch = math.ceil(micro_per_epoch / accum) if micro_per_epoch else None
    total = tc.max_steps if tc.max_steps > 0 else max(1, math.ceil(tc.epochs * steps_per_epoch))

    # models, optimizer, scheduler
    names = list(trainable)
    mods = [trainable[k] for k in names]
    if tc.grad_checkpointing:
        for m in mods:
            enable = getattr(m, "activation_checkpointing_enable", None) or getattr(m, "gradient_checkpointing_enable", None)
            if enable is not None:  # transformers 5 renamed it
                enable()
    for m in mods:
        m.train()
    opt = torch.optim.AdamW(param_groups(mods, tc.weight_decay), lr=tc.lr)
    sched = make_scheduler(opt, getattr(tc, "schedule", "linear"), int(round(tc.warmup_ratio * total)), total)
    prepared = acc.prepare(*mods, opt)
    prepared = prepared if isinstance(prepared, (list, tuple)) else (prepared,)
    wrapped, opt = list(prepared[:-1]), prepared[-1]
    acc.register_for_checkpointing(sched)  # stepped once per optimizer step, on every rank
    for m in frozen.values():
        m.eval().requires_grad_(False)
        m.to(acc.device)
    modules: Dict[str, nn.Module] = {**dict(zip(names, wrapped)), **frozen}
    params = [p for m in mods for p in m.parameters() if p.requires_grad]

    # resume
    ckpt_root = Path(out_dir) / "checkpoints" if out_dir is not None else None
    fingerprint = normalise(fingerprint)
    step, epoch, consumed, tokens = 0, 0, 0, 0
    history: List[Dict[str, float]] = []
    evals: List[Dict[str, Any]] = []
    best: Optional[Dict[str, Any]] = None
    best_state = None  # restore_best: the best trainable weights, saved with each checkpoint
    resumed_from = None
    if ckpt_root is not None and not resume:  # every rank: rank 0 removes, all wait
        checkpoint.discard(acc, ckpt_root, desc, log)
    existing = checkpoint.listing(ckpt_root)
    if existing:
        resumed_from, path = existing[-1]
        st, best_state = checkpoint.load(acc, path, fingerprint, desc)
        step, epoch, consumed, tokens = st["step"], st["epoch"], st["consumed"], st["tokens"]
        history, evals, best = st["history"], st.get("evals", []), st.get("best_eval")
        if acc.is_main_process:
            log.info("%s: resumed from %s (step %d, epoch %d, %d batches in)", desc, path, step, epoch, consumed)

    def save(final: bool = False) -> None:
        if ckpt_root is None:
            return
        state = {"step": step, "epoch": epoch, "consumed": consumed, "tokens": tokens, "total_steps": total,
                 "history": history, "evals": evals, "best_eval": best, "final": final, "fingerprint": fingerprint}
        checkpoint.save(acc, ckpt_root, step, state, best_state if restore_best else None, keep_checkpoints)

    def run_eval() -> None:
        nonlocal best, best_state
        if evaluate is None:
            return
        for m in wrapped:
            m.eval()
        with torch.no_grad(), acc.autocast():
            metrics = dict(evaluate(modules))
        for m in wrapped:
            m.train()
        rec = {"step": step, **metrics}
        evals.append(rec)
        if tracker is not None and acc.is_main_process:
            tracker.log({f"{log_prefix}eval/{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}, step=step)
        key = eval_key or next(iter(metrics), "")
        if key in metrics:
            better = best is None or (metrics[key] > best[key] if eval_mode == "max" else metrics[key] < best[key])
            if better:
                best = rec
                if restore_best:
                    best_state = _state_of(trainable)

    if resumed_from is None:
        run_eval()  # step 0: where training starts (a collapse shows as no change from here)
    bar = tqdm(total=total, initial=step, desc=desc, disable=not acc.is_main_process, dynamic_ncols=True)
    t0, tokens0, step0 = time.perf_counter(), tokens, step
    window = (time.perf_counter(), tokens)
    sums: Dict[str, float] = {}
    n_micro = 0
    while step < total:
        data = _epoch_iter(dataset, batches, epoch, consumed, tc.batch_size, tc.num_workers)
        exhausted, got_any = True, False
        for raw in data:
            got_any = True
            remaining_in_epoch = (micro_per_epoch - consumed - 1) if micro_per_epoch else None
            group_pos = n_micro  # position inside the accumulation group
            last_of_epoch = remaining_in_epoch == 0
            sync = group_pos + 1 == accum or last_of_epoch
            batch = send_to_device(collate_fn(raw), acc.device)
            n_tok = _count_tokens(batch)
            no_sync = contextlib.ExitStack()
            if not sync and acc.num_processes > 1:
                for m in wrapped:
                    no_sync.enter_context(acc.no_sync(m))
            with no_sync:
                with acc.autocast():
                    loss, logs = loss_fn(modules, batch)
                group = accum if not micro_per_epoch else min(accum, micro_per_epoch - (consumed - group_pos))
                acc.backward(loss / group)
            consumed += 1
            n_micro += 1
            sums["loss"] = sums.get("loss", 0.0) + float(loss.detach())
            for k, v in logs.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            sums["_tokens"] = sums.get("_tokens", 0.0) + n_tok
            if not sync:
                continue
            if tc.max_grad_norm and tc.max_grad_norm > 0:
                acc.clip_grad_norm_(params, tc.max_grad_norm)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            keys = sorted(sums)
            vec = torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=acc.device)
            if acc.num_processes > 1:
                vec = acc.reduce(vec, reduction="sum")
            red = dict(zip(keys, vec.tolist()))
            step_tokens = int(red.pop("_tokens"))
            tokens += step_tokens
            denom = n_micro * acc.num_processes
            rec = {"step": step, **{k: v / denom for k, v in red.items()}, "lr": sched.get_last_lr()[0]}
            history.append(rec)
            sums, n_micro = {}, 0
            now = time.perf_counter()
            if acc.is_main_process:
                bar.update(1)
                if step % max(1, tc.log_every) == 0 or step == total:
                    tps = (tokens - window[1]) / max(now - window[0], 1e-9)
                    window = (now, tokens)
                    bar.set_postfix(loss=f"{rec['loss']:.4f}", tok_s=f"{tps:.0f}")
                    if tracker is not None:
                        tracker.log({f"{log_prefix}train/{k}": v for k, v in rec.items() if k != "step"}
                                    | {f"{log_prefix}train/tokens_per_s": tps}, step=step)
            if tc.eval_every and step % tc.eval_every == 0 and step < total:
                run_eval()
            if step == total:
                exhausted = False
                break
            if tc.save_every and step % tc.save_every == 0:
                if last_of_epoch:
                    epoch, consumed = epoch + 1, 0
                save()
                if last_of_epoch:
                    exhausted = False
                    break
        if step >= total:
            break
        if exhausted:  # the epoch's data ran out (a save at the epoch end already moved on)
            if not got_any and consumed == 0:
                raise ValueError("fit(): the dataset yielded no batch in an epoch")
            epoch, consumed = epoch + 1, 0
    bar.close()
    wall = time.perf_counter() - t0
    if resumed_from is None or resumed_from < total:
        run_eval()
        save(final=True)
    if restore_best and best_state is not None:
        for k, m in trainable.items():
            m.load_state_dict(best_state[k])
    for m in wrapped:  # mixed precision patched forward() with autocast in place: undo it, so the
        acc.unwrap_model(m, keep_fp32_wrapper=False)  # caller's model runs (and saves) as it loads
    done = step - step0
    res = FitResult(
        steps=step,
        history=history,
        final=history[-1] if history else {},
        tokens=tokens,
        tokens_per_s=(tokens - tokens0) / wall if done and wall > 0 else 0.0,
        wall_time_s=wall,
        evals=evals,
        best_eval=best,
        resumed_from=resumed_from,
        total_steps=total,
    )
    acc.wait_for_everyone()
    return res
