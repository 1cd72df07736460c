"""Token-classification tasks (NER, POS): one tag per word. Splits hold ``tokens`` (words) and
``label`` (one tag index per word, ``-1`` = no gold tag); after tokenisation the tag sits on a
word's first piece and ``-100`` elsewhere. Sources (``conll2003``, ``pos``, ``smoke_token``,
custom CoNLL or list files, hub names) and label names: docs/internals.md, "Token-classification tasks".
"""

from __future__ import annotations

import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from tinyfw.data.taskdata import TaskData, TaskDataError, load_file, split_name

log = logging.getLogger(__name__)

IGNORE = -100  # a position that is not a word's first piece: no tag, no prediction
TEXT_SUFFIXES = (".txt", ".conll", ".bio", ".iob", ".tsv")  # CoNLL-style text
CONLL_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]
SMOKE_FILE = Path(__file__).with_name("smoke_token.conll")


@dataclass(frozen=True)
class TokenSpec:
    """A registry token task: where it comes from and the name of its tags column there."""

    source: str  # `asset:<name>`, `package` (SMOKE_FILE)
    tags_column: str
    labels: Optional[List[str]] = None


TOKEN_TASKS: Dict[str, TokenSpec] = {
    "conll2003": TokenSpec("asset:conll2003", "ner_tags", CONLL_LABELS),
    "pos": TokenSpec("asset:pos", "pos_tags"),
    "smoke_token": TokenSpec("package", "ner_tags"),
}


class TokenDataError(ValueError):
    """Malformed token-task data (named with its file, line and fix)."""


# --------------------------------------------------------------------------------------
# tag sets and metrics


def scheme_of(names: Sequence[str]) -> Optional[str]:
    """``IOB2`` / ``IOBES`` for an entity tag set (every tag ``O`` or ``X-TYPE``), else None."""
    prefixes = set()
    for n in names:
        if n == "O":
            continue
        m = re.fullmatch(r"([BIESLU])-(.+)", n)
        if not m:
            return None
        prefixes.add(m.group(1))
    if not prefixes or not prefixes <= {"B", "I", "E", "S"}:
        return None
    return "IOBES" if prefixes & {"E", "S"} else "IOB2"


def metrics_for_tags(names: Sequence[str]) -> Tuple[List[str], str]:
    """(metrics, main): entity P/R/F1 + token accuracy for an entity tag set (main: entity
    F1), token accuracy for any other tag set (POS)."""
    if scheme_of(names):
        return ["entity_f1", "entity_precision", "entity_recall", "token_accuracy"], "entity_f1"
    return ["token_accuracy"], "token_accuracy"


# --------------------------------------------------------------------------------------
# reading


def _check_tag(tag: str, where: str, declared: Optional[Dict[str, int]], fix_key: str) -> None:
    if re.fullmatch(r"[BIESLU]-", tag):
        raise TokenDataError(f"{where}: tag '{tag}' has no entity type; write {tag}TYPE (e.g. {tag}PER)")
    if declared is not None and tag not in declared:
        raise TokenDataError(f"{where}: tag '{tag}' is not among the task's tags {sorted(declared)}; "
                             f"add it to {fix_key} (or set task.labels=[] to take the train split's tags)")


