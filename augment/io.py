"""Loading the augmenter's inputs: a masked LM (with its head checked) and word vectors."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

import numpy as np


def load_masked_lm(name_or_path: str, device: Optional[str] = None):
    """``(model, tokenizer)`` of a masked LM; a checkpoint without trained MLM-head weights
    (e.g. a plain ``BertModel``) is refused instead of getting a random head."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model, info = AutoModelForMaskedLM.from_pretrained(name_or_path, output_loading_info=True)
    fresh = [k for k in info.get("missing_keys", []) if not k.endswith("position_ids")]
    if fresh:
        raise ValueError(
            f"{name_or_path} has no trained masked-LM head (missing weights: {sorted(fresh)[:4]}...). "
            "The augmenter needs a masked LM: use a masked-LM checkpoint (e.g. bert-base-uncased) or "
            "adapt an encoder with `python -m tinyfw stage=mlm`."
        )
    tok = AutoTokenizer.from_pretrained(name_or_path)
    if device:
        model.to(device)
    return model.eval(), tok


def load_vectors(path: str | Path):
    """Word vectors as gensim ``KeyedVectors``: a gensim ``.kv`` file (memory-mapped) or a
    word2vec/GloVe text file (a GloVe file has no header line; both are accepted)."""
    from gensim.models import KeyedVectors

    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"word-vector file {path} does not exist. Give a gensim KeyedVectors file (.kv) or a "
            "GloVe .txt file (e.g. glove.6B.300d.txt), or provision the default with "
            "`python -m tinyfw stage=assets` (glove-50d)."
        )
    if path.suffix in (".txt", ".vec") or path.name.endswith((".txt.gz", ".vec.gz")):
        import gzip

        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as f:
            first = f.readline().split()
        header = len(first) == 2 and all(x.isdigit() for x in first)
        return KeyedVectors.load_word2vec_format(str(path), binary=False, no_header=not header)
    if path.suffix == ".bin":
        return KeyedVectors.load_word2vec_format(str(path), binary=True)
    return KeyedVectors.load(str(path), mmap="r")


def random_vectors(words: Iterable[str], dim: int = 16, seed: int = 0):
    """Deterministic random ``KeyedVectors`` over ``words`` (lower-cased, sorted): smoke runs."""
    from gensim.models import KeyedVectors

    vocab = sorted({w.lower() for w in words if w.strip()})
    if not vocab:
        raise ValueError("random_vectors needs at least one word")
    rng = np.random.default_rng(seed)
    kv = KeyedVectors(dim)
    kv.add_vectors(vocab, rng.standard_normal((len(vocab), dim)).astype(np.float32))
    return kv
