"""The wandb tracker keeps every point of curves that restart their step count (TD step 2)."""

import json
import subprocess
import sys

import pytest

from tinyfw.tracking import Tracker


def test_second_curve_restarting_at_step_one_is_kept(tmp_path, no_wandb_env):
    import wandb

    run = wandb.init(project="t", dir=str(tmp_path), mode="offline",
                     settings=wandb.Settings(silent=True, console="off"))
    tracker = Tracker(run)
    for step in range(1, 5):
        tracker.log({"step1/train/loss": 1.0 / step}, step=step)
    for step in range(1, 5):
        tracker.log({"step2/train/loss": 2.0 / step}, step=step)
    tracker.log({"step2/eval/accuracy": 0.75}, step=4)
    tracker.finish()

    log_file = next(tmp_path.rglob("run-*.wandb"))
    out = subprocess.run([sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(log_file)],
                         capture_output=True, text=True, check=True).stdout
    rows = [json.loads(line)["history"]["item"] for line in out.splitlines()
            if line.strip() and json.loads(line).get("type") == "history"]
    step2 = [(r["step2/step"], r["step2/train/loss"]) for r in rows if "step2/train/loss" in r]
    assert step2 == [(s, pytest.approx(2.0 / s)) for s in range(1, 5)]
    assert [r["step1/step"] for r in rows if "step1/train/loss" in r] == [1, 2, 3, 4]
    assert [(r["step2/step"], r["step2/eval/accuracy"]) for r in rows if "step2/eval/accuracy" in r] == [(4, 0.75)]
