"""One benchmark group measured side by side: the models to load (:class:`Entry`), what each
is without timing (parameters, size, FLOPs), forward times per device and batch size (models
taking turns when asked), dev scores of classifier checkpoints, and the ratios against the
group's first model. ``b`` is ``cfg.bench``, passed explicitly."""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from tqdm.auto import tqdm

from tinyfw.bench import exported, measure
from tinyfw.models.card import param_counts
from tinyfw.models.load import bert_config, load_strict

log = logging.getLogger("tinyfw")

_AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Entry:
    key: str  # metrics key
    label: str  # table row
    group: str  # rows are compared with the first row of their group
    load: Callable[[], Tuple[Any, Any]]  # -> (model on CPU, tokenizer or None)
    scored: bool = True  # dev accuracy when it is a classifier (random shapes: no)


def random_model(shape: Any, vocab: int, seed: int) -> Callable[[], Tuple[Any, Any]]:
    """Loader of a ``BertModel`` of ``shape`` with weights from ``seed`` (no tokenizer).
    Loaders are picklable (``partial`` of module functions): isolated timing loads each model
    again in its own worker process (:mod:`tinyfw.bench.isolated`)."""
    return partial(_random_model, shape, vocab, seed)


def _random_model(shape: Any, vocab: int, seed: int) -> Tuple[Any, Any]:
    from transformers import BertModel

    torch.manual_seed(seed)
    return BertModel(bert_config(shape, vocab)), None


def from_path(path: str) -> Callable[[], Tuple[Any, Any]]:
    """Loader of a checkpoint: a classifier (with the tokenizer saved beside it, if any) or an encoder."""
    return partial(_from_path, path)


def _from_path(path: str) -> Tuple[Any, Any]:
    from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    archs = AutoConfig.from_pretrained(path).architectures or []
    if any(a.endswith("ForSequenceClassification") for a in archs):
        from tinyfw.prune.structure import classifier_class

        model = load_strict(classifier_class(path, AutoModelForSequenceClassification), path)
        try:
            tok = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError):
            tok = None
        return model, tok
    return load_strict(AutoModel, path), None


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
        from tinyfw.data import tasks
        from tinyfw.data.collate import Collator

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
        collate = Collator(tok.pad_token_id, t.regression)
        return tasks.evaluate(model, t, split, collate)


def describe(e: Entry, b: Any) -> Tuple[Any, Any, Dict[str, Any]]:
    """Load one model (CPU, eval, ``b.attn`` kernel; ``b`` = ``cfg.bench``) and measure what
    needs no timing: parameters, safetensors size, FLOPs per sequence (analytic and counted)."""
    model, tok = e.load()
    model.eval()
    onnx = getattr(model, "is_onnx", False)  # an ONNX Runtime form: counts from its config
    if not onnx:
        model.set_attn_implementation(str(b.attn))
    c = model.config
    if c.max_position_embeddings < b.seq_len:
        raise ValueError(f"{e.label}: bench.seq_len={b.seq_len} exceeds its max_position_embeddings="
                         f"{c.max_position_embeddings}; lower bench.seq_len")
    torch_model = exported.meta_model(c) if onnx else model
    params = param_counts(torch_model)
    has_pooler = getattr(torch_model.base_model, "pooler", None) is not None
    labels = c.num_labels if hasattr(torch_model, "classifier") else 0
    flops = measure.analytic_flops(c.num_hidden_layers, c.hidden_size, c.intermediate_size,
                                   b.seq_len, pooler=has_pooler, num_labels=labels)
    from tinyfw.prune.structure import flops as pruned_flops, is_pruned, structure

    if is_pruned(c):  # heads / FFN widths per layer (stage=prune)
        flops = pruned_flops(c, b.seq_len, pooler=has_pooler, num_labels=labels)
    size = model.size_bytes() if onnx else measure.disk_size(model)
    rec: Dict[str, Any] = {
        "label": e.label, "group": e.group, "class": type(model).__name__,
        "shape": {"layers": c.num_hidden_layers, "hidden": c.hidden_size,
                  "ffn": c.intermediate_size, "heads": c.num_attention_heads, "vocab": c.vocab_size,
                  **({"ffn": "/".join(map(str, structure(c)["ffn"])),
                      "heads": "/".join(map(str, structure(c)["heads"]))} if is_pruned(c) else {})},
        "params_total": params["total"], "params_embedding": params["embedding"],
        "params_non_embedding": params["non_embedding"],
        "size_bytes": size, "size_mb": size / 1e6,
        "flops_per_seq": flops,
        "flops_counted": None if onnx else measure.counted_flops(model, b.seq_len, c.vocab_size),
        "accuracy": None, "devices": {},
    }
    return model, tok, rec


