"""The shape every task loads into (:class:`TaskData`), the error its checks raise, and the
reading of one task file; shared by the sequence tasks (``tasks.py``), the token tasks
(``tokens.py``) and the checks (``taskcheck.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from tinyfw.data import textfile

SPLIT_ALIASES = {"dev": "validation", "valid": "validation", "validation_matched": "validation",
                 "test_matched": "test"}
SUFFIX_BUILDERS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


class TaskDataError(ValueError):
    """A task's data does not match its declaration (file, column, label or split)."""


@dataclass
class TaskData:
    name: str
    splits: Any  # datasets.DatasetDict: train / validation / test [/ validation_mismatched ...]
    text_columns: List[str]
    label_names: List[str] = field(default_factory=list)  # empty for regression
    regression: bool = False
    metrics: List[str] = field(default_factory=lambda: ["accuracy"])
    main_metric: str = "accuracy"
    dev_split: str = "validation"
    source: str = ""
    type: str = "sequence"  # `token`: one tag per word (tinyfw/data/tokens.py)

    @property
    def token(self) -> bool:
        return self.type == "token"

    @property
    def num_labels(self) -> int:
        return 1 if self.regression else len(self.label_names)

    @property
    def eval_splits(self) -> List[str]:
        """Every non-train split, dev first (evaluated at the end of training)."""
        rest = [s for s in self.splits if s not in ("train", self.dev_split)]
        return [self.dev_split] + sorted(rest, key=lambda s: (not s.startswith("validation"), s))

    def labelled(self, split: str) -> bool:
        ds = self.splits[split]
        if self.regression:
            return len(ds) > 0 and not all(np.isnan(ds["label"]))
        if self.token:
            return any(v >= 0 for row in ds["label"] for v in row)
        return any(v >= 0 for v in ds["label"])

    def describe(self) -> Dict[str, Any]:
        return {"name": self.name, "source": self.source, "text_columns": self.text_columns,
                "labels": self.label_names, "regression": self.regression,
                "sizes": {k: len(v) for k, v in self.splits.items()}, "main_metric": self.main_metric,
                **({"type": self.type} if self.token else {})}


def split_name(name: str) -> str:
    return SPLIT_ALIASES.get(name, name)


def load_file(path: Path, split: str):
    from datasets import load_dataset

    if not path.exists():
        raise TaskDataError(f"task file for split '{split}' not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in SUFFIX_BUILDERS:
        raise TaskDataError(f"{path}: unsupported file type '{suffix}'; use one of {sorted(SUFFIX_BUILDERS)}")
    kwargs: Dict[str, Any] = {"delimiter": "\t"} if suffix == ".tsv" else {}
    if suffix == ".tsv":
        kwargs["quoting"] = 3  # csv.QUOTE_NONE: GLUE TSVs contain stray quotes
    try:
        textfile.check(path, f"task file for split '{split}'")
    except textfile.DataFileError as exc:
        raise TaskDataError(str(exc)) from None
    try:
        return load_dataset(SUFFIX_BUILDERS[suffix], data_files={split: str(path)}, split=split, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the builders' own errors name no cause
        known = textfile.explain_read_error([path], exc)
        if known is not None:
            raise TaskDataError(str(known)) from exc
        if "corresponds to no data" in str(exc):
            raise TaskDataError(f"{path}: split '{split}' is empty") from exc
        cause = exc.__cause__ or exc.__context__
        why = f"{exc}" + (f" ({type(cause).__name__}: {cause})" if cause is not None else "")
        raise TaskDataError(f"{path}: could not be read as {SUFFIX_BUILDERS[suffix]}: {why}") from exc
