"""A short model card (README.md) written beside a saved classifier: what it is, the data it
was trained on, its metrics and size, and how to load it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping

from tinyfw.fsutil import atomic_write_text


def param_counts(model: Any) -> Dict[str, int]:
    """Total parameters and non-embedding parameters (everything outside ``*.embeddings.*``)."""
    total = sum(p.numel() for p in model.parameters())
    emb = sum(p.numel() for n, p in model.named_parameters() if ".embeddings." in f".{n}")
    return {"params": total, "non_embedding_params": total - emb}


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _metric_rows(metrics: Mapping[str, Any]) -> str:
    rows = []
    for split, vals in metrics.items():
        if isinstance(vals, Mapping) and vals and all(isinstance(x, (int, float)) for x in vals.values()):
            rows.append(f"| {split} | " + ", ".join(f"{k} {_fmt(x)}" for k, x in vals.items()) + " |")
    return "\n".join(["| split | metrics |", "|---|---|", *rows]) if rows else "(no labelled evaluation split)"


def write_card(out_dir: Path, *, title: str, summary: str, task: Mapping[str, Any],
               metrics: Mapping[str, Any], size: Mapping[str, int], config: Mapping[str, Any],
               name: str = "") -> Path:
    """Write ``out_dir/README.md``. ``task`` = ``TaskData.describe()``; ``metrics`` =
    ``{split: {metric: value}}``; ``config`` = the settings worth recording (flat)."""
    labels = ", ".join(f"{i} = {n}" for i, n in enumerate(task.get("labels") or [])) or "regression (1 output)"
    cfg_lines = "\n".join(f"- `{k}`: {v}" for k, v in config.items())
    text = f"""# {title}

{summary}

## Data
- task: `{task.get('name')}` ({task.get('source')}), text column(s) {task.get('text_columns')}
- labels: {labels}
- examples: {task.get('sizes')}
- main metric: `{task.get('main_metric')}` (best checkpoint chosen on the dev split)

## Metrics
{_metric_rows(metrics)}

## Size
- parameters: {size.get('params', 0):,} ({size.get('non_embedding_params', 0):,} outside the embeddings)

## Settings
{cfg_lines}

## Use
```python
from transformers import AutoModelForSequenceClassification, AutoTokenizer
tok = AutoTokenizer.from_pretrained("{name}")
model = AutoModelForSequenceClassification.from_pretrained("{name}")
```
Made with tinyfw (TinyBERT-style distillation).
"""
    return atomic_write_text(Path(out_dir) / "README.md", text)
