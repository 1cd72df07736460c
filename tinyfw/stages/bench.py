"""``stage=bench``: what the student buys at inference.

For the teacher (``cfg.teacher``), the student (``cfg.student.shape`` with random weights and
the teacher's vocabulary, or ``bench.student_path``), extra checkpoints (``bench.models``) and,
with ``bench.paper_shapes``, the paper's BERT-base / TinyBERT4 / TinyBERT6 shapes (random
weights, vocabulary 30522): parameters (embedding / non-embedding), safetensors size, FLOPs per
sequence (analytic, cross-checked by torch's FLOP counter), median forward time at each of
``bench.batch_sizes`` for ``bench.seq_len`` tokens on CPU (and GPU when present; the models
of a group take turns, ``bench.interleave``), speed-up and
FLOPs ratio against the group's first model, and dev accuracy for classifier checkpoints.
``bench.export_dir`` (a ``stage=export`` run) adds a row per exported form (pruned PyTorch,
ONNX Runtime fp32 and int8) beside its fp32 student and fine-tuned teacher; ``bench.onnx``
adds ONNX Runtime fp32 / int8 rows of the paper TinyBERT4 shape (exported on the fly; ONNX
Runtime forms are timed on the CPU only). Writes ``bench.md`` (a Markdown table) in the run
directory. The measuring is :mod:`tinyfw.bench.compare`, the table :mod:`tinyfw.bench.render`.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any, Dict, List

import torch
from omegaconf import DictConfig
from transformers.utils import logging as hf_logging

from tinyfw.bench import exported, measure
from tinyfw.bench.compare import DevScore, Entry, add_ratios, bench_devices, from_path, measure_group, random_model
from tinyfw.bench.render import device_name, render
from tinyfw.config import ShapeCfg, plain
from tinyfw.fsutil import atomic_write_text
from tinyfw.models.load import teacher_path
from tinyfw.stages import RunContext, StageResult

log = logging.getLogger("tinyfw")

PAPER_VOCAB = 30522
PAPER_SHAPES = [  # key, label, shape (layers, hidden, FFN, heads)
    ("paper_bert_base", "BERT-base (paper shape)", ShapeCfg(12, 768, 3072, 12)),
    ("paper_tinybert4", "TinyBERT4 (paper shape)", ShapeCfg(4, 312, 1200, 12)),
    ("paper_tinybert6", "TinyBERT6 (paper shape)", ShapeCfg(6, 768, 3072, 12)),
]


def entries(cfg: DictConfig, home: Path, work: Path) -> List[Entry]:
    """The models to measure, in table order (``work``: a scratch dir for on-the-fly ONNX files)."""
    b = cfg.bench
    out: List[Entry] = []
    man = exported.read_manifest(b.export_dir) if b.export_dir else {}
    if b.config_models:
        from transformers import AutoConfig

        tpath = teacher_path(cfg.teacher, home)
        if man.get("teacher_dir") and Path(man["teacher_dir"]).is_dir():  # the fine-tuned teacher: with accuracy
            out.append(Entry("teacher", "teacher fp32 (fine-tuned)", "config", from_path(man["teacher_dir"])))
        else:
            out.append(Entry("teacher", f"teacher ({cfg.teacher.name_or_path})", "config", from_path(tpath)))
        student = b.student_path or man.get("student", "")
        if student:
            out.append(Entry("student", f"student fp32 ({Path(student).name})", "config",
                             from_path(_existing(student, "bench.student_path"))))
        else:
            vocab = AutoConfig.from_pretrained(tpath).vocab_size
            out.append(Entry("student", "student (random, cfg.student.shape)", "config",
                             random_model(cfg.student.shape, vocab, cfg.seed)))
    for key, form in (man.get("forms") or {}).items():
        if key != "fp32":
            load = exported.onnx_dir(form["path"]) if form["kind"] == "onnx" else from_path(form["path"])
            out.append(Entry(f"export_{key}", f"student {form['label']}", "config", load))
    for p in b.models:
        name = Path(p).name
        out.append(Entry(f"model_{name}", name, "config", from_path(_existing(p, "bench.models"))))
    if b.paper_shapes:
        for key, label, shape in PAPER_SHAPES:
            out.append(Entry(key, label, "paper", random_model(shape, PAPER_VOCAB, cfg.seed)))
        if b.onnx:
            shape = PAPER_SHAPES[1][2]  # TinyBERT4
            vocab = (man.get("vocab") or {}).get("after") or PAPER_VOCAB
            for int8, form in ((False, "ONNX Runtime fp32"), (True, "ONNX Runtime int8")):
                out.append(Entry(f"paper_tinybert4_onnx{'_int8' if int8 else ''}",
                                 f"TinyBERT4 (paper shape, vocab {vocab}) {form}", "paper",
                                 exported.random_onnx(shape, vocab, cfg.seed, work, int8), scored=False))
    if not out:
        raise ValueError("nothing to benchmark: set bench.config_models=true, bench.paper_shapes=true "
                         "or list checkpoints in bench.models")
    return out


def task_lengths(cfg: DictConfig, home: Path) -> tuple:
    """``bench.dynamic_rounds`` token lengths of the task's dev texts (seeded sample, the
    teacher's tokenizer, truncated at ``task.max_seq_len``) and a note; ``([], why)`` when the
    task does not load."""
    import random

    from tinyfw.data.tasks import load_task
    from tinyfw.models.load import teacher_tokenizer

    try:
        task = load_task(cfg.task, home)
        tpath = teacher_path(cfg.teacher, home)
        tok = teacher_tokenizer(cfg.teacher, home, tpath)
        split = task.splits[task.dev_split]
        cols = [list(split[c]) for c in task.text_columns]
        enc = tok(*cols, truncation=True, max_length=cfg.task.max_seq_len)["input_ids"]
    except Exception as exc:  # a missing asset or hub: report it, keep measuring
        return [], f"not measured (task {cfg.task.name}: {type(exc).__name__}: {exc})"
    lengths = [len(x) for x in enc]
    rng = random.Random(cfg.seed)
    sample = [rng.choice(lengths) for _ in range(int(cfg.bench.dynamic_rounds))]
    return sample, (f"{len(sample)} lengths drawn from the {len(lengths)} {task.dev_split} texts of task {task.name} "
                    f"(median {sorted(lengths)[len(lengths) // 2]}, max {max(lengths)} tokens, cut at {cfg.task.max_seq_len})")


def _existing(p: str, key: str) -> str:
    path = Path(p).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{key}: '{p}' is not a checkpoint directory (save_pretrained output)")
    return str(path.resolve())


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
    todo = entries(cfg, ctx.home, Path(work.name))
    score = DevScore(cfg.task, ctx.home, b.accuracy)
    load = {"before": measure.load_average()}
    results: Dict[str, Dict[str, Any]] = {}
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # per-model load/save bars would drown the table
    lengths, len_note = task_lengths(cfg, ctx.home) if b.isolate and b.dynamic_rounds > 0 else ([], "off")
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
