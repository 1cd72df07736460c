"""``stage=report``: the ablation table and chart of a sweep.

``python -m tinyfw stage=report report.source=SRC [report.out=DIR] [report.metric=dev]``
where SRC is a multirun sweep dir, a local wandb dir, or ``wandb:ENTITY/PROJECT/GROUP``
(README "Sweeps and the report"). Options, outputs and metrics: docs/internals.md "The report
stage".
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List

from omegaconf import DictConfig

from tinyfw.fsutil import atomic_write_text
from tinyfw.report import plot, records, search, table
from tinyfw.report.document import chart_title, markdown
from tinyfw.stages import RunContext, StageResult

log = logging.getLogger(__name__)


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
