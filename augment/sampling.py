"""Sampling of variants (Algorithm 1, lines 12-17): each replaceable word is swapped, with
probability ``p``, for a candidate drawn uniformly. Every row has its own random generator
seeded from ``(seed, row_id)``, so a row's variants do not depend on batching, sharding or
the other rows."""

from __future__ import annotations

from typing import List, Sequence, Tuple

import numpy as np

from augment.words import join_words


def row_rng(seed: int, row_id: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(row_id)])


def sample_one(words: Sequence[str], cands: Sequence[Sequence[str]], p: float, rng: np.random.Generator) -> List[str]:
    """One variant: word ``i`` becomes a uniform draw from ``cands[i]`` with probability ``p``."""
    out = list(words)
    for i, c in enumerate(cands):
        if c and rng.random() < p:
            out[i] = c[int(rng.integers(len(c)))]
    return out


def variants(original: str, words: Sequence[str], cands: Sequence[Sequence[str]], n_aug: int, p: float,
             rng: np.random.Generator) -> List[str]:
    """The original text, then up to ``n_aug`` distinct variants (duplicates and copies of the
    original dropped)."""
    out = [original]
    seen = {join_words(words), original}
    for _ in range(n_aug):
        s = join_words(sample_one(words, cands, p, rng))
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def pair_variants(originals: Tuple[str, str], words: Tuple[Sequence[str], Sequence[str]],
                  cands: Tuple[Sequence[Sequence[str]], Sequence[Sequence[str]]], n_aug: int, p: float,
                  rng: np.random.Generator) -> List[Tuple[str, str]]:
    """Sentence pairs: variant ``j`` changes side A when ``j`` is even and side B when odd,
    keeping the other side original. One side changed at a time keeps the relation between
    the two sentences (the label) as likely to hold as for single sentences, and both sides
    are augmented. The original pair comes first; duplicates are dropped."""
    out = [tuple(originals)]
    seen = {tuple(originals), (join_words(words[0]), join_words(words[1]))}
    for j in range(n_aug):
        side = j % 2
        changed = join_words(sample_one(words[side], cands[side], p, rng))
        pair = (changed, originals[1]) if side == 0 else (originals[0], changed)
        norm = (changed, join_words(words[1])) if side == 0 else (join_words(words[0]), changed)
        if pair not in seen and norm not in seen:
            seen.add(pair)
            seen.add(norm)
            out.append(pair)
    return out  # type: ignore[return-value]


def word_variants(words: Sequence[str], cands: Sequence[Sequence[str]], n_aug: int, p: float,
                  rng: np.random.Generator) -> List[List[str]]:
    """Word lists (token tasks): the original words, then up to ``n_aug`` distinct variants of
    the same length (draws as :func:`variants`; duplicates and copies of the original dropped)."""
    out = [list(words)]
    seen = {tuple(words)}
    for _ in range(n_aug):
        v = sample_one(words, cands, p, rng)
        if tuple(v) not in seen:
            seen.add(tuple(v))
            out.append(v)
    return out
