"""``stage=bench``: what the student buys at inference.

For the teacher (``cfg.teacher``), the student (``cfg.student.shape`` with random weights and
the teacher's vocabulary, or ``bench.student_path``), extra checkpoints (``bench.models``) and,
with ``bench.paper_shapes``, the paper's BERT-base / TinyBERT4 / TinyBERT6 shapes (random
weights, vocabulary 30522): parameters (embedding / non-embedding), safetensors size, FLOPs per
sequence (analytic, cross-checked by torch's FLOP counter), median forward time at each of
``bench.batch_sizes`` for ``bench.seq_len`` tokens on ``bench.devices`` (default: the CPU, and
the GPU when present; the models of a group take turns, ``bench.interleave``), speed-up and
FLOPs ratio against the group's first model, and dev accuracy for classifier checkpoints.
``bench.export_dir`` (a ``stage=export`` run) adds a row per exported form (pruned PyTorch,
ONNX Runtime fp32 and int8) beside its fp32 student and fine-tuned teacher; ``bench.onnx``
adds ONNX Runtime fp32 / int8 rows of the paper TinyBERT4 shape (exported on the fly; ONNX
Runtime forms are timed on the CPU only). Writes ``bench.md`` (a Markdown table) in the run
directory.
"""

from __future__ import annotations

import gc
import logging
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from omegaconf import DictConfig
from tqdm.auto import tqdm
from transformers.utils import logging as hf_logging

from tinyfw.bench import exported, measure
from tinyfw.config import ShapeCfg
from tinyfw.fsutil import atomic_write_text
from tinyfw.models.load import bert_config, load_strict, teacher_path
from tinyfw.stages import RunContext, StageResult

log = logging.getLogger("tinyfw")

PAPER_VOCAB = 30522
PAPER_SHAPES = [  # key, label, shape (layers, hidden, FFN, heads)
    ("paper_bert_base", "BERT-base (paper shape)", ShapeCfg(12, 768, 3072, 12)),
    ("paper_tinybert4", "TinyBERT4 (paper shape)", ShapeCfg(4, 312, 1200, 12)),
    ("paper_tinybert6", "TinyBERT6 (paper shape)", ShapeCfg(6, 768, 3072, 12)),
]
_AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Entry:
    key: str  # metrics key
    label: str  # table row
    group: str  # rows are compared with the first row of their group
    load: Callable[[], Tuple[Any, Any]]  # -> (model on CPU, tokenizer or None)
    scored: bool = True  # dev accuracy when it is a classifier (random shapes: no)


def _random(shape: Any, vocab: int, seed: int) -> Callable[[], Tuple[Any, Any]]:
    def load():
        from transformers import BertModel

        torch.manual_seed(seed)
        return BertModel(bert_config(shape, vocab)), None

    return load


def _from_path(path: str) -> Callable[[], Tuple[Any, Any]]:
    def load():
        from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

        archs = AutoConfig.from_pretrained(path).architectures or []
        if any(a.endswith("ForSequenceClassification") for a in archs):
            model = load_strict(AutoModelForSequenceClassification, path)
            try:
                tok = AutoTokenizer.from_pretrained(path)
            except (OSError, ValueError):
                tok = None
            return model, tok
        return load_strict(AutoModel, path), None

    return load


def entries(cfg: DictConfig, home: Path, work: Path) -> List[Entry]:
    """The models to measure, in table order (``work``: a scratch dir for on-the-fly ONNX files)."""
    b = cfg.bench
    out: List[Entry] = []
    man = exported.read_manifest(b.export_dir) if b.export_dir else {}
    if b.config_models:
        from transformers import AutoConfig

        tpath = teacher_path(cfg.teacher, home)
        if man.get("teacher_dir") and Path(man["teacher_dir"]).is_dir():  # the fine-tuned teacher: with accuracy
            out.append(Entry("teacher", "teacher fp32 (fine-tuned)", "config", _from_path(man["teacher_dir"])))
        else:
            out.append(Entry("teacher", f"teacher ({cfg.teacher.name_or_path})", "config", _from_path(tpath)))
        student = b.student_path or man.get("student", "")
        if student:
            out.append(Entry("student", f"student fp32 ({Path(student).name})", "config",
                             _from_path(_existing(student, "bench.student_path"))))
        else:
            vocab = AutoConfig.from_pretrained(tpath).vocab_size
            out.append(Entry("student", "student (random, cfg.student.shape)", "config",
                             _random(cfg.student.shape, vocab, cfg.seed)))
    for key, form in (man.get("forms") or {}).items():
        if key != "fp32":
            load = exported.onnx_dir(form["path"]) if form["kind"] == "onnx" else _from_path(form["path"])
            out.append(Entry(f"export_{key}", f"student {form['label']}", "config", load))
    for p in b.models:
        name = Path(p).name
        out.append(Entry(f"model_{name}", name, "config", _from_path(_existing(p, "bench.models"))))
    if b.paper_shapes:
        for key, label, shape in PAPER_SHAPES:
            out.append(Entry(key, label, "paper", _random(shape, PAPER_VOCAB, cfg.seed)))
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


