"""Vocabulary pruning: keep only the word pieces some texts use (plus the special tokens),
and remap a classifier's word embeddings and its WordPiece tokenizer to them.

WordPiece tokenises greedily, longest piece first; every piece the original tokenizer picks for
a kept text is kept, and no kept piece is longer than the one it picked, so the pruned tokenizer
splits those texts exactly as before (``check_same_tokens`` verifies it). Texts with words the
kept pieces cannot spell get ``[UNK]`` for those words.
"""

from __future__ import annotations

from typing import Any, Iterable, List, Sequence, Tuple, Union

import torch

Text = Union[str, Tuple[str, str], List[str]]  # one text, a sentence pair or a token task's words


def _batches(texts: Iterable[Text], size: int) -> Iterable[List[Text]]:
    batch: List[Text] = []
    for t in texts:
        batch.append(t)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _encode(tokenizer: Any, batch: Sequence[Text], max_length: int = 0) -> List[List[int]]:
    pairs = [t for t in batch if isinstance(t, tuple)]
    trunc = {"truncation": True, "max_length": max_length} if max_length else {}
    if batch and all(isinstance(t, list) for t in batch):  # a token task's sentences: lists of words
        enc = tokenizer(list(batch), is_split_into_words=True, **trunc)
    elif pairs and len(pairs) == len(batch):
        enc = tokenizer([a for a, _ in batch], [b for _, b in batch], **trunc)
    else:
        enc = tokenizer(list(batch), **trunc)
    return enc["input_ids"]


def used_token_ids(tokenizer: Any, texts: Iterable[Text], batch_size: int = 1000) -> List[int]:
    """Sorted ids of every word piece the tokenizer produces for ``texts`` (no truncation)."""
    used = set()
    for batch in _batches(texts, batch_size):
        for ids in _encode(tokenizer, batch):
            used.update(ids)
    return sorted(used)


def keep_ids(tokenizer: Any, used: Iterable[int]) -> List[int]:
    """The ids to keep, in the original order: ``used`` plus every special token."""
    return sorted(set(used) | set(tokenizer.all_special_ids))


def prune_tokenizer(tokenizer: Any, keep: Sequence[int]) -> Any:
    """A BERT WordPiece tokenizer over the kept pieces (new id = position in ``keep``), with
    the original's normalisation and special tokens."""
    from transformers import BertTokenizerFast

    if not isinstance(tokenizer, BertTokenizerFast):
        raise TypeError(f"vocabulary pruning supports BERT WordPiece tokenizers, not {type(tokenizer).__name__}; "
                        "set export.prune=false")
    inv = {i: t for t, i in tokenizer.get_vocab().items()}
    missing = [i for i in keep if i not in inv]
    if missing:
        raise ValueError(f"ids {missing[:5]} are not in the tokenizer's vocabulary")
    new = BertTokenizerFast(
        vocab={inv[i]: n for n, i in enumerate(keep)},
        do_lower_case=tokenizer.do_lower_case, tokenize_chinese_chars=tokenizer.tokenize_chinese_chars,
        strip_accents=tokenizer.strip_accents, unk_token=tokenizer.unk_token, sep_token=tokenizer.sep_token,
        pad_token=tokenizer.pad_token, cls_token=tokenizer.cls_token, mask_token=tokenizer.mask_token,
        model_max_length=tokenizer.model_max_length,
    )
    return new


def prune_embeddings(model: Any, keep: Sequence[int]) -> Any:
    """``model`` (in place) with word-embedding rows ``keep`` only; config vocab and pad id remapped."""
    if model.get_output_embeddings() is not None:
        raise TypeError(f"{type(model).__name__} has an output (LM) head tied to the vocabulary; "
                        "pruning supports classifiers (…ForSequenceClassification)")
    old = model.get_input_embeddings()
    idx = torch.as_tensor(list(keep), dtype=torch.long)
    pad = model.config.pad_token_id
    new_pad = list(keep).index(pad) if pad is not None and pad in keep else None
    new = torch.nn.Embedding(len(keep), old.embedding_dim, padding_idx=new_pad)
    with torch.no_grad():
        new.weight.copy_(old.weight[idx])
    model.set_input_embeddings(new)
    model.config.vocab_size = len(keep)
    model.config.pad_token_id = new_pad
    return model


def check_same_tokens(old_tok: Any, new_tok: Any, keep: Sequence[int], texts: Iterable[Text],
                      max_length: int = 0, batch_size: int = 1000) -> int:
    """Raise unless ``new_tok`` splits every text into the same pieces as ``old_tok`` (ids
    mapped through ``keep``). Returns the number of texts checked."""
    keep_t = list(keep)
    n = 0
    for batch in _batches(texts, batch_size):
        for t, a, b in zip(batch, _encode(old_tok, batch, max_length), _encode(new_tok, batch, max_length)):
            if [keep_t[i] for i in b] != a:
                raise RuntimeError(f"the pruned tokenizer splits {t!r} differently: {a} vs {[keep_t[i] for i in b]}")
        n += len(batch)
    return n
