"""The one-command pipeline on the smoke experiment: teacher, MLM, GD, augment, the 8-job
GD/TD/DA grid as a Hydra multirun, and the report over it."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_smoke_pipeline_runs_grid_and_reports_eight_variants(tmp_path):
    run_dir, home, publish = tmp_path / "pipe", tmp_path / "home", tmp_path / "docs"
    env = {**os.environ, "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, "-m", "tinyfw", "stage=pipeline", "experiment=smoke", f"home={home}",
         f"hydra.run.dir={run_dir}", f"pipeline.publish={publish}"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=1500,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "ok"
    assert set(result["metrics"]["step_seconds"]) == {"teacher", "mlm", "general", "augment", "grid", "report"}

    jobs = sorted(p for p in (run_dir / "sweep").iterdir() if p.is_dir() and p.name.isdigit())
    assert len(jobs) == 8
    records = [json.loads((j / "result.json").read_text()) for j in jobs]
    assert all(r["status"] == "ok" for r in records), [r.get("error") for r in records]
    combos = {(r["flags"]["gd"], r["flags"]["td"], r["flags"]["da"]) for r in records}
    assert len(combos) == 8

    # one row per flag combination plus the teacher's row, in every output format
    with open(result["outputs"]["csv"]) as f:
        rows = list(csv.DictReader(f))
    variants = [r["variant"] for r in rows]
    assert len(variants) == 9 and variants[0].lower().startswith("teacher")
    assert "GD+TD+DA (full)" in variants and "w/o DA" in variants
    md = (publish / "report.md").read_text()
    assert "w/o GD" in md and "w/o TD" in md
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
