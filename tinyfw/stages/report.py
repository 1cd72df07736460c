"""``stage=report``: the ablation table and chart of a sweep.

``python -m tinyfw stage=report report.source=SRC [report.out=DIR] [report.metric=dev]``
where SRC is a multirun sweep dir, a local wandb dir, or ``wandb:ENTITY/PROJECT/GROUP``.
Writes ``report.md`` (our table, the chart, failed/missing runs, the paper's table beside it),
``report.csv`` and ``report.png`` into ``report.out`` (default: this run's dir), prints the
table, and logs it (``wandb.Table``) and the chart to this stage's own wandb run.

Options: ``report.metric`` ("" = the test split's main metric when every run has it, else
dev's; ``dev`` / ``test``; or an exact ``split/name`` such as ``dev/f1``), ``report.percent``
(x100, default on), ``report.digits``. The run-record schema it reads is documented in
``tinyfw/report/records.py``; the table's rows and cells in ``tinyfw/report/table.py``.
Only ``stage=task`` runs are reported; runs of other stages in the source (a teacher
fine-tune, GD, ...) are listed under "Skipped runs". A search sweep (``hydra/sweeper=optuna_dev``
/ ``optuna``) adds its trials, best dev main metric first (``tinyfw/report/search.py``).
Metrics: rows, runs_ok, runs_failed, runs_missing, runs_collapsed, runs_skipped (+ search:
trials, best_run, best_value, best_params).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from omegaconf import DictConfig

from tinyfw.fsutil import atomic_write_text
from tinyfw.report import plot, records, search, table
from tinyfw.stages import RunContext, StageResult

log = logging.getLogger(__name__)


def describe_metric(tab: table.Table, percent: bool) -> str:
    keys = sorted({k for k in tab.metric.values() if k})
    what = ", ".join(f"`{k}`" for k in keys) or "(none found)"
    return f"{what}{' ×100' if percent else ''}"


def chart_title(tab: table.Table, source: str, percent: bool) -> str:
    keys = ", ".join(sorted({k for k in tab.metric.values() if k})) or "?"
    return (f"{str(source).rstrip('/').split('/')[-1]}: {keys}{' x100' if percent else ''}, "
            "mean ± std over seeds")


def shown(source: str) -> str:
    """``source`` relative to the working directory when it lies below it, so a published
    report does not carry the path of the machine that made it."""
    if str(source).startswith("wandb:"):
        return str(source)
    try:
        return str(Path(source).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(source)


def markdown(tab: table.Table, source: str, kind: str, percent: bool, png_name: str,
             notes: Sequence[str] = (), skipped: Sequence[records.RunRecord] = (),
             found: Optional[search.Search] = None, digits: int = 1) -> str:
    n = tab.runs_ok + tab.runs_failed + tab.runs_missing + tab.runs_collapsed
    lines = [
        "# Ablation report",
        "",
        f"Source: `{shown(source)}` ({kind}; {n} runs: {tab.runs_ok} ok, {tab.runs_failed} failed, "
        f"{tab.runs_missing} missing, {tab.runs_collapsed} collapsed). Metric: {describe_metric(tab, percent)}; cells are "
        "mean ± std over seeds (n = successful seeds).",
        "",
        tab.markdown(),
        "",
    ]
    if notes:
        lines += ["What each variant trained on:", "", *(f"- {n}" for n in notes), ""]
    lines += [f"![ablation chart]({png_name})", ""]
    diff = table.deltas_markdown(tab)
    if diff:
        lines += [
            "## Difference to the full recipe",
            "",
            "Per seed, ablation minus full recipe (same seed), then the mean and its 95% confidence "
            "interval (Student t over the paired seeds, n - 1 degrees of freedom; none for n < 2). "
            "An interval below 0 says the removed part helped on this task at this budget.",
            "",
            diff,
            "",
        ]
    if found is not None:
        lines += ["## Hyper-parameter search", "", found.markdown(percent, digits), ""]
    lines += [
        "## Failed, missing and collapsed runs",
        "",
        "Not averaged into the table. Collapsed: the student predicts one class for every dev "
        "input, or its training loss never left ln C (`metrics.health` in its result.json).",
        "",
    ]
    if tab.problems:
        for p in tab.problems:
            err = " ".join(str(p.error).split())[:300]
            lines.append(f"- run `{p.run}` ({p.row}, task {p.task or '?'}, seed "
                         f"{p.seed if p.seed is not None else '?'}): **{p.status}** — {err} (`{p.path}`)")
    else:
        lines.append("None.")
    if skipped:
        lines += ["", "## Skipped runs (not stage=task)", ""]
        lines += [f"- run `{r.name}`: stage {r.stage}, {r.status} (`{r.path}`)" for r in skipped]
    lines += [
        "",
        "## For comparison: the paper (TinyBERT4, Jiao et al. 2019, dev sets)",
        "",
        table.paper_markdown(),
        "",
    ]
    return "\n".join(lines)


def log_to_wandb(run: Any, tab: table.Table, png: Path) -> None:
    import wandb

    texts = tab.cell_texts()
    wtable = wandb.Table(columns=["variant", *tab.columns], data=texts)
    run.log({"report/table": wtable, "report/chart": wandb.Image(str(png))})


def run(cfg: DictConfig, ctx: RunContext) -> StageResult:
    rc = cfg.report
    out = Path(rc.out).expanduser() if rc.out else ctx.run_dir
    skipped: List[records.RunRecord] = []
    recs, kind = records.load(rc.source, skipped)
    tab = table.build(recs, metric=rc.metric, percent=rc.percent, digits=rc.digits)
    found = search.read(Path(rc.source).expanduser(), recs) if kind == "sweep" else None
    out.mkdir(parents=True, exist_ok=True)
    files: Dict[str, str] = {
        "markdown": str(out / "report.md"),
        "csv": str(out / "report.csv"),
        "png": str(out / "report.png"),
    }
    plot.save(tab, Path(files["png"]), title=chart_title(tab, rc.source, rc.percent))
    atomic_write_text(files["csv"], tab.frame().to_csv(index=False))
    atomic_write_text(files["markdown"], markdown(tab, rc.source, kind, rc.percent, "report.png",
                                                  table.budget_notes(recs), skipped, found, rc.digits))
    print(tab.markdown())
    if found is not None:
        print("\n" + found.markdown(rc.percent, rc.digits))
    if tab.problems:
        print(f"\n{len(tab.problems)} failed/missing/collapsed run(s): see {files['markdown']}")
    if skipped:
        print(f"\nskipped {len(skipped)} run(s) of other stages: "
              + ", ".join(f"{r.name} ({r.stage})" for r in skipped))
    if ctx.tracker.run is not None:
        log_to_wandb(ctx.tracker.run, tab, Path(files["png"]))
    return StageResult(
        metrics={"rows": len(tab.rows), "runs_ok": tab.runs_ok, "runs_failed": tab.runs_failed,
                 "runs_missing": tab.runs_missing, "runs_collapsed": tab.runs_collapsed,
                 "runs_skipped": len(skipped), **({"search": found.metrics()} if found else {})},
        outputs=files,
    )
