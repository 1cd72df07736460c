"""Measurements of one encoder: size on disk, FLOPs (analytic and counted) and median forward
time (its parameters: :func:`tinyfw.models.card.param_counts`). Every function takes explicit
arguments (no config)."""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch
from torch.utils.flop_counter import FlopCounterMode


def disk_size(model: Any) -> int:
    """Bytes of the safetensors weights ``save_pretrained`` writes (into a temporary dir)."""
    with tempfile.TemporaryDirectory(prefix="tinyfw-bench-") as tmp:
        model.save_pretrained(tmp)
        files = list(Path(tmp).glob("*.safetensors"))
        if not files:
            raise RuntimeError(f"save_pretrained wrote no .safetensors file for {type(model).__name__}")
        return sum(f.stat().st_size for f in files)


def analytic_flops(num_layers: int, hidden: int, ffn: int, seq_len: int,
                   pooler: bool = True, num_labels: int = 0) -> Dict[str, int]:
    """FLOPs of one sequence's forward pass (1 multiply-add = 2 FLOPs).

    linear: per token and layer the Q, K, V, output (4·h²) and FFN (2·h·ffn) weights;
    attention: QKᵀ and attention·V, 2·2·seq²·h per layer; head: pooler (h²) and classifier
    (h·labels) on the [CLS] token only. Softmax, LayerNorm, GELU and biases are left out
    (they are O(seq·h) and well under 1%)."""
    linear = 2 * num_layers * seq_len * (4 * hidden * hidden + 2 * hidden * ffn)
    attention = 4 * num_layers * seq_len * seq_len * hidden
    head = 2 * hidden * hidden * int(pooler) + 2 * hidden * num_labels
    return {"linear": linear, "attention": attention, "head": head,
            "total": linear + attention + head}


def counted_flops(model: Any, seq_len: int, vocab_size: int) -> int:
    """FLOPs of one sequence counted by ``torch.utils.flop_counter`` (matmuls only).

    The CPU SDPA kernel is not in the counter's table, so the count runs with eager
    attention and restores the model's kernel afterwards."""
    impl = model.config._attn_implementation
    inputs = example_inputs(1, seq_len, vocab_size, torch.device("cpu"))
    model.set_attn_implementation("eager")
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            model(**inputs)
    finally:
        model.set_attn_implementation(impl)
    return int(counter.get_total_flops())


def example_inputs(batch: int, seq_len: int, vocab_size: int, device: torch.device,
                   seed: int = 0) -> Dict[str, torch.Tensor]:
    """Random token ids (no padding) and a full attention mask."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (batch, seq_len), generator=gen)
    return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}


def _stats(times: List[float]) -> Dict[str, Any]:
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return {"median_s": statistics.median(times), "p25_s": q[0], "p75_s": q[2],
            "min_s": min(times), "repeats": len(times)}


def time_forward(model: torch.nn.Module, inputs: Dict[str, torch.Tensor], repeats: int,
                 warmup: int, autocast_dtype: Optional[torch.dtype] = None) -> Dict[str, Any]:
    """Seconds per forward call: ``warmup`` untimed calls, then ``repeats`` timed ones, in
    ``eval()`` under ``torch.inference_mode``. Returns the median, quartiles and min."""
    return time_interleaved([model], [inputs], repeats, warmup, autocast_dtype, rewarm=0)[0]


def time_interleaved(models: Sequence[torch.nn.Module], inputs: Sequence[Dict[str, torch.Tensor]],
                     repeats: int, warmup: int, autocast_dtype: Optional[torch.dtype] = None,
                     rewarm: int = 1) -> List[Dict[str, Any]]:
    """Like ``time_forward`` for several models, taking turns: each of ``repeats`` rounds runs
    every model once more (``rewarm`` untimed calls refill the caches the others evicted,
    then one timed call). A load change on a shared machine then hits all models alike, so
    their ratios stay fair."""
    if repeats < 1 or warmup < 0 or rewarm < 0:
        raise ValueError(f"bench.repeats must be >= 1 and bench.warmup >= 0 (got {repeats}, {warmup})")
    device = next(iter(inputs[0].values())).device  # ONNX Runtime forms have no parameters
    sync: Callable[[], None] = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    autocast = (torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None
                else contextlib.nullcontext())
    times: List[List[float]] = [[] for _ in models]
    for m in models:
        m.eval()
    with torch.inference_mode(), autocast:
        for m, x in zip(models, inputs):
            for _ in range(warmup):
                m(**x)
        for _ in range(repeats):
            for m, x, t in zip(models, inputs, times):
                for _ in range(rewarm if len(models) > 1 else 0):
                    m(**x)
                sync()
                t0 = time.perf_counter()
                m(**x)
                sync()
                t.append(time.perf_counter() - t0)
    return [_stats(t) for t in times]


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or the platform's processor string)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def load_average() -> Sequence[float]:
    try:
        return tuple(round(x, 2) for x in os.getloadavg())
    except OSError:
        return ()

