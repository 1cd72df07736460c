"""The ablation table in the paper's shape: rows = variants, columns = tasks (+ average).

A cell is mean ± sample std over seeds with n; failed, missing and collapsed runs are counted
in their cell and listed below the table, never averaged in nor dropped. Row order, the
``mnli-mm`` column and the average column: docs/internals.md "The ablation table".
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from tinyfw.report.records import DEFAULT_RECIPE, FLAGS, RECIPE_KEY, RunRecord, extra_keys, used

# metric names tried, in order, when a run does not name its main metric
KNOWN_METRICS = ("accuracy", "acc", "matthews_correlation", "mcc", "f1", "pearson", "spearmanr",
                 "spearman")
OBJECTIVE_NAMES = {"embd": "Embd", "attn": "Attn", "hidn": "Hidn", "pred": "Pred"}
PAPER_ORDER = ["Embd", "Pred", "Trm", "Attn", "Hidn"]
FULL = "GD+TD+DA (full)"
TEACHER = "teacher"

# TinyBERT4 ablations on dev sets (Jiao et al. 2019, arXiv 1909.10351), as in DESIGN.md §1
PAPER_COLUMNS = ["MNLI-m", "MNLI-mm", "MRPC", "CoLA", "avg"]
PAPER_ROWS: List[Tuple[str, List[float]]] = [
    ("TinyBERT4 (GD+TD+DA)", [82.8, 82.9, 85.8, 50.8, 75.6]),
    ("w/o GD", [82.5, 82.6, 84.1, 40.8, 72.5]),
    ("w/o TD", [80.6, 81.2, 83.8, 28.5, 68.5]),
    ("w/o DA", [80.5, 81.0, 82.4, 29.8, 68.4]),
    ("w/o Embd", [82.3, 82.3, 85.0, 46.7, 74.1]),
    ("w/o Pred", [80.5, 81.0, 84.3, 48.2, 73.5]),
    ("w/o Trm (attn+hidden)", [71.7, 72.3, 70.1, 11.2, 56.3]),
    ("w/o Attn", [79.9, 80.7, 82.3, 41.1, 71.0]),
    ("w/o Hidn", [81.7, 82.1, 84.1, 43.7, 72.9]),
]


def paper_markdown() -> str:
    head = "| variant | " + " | ".join(PAPER_COLUMNS) + " |"
    sep = "|---" * (len(PAPER_COLUMNS) + 1) + "|"
    rows = [f"| {name} | " + " | ".join(f"{v:.1f}" for v in vals) + " |" for name, vals in PAPER_ROWS]
    return "\n".join([head, sep, *rows])


# ---------------------------------------------------------------- metric choice


def metric_key(metrics: Dict[str, Any], split: str) -> Optional[str]:
    """The flat key of the main metric on ``split`` in one run's metrics, if present."""
    main = metrics.get("main_metric")
    names = [str(main).split("/")[-1]] if main else list(KNOWN_METRICS)
    for name in names:
        for key in (f"{split}/{name}", f"{split}_{name}"):
            if _num(metrics.get(key)) is not None:
                return key
    return None


def resolve_metric(records: Sequence[RunRecord], spec: str) -> Optional[str]:
    """The flat metric key used for one task's column.

    ``spec``: ``""`` = the test split's main metric when every ok run has it, else dev's;
    ``dev``/``test`` = that split's main metric; ``split/name`` = exactly that key.
    """
    ok = [r for r in records if r.status == "ok"]
    if "/" in spec:
        return spec
    splits = [spec] if spec else ["test", "dev"]
    best: Tuple[int, Optional[str]] = (0, None)
    for split in splits:
        keys = [metric_key(r.metrics, split) for r in ok]
        found = [k for k in keys if k]
        if ok and len(found) == len(ok) and len(set(found)) == 1:
            return found[0]
        if found and len(found) > best[0]:
            best = (len(found), max(set(found), key=found.count))
    return best[1]


def _num(v: Any) -> Optional[float]:
    if isinstance(v, bool) or v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


# ---------------------------------------------------------------- rows


