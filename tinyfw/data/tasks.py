"""Labelled tasks: a registry (GLUE, movie reviews, smoke) plus custom tasks declared in
config, loaded by :func:`load_task` into one uniform shape (normalised split names, ``label``
as a class index, ``-1`` unlabelled, or a float for regression), then tokenised, collated and
evaluated. Sources, label mapping by name and split names: docs/internals.md, "Labelled tasks".
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence

import numpy as np

from tinyfw.data.taskdata import TaskData, TaskDataError, load_file, split_name  # noqa: F401 - re-exported

if TYPE_CHECKING:
    from tinyfw.data.collate import Collator

log = logging.getLogger(__name__)

GLUE_HUB = "nyu-mll/glue"


@dataclass(frozen=True)
class TaskSpec:
    """A registry task: its label names in order (None: regression), text column(s), the
    metrics reported (empty: :func:`metrics_for`'s defaults) and the main one (best-checkpoint
    selection), and whether it is a GLUE task (loaded from ``GLUE_HUB``)."""

    labels: Optional[List[str]]
    text_columns: List[str]
    metrics: List[str] = field(default_factory=list)
    main_metric: str = ""
    glue: bool = True

    @property
    def regression(self) -> bool:
        return self.labels is None


_PAIR = ["sentence1", "sentence2"]
_F1 = {"metrics": ["f1", "accuracy", "acc_and_f1"], "main_metric": "acc_and_f1"}
TASKS: Dict[str, TaskSpec] = {
    "cola": TaskSpec(["unacceptable", "acceptable"], ["sentence"], ["mcc", "accuracy"], "mcc"),
    "sst2": TaskSpec(["negative", "positive"], ["sentence"]),
    "mrpc": TaskSpec(["not_equivalent", "equivalent"], _PAIR, **_F1),
    "stsb": TaskSpec(None, _PAIR, ["pearson", "spearman", "corr"], "corr"),
    "qqp": TaskSpec(["not_duplicate", "duplicate"], ["question1", "question2"], **_F1),
    "mnli": TaskSpec(["entailment", "neutral", "contradiction"], ["premise", "hypothesis"]),
    "qnli": TaskSpec(["entailment", "not_entailment"], ["question", "sentence"]),
    "rte": TaskSpec(["entailment", "not_entailment"], _PAIR),
    "wnli": TaskSpec(["not_entailment", "entailment"], _PAIR),
    "mr": TaskSpec(["negative", "positive"], ["text"], glue=False),  # the movie-review asset
    "smoke": TaskSpec(["neg", "pos"], ["text"], glue=False),  # gensim's polarity sentences
}
GLUE = [name for name, spec in TASKS.items() if spec.glue]


def metrics_for(name: str, regression: bool) -> tuple:
    """(metrics to report, main metric) of a task: its registry entry's, else by kind."""
    spec = TASKS.get(name)
    if spec is not None and spec.metrics:
        return spec.metrics, spec.main_metric
    if regression:
        return ["pearson", "spearman", "corr"], "corr"
    return ["accuracy"], "accuracy"


# --------------------------------------------------------------------------------------
# label normalisation


def _encode_labels(ds, *, where: str, column: str, names: Optional[List[str]], regression: bool,
                   allow_unlabelled: bool):
    """Return ``ds`` with ``label`` = index into ``names`` (or float for regression)."""
    from datasets import ClassLabel, Value

    feat = ds.features[column]
    if regression:
        def to_float(batch):
            out = []
            for v in batch[column]:
                if v is None or (allow_unlabelled and v == -1):  # GLUE test: -1 = no label
                    out.append(float("nan"))
                    continue
                try:
                    out.append(float(v))
                except (TypeError, ValueError):
                    raise TaskDataError(f"{where}: column '{column}' holds '{v}', not a number "
                                        f"(the task is declared as regression)") from None
            return {"label": out}

        ds = ds.map(to_float, batched=True, remove_columns=[column] if column != "label" else None)
        return ds.cast_column("label", Value("float32"))
    assert names is not None
    index = {n: i for i, n in enumerate(names)}
    if isinstance(feat, ClassLabel):  # map the source's names onto ours, whatever its order
        src_names = feat.names
        missing = [n for n in src_names if n not in index]
        if missing:
            raise TaskDataError(f"{where}: label names {missing} of column '{column}' are not among "
                                f"the task's labels {names}")
        table = {i: index[n] for i, n in enumerate(src_names)}
        table[-1] = -1
        if src_names != names:
            log.info("%s: source label order %s remapped by name to %s", where, src_names, names)
    else:
        table = {}
        for v in ds.unique(column):
            if v is None or (isinstance(v, (int, np.integer)) and v == -1 and allow_unlabelled):
                table[v] = -1
                if v is None and not allow_unlabelled:
                    raise TaskDataError(f"{where}: column '{column}' has empty labels")
            elif str(v) in index:
                table[v] = index[str(v)]
            elif isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v < len(names):
                table[v] = int(v)
            else:
                raise TaskDataError(f"{where}: unknown label '{v}' in column '{column}'; allowed: "
                                    f"{names} (or their indices 0..{len(names) - 1})")
    if not allow_unlabelled and -1 in {table.get(v, 0) for v in ds.unique(column)}:
        raise TaskDataError(f"{where}: column '{column}' has unlabelled rows (-1) in a split that needs labels")

    def to_index(batch):
        return {"label": [table[v] for v in batch[column]]}

    ds = ds.map(to_index, batched=True, remove_columns=[column] if column != "label" else None)
    return ds.cast_column("label", Value("int64"))


