"""Hyper-parameter search through Hydra: the entry returns the run's dev main metric, an Optuna
sweep (`hydra/sweeper=optuna_dev`, the `sweep` extra) optimises it, and stage=report lists
the trials, best first."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from tinyfw.runner import dev_objective

from conftest import run_tinyfw


def test_dev_objective_is_the_dev_main_metric():
    ok = {"status": "ok", "metrics": {"main_metric": "mcc", "dev": {"mcc": 0.25, "accuracy": 0.7}}}
    assert dev_objective(ok) == 0.25
    assert dev_objective({**ok, "status": "failed"}) is None  # the sweeper marks the trial failed
    assert dev_objective({"status": "ok", "metrics": {"tokens_per_s": 10.0}}) is None  # GD: no dev metric
    assert dev_objective({"status": "ok", "metrics": {"main_metric": "accuracy", "dev": {}}}) is None


@pytest.mark.slow
def test_optuna_sweep_of_three_trials_and_its_report(tmp_path, shared_home, monkeypatch):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper", reason="pip install '.[sweep]'")
    import optuna
    from hydra.core.global_hydra import GlobalHydra

    from tinyfw.__main__ import _hydra_main

    told = {}  # what the sweeper tells Optuna per trial: the value our entry returned
    tell = optuna.study.Study.tell

    def spy(self, trial, values=None, state=None):
        told[trial.number] = values
        return tell(self, trial, values=values, state=state)

    monkeypatch.setattr(optuna.study.Study, "tell", spy)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    sweep = tmp_path / "sweep"
    monkeypatch.setattr(sys, "argv", [
        "tinyfw", "-m", "stage=task", "experiment=smoke", "gd=off", "td=off", "augment=off",
        "hydra/sweeper=optuna_dev", "hydra.sweeper.n_trials=3", "task_distill.finetune.lr=tag(log,interval(1e-4,1e-2))",
        f"hydra.sweep.dir={sweep}", f"home={shared_home}"])
    try:
        _hydra_main()
    finally:
        GlobalHydra.instance().clear()
    recs = {int(d.name): json.loads((d / "result.json").read_text()) for d in sweep.iterdir() if d.name.isdigit()}
    assert sorted(recs) == [0, 1, 2] and all(r["status"] == "ok" for r in recs.values())
    lrs = [recs[n]["config"]["task_distill"]["finetune"]["lr"] for n in range(3)]
    assert len(set(lrs)) == 3 and all(1e-4 <= lr <= 1e-2 for lr in lrs)  # Optuna's samples
    assert told == {n: [recs[n]["metrics"]["dev"]["accuracy"]] for n in range(3)}  # the dev main metric
    best = max(v[0] for v in told.values())
    assert f"best_value: {best}" in (sweep / "optimization_results.yaml").read_text()

    res = run_tinyfw("stage=report", f"report.source={sweep}", run_dir=tmp_path / "report", home=shared_home)
    s = res["metrics"]["search"]
    assert (s["sweeper"], s["direction"], s["params"]) == ("OptunaSweeper", "maximize", ["task_distill.finetune.lr"])
    assert s["trials"] == s["trials_ok"] == 3 and s["best_value"] == best
    assert recs[int(s["best_run"])]["config"]["task_distill"]["finetune"]["lr"] == s["best_params"]["task_distill.finetune.lr"]
    md = (tmp_path / "report" / "report.md").read_text()
    section = md.split("## Hyper-parameter search", 1)[1].split("## Failed", 1)[0]
    rows = [ln for ln in section.splitlines() if re.match(r"\| \d+ \|", ln)]
    assert len(rows) == 3 and rows[0].startswith(f"| {s['best_run']} |")


def _job(root: Path, num: int, lr: float, dev, status: str = "ok",
         sweeper: str = "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper",
         direction: str = "maximize") -> None:
    """A job dir as Hydra + tinyfw leave it: result.json, .hydra/hydra.yaml, .hydra/overrides.yaml."""
    import yaml

    d = root / str(num)
    (d / ".hydra").mkdir(parents=True)
    metrics = {"main_metric": "accuracy", "dev": {"accuracy": dev}, "test": {"accuracy": dev}} if dev is not None else {}
    (d / "result.json").write_text(json.dumps({
        "stage": "task", "status": status, "metrics": metrics, "flags": {"gd": "on", "td": "on", "da": "on"},
        "config": {"stage": "task", "seed": 42, "task": {"name": "mr"}, "task_distill": {"step2": {"lr": lr}}}}))
    (d / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {
        "sweep": {"dir": str(root), "subdir": "${hydra.job.num}"},
        "sweeper": {"_target_": sweeper, "direction": direction, "params": None}}}))
    (d / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"task_distill.step2.lr={lr}", "stage=task"]))


@pytest.mark.parametrize("direction", ["maximize", "minimize"])
def test_search_section_lists_trials_best_first(tmp_path, direction):
    from tinyfw.report import records, search

    root = tmp_path / "sweep"
    for num, lr, dev in [(0, 1e-4, 0.6), (1, 3e-4, 0.8), (2, 1e-3, 0.7)]:
        _job(root, num, lr, dev, direction=direction)
    _job(root, 3, 3e-3, None, status="failed", direction=direction)
    recs, kind = records.load(str(root))
    found = search.read(root, recs)
    assert found.params == ["task_distill.step2.lr"] and found.direction == direction
    order = ["1", "2", "0"] if direction == "maximize" else ["0", "2", "1"]
    assert [t.name for t in found.trials] == order + ["3"]  # the failed trial last
    assert found.metrics()["best_params"] == {"task_distill.step2.lr": {"1": 3e-4, "0": 1e-4}[order[0]]}
    md = found.markdown()
    assert "| 1 | 0.0003 | 80.0 | 80.0 | ok |" in md and "| 3 | 0.003 | — | — | failed |" in md


def test_plain_sweep_has_no_search_section(tmp_path):
    from tinyfw.report import records, search

    root = tmp_path / "sweep"
    for num, lr in enumerate([1e-4, 3e-4]):
        _job(root, num, lr, 0.5, sweeper="hydra._internal.core_plugins.basic_sweeper.BasicSweeper")
    assert search.read(root, records.load(str(root))[0]) is None
