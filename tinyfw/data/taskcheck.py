"""Checks of a task's loaded data that name the file, the row and the config key in one line:
an empty text cell in a custom task, a declared class with no training row, a one-class
classification task, a GLUE task whose hub cannot be reached."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

from tinyfw.data.taskdata import SPLIT_ALIASES, TaskDataError

OFFLINE_HINTS = ("Connect", "Timeout", "Offline", "LocalEntryNotFound")


def _position(path: str, i: int) -> str:
    """Where row ``i`` (0-based) of a data file is, as its user finds it: a CSV/TSV line (after the
    header), a JSON Lines line, else a row number."""
    suffix = Path(path).suffix.lower()
    if suffix in (".csv", ".tsv"):
        return f"line {i + 2}"
    return f"line {i + 1}" if suffix == ".jsonl" else f"row {i + 1}"


def empty_text(splits: Any, files: Dict[str, str], text_columns: List[str]) -> None:
    """Refuse a custom task's row whose text is empty (a choice: refused, not dropped, so that no
    row disappears unsaid), naming the file, its line and the column."""
    for split, path in files.items():
        ds = splits[SPLIT_ALIASES.get(split, split)]
        for c in text_columns:
            bad = [i for i, v in enumerate(ds[c]) if v is None or not str(v).strip()]
            if bad:
                more = f" ({len(bad)} such rows)" if len(bad) > 1 else ""
                raise TaskDataError(f"{path} {_position(path, bad[0])}: empty text in column '{c}' "
                                    f"(task.text_columns){more}: fill it in or remove the row")


def classes(name: str, splits: Any, files: Dict[str, str], names: List[str], declared: bool) -> None:
    """A classification task needs two classes or more, and a declared class must have training rows."""
    train = files.get("train", "the train split")
    if len(names) < 2:
        got = ", ".join(repr(n) for n in names) or "none"
        raise TaskDataError(f"task '{name}' has one class ({got}) in {train}: a classification task needs at least "
                            "two (task.labels); add rows of the others, or declare a score with task.regression=true")
    if declared:
        present = set(splits["train"].unique("label"))
        missing = [n for i, n in enumerate(names) if i not in present]
        if missing:
            raise TaskDataError(f"{train} holds no row of class {', '.join(repr(m) for m in missing)} "
                                f"(task.labels = {names}): add training rows of it, or remove it from task.labels")


def hub_unreachable(name: str, hub_path: str, exc: BaseException) -> Optional[TaskDataError]:
    """The one-line error for a GLUE task whose hub cannot be reached (offline, no network); None
    for other errors."""
    kinds = {type(e).__name__ for e in (exc, exc.__cause__, exc.__context__) if e is not None}
    if not isinstance(exc, ConnectionError) and not any(h in k for k in kinds for h in OFFLINE_HINTS):
        return None
    return TaskDataError(
        f"GLUE task '{name}' comes from the hub ({hub_path}), which cannot be reached ({exc}): go online once "
        f"(the download is cached), or give local copies with task.files.train=PATH task.files.validation=PATH")