def _normalise(ds, *, where: str, split: str, text_columns: List[str], label_column: str,
               names: Optional[List[str]], regression: bool):
    """Check columns, keep text columns + ``label``; an empty split is an error."""
    from datasets import Value

    if len(ds) == 0:
        raise TaskDataError(f"{where}: split '{split}' is empty")
    cols = list(ds.column_names)
    for c in text_columns:
        if c not in cols:
            raise TaskDataError(f"{where}: text column '{c}' not found; available columns: {cols}")
    test_like = split.startswith("test")
    if label_column not in cols:
        if not test_like:
            raise TaskDataError(f"{where}: label column '{label_column}' not found; available columns: {cols}")
        ds = ds.add_column("__label", [float("nan") if regression else -1] * len(ds))
        label_column = "__label"
    drop = [c for c in cols if c not in text_columns and c != label_column]
    ds = ds.remove_columns(drop)
    ds = _encode_labels(ds, where=where, column=label_column, names=names, regression=regression,
                        allow_unlabelled=test_like)
    for c in text_columns:
        if ds.features[c] != Value("string"):
            ds = ds.map(lambda b, c=c: {c: ["" if v is None else str(v) for v in b[c]]}, batched=True)
            ds = ds.cast_column(c, Value("string"))
    return ds.select_columns([*text_columns, "label"])


# --------------------------------------------------------------------------------------
# sources




def _from_files(files: Dict[str, str], text_columns, label_column, names, regression):
    from datasets import DatasetDict

    if "train" not in files:
        raise TaskDataError(f"task.files needs a 'train' entry; got splits {sorted(files)}")
    out = {}
    for split, p in files.items():
        path = Path(p).expanduser()
        ds = load_file(path, split)
        out[split_name(split)] = (ds, str(path))
    if names is None and not regression:  # infer the label set from the training data
        tr, where = out["train"]
        if label_column not in tr.column_names:
            raise TaskDataError(f"{where}: label column '{label_column}' not found; available columns: {tr.column_names}")
        names = sorted({str(v) for v in tr.unique(label_column) if v is not None})
        log.info("task labels inferred from %s: %s (set task.labels to fix the order)", where, names)
    splits = DatasetDict({
        s: _normalise(ds, where=where, split=s, text_columns=text_columns, label_column=label_column,
                      names=names, regression=regression)
        for s, (ds, where) in out.items()
    })
    return splits, names or []


def _glue_hub(name: str, hub_path: str):
    from datasets import DatasetDict, load_dataset

    try:
        raw = load_dataset(hub_path, name)
    except Exception as exc:  # noqa: BLE001 - offline: named in one line (data/taskcheck.py)
        from tinyfw.data.taskcheck import hub_unreachable

        raise (hub_unreachable(name, hub_path, exc) or exc) from exc
    spec = TASKS[name]
    splits = {}
    for s, ds in raw.items():
        splits[split_name(s)] = _normalise(ds, where=f"{hub_path}/{name}[{s}]", split=split_name(s),
                                            text_columns=spec.text_columns, label_column="label",
                                            names=spec.labels, regression=spec.regression)
    return DatasetDict(splits)


