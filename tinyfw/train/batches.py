"""Which examples each micro-step of :func:`tinyfw.train.loop.fit` gets, on every rank.

Map-style data is shuffled per epoch from ``seed + epoch`` (optionally length-grouped) and cut
into *global* batches of ``batch_size x processes`` examples, rank r taking slice r; iterable
data is read as it comes (already split per rank by the caller). A resumed epoch skips the
batches already consumed without collating them.
"""

from __future__ import annotations

import math
from typing import Any, Iterator, List, Mapping, Optional, Sequence, Tuple

import torch


class Batches:
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


def example_lengths(dataset: Any) -> List[int]:
    """Tokens per example (``input_ids``) of a map-style dataset, for length grouping."""
    names = getattr(dataset, "column_names", None)
    if names is not None:
        if "input_ids" not in names:
            raise ValueError("group_by_length needs an input_ids column")
        return [len(x) for x in dataset["input_ids"]]
    return [len(dataset[i]["input_ids"]) for i in range(len(dataset))]


def plan(dataset: Any, tc: Any, world: int, rank: int, seed: int, shuffle: bool,
         group_by_length: bool) -> Tuple[Optional[Batches], Optional[int], int]:
    """(the batches of a map-style dataset or None, micro-batches per epoch or None, optimizer
    steps in all: ``max_steps``, else ``epochs`` x steps per epoch) for ``train_cfg`` ``tc``."""
    accum = max(1, int(tc.grad_accum))
    iterable = not hasattr(dataset, "__len__")
    if iterable and tc.max_steps <= 0:
        raise ValueError("fit(): an iterable (streaming) dataset has no length; set train.max_steps > 0")
    lengths = example_lengths(dataset) if (not iterable and group_by_length) else None
    batches = None if iterable else Batches(len(dataset), tc.batch_size, world, rank, seed, shuffle, lengths)
    if batches is not None and len(dataset) == 0:
        raise ValueError("fit(): the training dataset is empty")
    micro_per_epoch = len(batches) if batches is not None else None
    steps_per_epoch = math.ceil(micro_per_epoch / accum) if micro_per_epoch else None
    total = tc.max_steps if tc.max_steps > 0 else max(1, math.ceil(tc.epochs * steps_per_epoch))
    return batches, micro_per_epoch, total


def _identity(x: Any) -> Any:
    return x


def epoch_examples(dataset: Any, batches: Optional[Batches], epoch: int, skip: int, bs: int,
                   num_workers: int) -> Iterator[list]:
    """Lists of raw examples for one epoch, the first ``skip`` batches left out."""
    from torch.utils.data import DataLoader

    # an own generator: creating a DataLoader iterator must not draw from the global RNG
    # (a resumed run creates it at a different point than an uninterrupted one)
    gen = torch.Generator().manual_seed(epoch)
    if batches is not None:
        todo = batches.epoch(epoch)[skip:]
        yield from DataLoader(dataset, batch_sampler=todo, collate_fn=_identity, num_workers=num_workers, generator=gen)
        return
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    it = iter(DataLoader(dataset, batch_size=bs, collate_fn=_identity, num_workers=num_workers, generator=gen))
    for _ in range(skip):  # raw examples only: the collate (and its RNG) is not run for them
        if next(it, None) is None:
            return
    yield from it


def count_tokens(batch: Any) -> int:
    """Attention-mask ones of a collated batch (all ``input_ids`` without a mask; 0 otherwise)."""
    if isinstance(batch, Mapping):
        if "attention_mask" in batch:
            return int(batch["attention_mask"].sum())
        if "input_ids" in batch:
            return int(batch["input_ids"].numel())
    return 0