def _norm(v: Any) -> Any:
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def variant(rec: RunRecord, extras: Sequence[str]) -> Tuple[Tuple, str]:
    """(sort key, label) of the table row a run belongs to."""
    if rec.flags is None:
        return (9,), "unknown (no config)"
    if str(rec.config.get(RECIPE_KEY, DEFAULT_RECIPE)) != DEFAULT_RECIPE:
        return recipe_variant(rec, extras)
    off = [f.upper() for f in FLAGS if rec.flags.get(f) == "off"]
    zero = [OBJECTIVE_NAMES[k] for k, v in rec.weights.items() if v == 0]
    if "Attn" in zero and "Hidn" in zero:
        zero = [z for z in zero if z not in ("Attn", "Hidn")] + ["Trm"]
    odd = [f"{k}×{_norm(v)}" for k, v in rec.weights.items() if v not in (0, 1)]
    parts = off + zero
    label = ("w/o " + ", ".join(parts)) if parts else ("GD+TD+DA" if odd else FULL)
    if odd:
        label += ("; " if parts else ", ") + ", ".join(odd)
    extra = {k: _norm(rec.config.get(k)) for k in extras if used(rec, k)}
    if extra:
        label += " [" + ", ".join(f"{k}={v}" for k, v in extra.items()) + "]"
    flag_rank = [FLAGS.index(f.lower()) for f in off]
    obj_rank = [PAPER_ORDER.index(z) for z in zero]
    if not parts:
        group = 0
    elif not zero:
        group = 1 if len(off) == 1 else 2
    elif not off:
        group = 3 if len(zero) == 1 else 4
    else:
        group = 5
    if odd:  # other loss weights: after the paper's rows
        group = 6
    return (group, len(parts), flag_rank, obj_rank, bool(odd), label), label


RECIPE_ORDER = ("distilbert", "minilm")


def recipe_variant(rec: RunRecord, extras: Sequence[str]) -> Tuple[Tuple, str]:
    """(sort key, label) of a run of another recipe (``distill.recipe``): ``recipe=minilm``, its
    switched-off parts (``w/o GD``, ``w/o Pred``) and other swept settings; after TinyBERT's rows.
    Its loss weights are the recipe's, so they name no row of their own."""
    name = str(rec.config.get(RECIPE_KEY))
    parts = [f.upper() for f in FLAGS if rec.flags.get(f) == "off"]
    if rec.weights.get("pred", 1.0) == 0:
        parts.append("Pred")
    label = f"recipe={name}" + (f", w/o {', '.join(parts)}" if parts else "")
    extra = {k: _norm(rec.config.get(k)) for k in extras if used(rec, k)}
    if extra:
        label += " [" + ", ".join(f"{k}={v}" for k, v in extra.items()) + "]"
    rank = RECIPE_ORDER.index(name) if name in RECIPE_ORDER else len(RECIPE_ORDER)
    return (7, rank, name, len(parts), label), label


@dataclass
class Cell:
    values: List[float] = field(default_factory=list)
    seeds: List[Optional[int]] = field(default_factory=list)
    failed: int = 0
    missing: int = 0
    collapsed: int = 0

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> Optional[float]:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> Optional[float]:
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    def problems(self) -> List[Tuple[str, int]]:
        return [(k, v) for k, v in (("failed", self.failed), ("missing", self.missing),
                                    ("collapsed", self.collapsed)) if v]

    def text(self, digits: int) -> str:
        if not self.values:
            parts = [k if v == 1 and len(self.problems()) == 1 else f"{k} ({v})" for k, v in self.problems()]
            return ", ".join(parts) or "—"
        s = f"{self.mean:.{digits}f}"
        if self.std is not None:
            s += f" ± {self.std:.{digits}f}"
        notes = [f"n={self.n}"] + [f"{v} {k}" for k, v in self.problems()]
        return f"{s} ({'; '.join(notes)})"


@dataclass
class Problem:
    run: str
    row: str
    task: Optional[str]
    seed: Optional[int]
    status: str  # failed | missing | collapsed
    error: str
    path: str


