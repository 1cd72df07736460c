"""The unlabeled corpus as GD and the masked-LM adaptation read it: its part of their cache
keys, and its tokenised segments (cached by :func:`tinyfw.data.corpus.tokenize_and_segment`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from tinyfw.artefacts.keys import settings
from tinyfw.data.corpus import load_corpus, source_identity, tokenize_and_segment


def corpus_parts(corpus_cfg: Any, home: Optional[Path] = None) -> Dict[str, Any]:
    """The corpus settings a trained artefact depends on (``num_proc`` aside); with ``home``,
    local corpus files enter by path, size and mtime."""
    corpus = settings(corpus_cfg)  # num_proc: cadence
    if home is not None:
        corpus["identity"] = source_identity(corpus_cfg.source, home, corpus_cfg.config_name, corpus_cfg.split)
    return corpus


def corpus_segments(c: Any, tok: Any, home: Path, seed: int, heldout_fraction: float, streaming: bool,
                    rank: int = 0, world_size: int = 1) -> Tuple[Any, Any]:
    """(train, held-out) segments of ``max_seq_len`` tokens of the corpus ``c`` (``cfg.corpus``)."""
    docs = load_corpus(c.source, home, c.config_name, c.split, c.text_column, streaming, c.max_docs)
    key = {**source_identity(c.source, home, c.config_name, c.split), "text_column": c.text_column,
           "max_docs": c.max_docs}
    return tokenize_and_segment(docs, tok, c.max_seq_len, c.num_proc, heldout_fraction, seed,
                                home=home, key=key, rank=rank, world_size=world_size)