def read_conll(path: Path, tag_field: int = -1) -> List[Tuple[List[str], List[str], int]]:
    """Sentences of a CoNLL-style file: (words, tags, line of the first word). A line with one
    field, or too few fields for ``tag_field``, is refused naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise TokenDataError(f"token task file not found: {path}")
    out: List[Tuple[List[str], List[str], int]] = []
    words: List[str] = []
    tags: List[str] = []
    start = 0
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            fields = line.split()
            if not fields:
                if words:
                    out.append((words, tags, start))
                words, tags = [], []
                continue
            if fields[0] == "-DOCSTART-":
                continue
            if len(fields) < 2:
                raise TokenDataError(f"{path}:{i}: one field {fields[0]!r}; a line needs the word and its tag "
                                     f"('word ... tag', whitespace-separated; a blank line between sentences)")
            if not -len(fields) <= tag_field < len(fields) or tag_field == 0:
                raise TokenDataError(f"{path}:{i}: {len(fields)} fields, no tag in field {tag_field} "
                                     f"(task.tag_field; -1 = the last field, 0 is the word)")
            if not words:
                start = i
            words.append(fields[0])
            tags.append(fields[tag_field])
    if words:
        out.append((words, tags, start))
    if not out:
        raise TokenDataError(f"{path}: no sentences (expected 'word ... tag' lines, a blank line between sentences)")
    return out


def _conll_split(path: Path, tag_field: int):
    """A CoNLL file as a dataset of ``tokens`` / ``tags`` (tag names) / ``__line``."""
    from datasets import Dataset

    sents = read_conll(path, tag_field)
    return Dataset.from_dict({"tokens": [s[0] for s in sents], "tags": [s[1] for s in sents],
                              "__line": [s[2] for s in sents]})


def _list_split(ds, where: str, tokens_column: str, tags_column: str):
    """A dataset with list columns as ``tokens`` / ``tags`` (names, or indices to map) / ``__line``."""
    from datasets import ClassLabel

    cols = list(ds.column_names)
    for c, key in ((tokens_column, "task.tokens_column"), (tags_column, "task.tags_column")):
        if c not in cols:
            raise TokenDataError(f"{where}: column '{c}' not found ({key}); available columns: {cols}")
    feat = ds.features[tags_column]
    inner = getattr(feat, "feature", None)
    names = inner.names if isinstance(inner, ClassLabel) else None
    toks, tags = ds[tokens_column], ds[tags_column]
    for r, (w, t) in enumerate(zip(toks, tags)):
        if w is None or t is None or len(w) != len(t):
            raise TokenDataError(f"{where}: row {r} has {len(w or [])} words in '{tokens_column}' but "
                                 f"{len(t or [])} tags in '{tags_column}'; give one tag per word")
        if not w:  # an empty sentence: refused, not dropped (as a custom task's empty text cell)
            raise TokenDataError(f"{where}: row {r} has no words in '{tokens_column}' (task.tokens_column): "
                                 "fill it in or remove the row")
        blank = next((j for j, x in enumerate(w) if x is None or not str(x).strip()), None)
        if blank is not None:  # a word with no characters gets no word piece, so its tag would vanish
            raise TokenDataError(f"{where}: row {r} word {blank} in '{tokens_column}' (task.tokens_column) is empty: "
                                 "remove the word and its tag, or fill it in")
    if names is not None:
        tags = [[names[i] if i >= 0 else -1 for i in row] for row in tags]
    from datasets import Dataset

    return Dataset.from_dict({"tokens": [[str(w) for w in row] for row in toks], "tags": tags,
                              "__row": list(range(len(toks)))}), names


def _at(ds, where: str):
    """``(row, j) -> where`` naming a CoNLL file's line (``path:line``) or a list file's row."""
    if "__line" in ds.column_names:
        lines = ds["__line"]
        return lambda r, j: f"{where.split('[')[0]}:{lines[r] + j}"
    return lambda r, j: f"{where} row {r} word {j}"


def _encode(ds, where: str, names: List[str], declared: bool):
    """``tokens`` + ``label`` (tag indices) from ``tokens`` / ``tags``; unknown tags refused."""
    from datasets import Dataset, Features, Sequence as Seq, Value

    index = {n: i for i, n in enumerate(names)}
    fix = "task.labels" if declared else "the train split's tags (or declare task.labels)"
    at = _at(ds, where)
    labels = []
    for r, row in enumerate(ds["tags"]):
        enc = []
        for j, t in enumerate(row):
            if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
                if not (t == -1 or 0 <= t < len(names)):
                    raise TokenDataError(f"{at(r, j)}: tag index {t} outside 0..{len(names) - 1} of {names}; "
                                         f"fix the data or task.labels")
                enc.append(int(t))
                continue
            t = str(t)
            _check_tag(t, at(r, j), index, fix)
            enc.append(index[t])
        labels.append(enc)
    feats = Features({"tokens": Seq(Value("string")), "label": Seq(Value("int64"))})
    return Dataset.from_dict({"tokens": ds["tokens"], "label": labels}, features=feats)


def _raw_from_files(files: Dict[str, str], task_cfg: Any) -> Dict[str, Tuple[Any, str, Optional[List[str]]]]:
    out = {}
    for split, p in files.items():
        path = Path(p).expanduser()
        if path.suffix.lower() in TEXT_SUFFIXES:
            out[split_name(split)] = (_conll_split(path, int(task_cfg.tag_field)), str(path), None)
        else:
            ds = load_file(path, split)
            conv, names = _list_split(ds, str(path), task_cfg.tokens_column, task_cfg.tags_column)
            out[split_name(split)] = (conv, str(path), names)
    return out


def _raw_from_hub(path: str, task_cfg: Any, tags_column: str, config_name: Optional[str] = None):
    from datasets import load_dataset

    raw = load_dataset(path, config_name) if config_name else load_dataset(path)
    out = {}
    for s, ds in raw.items():
        conv, names = _list_split(ds, f"{path}[{s}]", task_cfg.tokens_column, tags_column)
        out[split_name(s)] = (conv, f"{path}[{s}]", names)
    return out


def _raw_from_disk(root: Path, task_cfg: Any, tags_column: str):
    from datasets import load_from_disk

    raw = load_from_disk(str(root))
    out = {}
    for s, ds in raw.items():
        conv, names = _list_split(ds, f"{root}[{s}]", task_cfg.tokens_column, tags_column)
        out[split_name(s)] = (conv, f"{root}[{s}]", names)
    return out


def _smoke_raw() -> Dict[str, Tuple[Any, str, None]]:
    """The packaged 40 sentences, split 28/6/6 by a fixed shuffle."""
    from datasets import Dataset

    sents = read_conll(SMOKE_FILE)
    random.Random(0).shuffle(sents)
    cut = {"train": (0, 28), "validation": (28, 34), "test": (34, 40)}
    return {s: (Dataset.from_dict({"tokens": [x[0] for x in sents[a:b]], "tags": [x[1] for x in sents[a:b]],
                                   "__line": [x[2] for x in sents[a:b]]}), f"{SMOKE_FILE}[{s}]", None)
            for s, (a, b) in cut.items()}


def load_token_task(task_cfg: Any, home: Path):
    """Load a token task (registry name, or ``custom`` with ``task.type=token``) as TaskData."""
    from tinyfw import paths

    name = task_cfg.name
    files = dict(task_cfg.get("files") or {}) if hasattr(task_cfg, "get") else dict(task_cfg.files or {})
    declared = [str(x) for x in (task_cfg.labels or [])]
    spec = TOKEN_TASKS.get(name)
    hub = str(getattr(task_cfg, "hub_path", "") or "")
    if files:
        if "train" not in files:
            raise TaskDataError(f"task.files needs a 'train' entry; got splits {sorted(files)}")
        raw, source = _raw_from_files(files, task_cfg), "files"
    elif hub:
        tags_column = spec.tags_column if spec and task_cfg.tags_column == "ner_tags" else task_cfg.tags_column
        raw, source = _raw_from_hub(hub, task_cfg, tags_column), f"hub:{hub}"
    elif spec is not None and spec.source == "package":
        raw, source = _smoke_raw(), f"package:{SMOKE_FILE.name}"
    elif spec is not None:
        asset = spec.source.split(":", 1)[1]
        raw, source = _raw_from_disk(paths.resolve_asset(asset, home), task_cfg, spec.tags_column), spec.source
    else:
        raise TaskDataError(f"token task '{name}' needs task.files {{train: PATH, validation: PATH}} or task.hub_path "
                            f"(registry token tasks: {sorted(TOKEN_TASKS)})")
    if "train" not in raw:
        raise TaskDataError(f"task '{name}' has no 'train' split (got {sorted(raw)})")
    src_names = raw["train"][2]
    if declared:
        names = declared
    elif spec is not None and spec.labels and (src_names is None or sorted(src_names) == sorted(spec.labels)):
        names = list(spec.labels)
    elif src_names is not None:
        names = list(src_names)
    else:
        train, where, _ = raw["train"]
        at = _at(train, where)
        for r, row in enumerate(train["tags"]):
            for j, t in enumerate(row):
                _check_tag(str(t), at(r, j), None, "")
        names = sorted({str(t) for row in train["tags"] for t in row})
        log.info("task tags inferred from %s: %s (set task.labels to fix the order)", where, names)
    if len(names) < 2:
        got = ", ".join(repr(n) for n in names) or "none"
        raise TaskDataError(f"token task '{name}' has one tag ({got}) in {raw['train'][1]}: a token task needs at "
                            "least two (task.labels); add sentences tagged with the others")
    splits = {}
    for s, (ds, where, _) in raw.items():
        if len(ds) == 0:
            raise TaskDataError(f"{where}: split '{s}' is empty")
        splits[s] = _encode(ds, where, names, bool(declared))
    from datasets import DatasetDict

    metrics, main = metrics_for_tags(names)
    return TaskData(name=name, splits=DatasetDict(splits), text_columns=["tokens"], label_names=names,
                    metrics=metrics, main_metric=main, source=source, type="token")


# --------------------------------------------------------------------------------------
# tokenisation, evaluation


def is_words(ds, columns: Sequence[str]) -> bool:
    """Whether ``ds`` holds words in a list column (a token task) rather than text."""
    cols = list(columns)
    return len(cols) == 1 and cols[0] in ds.column_names and type(ds.features[cols[0]]).__name__ in (
        "Sequence", "List", "LargeList")


def tokenize_words(ds, column: str, tokenizer: Any, max_seq_len: int, num_proc: int = 1):
    """``ds`` tokenised with ``is_split_into_words``: ``labels`` = the word's tag on its first
    piece (``-1`` for an untagged word), ``-100`` elsewhere. Sentences cut by ``max_seq_len``
    are counted and logged (their last words get no prediction)."""

    def enc(batch):
        out = tokenizer(batch[column], is_split_into_words=True, truncation=True, max_length=max_seq_len)
        labels, cut = [], []
        for i, tags in enumerate(batch["label"]):
            prev, row, last = None, [], -1
            for w in out.word_ids(i):
                row.append(IGNORE if w is None or w == prev else int(tags[w]))
                if w is not None:
                    prev, last = w, w
            labels.append(row)
            cut.append(len(out["input_ids"][i]) >= max_seq_len and last < len(batch[column][i]) - 1)
        res = dict(out)
        res["labels"], res["__cut"] = labels, cut
        return res

    drop = [c for c in (column, "label") if c in ds.column_names]
    enc_ds = ds.map(enc, batched=True, remove_columns=drop, num_proc=num_proc if num_proc > 1 else None,
                    desc="tokenise words")
    n_cut = int(sum(enc_ds["__cut"]))
    if n_cut:
        log.warning("%d of %d sentences are longer than max_seq_len=%d word pieces and were cut (task.max_seq_len): "
                    "their last words get no tag", n_cut, len(enc_ds), max_seq_len)
    else:
        log.info("no sentence of %d is cut at max_seq_len=%d", len(enc_ds), max_seq_len)
    return enc_ds.remove_columns("__cut")


def positions_per_row(labels: Sequence[Sequence[int]]) -> np.ndarray:
    """Word-initial positions (``labels != -100``) per tokenised row."""
    return np.array([sum(1 for v in row if v != IGNORE) for row in labels], dtype=np.int64)


def evaluate_tokens(logits: np.ndarray, labels: Sequence[Sequence[int]], task: Any) -> Dict[str, float]:
    """Task metrics from the word-initial logits ([P, C], rows in order) and the tokenised
    ``labels``; untagged words (-1) are skipped."""
    from tinyfw.metrics import token_compute

    counts = positions_per_row(labels)
    if int(counts.sum()) != len(logits):
        raise ValueError(f"{len(logits)} word predictions for {int(counts.sum())} word-initial positions")
    preds = np.asarray(logits).argmax(-1)
    names = task.label_names
    golds, outs, start = [], [], 0
    for row, n in zip(labels, counts):
        g = [v for v in row if v != IGNORE]
        p = preds[start:start + n]
        start += n
        keep = [j for j, v in enumerate(g) if v >= 0]
        if keep:
            golds.append([names[g[j]] for j in keep])
            outs.append([names[int(p[j])] for j in keep])
    return token_compute(task.metrics, outs, golds, scheme_of(names))


def gold_rows(enc):
    """The tokenised rows with at least one gold tag (``labels >= 0``): what the hard-label
    paths (``td=off``, ``weights.pred=0``) can train on; augmented variants carry none."""
    keep = [i for i, row in enumerate(enc["labels"]) if any(v >= 0 for v in row)]
    if len(keep) < len(enc):
        log.info("hard-label training: %d of %d rows carry gold tags (augmented variants carry none: skipped)",
                 len(keep), len(enc))
        return enc.select(keep)
    return enc