@dataclass
class Table:
    columns: List[str]  # task names, then "avg" when there are 2+ tasks
    rows: List[Tuple[str, Dict[str, Cell]]]
    problems: List[Problem]
    metric: Dict[str, Optional[str]]  # task -> metric key used
    runs_ok: int
    runs_failed: int
    runs_missing: int
    runs_collapsed: int = 0
    digits: int = 1
    scale: float = 100.0

    def cell_texts(self) -> List[List[str]]:
        return [[label] + [cells[c].text(self.digits) for c in self.columns] for label, cells in self.rows]

    def header(self, column: str) -> str:
        """A column's header: its name, with its metric's unless that is plain accuracy."""
        return header(column, self.metric.get(column))

    def markdown(self) -> str:
        head = "| variant | " + " | ".join(self.header(c) for c in self.columns) + " |"
        sep = "|---" * (len(self.columns) + 1) + "|"
        return "\n".join([head, sep, *("| " + " | ".join(r) + " |" for r in self.cell_texts())])

    def frame(self):
        """One row per variant: ``<col>_mean``, ``<col>_std``, ``<col>_n`` (+ failed, missing)."""
        import pandas as pd

        out = []
        for label, cells in self.rows:
            row: Dict[str, Any] = {"variant": label}
            for c in self.columns:
                cell = cells[c]
                row[f"{c}_mean"] = cell.mean
                row[f"{c}_std"] = cell.std
                row[f"{c}_n"] = cell.n
                if c != "avg":
                    row[f"{c}_failed"] = cell.failed
                    row[f"{c}_missing"] = cell.missing
                    row[f"{c}_collapsed"] = cell.collapsed
            out.append(row)
        return pd.DataFrame(out)


MISMATCHED = "validation_mismatched"  # MNLI's second dev set: its own column, as in the paper
METRIC_NAMES = {"entity_f1": "entity F1", "token_accuracy": "token acc.", "acc_and_f1": "acc./F1", "mcc": "MCC",
                "corr": "Pearson/Spearman"}


def header(column: str, key: Optional[str]) -> str:
    """``column`` with its metric named (``conll2003 (entity F1)``); plain accuracy is not named."""
    name = (key or "").split("/")[-1]
    if not name or name == "accuracy" or column == "avg":
        return column
    return f"{column} ({METRIC_NAMES.get(name, name)})"


def task_columns(records: Sequence[RunRecord], metric: str) -> List[Tuple[str, str, Optional[str]]]:
    """(column, task, metric key) per column: one per task, plus ``<task>-mm`` when the dev
    metric is shown and runs also report it on MNLI's mismatched dev set."""
    cols: List[Tuple[str, str, Optional[str]]] = []
    for t in sorted({r.task for r in records if r.task is not None}):
        runs = [r for r in records if r.task == t]
        key = resolve_metric(runs, metric)
        cols.append((t, t, key))
        if key and key.startswith("dev/"):
            mm = f"{MISMATCHED}/{key.split('/', 1)[1]}"
            if any(mm in r.metrics for r in runs if r.status == "ok"):
                cols.append((f"{t}-mm", t, mm))
        if key and key.startswith("test/"):  # a second test set (POS: out-of-domain WSJ) gets its own column
            name = key.split("/", 1)[1]
            extra = sorted({k for r in runs if r.status == "ok" for k in r.metrics
                            if k.startswith("test_") and k.endswith(f"/{name}") and not k.startswith("teacher")})
            cols.extend((f"{t}-{k.split('/')[0][len('test_'):]}", t, k) for k in extra)
    return cols


TEACHER_KEYS = ("teacher.", "teacher_ft.", "task.")  # the settings a fine-tuned teacher depends on


def teacher_identity(r: RunRecord, score: float) -> Any:
    """Which teacher a run distilled from: its teacher settings and the teacher's ``score`` when
    the record has settings (the runs of every seed share one teacher unless ``teacher_ft.seed``
    follows the run seed; equal settings with another score, e.g. from another cache, are
    another teacher), else the run seed (one teacher per seed: nothing says otherwise)."""
    items = tuple(sorted((k, repr(v)) for k, v in r.config.items() if k.startswith(TEACHER_KEYS)))
    return (items, score) if any(k.startswith("teacher") for k, _ in items) else ("seed", r.seed)


