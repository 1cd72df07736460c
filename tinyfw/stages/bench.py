"""``stage=bench``: what the student buys at inference.

Parameters, size on disk, FLOPs, CPU (and GPU) latency and dev accuracy of the teacher, the
student, extra checkpoints, the paper's shapes and exported forms, written to ``bench.md``.
The models are :mod:`tinyfw.bench.entries`, the measuring :mod:`tinyfw.bench.compare`, the
table :mod:`tinyfw.bench.render`. What is measured and the options: docs/internals.md "The
bench stage" and README "Deployment" / "Structured pruning and serving" (timing).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Dict

import torch
from omegaconf import DictConfig
from transformers.utils import logging as hf_logging

from tinyfw.bench import measure
from tinyfw.bench.compare import DevScore, add_ratios, bench_devices, measure_group
from tinyfw.bench.entries import entries, task_lengths
from tinyfw.bench.render import device_name, render
from tinyfw.config import plain
from tinyfw.fsutil import atomic_write_text
from tinyfw.stages import RunContext, StageResult


def run(cfg: DictConfig, ctx: RunContext) -> StageResult:
    b = cfg.bench
    if not b.batch_sizes or min(b.batch_sizes) < 1 or b.seq_len < 1:
        raise ValueError(f"bench.batch_sizes must be positive integers and bench.seq_len >= 1 "
                         f"(got {list(b.batch_sizes)}, {b.seq_len})")
    if b.dynamic_rounds < 0 or b.ort_tune < 0:
        raise ValueError(f"bench.dynamic_rounds={b.dynamic_rounds} and bench.ort_tune={b.ort_tune} must be >= 0 (0: off)")
    if b.onnx and b.paper_shapes:
        import importlib.util

        if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnxscript") is None:
            raise ImportError("bench.onnx needs ONNX Runtime and onnxscript: pip install '.[export]' (or bench.onnx=false)")
    from tinyfw.precision import resolved

    precision = resolved(cfg.precision, where="precision")
    devices = bench_devices(b.devices)
    work = tempfile.TemporaryDirectory(prefix="tinyfw-bench-onnx-")  # on-the-fly ONNX files
    todo = entries(b, cfg.teacher, cfg.student.shape, cfg.seed, ctx.home, Path(work.name))
    score = DevScore(cfg.task, ctx.home, b.accuracy)
    load = {"before": measure.load_average()}
    results: Dict[str, Dict[str, Any]] = {}
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # per-model load/save bars would drown the table
    lengths, len_note = (task_lengths(cfg.task, cfg.teacher, ctx.home, b.dynamic_rounds, cfg.seed)
                         if b.isolate and b.dynamic_rounds > 0 else ([], "off"))
    try:
        for group in dict.fromkeys(e.group for e in todo):
            results.update(measure_group([e for e in todo if e.group == group], b, precision, devices, score,
                                         lengths))
    finally:
        work.cleanup()
        if bars:
            hf_logging.enable_progress_bar()
    load["after"] = measure.load_average()
    add_ratios(results)
    acc_note = score.note or (f"dev {score.main} of classifier checkpoints on task {cfg.task.name}"
                              if score.main else "no classifier checkpoint among the models (— in the column)")
    table = render(results, b, precision, devices, load, acc_note)
    if b.isolate:
        from tinyfw.bench.render import render_isolated

        table += render_isolated(results, len_note)  # only what was timed in worker processes
    print(table)
    out = ctx.run_dir / "bench.md"
    if ctx.is_main:
        atomic_write_text(out, table)
    env = {"cpu": measure.cpu_model(), "torch_threads": torch.get_num_threads(),
           "devices": [device_name(d) for d in devices], "load_average": load,
           "attn": plain(b.attn), "seq_len": b.seq_len, "repeats": b.repeats, "warmup": b.warmup}
    return StageResult(metrics={"models": results, "env": env}, outputs={"markdown": str(out)})