def _existing(p: str, key: str) -> str:
    path = Path(p).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(f"{key}: '{p}' is not a checkpoint directory (save_pretrained output)")
    return str(path.resolve())


class DevScore:
    """The task's dev metrics for classifier checkpoints, through the task module (loaded once,
    on the first classifier). Failures are recorded in ``note`` and scores left empty: the
    benchmark is about speed and size, so a missing task does not stop it."""

    def __init__(self, task_cfg: Any, home: Path, enabled: bool):
        self.task_cfg, self.home, self.task = task_cfg, home, None
        self.note = "" if enabled else "off (bench.accuracy=false)"
        self.main = ""

    def __call__(self, label: str, model: Any, tok: Any) -> Optional[Dict[str, float]]:
        if self.note or not (hasattr(model, "classifier") or getattr(model, "is_onnx", False)):
            return None
        if tok is None:
            log.warning("bench: %s has no tokenizer beside it; dev score skipped", label)
            return None
        try:
            from tinyfw.data import tasks
        except ImportError:
            self.note = "not measured (no task module tinyfw/data/tasks.py)"
            return None
        if self.task is None:
            try:
                self.task = tasks.load_task(self.task_cfg, self.home)
            except Exception as exc:  # a missing asset or hub: report it, keep measuring speed
                self.note = f"not measured (task {self.task_cfg.name}: {type(exc).__name__}: {exc})"
                return None
            self.main = self.task.main_metric
        t = self.task
        if model.config.num_labels != t.num_labels:
            raise ValueError(f"{label} has {model.config.num_labels} labels but task {t.name} has "
                             f"{t.num_labels}: pass the task it was trained on (task=...) or bench.accuracy=false")
        split = tasks.tokenize(t.splits[t.dev_split], t.text_columns, tok, self.task_cfg.max_seq_len)
        collate = tasks.Collator(tok.pad_token_id or 0, t.regression)
        return tasks.evaluate(model, t, split, collate)


def describe(e: Entry, cfg: DictConfig) -> Tuple[Any, Any, Dict[str, Any]]:
    """Load one model (CPU, eval, ``bench.attn`` kernel) and measure what needs no timing:
    parameters, safetensors size, FLOPs per sequence (analytic and counted)."""
    b = cfg.bench
    model, tok = e.load()
    model.eval()
    onnx = getattr(model, "is_onnx", False)  # an ONNX Runtime form: counts from its config
    if not onnx:
        model.set_attn_implementation(b.attn)
    c = model.config
    if c.max_position_embeddings < b.seq_len:
        raise ValueError(f"{e.label}: bench.seq_len={b.seq_len} exceeds its max_position_embeddings="
                         f"{c.max_position_embeddings}; lower bench.seq_len")
    torch_model = exported.meta_model(c) if onnx else model
    params = measure.param_counts(torch_model)
    has_pooler = getattr(torch_model.base_model, "pooler", None) is not None
    labels = c.num_labels if hasattr(torch_model, "classifier") else 0
    flops = measure.analytic_flops(c.num_hidden_layers, c.hidden_size, c.intermediate_size,
                                   b.seq_len, pooler=has_pooler, num_labels=labels)
    size = model.size_bytes() if onnx else measure.disk_size(model)
    rec: Dict[str, Any] = {
        "label": e.label, "group": e.group, "class": type(model).__name__,
        "shape": {"layers": c.num_hidden_layers, "hidden": c.hidden_size,
                  "ffn": c.intermediate_size, "heads": c.num_attention_heads, "vocab": c.vocab_size},
        "params_total": params["total"], "params_embedding": params["embedding"],
        "params_non_embedding": params["non_embedding"],
        "size_bytes": size, "size_mb": size / 1e6,
        "flops_per_seq": flops,
        "flops_counted": None if onnx else measure.counted_flops(model, b.seq_len, c.vocab_size),
        "accuracy": None, "devices": {},
    }
    return model, tok, rec


