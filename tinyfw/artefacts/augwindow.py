"""The augmenter's window (``augmenter.window``): only the words inside the first
``task.max_seq_len`` word pieces TD reads are augmented; the words beyond stay as they are in
every variant (:class:`augment.Window`).

Counted with the masked LM's tokenizer, or the teacher's when the two differ (one warning). The
window enters the cache key only when a text is longer than it, as a digest of how many words of
each cut text are read. README "Augmenting token tasks and only what the student reads".
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from omegaconf import DictConfig

from tinyfw import cache, paths

log = logging.getLogger("tinyfw.augment")
PROBE = "Héllo WORLD, naïve co-operation in the 1990s: don't!"
BATCH = 1000  # rows per tokenizer call


def is_word_list(feature: Any) -> bool:
    """A ``datasets`` feature holding lists of strings (a token task's words)."""
    inner = getattr(feature, "feature", None)
    return type(feature).__name__ in ("Sequence", "List", "LargeList") and \
        getattr(inner, "dtype", None) in ("string", "large_string")


@dataclass
class WindowPlan:
    max_seq_len: int
    tokenizer: Any  # counts the window
    counted_with: str  # "masked LM's tokenizer" | "teacher's tokenizer"
    texts_cut: int
    words_beyond: int
    digest: str  # of (row, words read per segment) of every cut row

    def key(self) -> Dict[str, Any]:
        return {"max_seq_len": self.max_seq_len, "read": self.digest}

    def augmenter_args(self) -> Dict[str, Any]:
        return {"max_seq_len": self.max_seq_len, "window_tokenizer": self.tokenizer}

    def describe(self) -> Dict[str, Any]:
        return {"max_seq_len": self.max_seq_len, "texts_cut": self.texts_cut,
                "words_beyond_window": self.words_beyond, "counted_with": self.counted_with}

    def summary(self, rows: int) -> str:
        return (f"{self.texts_cut} texts of {rows} rows are longer than the {self.max_seq_len} word pieces TD reads "
                f"(task.max_seq_len): only their words inside are augmented, {self.words_beyond} words beyond "
                f"the window stay as they are (augmenter.window=false augments whole texts)")


def _reads(tokenizer: Any, max_seq_len: int, ds, cols: Sequence[str]) -> Tuple[List[Any], int, int]:
    from augment import Window

    win = Window(tokenizer, max_seq_len)
    cut: List[Any] = []
    row = 0
    for batch in ds.select_columns(list(cols)).iter(batch_size=BATCH):
        a = batch[cols[0]]
        for i, r in enumerate(win.read(a, batch[cols[1]] if len(cols) == 2 else None)):
            if r != (None, None):
                cut.append([row + i, *r])
        row += len(a)
    return cut, win.texts_cut, win.words_beyond


def same_tokenization(a: Any, b: Any) -> bool:
    return a.get_vocab() == b.get_vocab() and a.tokenize(PROBE) == b.tokenize(PROBE)


def _mlm_tokenizer(cfg: DictConfig, home: Path) -> Tuple[Any, bool]:
    """(the masked LM's tokenizer, whether it is the teacher's by construction)."""
    from tinyfw.models.load import load_tokenizer

    if str(cfg.augmenter.mlm) == "mlm":
        from tinyfw.artefacts.mlm import base_path_and_tokenizer

        return base_path_and_tokenizer(cfg, home)[1], str(cfg.mlm.base) == "teacher"
    return load_tokenizer(paths.resolve_name_or_path(str(cfg.augmenter.mlm), home), home), False


def _teacher_tokenizer(cfg: DictConfig, home: Path) -> Any:
    from tinyfw.models.load import teacher_path, teacher_tokenizer

    try:
        return teacher_tokenizer(cfg.teacher, home, teacher_path(cfg.teacher, home))
    except Exception as e:  # noqa: BLE001 - any failure to load it is reported the same way
        raise ValueError(
            f"augmenter.window: texts are longer than task.max_seq_len={cfg.task.max_seq_len} word pieces, and the "
            f"teacher's tokenizer (to check that augmenter.mlm={cfg.augmenter.mlm} counts pieces as the student "
            f"does) cannot be loaded ({type(e).__name__}: {str(e).splitlines()[0]}). Provision the teacher (`stage=assets`) or set "
            "augmenter.window=false to augment whole texts"
        ) from e


def window_plan(cfg: DictConfig, home: Path, ds, cols: Sequence[str]) -> Optional[WindowPlan]:
    """The window over ``ds`` (``None`` with ``augmenter.window=false``)."""
    if not bool(cfg.augmenter.get("window", True)):
        return None
    max_len = int(cfg.task.max_seq_len)
    tok, by_construction = _mlm_tokenizer(cfg, home)
    cut, n_cut, beyond = _reads(tok, max_len, ds, cols)
    counted_with = "masked LM's tokenizer"
    if n_cut and not by_construction:
        teacher = _teacher_tokenizer(cfg, home)
        if not same_tokenization(tok, teacher):
            log.warning("augment: the masked LM's tokenizer (augmenter.mlm=%s) is not the teacher's: the window of "
                        "task.max_seq_len=%d word pieces is counted with the teacher's tokenizer, as TD reads the "
                        "texts", cfg.augmenter.mlm, max_len)
            tok, counted_with = teacher, "teacher's tokenizer"
            cut, n_cut, beyond = _reads(tok, max_len, ds, cols)
    digest = cache.digest([json.dumps(cut).encode()])
    return WindowPlan(max_len, tok, counted_with, n_cut, beyond, digest)
