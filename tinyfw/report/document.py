"""``report.md``: the ablation table of a sweep with its source and metric, the chart, the
differences to the full recipe, the search trials, the failed/missing/collapsed and skipped
runs, and the paper's table beside it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from tinyfw.report import records, search, table


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
            "An interval below 0 says the removed part helped on this task at this budget."
            + (" Rows `recipe=...`: another distillation recipe minus TinyBERT's full recipe (Δ to TinyBERT)."
               if any(label.startswith("recipe=") for label, _ in tab.rows) else ""),
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
