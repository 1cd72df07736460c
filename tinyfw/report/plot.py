"""The ablation chart: one panel per task (+ average), a horizontal bar per row (teacher on top),
error bars = std over seeds; failed/missing/collapsed cells are written where their bar would be."""

from __future__ import annotations

import io
from pathlib import Path

from tinyfw.fsutil import atomic_write_bytes
from tinyfw.report.table import TEACHER, Table


def render(table: Table, title: str = "") -> bytes:
    """The chart as PNG bytes (matplotlib, Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    labels = [label for label, _ in table.rows]
    ncol = max(1, len(table.columns))
    height = 1.2 + 0.42 * len(labels)
    fig, axes = plt.subplots(1, ncol, figsize=(3.2 + 3.4 * ncol, height), sharey=True, squeeze=False)
    ys = list(range(len(labels)))
    colors = ["0.55" if label == TEACHER else "tab:blue" if label.startswith("GD+TD+DA") else "tab:orange"
              for label in labels]
    for ax, col in zip(axes[0], table.columns):
        cells = [cells[col] for _, cells in table.rows]
        means = [c.mean if c.mean is not None else 0.0 for c in cells]
        errs = [c.std or 0.0 for c in cells]
        ax.barh(ys, means, color=colors, height=0.7)
        with_std = [(y, m, c.std) for y, m, c in zip(ys, means, cells) if c.std is not None]
        if with_std:  # error bars only where there is a spread (2+ seeds)
            ey, em, ee = zip(*with_std)
            ax.errorbar(em, ey, xerr=ee, fmt="none", ecolor="black", capsize=3)
        finite = [m for c, m in zip(cells, means) if c.mean is not None]
        hi = max(finite) if finite else 1.0
        lo = min(finite + [0.0])
        pad = 0.015 * (hi - min(lo, 0) or 1)
        for y, c, m, e in zip(ys, cells, means, errs):
            if c.mean is None:  # failed / missing / not run: say so where the bar would be
                text, color = c.text(table.digits), "tab:red"
            else:
                notes = [f"{k} {v}" for k, v in c.problems()]
                text = f"{m:.{table.digits}f}" + (f" ({', '.join(notes)})" if notes else "")
                color = "tab:red" if notes else "black"
            ax.text(max(m, 0) + e + pad, y, text, va="center", fontsize=8, color=color)
        ax.set_xlim(min(lo, 0), hi * 1.3 if hi > 0 else 1)
        ax.set_title(col if col != "avg" else "average")
        ax.set_xlabel(table.metric.get(col) or ("mean of tasks" if col == "avg" else ""))
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].set_yticks(ys, labels)
    axes[0][0].invert_yaxis()  # teacher on top, like the table
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return buf.getvalue()


def save(table: Table, path: Path, title: str = "") -> Path:
    """Write the chart to ``path`` atomically (temp file, then rename)."""
    return atomic_write_bytes(path, render(table, title))