def measure_group(group: List[Entry], cfg: DictConfig, devices: List[torch.device],
                  score: DevScore) -> Dict[str, Dict[str, Any]]:
    """Describe, time (interleaved when ``bench.interleave``) and score one group of models."""
    b = cfg.bench
    loaded = [describe(e, cfg) for e in tqdm(group, desc=f"bench {group[0].group}: load + size", unit="model")]
    dtype = _AUTOCAST[getattr(cfg.precision, "value", str(cfg.precision))]
    for d in devices:
        here = [(e, x) for e, x in zip(group, loaded) if d.type == "cpu" or not getattr(x[0], "is_onnx", False)]
        for _, (model, _, rec) in here:  # ONNX Runtime forms run on the CPU only
            model.to(d)
            rec["devices"][d.type] = {}
        for bs in b.batch_sizes:
            models = [m for _, (m, _, _) in here]
            inputs = [measure.example_inputs(bs, b.seq_len, m.config.vocab_size, d) for m in models]
            load = measure.load_average()
            if b.interleave:
                stats = measure.time_interleaved(models, inputs, b.repeats, b.warmup, dtype, rewarm=1)
            else:
                stats = [measure.time_forward(m, x, b.repeats, b.warmup, dtype) for m, x in zip(models, inputs)]
            for (e, (_, _, rec)), t in zip(here, stats):
                t["ms_per_example"] = 1000 * t["median_s"] / bs
                t["examples_per_s"] = bs / t["median_s"]
                t["load_average_before"] = load
                rec["devices"][d.type][f"b{bs}"] = t
                log.info("bench %-28s %s b=%-3d %9.2f ms/batch (median)", e.label, d.type, bs, 1000 * t["median_s"])
    out: Dict[str, Dict[str, Any]] = {}
    for e, (model, tok, rec) in zip(group, loaded):
        rec["dev"] = score(e.label, model, tok) if e.scored else None  # every metric of the task, or None
        rec["accuracy"] = rec["dev"][score.main] if rec["dev"] else None  # the task's main metric
        out[e.key] = rec
    del loaded, model
    gc.collect()
    return out


def add_ratios(results: Dict[str, Dict[str, Any]]) -> None:
    """Speed-up (reference time / own time, per device and batch) and FLOPs ratios against
    the first model of each group."""
    refs: Dict[str, str] = {}
    for key, r in results.items():
        ref = results[refs.setdefault(r["group"], key)]
        r["reference"] = refs[r["group"]]
        r["flops_ratio"] = ref["flops_per_seq"]["total"] / r["flops_per_seq"]["total"]
        r["flops_ratio_linear"] = ref["flops_per_seq"]["linear"] / r["flops_per_seq"]["linear"]
        r["size_ratio"] = ref["size_bytes"] / r["size_bytes"]
        for name, stat in (("speedup", "median_s"), ("speedup_min", "min_s")):  # min: least load-sensitive
            r[name] = {dev: {bk: ref["devices"][dev][bk][stat] / t[stat] for bk, t in per_b.items()}
                       for dev, per_b in r["devices"].items()}


def bench_devices(names: List[Any]) -> List[torch.device]:
    """``bench.devices`` as torch devices: ``[]`` is the CPU, and the GPU when present."""
    names = [getattr(n, "value", str(n)) for n in names]
    if not names:
        return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    if "cuda" in names and not torch.cuda.is_available():
        raise ValueError("bench.devices asks for cuda but torch sees no GPU (torch.cuda.is_available() "
                         "is False): drop cuda from bench.devices or install a CUDA build of torch")
    return [torch.device(n) for n in dict.fromkeys(names)]


def device_name(d: torch.device) -> str:
    if d.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(d)}"
    return f"CPU: {measure.cpu_model()}, {torch.get_num_threads()} torch threads"


