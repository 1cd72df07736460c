"""``prune.md``: a structured pruning's record (``stage=prune``'s metrics) as Markdown."""

from __future__ import annotations

from typing import Any, Dict


def prune_table(m: Dict[str, Any]) -> str:
    """``prune.md``: the structure before and after, then the main metric of the original
    student, the pruned one, the recovered one and every exported form (points vs the original)."""
    main, s = m["main_metric"], m["structure"]
    orig = m["phases"]["original"]
    ref = "test" if "test" in orig else "dev"
    lines = [f"- heads per layer {s['before']['heads']} -> {s['after']['heads']}; FFN per layer "
             f"{s['before']['ffn']} -> {s['after']['ffn']}; criterion {m['criterion']}",
             f"- parameters {m['params']['before']['total']:,} -> {m['params']['after']['total']:,} "
             f"(non-embedding {m['params']['before']['non_embedding']:,} -> {m['params']['after']['non_embedding']:,}); "
             f"FLOPs per sequence / {m['flops_per_seq']['ratio']:.2f}", "",
             f"| model | dev {main} | test {main} | Δ vs original (points, {ref}) |", "|---|---|---|---|"]
    from tinyfw.export.forms import LABELS

    rows = [(f"student ({k})", v) for k, v in m["phases"].items()]
    rows += [(f"pruned student, {LABELS[k]}", f) for k, f in (m.get("export") or {}).items() if k != "fp32"]
    for label, f in rows:
        cell = lambda sp: "—" if sp not in f else f"{100 * f[sp][main]:.1f}"  # noqa: E731
        delta = "—" if ref not in f else f"{100 * (f[ref][main] - orig[ref][main]):+.1f}"
        lines.append(f"| {label} | {cell('dev')} | {cell('test')} | {delta} |")
    return "\n".join(lines) + "\n"
