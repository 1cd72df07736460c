"""The benchmark's Markdown report (``bench.md``): how it was measured, then one table per
device of every model's shape, size, FLOPs, latency, throughput, speed-up and accuracy."""

from __future__ import annotations

import platform
from typing import Any, Dict, List

import torch

from tinyfw.bench import measure


def device_name(d: torch.device) -> str:
    if d.type == "cuda":
        return f"GPU: {torch.cuda.get_device_name(d)}"
    return f"CPU: {measure.cpu_model()}, {torch.get_num_threads()} torch threads"


def render(results: Dict[str, Dict[str, Any]], b: Any, prec: str, devices: List[torch.device],
           load: Dict[str, Any], acc_note: str) -> str:
    """``bench.md``: the settings and environment, then one table per device (``b`` =
    ``cfg.bench``, ``prec`` the precision)."""
    import transformers

    lo, hi = min(b.batch_sizes), max(b.batch_sizes)
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

        tuned = any(r.get("ort_options") for r in results.values())
        options = ("session options chosen by measurement (below)" if tuned else
                   f"graph optimisations ORT_ENABLE_ALL, {torch.get_num_threads()} intra-op threads (as torch)")
        lines.append(f"- ONNX Runtime {onnxruntime.__version__} rows: CPU execution provider, {options}; int8 = dynamic "
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


def render_isolated(results: Dict[str, Dict[str, Any]], len_note: str) -> str:
    """The isolated CPU timing's extra sections: batch 1 at the task's real lengths (median and
    quartiles), the interleaved-vs-isolated check and the ONNX Runtime options measured; empty
    when no model was timed that way (``bench.isolate`` times fp32 on the CPU only)."""
    if not any(r.get("timing") == "isolated" for r in results.values()):
        return ""
    lines = ["", "## CPU, each model in its own worker process", "",
             "Rounds alternate between the models; while one is timed no other runtime has work "
             "(tinyfw/bench/isolated.py). Latency/throughput above are these figures.", ""]
    dyn = [r for r in results.values() if r.get("dynamic")]
    if dyn:
        lines += [f"Batch 1 at the task's real lengths (dynamic length, no padding): {len_note}.", "",
                  "| model | median ms | p25–p75 ms | speed-up (median) |", "|---|---|---|---|"]
        for r in dyn:
            t = r["dynamic"]
            sp = r.get("speedup_dynamic")
            lines.append(f"| {r['label']} | {1000 * t['median_s']:.2f} | {1000 * t['p25_s']:.2f}–{1000 * t['p75_s']:.2f} "
                         f"| {'—' if sp is None else f'{sp:.2f}×'} |")
    else:
        lines.append(f"Dynamic length: {len_note}.")
    for r in results.values():
        c = r.get("isolated_check")
        if c:
            lines += ["", f"Check, {r['label']} at batch {c['batch']}, seq {c['seq_len']}: median "
                      f"{1000 * c['interleaved_median_s']:.2f} ms in alternating rounds vs "
                      f"{1000 * c['isolated_median_s']:.2f} ms back to back: difference "
                      f"{100 * c['relative_difference']:.1f}% (tolerance {100 * c['tolerance']:.1f}%: the larger "
                      f"interquartile range, at least 10%) — {'agree' if c['agree'] else 'DISAGREE'}."]
    tuned = [r for r in results.values() if r.get("ort_options")]
    if tuned:
        lines += ["", "ONNX Runtime session options, chosen by measurement (batch 1, median ms per option):", "",
                  "| model | chosen | tried (threads/level: ms) |", "|---|---|---|"]
        for r in tuned:
            o = r["ort_options"]
            tried = ", ".join(f"{t['intra_op_threads']}/{t['graph_optimization']}: {1000 * t['median_s']:.2f}"
                              for t in o["tried"])
            ch = o["chosen"]
            lines.append(f"| {r['label']} | {ch['intra_op_threads']} threads, {ch['graph_optimization']} | {tried} |")
    return "\n".join(lines) + "\n"