def render(results: Dict[str, Dict[str, Any]], cfg: DictConfig, devices: List[torch.device],
           load: Dict[str, Any], acc_note: str) -> str:
    import transformers

    b = cfg.bench
    lo, hi = min(b.batch_sizes), max(b.batch_sizes)
    prec = getattr(cfg.precision, "value", str(cfg.precision))
    lines = [
        "# tinyfw inference benchmark", "",
        f"- seq_len {b.seq_len}, batch sizes {list(b.batch_sizes)}, median of {b.repeats} timed forwards "
        f"after {b.warmup} warm-up, `eval()` + `torch.inference_mode()`, attention `{b.attn}`, precision {prec}"
        + (", models of a group timed in turns (one untimed call before each timed one)" if b.interleave else ""),
        f"- torch {torch.__version__}, transformers {transformers.__version__}, Python {platform.python_version()}",
        f"- load average (1/5/15 min) before {load['before']}, after {load['after']}",
        "- speed-up and FLOPs ratio are against the first row of each group "
        "(the configured teacher; BERT-base for the paper shapes); FLOPs per sequence are analytic "
        "(linear layers + attention matmuls + [CLS] head), the linear-only ratio in brackets",
        f"- accuracy: {acc_note or 'dev accuracy of classifier checkpoints'}",
    ]
    if any(r["class"] == "OrtClassifier" for r in results.values()):
        import onnxruntime

        lines.append(f"- ONNX Runtime {onnxruntime.__version__} rows: CPU execution provider, graph optimisations "
                     f"ORT_ENABLE_ALL, {torch.get_num_threads()} intra-op threads (as torch); int8 = dynamic "
                     "quantization (quantize_dynamic); parameters and FLOPs from the model's config")
    for d in devices:
        lines += ["", f"## {device_name(d)}", "",
                  f"| model | layers×hidden (FFN, heads) | params M total / non-emb | size MB | GFLOPs/seq "
                  f"| latency ms/ex (b={lo}) | throughput ex/s (b={hi}) | s/example (b={hi}) "
                  f"| speed-up b={lo} / b={hi} | FLOPs ratio | accuracy (dev, ×100) |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in (r for r in results.values() if d.type in r["devices"]):
            s, t = r["shape"], r["devices"][d.type]
            acc = "—" if r["accuracy"] is None else f"{100 * r['accuracy']:.1f}"
            lines.append(
                f"| {r['label']} | {s['layers']}×{s['hidden']} ({s['ffn']}, {s['heads']}) "
                f"| {r['params_total'] / 1e6:.4g} / {r['params_non_embedding'] / 1e6:.4g} "
                f"| {r['size_mb']:.4g} | {r['flops_per_seq']['total'] / 1e9:.3g} "
                f"| {t[f'b{lo}']['ms_per_example']:.2f} | {t[f'b{hi}']['examples_per_s']:.1f} "
                f"| {1 / t[f'b{hi}']['examples_per_s']:.5f} "
                f"| {r['speedup'][d.type][f'b{lo}']:.2f}× / {r['speedup'][d.type][f'b{hi}']:.2f}× "
                f"| {r['flops_ratio']:.2f}× ({r['flops_ratio_linear']:.2f}×) | {acc} |")
    return "\n".join(lines) + "\n"


def run(cfg: DictConfig, ctx: RunContext) -> StageResult:
    b = cfg.bench
    if not b.batch_sizes or min(b.batch_sizes) < 1 or b.seq_len < 1:
        raise ValueError(f"bench.batch_sizes must be positive integers and bench.seq_len >= 1 "
                         f"(got {list(b.batch_sizes)}, {b.seq_len})")
    if b.attn not in ("sdpa", "eager"):
        raise ValueError(f"bench.attn must be 'sdpa' or 'eager' (got '{b.attn}')")
    if b.onnx and b.paper_shapes:
        import importlib.util

        if importlib.util.find_spec("onnxruntime") is None or importlib.util.find_spec("onnxscript") is None:
            raise ImportError("bench.onnx needs ONNX Runtime and onnxscript: pip install '.[export]' (or bench.onnx=false)")
    devices = bench_devices(b.devices)
    work = tempfile.TemporaryDirectory(prefix="tinyfw-bench-onnx-")  # on-the-fly ONNX files
    todo = entries(cfg, ctx.home, Path(work.name))
    score = DevScore(cfg.task, ctx.home, b.accuracy)
    load = {"before": measure.load_average()}
    results: Dict[str, Dict[str, Any]] = {}
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # per-model load/save bars would drown the table
    try:
        for group in dict.fromkeys(e.group for e in todo):
            results.update(measure_group([e for e in todo if e.group == group], cfg, devices, score))
    finally:
        work.cleanup()
        if bars:
            hf_logging.enable_progress_bar()
    load["after"] = measure.load_average()
    add_ratios(results)
    acc_note = score.note or (f"dev {score.main} of classifier checkpoints on task {cfg.task.name}"
                              if score.main else "no classifier checkpoint among the models (— in the column)")
    table = render(results, cfg, devices, load, acc_note)
    print(table)
    out = ctx.run_dir / "bench.md"
    if ctx.is_main:
        atomic_write_text(out, table)
    env = {"cpu": measure.cpu_model(), "torch_threads": torch.get_num_threads(),
           "devices": [device_name(d) for d in devices], "load_average": load,
           "attn": b.attn, "seq_len": b.seq_len, "repeats": b.repeats, "warmup": b.warmup}
    return StageResult(metrics={"models": results, "env": env}, outputs={"markdown": str(out)})