def build(records: Sequence[RunRecord], metric: str = "", percent: bool = True,
          digits: int = 1) -> Table:
    """Aggregate run records into the ablation table (see the module docstring)."""
    scale = 100.0 if percent else 1.0
    known = [r for r in records if r.status != "missing" or r.config]
    extras = extra_keys([r for r in known if r.status != "missing"] or known)
    cols = task_columns(records, metric)
    if any(r.task is None for r in records):
        cols.append(("?", "?", None))
    by_task: Dict[str, List[Tuple[str, Optional[str]]]] = {}
    for name, task, key in cols:
        by_task.setdefault(task, []).append((name, key))

    rows: Dict[str, Tuple[Tuple, Dict[str, Cell]]] = {}
    teacher: Dict[str, Dict[Any, Tuple[Optional[int], float]]] = {name: {} for name, _, _ in cols}
    problems: List[Problem] = []
    n_ok = n_failed = n_missing = n_collapsed = 0
    for r in records:
        sort_key, label = variant(r, extras)
        cells = rows.setdefault(label, (sort_key, {}))[1]
        for i, (name, key) in enumerate(by_task[r.task or "?"]):
            cell = cells.setdefault(name, Cell())
            value = _num(r.metrics.get(key)) if (key and r.status == "ok") else None
            status, error = r.status, r.error
            if r.status == "ok" and value is None:
                status = "failed"
                error = (f"no metric '{key or metric or 'main metric'}' in its metrics "
                         f"({', '.join(sorted(r.metrics)) or 'none'})")
            elif r.status == "ok" and r.metrics.get("collapsed") is True:
                status = "collapsed"
                reasons = r.metrics.get("health/reasons") or []
                error = "; ".join(reasons) if isinstance(reasons, list) else str(reasons)
            if status == "ok":
                cell.values.append(value * scale)
                cell.seeds.append(r.seed)
                tv = _num(r.metrics.get(f"teacher/{key}"))
                if tv is not None:
                    teacher[name].setdefault(teacher_identity(r, tv), (r.seed, tv * scale))
            elif status == "missing":
                cell.missing += 1
            elif status == "collapsed":
                cell.collapsed += 1
            else:
                cell.failed += 1
            if i:  # a task's second column (MNLI-mm): the run is counted once, by its main column
                continue
            if status == "ok":
                n_ok += 1
                continue
            n_missing += status == "missing"
            n_failed += status == "failed"
            n_collapsed += status == "collapsed"
            problems.append(Problem(r.name, label, r.task, r.seed, status, error, r.path))

    columns = [name for name, _, _ in cols]
    ordered = [(label, cells) for label, (_, cells) in sorted(rows.items(), key=lambda kv: _sortable(kv[1][0]))]
    if any(teacher.values()):
        tcells = {c: Cell(values=[tv for _, tv in v.values()], seeds=[s for s, _ in v.values()])
                  for c, v in teacher.items()}
        ordered.insert(0, (TEACHER, tcells))
    for _, cells in ordered:
        for c in columns:
            cells.setdefault(c, Cell())
    real = [c for c in columns if c != "?"]
    if len(real) >= 2:
        for _, cells in ordered:
            cells["avg"] = _average([cells[c] for c in real])
        columns.append("avg")
    return Table(columns=columns, rows=ordered, problems=problems,
                 metric={name: key for name, _, key in cols}, runs_ok=n_ok,
                 runs_failed=n_failed, runs_missing=n_missing, runs_collapsed=n_collapsed,
                 digits=digits, scale=scale)


def _sortable(key: Tuple) -> Tuple:
    return tuple(tuple(k) if isinstance(k, list) else k for k in key)


def _average(cells: List[Cell]) -> Cell:
    """Mean of task means; ± over seeds whose runs succeeded in every task."""
    if not cells or any(not c.values for c in cells):
        return Cell(failed=sum(c.failed for c in cells), missing=sum(c.missing for c in cells),
                    collapsed=sum(c.collapsed for c in cells))
    per_seed: Dict[Optional[int], List[float]] = {}
    for c in cells:
        for s, v in zip(c.seeds, c.values):
            per_seed.setdefault(s, []).append(v)
    complete = {s: statistics.fmean(v) for s, v in per_seed.items() if s is not None and len(v) == len(cells)}
    mean = statistics.fmean(c.mean for c in cells)  # type: ignore[misc]
    if not complete:
        return _FixedMean(values=[mean], mean_value=mean)
    return _FixedMean(values=list(complete.values()), seeds=list(complete), mean_value=mean)


