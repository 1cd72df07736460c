"""The TD training set: the augmented rows merged with the originals the augmenter did not
cover, capped to a number of rows (originals first), and tokenised for training."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def with_augmented(train, augmented, text_columns):
    """The augmented rows plus every original row the augmenter did not cover (it may be
    limited to the first ``augmenter.max_examples`` rows), with the train split's columns."""
    from datasets import concatenate_datasets

    cols = [*text_columns, "label"]
    covered = set(augmented["source_row"]) if "source_row" in augmented.column_names else set(range(len(train)))
    rest = [i for i in range(len(train)) if i not in covered]
    aug = augmented.select_columns(cols).cast(train.features.__class__({c: train.features[c] for c in cols}))
    orig = list(augmented["is_original"]) if "is_original" in augmented.column_names else [False] * len(aug)
    aug = aug.add_column("is_original", orig)
    if not rest:
        return aug
    extra = train.select(rest).select_columns(cols)
    extra = extra.add_column("is_original", [True] * len(extra))
    return concatenate_datasets([aug, extra])


def cap_examples(ds, cap: int, seed: int):
    """At most ``cap`` rows: every original row first (``is_original``), then a seeded sample
    of the augmented variants; dataset order kept."""
    if cap is None or cap < 0 or len(ds) <= cap:
        return ds
    rng = np.random.default_rng(seed)
    flags = np.asarray(ds["is_original"] if "is_original" in ds.column_names else [True] * len(ds), dtype=bool)
    orig, var = np.flatnonzero(flags), np.flatnonzero(~flags)
    if len(orig) >= cap:
        pick = rng.choice(orig, cap, replace=False)
    else:
        pick = np.concatenate([orig, rng.choice(var, cap - len(orig), replace=False)])
    return ds.select(np.sort(pick).tolist())


def encode_train(train, text_columns: Sequence[str], tokenizer, max_seq_len: int):
    """``train`` tokenised, with only the columns the model and the loss read."""
    from tinyfw.data.tasks import tokenize

    enc = tokenize(train, text_columns, tokenizer, max_seq_len)
    return enc.select_columns([c for c in ("input_ids", "attention_mask", "token_type_ids", "labels")
                               if c in enc.column_names])
