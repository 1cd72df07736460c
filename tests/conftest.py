"""Shared test helpers: run tinyfw's Hydra entry point in-process on temp directories."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    """``@pytest.mark.cuda`` tests skip where torch sees no GPU."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _cpu_unless_marked_cuda(request, monkeypatch):
    """On a GPU machine every test not marked ``cuda`` still trains on the CPU (as in CI), so
    the suite means the same there; ``cuda`` tests get the GPU."""
    import torch

    if not torch.cuda.is_available():
        return
    if "cuda" in request.keywords:
        monkeypatch.delenv("ACCELERATE_USE_CPU", raising=False)
    else:
        monkeypatch.setenv("ACCELERATE_USE_CPU", "true")


def run_tinyfw(*overrides: str, run_dir: Path, home: Path, expect_ok: bool = True) -> Dict[str, Any]:
    """``python -m tinyfw <overrides> hydra.run.dir=<run_dir> home=<home>``, in this process.

    Returns the run's result.json. With ``expect_ok`` a failed run fails the test with its error.
    """
    from hydra.core.global_hydra import GlobalHydra

    from tinyfw.__main__ import _hydra_main

    argv = ["tinyfw", *overrides, f"hydra.run.dir={run_dir}", f"home={home}"]
    if not any(o.startswith("logging.wandb.mode=") for o in overrides):
        argv.append("logging.wandb.mode=disabled")
    old = sys.argv
    sys.argv = argv
    error: BaseException | None = None
    try:
        _hydra_main()
    except BaseException as exc:  # hydra re-raises the stage's exception (or SystemExit)
        error = exc
    finally:
        sys.argv = old
        GlobalHydra.instance().clear()
    result_file = Path(run_dir) / "result.json"
    if not result_file.exists():
        raise AssertionError(f"no result.json in {run_dir} (error: {error!r})")
    record = json.loads(result_file.read_text())
    if expect_ok and record["status"] != "ok":
        raise AssertionError(f"run failed: {record.get('error')}\n{record.get('traceback', '')}")
    return record


@pytest.fixture(scope="session")
def shared_home(tmp_path_factory) -> Path:
    """One TINYFW_HOME for the session, so tiny random models/tokenizers are built once."""
    return tmp_path_factory.mktemp("tinyfw_home")


@pytest.fixture()
def no_wandb_env(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)


def tiny_mlm(tok: Any, cls: Any = None, hidden: int = 32, heads: int = 2) -> Any:
    """A tiny random ``BertForMaskedLM`` (or ``cls``) over ``tok``'s vocabulary, seeded (0)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    return (cls or BertForMaskedLM)(BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=2,
                                               num_attention_heads=heads, intermediate_size=2 * hidden,
                                               max_position_embeddings=128))


def save_tiny_mlm(d: Path, cls: Any = None, hidden: int = 32, heads: int = 2) -> Path:
    """:func:`tiny_mlm` (e.g. ``cls=BertForPreTraining``: the hub's layout of bert-base-uncased)
    with the built-in small tokenizer, saved in ``d``."""
    from tinyfw.models.load import write_tiny_tokenizer

    tiny_mlm(write_tiny_tokenizer(d), cls, hidden, heads).save_pretrained(d)
    return d


def max_abs_diff(model: Any, onnx_model: Any, batches) -> float:
    """Largest absolute logit difference between a PyTorch classifier and its ONNX form."""
    import numpy as np
    import torch

    from tinyfw.export.onnx import INPUTS

    worst = 0.0
    with torch.inference_mode():
        for b in batches:
            feeds = {k: b[k] for k in INPUTS if k in b}
            ref = model(**feeds).logits.float().numpy()
            got = onnx_model(**feeds).logits.numpy()
            worst = max(worst, float(np.abs(ref - got).max()))
    return worst
