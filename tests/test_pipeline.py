"""The one-command pipeline on the smoke experiment: teacher, MLM, GD, augment, the 3-seed
ablation grid (full, w/o GD, w/o TD, w/o DA x seeds 1-3) as a Hydra multirun with two jobs
side by side (joblib), and the report over it."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

from kwtask import kw_overrides, write_kw_task


@pytest.mark.slow
def test_smoke_pipeline_runs_the_3_seed_grid_and_reports_it(tmp_path):
    run_dir, home, publish = tmp_path / "pipe", tmp_path / "home", tmp_path / "docs"
    env = {**os.environ, "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    # a keyword task a tiny model learns (the smoke task itself stays at chance with tiny models)
    # 40 step-2 steps at lr 5e-3 leave one of the 12 tiny students on the plateau at ln 2 now and
    # then (marked collapsed); 1e-2 gets every one off it
    task = kw_overrides(write_kw_task(tmp_path / "kw")) + ["task_distill.step2.lr=1e-2", "task_distill.finetune.lr=1e-2"]
    proc = subprocess.run(
        [sys.executable, "-m", "tinyfw", "stage=pipeline", *task, f"home={home}",
         f"hydra.run.dir={run_dir}", f"pipeline.publish={publish}", "pipeline.jobs=2", "pipeline.threads=1"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "ok"
    assert set(result["metrics"]["step_seconds"]) == {"teacher", "mlm", "general", "augment", "grid", "report"}

    jobs = sorted(p for p in (run_dir / "sweep").iterdir() if p.is_dir() and p.name.isdigit())
    assert len(jobs) == 12
    records = [json.loads((j / "result.json").read_text()) for j in jobs]
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    assert not any(r["metrics"]["collapsed"] for r in records), [r["metrics"]["health"] for r in records]
    combos = {(r["flags"]["gd"], r["flags"]["td"], r["flags"]["da"], r["config"]["seed"]) for r in records}
    assert {c[:3] for c in combos} == {("on", "on", "on"), ("off", "on", "on"), ("on", "off", "on"), ("on", "on", "off")}
    assert {c[3] for c in combos} == {1, 2, 3} and len(combos) == 12
    assert all(r["config"]["threads"] == 1 for r in records)
    # the seeds share the upstream artefacts: one teacher, one GD student for all of them
    assert len({r["outputs"]["teacher"] for r in records}) == 1
    assert len({r["metrics"]["init"] for r in records if r["flags"]["gd"] == "on"}) == 1

    # the teacher's row and the paper's four rows, each over 3 seeds, in every output format
    with open(result["outputs"]["csv"]) as f:
        rows = list(csv.DictReader(f))
    variants = [r["variant"] for r in rows]
    assert variants == ["teacher", "GD+TD+DA (full)", "w/o GD", "w/o TD", "w/o DA"]
    assert all(r["custom_n"] == "3" for r in rows if r["variant"] != "teacher")
    md = (publish / "report.md").read_text()
    assert "## Difference to the full recipe" in md and "(n=3)" in md.split("## Difference")[1]
    assert (publish / "report.png").stat().st_size > 1000

    # run again on the same cache: the masked LM and the GD student are found, not retrained
    again = tmp_path / "again"
    proc = subprocess.run(
        [sys.executable, "-m", "tinyfw", "stage=pipeline", "experiment=smoke", f"home={home}",
         f"hydra.run.dir={again}", "pipeline.steps=[mlm,general]"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((again / "result.json").read_text())
    assert result["outputs"]["skipped"] == ["mlm", "general"]
    assert result["metrics"]["step_seconds"] == {} and not (again / "mlm").exists()


@pytest.mark.slow
def test_two_task_pipeline_trains_a_teacher_and_augments_per_task_and_reports_a_column_each(tmp_path):
    """``pipeline.tasks=[smoke,smoke_token]`` (what a two-task study runs, e.g. [mr,conll2003]):
    a teacher and an augmented set per task, one masked LM and one GD student shared, one grid
    over the tasks and one report with a column per task (headed with its metric) and the average."""
    run_dir, home = tmp_path / "pipe", tmp_path / "home"
    env = {**os.environ, "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, "-m", "tinyfw", "stage=pipeline", "experiment=smoke", f"home={home}",
         f"hydra.run.dir={run_dir}", "pipeline.tasks=[smoke,smoke_token]", "pipeline.jobs=2",
         "pipeline.threads=1", "pipeline.grid=['ablation=full,wo_td','seed=1']"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert set(result["metrics"]["step_seconds"]) == {
        "teacher/smoke", "teacher/smoke_token", "mlm", "general", "augment/smoke", "augment/smoke_token", "grid", "report"}
    jobs = sorted(p for p in (run_dir / "sweep").iterdir() if p.is_dir() and p.name.isdigit())
    records = [json.loads((j / "result.json").read_text()) for j in jobs]
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    assert sorted((r["config"]["task"]["name"], r["flags"]["td"]) for r in records) == [
        ("smoke", "off"), ("smoke", "on"), ("smoke_token", "off"), ("smoke_token", "on")]
    by_task = {t: {r["outputs"]["teacher"] for r in records if r["config"]["task"]["name"] == t} for t in ("smoke", "smoke_token")}
    assert all(len(v) == 1 for v in by_task.values()) and by_task["smoke"] != by_task["smoke_token"]
    assert len({r["metrics"]["init"] for r in records if r["flags"]["td"] == "on"}) == 1  # one GD student
    with open(result["outputs"]["csv"]) as f:
        header = next(csv.reader(f))
    assert {"smoke_mean", "smoke_token_mean", "avg_mean"} <= set(header), header
    md = (run_dir / "report" / "report.md").read_text()
    assert "smoke_token (entity F1)" in md, md[:1500]
