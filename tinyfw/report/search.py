"""Hyper-parameter searches in the report: the trials of a sweep run by a search sweeper
(``hydra/sweeper=optuna`` or ``optuna_dev``), best first.

Read from plain files only: each job's ``.hydra/hydra.yaml`` (sweeper, direction, search
space ``hydra.sweeper.params``) and ``.hydra/overrides.yaml`` (the command line's swept keys:
those whose value differs between jobs), the sweeper's ``optimization_results.yaml`` (best
parameters and value, written when the search ends) and the job records
(``records.RunRecord``). The objective is what the tinyfw entry returns: the
run's dev main metric.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import yaml

from tinyfw.report.records import RunRecord
from tinyfw.report.table import _num, metric_key


@dataclass
class Trial:
    name: str
    status: str
    params: Dict[str, Any]
    objective: Optional[float]  # dev main metric
    test: Optional[float]  # test main metric, when the run has one


@dataclass
class Search:
    sweeper: str  # e.g. OptunaSweeper
    direction: str  # maximize | minimize
    params: List[str]  # swept config keys
    trials: List[Trial] = field(default_factory=list)  # best first, then failed/missing
    best: Dict[str, Any] = field(default_factory=dict)  # optimization_results.yaml (if written)

    def markdown(self, percent: bool = True, digits: int = 1) -> str:
        scale = 100 if percent else 1

        def cell(v: Optional[float]) -> str:
            return "—" if v is None else f"{scale * v:.{digits}f}" if percent else f"{v:.4f}"

        lines = [f"Search by `{self.sweeper}` ({self.direction} the dev main metric"
                 f"{' ×100' if percent else ''}); {len(self.trials)} trials, best first.", ""]
        if self.best:
            lines += [f"Best (the sweeper's `optimization_results.yaml`): value {self.best.get('best_value')}, "
                      f"parameters `{self.best.get('best_params')}`.", ""]
        lines += ["| trial | " + " | ".join(f"`{p}`" for p in self.params) + " | dev | test | status |",
                  "|---" * (len(self.params) + 4) + "|"]
        for t in self.trials:
            vals = " | ".join(_short(t.params.get(p, "—")) for p in self.params)
            lines.append(f"| {t.name} | {vals} | {cell(t.objective)} | {cell(t.test)} | {t.status} |")
        return "\n".join(lines)

    def metrics(self) -> Dict[str, Any]:
        top = self.trials[0] if self.trials and self.trials[0].objective is not None else None
        return {"sweeper": self.sweeper, "direction": self.direction, "params": self.params,
                "trials": len(self.trials), "trials_ok": sum(t.objective is not None for t in self.trials),
                "best_run": top.name if top else None, "best_value": top.objective if top else None,
                "best_params": top.params if top else None}


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _swept_keys(params: Dict[str, Any], jobs: List[Path]) -> List[str]:
    """The search space's keys (``hydra.sweeper.params``) and every command-line override
    whose value differs between the jobs (an interval/range/choice override of the sweep)."""
    keys = list(params or {})
    seen: Dict[str, set] = {}
    for job in jobs:
        f = job / ".hydra" / "overrides.yaml"
        for o in (yaml.safe_load(f.read_text()) or []) if f.is_file() else []:
            key, _, value = str(o).lstrip("+~").partition("=")
            seen.setdefault(key, set()).add(value)
    return keys + [k for k, vals in seen.items() if len(vals) > 1 and k not in keys]


def _main(rec: RunRecord, split: str) -> Optional[float]:
    key = metric_key(rec.metrics, split) if rec.status == "ok" else None
    return _num(rec.metrics.get(key)) if key else None


def read(root: Path, recs: List[RunRecord]) -> Optional[Search]:
    """The search in sweep dir ``root``, or None when it was a plain (basic-sweeper) sweep.
    The sweeper's settings come from the jobs' ``.hydra/hydra.yaml`` (search sweepers write
    no ``multirun.yaml``)."""
    jobs = sorted({Path(r.path) for r in recs if (Path(r.path) / ".hydra" / "hydra.yaml").is_file()})
    if not jobs:
        return None
    hc = (yaml.safe_load((jobs[0] / ".hydra" / "hydra.yaml").read_text()) or {}).get("hydra") or {}
    sweeper = hc.get("sweeper") or {}
    target = str(sweeper.get("_target_", ""))
    if not target or target.endswith("BasicSweeper"):
        return None
    d = sweeper.get("direction", "minimize")
    direction = ",".join(map(str, d)) if isinstance(d, list) else str(d)
    keys = _swept_keys(sweeper.get("params") or {}, jobs)
    trials = [Trial(r.name, r.status, {k: r.config.get(k, r.config.get(f"{k}.name")) for k in keys},
                    _main(r, "dev"), _main(r, "test")) for r in recs]
    sign = -1.0 if direction.startswith("max") else 1.0
    trials.sort(key=lambda t: (t.objective is None, sign * t.objective if t.objective is not None else math.inf))
    best_file = Path(root) / "optimization_results.yaml"
    best = yaml.safe_load(best_file.read_text()) if best_file.is_file() else {}
    return Search(sweeper=target.rsplit(".", 1)[-1], direction=direction, params=keys, trials=trials,
                  best=best or {})