@dataclass
class _FixedMean(Cell):
    """An average cell: its mean is the mean of task means; its values are per-seed averages."""

    mean_value: float = 0.0

    @property
    def mean(self) -> Optional[float]:  # type: ignore[override]
        return self.mean_value


# ---------------------------------------------------------------- differences to the full recipe


@dataclass
class Delta:
    """An ablation's difference to the full recipe in one column, paired over seeds."""

    diffs: List[float]  # per seed present in both: ablation - full

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def mean(self) -> Optional[float]:
        return statistics.fmean(self.diffs) if self.diffs else None

    def ci95(self) -> Optional[Tuple[float, float]]:
        """Student-t interval of the mean paired difference (n - 1 degrees of freedom)."""
        if self.n < 2:
            return None
        from scipy import stats

        half = float(stats.t.ppf(0.975, self.n - 1)) * statistics.stdev(self.diffs) / math.sqrt(self.n)
        return self.mean - half, self.mean + half  # type: ignore[operator]

    def text(self, digits: int) -> str:
        if not self.diffs:
            return "—"
        s = f"{self.mean:+.{digits}f}"
        ci = self.ci95()
        if ci is not None:
            s += f" [{ci[0]:+.{digits}f}, {ci[1]:+.{digits}f}]"
        return s + f" (n={self.n})"


def deltas(tab: Table, reference: str = FULL) -> List[Tuple[str, Dict[str, Delta]]]:
    """Each row's difference to ``reference`` per column, paired by seed (the teacher and the
    reference row itself left out); collapsed, failed and missing runs pair with nothing."""
    rows = dict(tab.rows)
    if reference not in rows:
        return []
    ref = rows[reference]
    out = []
    for label, cells in tab.rows:
        if label in (reference, TEACHER):
            continue
        per: Dict[str, Delta] = {}
        for c in tab.columns:
            base = dict(zip(ref[c].seeds, ref[c].values))
            pairs = [v - base[s] for s, v in zip(cells[c].seeds, cells[c].values) if s is not None and s in base]
            per[c] = Delta(pairs)
        out.append((label, per))
    return out


def deltas_markdown(tab: Table, reference: str = FULL) -> str:
    rows = deltas(tab, reference)
    if not rows:
        return ""
    head = "| variant | " + " | ".join(f"Δ {tab.header(c)}" for c in tab.columns) + " |"
    sep = "|---" * (len(tab.columns) + 1) + "|"
    body = ["| " + " | ".join([label] + [d[c].text(tab.digits) for c in tab.columns]) + " |" for label, d in rows]
    return "\n".join([head, sep, *body])


def budget_notes(records: Sequence[RunRecord]) -> List[str]:
    """One line per variant on what its runs trained on: distinct rows, examples drawn per
    phase and passes over the rows (from result.json ``train_examples`` / ``examples_seen``), so
    the report says what an ablation held equal (``task_distill.budget``)."""
    extras = extra_keys([r for r in records if r.status != "missing"])
    seen: Dict[str, str] = {}
    for r in records:
        if r.status != "ok" or "train_examples" not in r.metrics:
            continue
        _, label = variant(r, extras)
        if label in seen:
            continue
        rows = int(r.metrics["train_examples"])
        phases = [(k.split("/", 1)[1], int(v)) for k, v in sorted(r.metrics.items())
                  if k.startswith("examples_seen/")]
        order = {"step1": 0, "step2": 1, "finetune": 2}
        phases.sort(key=lambda kv: order.get(kv[0], 9))
        what = ", ".join(f"{k} {v:,} examples ({v / max(rows, 1):.1f} passes)" for k, v in phases)
        budget = r.metrics.get("budget", "?")
        seen[label] = f"{label}: {rows:,} distinct training rows; {what or 'no phase recorded'} (budget: {budget})"
    return list(seen.values())
