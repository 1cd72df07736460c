"""scripts/gpu_check.sh: the CPU dry run (--small) completes with the GPU parts skipped and the
others measured; one failing part never loses the others; the time budget is kept."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "scripts" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_small_run_on_cpu_measures_what_it_can_and_skips_the_gpu_parts(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    env = {**os.environ, "PYTHON": sys.executable, "OUT": str(out), "GPU_CHECK_WORK": str(work)}
    env.pop("ACCELERATE_USE_CPU", None)
    proc = subprocess.run(["bash", "scripts/gpu_check.sh", "--small"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "gpu_check.log", "gpu_check.md"]
    summary = json.loads((out / "gpu_check.json").read_text())
    parts = summary["parts"]
    assert summary["small"] is True
    assert list(parts) == ["env", "tests", "gd", "augment", "bench", "pipeline"]
    assert parts["env"]["status"] == "ok" and parts["env"]["packages"]["torch"] == torch.__version__
    if not torch.cuda.is_available():
        for name in ("tests", "pipeline"):
            assert parts[name]["status"] == "skipped" and "no CUDA device" in parts[name]["reason"]
    for name in ("gd", "augment", "bench"):
        assert parts[name]["status"] == "ok", parts[name]
    (gd,) = parts["gd"]["rows"]
    assert gd["tokens_per_s"] > 0 and gd["gflops"] > 0 and gd["matmul_gflops"] > 0
    assert gd["teacher"] == "bert-base" and gd["precision"] == "bf16" and gd["batch"] == 2
    aug = parts["augment"]["results"]
    ref, exact = aug["reference (2 segments, fp32)"], aug["exact (2 segments, fp32)"]
    assert ref["sentences"] == exact["sentences"] == 10
    assert ref["sentences_per_s"] > 0 and exact["speedup_vs_reference"] > 0
    assert ref["vs_exact (2 segments, fp32)"]["topk_overlap"] == 1.0  # same candidates, one computation apart
    assert parts["augment"]["best_exact_speedup"] == max(
        aug[k]["speedup_vs_reference"] for k in ("exact (2 segments, fp32)", "exact (2 segments, bf16)"))
    models = parts["bench"]["runs"]["fp32"]["models"]
    assert list(models) == ["teacher", "student"]
    assert all(m["latency_ms_b1"] > 0 and m["examples_per_s_b2"] > 0 for m in models.values())
    md = (out / "gpu_check.md").read_text()
    assert "| gd | ok |" in md and "| pipeline | skipped |" in md and "## GD throughput" in md
    assert "===== augment:" in (out / "gpu_check.log").read_text()


def test_a_failing_part_is_recorded_and_the_others_still_run(tmp_path):
    gc = _module()
    r = gc.Runner(tmp_path, tmp_path, small=True, budget=60)

    def boom():
        r.run("boom", [sys.executable, "-c", "import sys; print('half done'); sys.exit('broken input')"], 30)
        return {}

    r.part("boom", boom)
    r.part("fine", lambda: {"value": float(r.run("fine", [sys.executable, "-c", "print(2.5)"], 30))})
    r.part("crash", lambda: {"x": 1 / 0})
    r.part("off", lambda: {}, skip="no CUDA device")
    r.log.close()
    boom_rec = r.records["boom"]
    assert boom_rec["status"] == "failed" and boom_rec["error"] == "exit code 1"
    assert "half done" in boom_rec["tail"] and "broken input" in boom_rec["tail"]
    assert r.records["fine"]["status"] == "ok" and r.records["fine"]["value"] == 2.5
    assert r.records["crash"]["status"] == "failed" and "ZeroDivisionError" in r.records["crash"]["error"]
    assert r.records["off"] == {"status": "skipped", "reason": "no CUDA device", "seconds": 0.0}
    md = gc.render({"env": {"status": "ok", "seconds": 1, "packages": {}, "python": "3"}, **r.records}, "now", True)
    assert "## boom failed: exit code 1" in md and "broken input" in md


def test_parts_are_cut_to_the_time_budget(tmp_path):
    gc = _module()
    r = gc.Runner(tmp_path, tmp_path, small=True, budget=4)
    r.MIN_LEFT, r.MARGIN = 1.5, 1.0
    # the part's child sleeps in a grandchild: the timeout ends both
    sleeper = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'import time; time.sleep(60)'])"
    r.part("slow", lambda: {"out": r.run("slow", [sys.executable, "-c", sleeper], 600)})
    r.part("late", lambda: {"out": r.run("late", [sys.executable, "-c", "print(1)"], 600)})
    r.log.close()
    assert r.records["slow"]["status"] == "failed" and r.records["slow"]["error"] == "timed out after 3 s"
    assert r.records["slow"]["seconds"] < 10  # cut to the budget, not the part's own 600 s
    assert r.records["late"]["status"] == "skipped" and "time budget" in r.records["late"]["reason"]