def measure_group(group: List[Entry], b: Any, precision: str, devices: List[torch.device],
                  score: DevScore, lengths: List[int] = ()) -> Dict[str, Dict[str, Any]]:
    """Describe, time (on the CPU in worker processes when ``b.isolate``, else interleaved when
    ``b.interleave``; ``b`` = ``cfg.bench``, autocast to ``precision``) and score one group of
    models; ``lengths``: the task's text lengths for the dynamic-length timing."""
    loaded = [describe(e, b) for e in tqdm(group, desc=f"bench {group[0].group}: load + size", unit="model")]
    dtype = _AUTOCAST[precision]
    for d in devices:
        here = [(e, x) for e, x in zip(group, loaded) if d.type == "cpu" or not getattr(x[0], "is_onnx", False)]
        for _, (model, _, rec) in here:  # ONNX Runtime forms run on the CPU only
            model.to(d)
            rec["devices"][d.type] = {}
        if d.type == "cpu" and getattr(b, "isolate", False) and dtype is None:
            _isolated(here, b, lengths)
            continue
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


def _isolated(here: List[Any], b: Any, lengths: List[int]) -> None:
    """CPU timing of ``here`` ((entry, (model, tok, record))) in worker processes."""
    from tinyfw.bench import isolated

    onnx = [i for i, (_, (m, _, _)) in enumerate(here) if getattr(m, "is_onnx", False)]
    check = onnx[-1] if onnx else len(here) - 1  # the last ONNX form (int8), else the last model
    load = measure.load_average()
    res = isolated.time_group([e.load for e, _ in here], list(b.batch_sizes), b.seq_len, b.repeats, b.warmup,
                              lengths, attn=str(b.attn), tune=int(b.ort_tune), check=check)
    for i, (e, (_, _, rec)) in enumerate(here):
        for bk, t in res["fixed"][i].items():
            bs = int(bk[1:])
            t.update(ms_per_example=1000 * t["median_s"] / bs, examples_per_s=bs / t["median_s"],
                     load_average_before=load)
            rec["devices"]["cpu"][bk] = t
            log.info("bench %-28s cpu b=%-3d %9.2f ms/batch (median, own process)", e.label, bs, 1000 * t["median_s"])
        rec["timing"] = "isolated"
        if res["dynamic"]:
            rec["dynamic"] = {**res["dynamic"][i], "lengths": {"n": len(lengths), "median": sorted(lengths)[len(lengths) // 2],
                                                              "min": min(lengths), "max": max(lengths)}}
        if res["ort_options"][i]:
            rec["ort_options"] = res["ort_options"][i]
        if i == check:
            rec["isolated_check"] = res["check"]


def bench_devices(names: List[Any]) -> List[torch.device]:
    """``bench.devices`` as torch devices: ``[]`` is the CPU, and the GPU when present."""
    names = [str(n) for n in names]  # Device enums give their value
    if not names:
        return [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    if "cuda" in names and not torch.cuda.is_available():
        raise ValueError("bench.devices asks for cuda but torch sees no GPU (torch.cuda.is_available() "
                         "is False): drop cuda from bench.devices or install a CUDA build of torch")
    return [torch.device(n) for n in dict.fromkeys(names)]


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
        if r.get("dynamic") and ref.get("dynamic"):
            r["speedup_dynamic"] = ref["dynamic"]["median_s"] / r["dynamic"]["median_s"]
