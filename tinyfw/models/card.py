"""A short model card (README.md) written beside a saved classifier: what it is, the data it
was trained on, its metrics and size, and how to load it; optionally headed by Hugging Face
metadata (``hub_metadata``: base model, datasets, metrics, license, model-index results), the
YAML block the Hub renders."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from tinyfw.data.tasks import GLUE_HUB
from tinyfw.fsutil import atomic_write_text


def param_counts(model: Any) -> Dict[str, int]:
    """Total, embedding (the ``embeddings`` block: word, position, token-type, LayerNorm) and
    non-embedding parameters (encoder layers, pooler, heads); tied weights count once.
    (``num_parameters(exclude_embeddings=True)`` would count the embeddings' LayerNorm as
    non-embedding.)"""
    total = sum(p.numel() for p in model.parameters())
    emb_module = getattr(getattr(model, "base_model", model), "embeddings", None)
    if emb_module is None:
        raise ValueError(f"{type(model).__name__} has no `embeddings` block; cannot split its parameters")
    emb = sum(p.numel() for p in emb_module.parameters())
    return {"total": total, "embedding": emb, "non_embedding": total - emb}


def card_size(model: Any) -> Dict[str, int]:
    """The size a model card and result.json give: ``params`` and ``non_embedding_params``."""
    n = param_counts(model)
    return {"params": n["total"], "non_embedding_params": n["non_embedding"]}


# asset short names -> the Hub model they are a copy of (for `base_model` in card metadata)
HUB_NAMES = {"minilm-l6": "sentence-transformers/all-MiniLM-L6-v2"}


def hub_model_name(name_or_path: str) -> Optional[str]:
    """The Hub id a teacher setting refers to: an asset's source model, a hub name as is;
    None for local paths and random models."""
    if name_or_path in HUB_NAMES:
        return HUB_NAMES[name_or_path]
    if name_or_path in ("", "random") or name_or_path.startswith((".", "/", "~")) or Path(name_or_path).exists():
        return None
    return name_or_path


def hub_metadata(*, model_name: str, task: Mapping[str, Any], metrics: Mapping[str, Mapping[str, float]],
                 base_model: Optional[str], datasets: Sequence[str], license: str,
                 tags: Sequence[str] = ()) -> Any:
    """``huggingface_hub.ModelCardData`` for a text classifier: ``metrics`` = ``{split:
    {metric: value}}`` become model-index results on ``datasets[0]`` (or the task's name)."""
    from huggingface_hub import EvalResult, ModelCardData

    name = str(task.get("name"))
    dataset = list(datasets)[0] if datasets else name
    results: List[Any] = [
        EvalResult(task_type="text-classification", dataset_type=dataset, dataset_name=name,
                   dataset_config=name if dataset == GLUE_HUB else None,
                   dataset_split="validation" if split == "dev" else split,
                   metric_type=metric, metric_value=float(value))
        for split, vals in metrics.items() for metric, value in vals.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool)
    ]
    names = sorted({r.metric_type for r in results})
    return ModelCardData(language="en", license=license or None, library_name="transformers",
                         pipeline_tag="text-classification", base_model=base_model or None,
                         datasets=list(datasets) or [name], metrics=names or None,
                         tags=["tinyfw", "distillation", *tags], model_name=model_name,
                         eval_results=results or None)


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
               name: str = "", metadata: Any = None, usage: str = "") -> Path:
    """Write ``out_dir/README.md``. ``task`` = ``TaskData.describe()``; ``metrics`` =
    ``{split: {metric: value}}``; ``config`` = the settings worth recording (flat);
    ``metadata`` = ``hub_metadata(...)`` for the YAML header; ``usage`` replaces the
    transformers snippet of the Use section."""
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
{usage or _TRANSFORMERS_USE.format(name=name)}
```
Made with tinyfw (TinyBERT-style distillation).
"""
    if metadata is not None:
        from huggingface_hub import ModelCard

        text = str(ModelCard(f"---\n{metadata.to_yaml()}\n---\n\n{text}"))
    return atomic_write_text(Path(out_dir) / "README.md", text)


_TRANSFORMERS_USE = """from transformers import AutoModelForSequenceClassification, AutoTokenizer
tok = AutoTokenizer.from_pretrained("{name}")
model = AutoModelForSequenceClassification.from_pretrained("{name}")"""