def _smoke():
    from datasets import Dataset, DatasetDict
    from gensim.test.utils import datapath

    raw = Path(datapath("pang_lee_polarity.cor")).read_bytes().decode("cp1252", errors="replace")
    rows = []
    for line in raw.splitlines():
        tag, _, text = line.strip().partition(" ")
        if tag.startswith("__label__"):
            rows.append({"text": text.strip(), "label": TASKS["smoke"].labels.index(tag[len("__label__"):])})
    random.Random(0).shuffle(rows)
    n = len(rows)
    cut = [0, int(n * 0.7), int(n * 0.85), n]
    names = ["train", "validation", "test"]
    return DatasetDict({s: Dataset.from_list(rows[cut[i]:cut[i + 1]]) for i, s in enumerate(names)})


def _mr(home: Path):
    from datasets import ClassLabel, DatasetDict, load_from_disk

    from tinyfw import paths

    root = paths.resolve_asset("mr", home)
    raw = load_from_disk(str(root))
    feat = raw["train"].features.get("label")
    names = feat.names if isinstance(feat, ClassLabel) else TASKS["mr"].labels
    splits = DatasetDict({
        split_name(s): _normalise(ds, where=f"{root}[{s}]", split=split_name(s), text_columns=["text"],
                                   label_column="label", names=names, regression=False)
        for s, ds in raw.items()
    })
    return splits, names


def _subset(ds, n: int):
    if n is None or n < 0 or n >= len(ds):
        return ds
    return ds.shuffle(seed=0).select(range(n)).flatten_indices()


def load_task(task_cfg: Any, home: Path) -> TaskData:
    """Load the task described by ``task_cfg`` (``tinyfw.config.TaskCfg``)."""
    from tinyfw.data import tokens

    name = task_cfg.name
    if name in tokens.TOKEN_TASKS or str(getattr(task_cfg, "type", "sequence")) == "token":
        task = tokens.load_token_task(task_cfg, home)
        for s in list(task.splits):
            task.splits[s] = _subset(task.splits[s], task_cfg.max_train_examples if s == "train"
                                     else task_cfg.max_eval_examples)
        return task
    files = dict(task_cfg.get("files") or {}) if hasattr(task_cfg, "get") else dict(task_cfg.files or {})
    label_column = task_cfg.label_column or "label"
    cfg_labels = [str(x) for x in (task_cfg.labels or [])]
    if name == "custom" or (files and name not in TASKS):
        if not files:
            raise TaskDataError("task.name=custom needs task.files: {train: PATH, validation: PATH[, test: PATH]}")
        text_columns = list(task_cfg.text_columns or [])
        if not 1 <= len(text_columns) <= 2:
            raise TaskDataError(f"task.text_columns must list one or two columns, got {text_columns}")
        regression = bool(task_cfg.regression)
        if regression and cfg_labels:
            raise TaskDataError("set either task.labels (classification) or task.regression=true, not both")
        splits, names = _from_files(files, text_columns, label_column, cfg_labels or None, regression)
        source = "files"
    elif name in TASKS:
        spec = TASKS[name]
        regression = spec.regression
        names = cfg_labels or spec.labels
        text_columns = list(task_cfg.text_columns or []) or list(spec.text_columns)
        if files:  # a registry task from local files (offline GLUE copy, stand-in)
            splits, names = _from_files(files, text_columns, label_column, None if regression else names, regression)
            source = "files"
        elif name == "smoke":
            splits, source = _smoke(), "gensim:pang_lee_polarity.cor"
        elif name == "mr":
            splits, names = _mr(home)
            source = "asset:mr"
        else:
            hub = getattr(task_cfg, "hub_path", "") or GLUE_HUB
            splits, source = _glue_hub(name, hub), f"{hub}/{name}"
    else:
        raise TaskDataError(f"unknown task '{name}'; registry: {sorted(TASKS)}, or task.name=custom with task.files")
    if source == "files":  # data/taskcheck.py: named in one line
        from tinyfw.data import taskcheck

        if name not in TASKS:
            taskcheck.empty_text(splits, files, text_columns)
        if not regression:
            taskcheck.classes(name, splits, files, list(names), declared=bool(cfg_labels) or name in TASKS)
    for req in ("train", "validation"):
        if req not in splits:
            raise TaskDataError(f"task '{name}' has no '{req}' split (got {sorted(splits)})")
    for s in list(splits):
        splits[s] = _subset(splits[s], task_cfg.max_train_examples if s == "train" else task_cfg.max_eval_examples)
    metrics, main = metrics_for(name, regression)
    return TaskData(name=name, splits=splits, text_columns=text_columns, label_names=list(names) if not regression else [],
                    regression=regression, metrics=list(metrics), main_metric=main, source=source)


