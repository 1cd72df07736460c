"""Isolated CPU timing: every model in its own worker process, rounds alternating; the
agreement check's arithmetic. (No speed is asserted: speed targets live in benchmarks.)"""

from __future__ import annotations

from tinyfw.bench.compare import random_model
from tinyfw.bench.isolated import agreement, time_group
from tinyfw.config import ShapeCfg


def test_agreement_within_the_spread():
    a = {"median_s": 1.0, "p25_s": 0.9, "p75_s": 1.2}
    assert agreement(a, {"median_s": 1.15, "p25_s": 1.1, "p75_s": 1.2}, 1, 128)["agree"]  # 15% <= IQR 30%
    c = agreement(a, {"median_s": 2.0, "p25_s": 1.9, "p75_s": 2.1}, 1, 128)
    assert not c["agree"] and c["relative_difference"] == 1.0 and abs(c["tolerance"] - 0.3) < 1e-9


def test_time_group_runs_each_model_in_a_worker():
    loaders = [random_model(ShapeCfg(1, 16, 32, 2, 64), 50, s) for s in (0, 1)]
    res = time_group(loaders, [1, 2], 8, repeats=3, warmup=1, lengths=[3, 5, 7, 4], threads=1, check=1)
    assert [sorted(f) for f in res["fixed"]] == [["b1", "b2"], ["b1", "b2"]]
    assert all(f["b1"]["repeats"] == 3 and f["b1"]["median_s"] > 0 for f in res["fixed"])
    assert [d["repeats"] for d in res["dynamic"]] == [4, 4]
    assert res["check"]["batch"] == 1 and isinstance(res["check"]["agree"], bool)


def test_time_group_lets_the_other_workers_settle_before_each_timed_round(monkeypatch):
    """Before every timed round (and the back-to-back check) the parent pauses ``settle`` s, so
    the previous worker's spinning thread pool is idle when the next model is timed."""
    import tinyfw.bench.isolated as iso

    pauses = []
    monkeypatch.setattr(iso.time, "sleep", pauses.append)
    loaders = [random_model(ShapeCfg(1, 16, 32, 2, 64), 50, s) for s in (0, 1)]
    time_group(loaders, [1], 8, repeats=3, warmup=1, lengths=[3, 5, 4, 6], threads=1, check=1, settle=0.25)
    assert pauses == [0.25] * (2 * 3 + 1 + 2 * 4)  # rounds x models + the check + lengths x models
    pauses.clear()
    time_group(loaders, [1], 8, repeats=2, warmup=1, threads=1, settle=0.0)
    assert pauses == []
    assert iso.SETTLE_S >= 0.05  # the default: 20 ms was too short (BENCHMARKS.md)


def test_isolated_sections_only_for_models_timed_that_way():
    """bench.md claims worker-process timing only when some model was timed so (bench.isolate
    times fp32 on the CPU; bf16 or a GPU-only run is timed in process)."""
    from tinyfw.bench.render import render_isolated

    stats = {"median_s": 0.002, "p25_s": 0.001, "p75_s": 0.003}
    in_process = {"t": {"label": "teacher", "devices": {"cpu": {"b1": stats}}}}
    assert render_isolated(in_process, "off") == ""
    isolated = {"t": {**in_process["t"], "timing": "isolated", "dynamic": stats}}
    md = render_isolated(isolated, "40 lengths")
    assert "each model in its own worker process" in md and "| teacher | 2.00 | 1.00–3.00 |" in md
