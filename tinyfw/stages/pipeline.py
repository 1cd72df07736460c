"""``stage=pipeline``: the whole embedded-default story in one command.

assets -> teacher fine-tune -> masked LM -> GD -> augment -> the GD/TD/DA ablation grid
(a Hydra multirun of ``stage=task``) -> report. Each step runs as its own ``python -m
tinyfw`` process in a sub-directory of this run, exactly as a user would type it, with the
pipeline's own overrides passed through. Shared artefacts (fine-tuned teacher, GD student,
masked LM, augmented set) land in the content-addressed cache, so the grid jobs (`pipeline.grid`:
the full recipe, w/o GD, w/o TD, w/o DA over seeds 1, 2, 3 by default) reuse
them instead of rebuilding. A step that fails stops the pipeline, except grid jobs: a failed
job shows up as failed in the report.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import List, Optional

from omegaconf import DictConfig

from tinyfw import cache
from tinyfw.runner import passthrough_overrides, run_step, tinyfw_cmd
from tinyfw.stages import RunContext, StageResult

log = logging.getLogger(__name__)

# single-run steps, each the stage of the same name; then the grid and the report
STEPS = ["assets", "teacher", "mlm", "general", "augment"]
PER_TASK = ("teacher", "augment")  # steps that depend on the task (run once per task of pipeline.tasks)

# overrides the pipeline sets per step itself (besides stage= and hydra.*; task= too when pipeline.tasks names them)
SKIP = ("gd=", "td=", "augment=", "ablation=", "pipeline.")


def grid_overrides(p: DictConfig) -> List[str]:
    """The grid's sweep overrides, plus the joblib launcher when jobs run side by side."""
    out = [str(o) for o in p.grid]
    if p.jobs > 1:
        out += ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={int(p.jobs)}"]
    if p.threads > 0:
        out.append(f"threads={int(p.threads)}")
    return out


def cached_output(name: str, cfg: DictConfig, home: Path) -> Optional[Path]:
    """The cache entry the ``mlm`` or ``general`` step would train, when it is already there.
    (``stage=mlm`` / ``stage=general`` always train when called by hand; the teacher and augment
    steps look in the cache themselves.)"""
    if name == "mlm":
        from tinyfw.artefacts.mlm import KIND, key_parts as parts
    elif name == "general":
        from tinyfw.artefacts.gd import KIND, key_parts as parts
    else:
        return None
    entry = cache.entry(home, KIND, parts(cfg, home))
    return entry if entry.exists() else None


def run(cfg: DictConfig, ctx: RunContext) -> StageResult:
    unknown = set(cfg.pipeline.steps) - set(STEPS) - {"grid", "report"}
    if unknown:
        raise ValueError(f"unknown pipeline steps {sorted(unknown)}; valid: {STEPS + ['grid', 'report']}")
    tasks = [str(t) for t in cfg.pipeline.get("tasks", None) or []]
    extra = passthrough_overrides(SKIP + (("task=",) if tasks else ()))
    timings, skipped = {}, []
    for name in (s for s in STEPS if s in cfg.pipeline.steps):
        entry = cached_output(name, cfg, ctx.home)
        if entry is not None:
            log.info("pipeline step %s: already in the cache (%s), skipped; delete that entry to "
                     "train it again", name, entry)
            skipped.append(name)
            continue
        if tasks and name in PER_TASK:
            for t in tasks:
                cmd = tinyfw_cmd(f"stage={name}", f"task={t}", *extra, f"hydra.run.dir={ctx.run_dir / name / t}")
                timings[f"{name}/{t}"] = run_step(f"{name}-{t}", cmd, ctx.run_dir)
            continue
        cmd = tinyfw_cmd(f"stage={name}", *extra, f"hydra.run.dir={ctx.run_dir / name}")
        timings[name] = run_step(name, cmd, ctx.run_dir)
    sweep = ctx.run_dir / "sweep"
    group = f"pipeline-{ctx.run_dir.name}"
    outputs = {"sweep": str(sweep), "skipped": skipped}
    if "grid" in cfg.pipeline.steps:
        timings["grid"] = run_step(
            "grid",
            tinyfw_cmd("-m", "stage=task", *grid_overrides(cfg.pipeline), *([f"task={','.join(tasks)}"] if tasks else []),
                       *extra, f"hydra.sweep.dir={sweep}",
                       f"logging.wandb.group={group}"),
            ctx.run_dir,
        )
    report: dict = {}
    if "report" in cfg.pipeline.steps:
        report_dir = ctx.run_dir / "report"
        timings["report"] = run_step(
            "report", tinyfw_cmd("stage=report", f"report.source={sweep}", *extra,
                                 f"hydra.run.dir={report_dir}", f"logging.wandb.group={group}"),
            ctx.run_dir,
        )
        report = json.loads((report_dir / "result.json").read_text())
        outputs.update(report.get("outputs", {}))
    if cfg.pipeline.publish:
        dest = Path(cfg.pipeline.publish)
        dest.mkdir(parents=True, exist_ok=True)
        for key in ("markdown", "csv", "png"):
            if key in outputs:
                shutil.copy2(outputs[key], dest / Path(outputs[key]).name)
        outputs["published"] = str(dest.resolve())
    return StageResult(
        metrics={"step_seconds": timings, "total_seconds": round(sum(timings.values()), 1),
                 **{f"report/{k}": v for k, v in report.get("metrics", {}).items()}},
        outputs=outputs,
    )