# --------------------------------------------------------------------------------------
# tokenisation, collation, evaluation

MODEL_COLUMNS = ("input_ids", "attention_mask", "token_type_ids", "labels")


def encode_splits(task: TaskData, tokenizer: Any, max_seq_len: int, splits: Optional[Sequence[str]] = None):
    """``{split: tokenised dataset}`` with only the model's columns, for ``splits`` (default all)."""
    out = {}
    for s in splits or list(task.splits):
        enc = tokenize(task.splits[s], task.text_columns, tokenizer, max_seq_len)
        out[s] = enc.select_columns([c for c in MODEL_COLUMNS if c in enc.column_names])
    return out


def tokenize(ds, text_columns: Sequence[str], tokenizer: Any, max_seq_len: int, num_proc: int = 1):
    """Tokenised copy of ``ds``: ``input_ids`` / ``attention_mask`` / ``token_type_ids`` and
    ``labels``; text columns and ``label`` are dropped, any other column is kept."""
    cols = list(text_columns)
    from tinyfw.data import tokens

    if tokens.is_words(ds, cols):  # a token task: words -> pieces, a tag per word's first piece
        return tokens.tokenize_words(ds, cols[0], tokenizer, max_seq_len, num_proc)

    def enc(batch):
        args = [batch[c] for c in cols]
        out = tokenizer(*args, truncation=True, max_length=max_seq_len)
        out["labels"] = batch["label"]
        return dict(out)

    drop = [c for c in (*cols, "label") if c in ds.column_names]
    return ds.map(enc, batched=True, remove_columns=drop, num_proc=num_proc if num_proc > 1 else None,
                  desc="tokenise")


def predict_logits(model: Any, ds, collate: Collator, batch_size: int = 64, device: Any = None,
                   desc: str = "predict") -> np.ndarray:
    """Logits of ``model`` (a ``...ForSequenceClassification``) for every row of tokenised
    ``ds``, in row order. Rows are batched by length (less padding) and put back in order.
    A token classifier (per-token logits): the logits of every word-initial position
    (``labels != -100``, which ``ds`` must then hold), rows in order: [positions, C]."""
    import torch
    from tqdm.auto import tqdm

    device = device or next((p.device for p in model.parameters()), torch.device("cpu"))  # ONNX: none
    lengths = np.array([len(x) for x in ds["input_ids"]])
    order = np.argsort(-lengths, kind="stable")
    from tinyfw.data.tokens import IGNORE, is_words

    per_token = "labels" in ds.column_names and is_words(ds, ["labels"])
    keep = [c for c in ("input_ids", "attention_mask", "token_type_ids") if c in ds.column_names]
    view = ds.select_columns(keep + (["labels"] if per_token else []))
    out = np.zeros((len(ds), model.config.num_labels), dtype=np.float32)
    rows: List[Any] = [None] * len(ds)
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        for b in tqdm(range(0, len(ds), batch_size), desc=desc, leave=False, disable=len(ds) < 2000):
            idx = order[b:b + batch_size]
            cols = view[idx.tolist()]
            batch = collate([dict(zip(cols, vals)) for vals in zip(*cols.values())])
            labels = batch.pop("labels", None)
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = model(**batch).logits.float().cpu()
            if logits.dim() == 3:
                if labels is None:
                    raise ValueError("a token classifier's logits need the rows' labels (word-initial positions)")
                for j, i in enumerate(idx):
                    rows[i] = logits[j][labels[j] != IGNORE].numpy()
            else:
                out[idx] = logits.numpy()
    model.train(was_training)
    if per_token and len(ds) and rows[0] is not None:
        return np.concatenate(rows).astype(np.float32) if rows else out
    return out


def evaluate(model: Any, task: TaskData, tok_split, collate: Collator, batch_size: int = 64,
             device: Any = None) -> Dict[str, float]:
    """Task metrics of ``model`` on one tokenised split (rows without a label are skipped)."""
    from tinyfw import metrics as M

    logits = predict_logits(model, tok_split, collate, batch_size, device, desc="eval")
    if task.token:
        from tinyfw.data.tokens import evaluate_tokens

        return evaluate_tokens(logits, tok_split["labels"], task)
    labels = np.asarray(tok_split["labels"])
    keep = ~np.isnan(labels) if task.regression else labels >= 0
    preds = M.predictions_from_logits(logits, task.regression)
    return M.compute(task.metrics, preds[keep], labels[keep])
