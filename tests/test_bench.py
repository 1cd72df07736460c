"""stage=bench: measurement helpers against hand counts, and the smoke run's table."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertForSequenceClassification, BertModel

from tinyfw.bench import measure
from tinyfw.models.card import param_counts

REPO = Path(__file__).resolve().parent.parent

# vocab 50, hidden 8, 2 layers, FFN 16, 2 heads, 20 positions, 2 token types
V, H, L, F, P, T = 50, 8, 2, 16, 20, 2


def tiny(**kw) -> BertConfig:
    return BertConfig(vocab_size=V, hidden_size=H, num_hidden_layers=L, num_attention_heads=2,
                      intermediate_size=F, max_position_embeddings=P, type_vocab_size=T, **kw)


def test_param_counts_match_hand_count():
    model = BertModel(tiny())  # with pooler
    emb = V * H + P * H + T * H + 2 * H  # word, position, token type, LayerNorm (weight + bias)
    attn = 4 * (H * H + H) + 2 * H  # Q, K, V, output dense + LayerNorm
    ffn = (H * F + F) + (F * H + H) + 2 * H  # intermediate, output dense + LayerNorm
    pooler = H * H + H
    counts = param_counts(model)
    assert counts == {"total": emb + L * (attn + ffn) + pooler, "embedding": emb,
                      "non_embedding": L * (attn + ffn) + pooler}


def test_param_counts_of_a_classifier_include_its_head():
    model = BertForSequenceClassification(tiny(num_labels=3))
    base = param_counts(BertModel(tiny()))
    counts = param_counts(model)
    assert counts["embedding"] == base["embedding"]
    assert counts["non_embedding"] == base["non_embedding"] + H * 3 + 3


def test_disk_size_is_float32_weights_plus_a_small_header():
    model = BertModel(tiny())
    n = param_counts(model)["total"]
    size = measure.disk_size(model)
    assert 4 * n <= size < 4 * n + 20_000


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_analytic_flops_equal_torch_flop_counter(attn):
    model = BertModel(tiny(attn_implementation=attn))
    seq = 12
    analytic = measure.analytic_flops(L, H, F, seq, pooler=True)
    assert analytic["attention"] == 4 * L * seq * seq * H
    assert measure.counted_flops(model, seq, V) == analytic["total"]
    assert model.config._attn_implementation == attn  # restored after counting

    clf = BertForSequenceClassification(tiny(num_labels=3))
    assert measure.counted_flops(clf, seq, V) == measure.analytic_flops(L, H, F, seq, num_labels=3)["total"]


def test_paper_shapes_flops_ratio():
    """BERT-base / TinyBERT4 at seq 128: linear-layer FLOPs give the paper's 18.7×;
    counting the attention matmuls too gives ~17.9×."""
    base = measure.analytic_flops(12, 768, 3072, 128)
    small = measure.analytic_flops(4, 312, 1200, 128)
    assert base["linear"] / small["linear"] == pytest.approx(18.66, abs=0.01)
    assert base["total"] / small["total"] == pytest.approx(17.91, abs=0.01)
    assert base["total"] / 1e9 == pytest.approx(22.35, abs=0.01)  # paper: 22.5B
    assert small["total"] / 1e9 == pytest.approx(1.25, abs=0.01)  # paper: 1.2B


def test_time_forward_reports_positive_medians():
    model = BertModel(tiny())
    t = measure.time_forward(model, measure.example_inputs(2, 8, V, torch.device("cpu")), repeats=3, warmup=1)
    assert t["repeats"] == 3 and 0 < t["min_s"] <= t["median_s"]
    small = BertModel(BertConfig(vocab_size=V, hidden_size=4, num_hidden_layers=1, num_attention_heads=1,
                                 intermediate_size=8))
    x = measure.example_inputs(1, 8, V, torch.device("cpu"))
    both = measure.time_interleaved([model, small], [x, x], repeats=4, warmup=1)
    assert [r["repeats"] for r in both] == [4, 4] and all(r["median_s"] > 0 for r in both)
    with pytest.raises(ValueError, match="bench.repeats"):
        measure.time_forward(model, measure.example_inputs(1, 8, V, torch.device("cpu")), repeats=0, warmup=0)


def _run_bench(tmp_path: Path, *overrides: str) -> dict:
    run_dir, home = tmp_path / "run", tmp_path / "home"
    env = {**os.environ, "WANDB_MODE": "disabled", "TINYFW_HOME": str(home)}
    proc = subprocess.run(
        [sys.executable, "-m", "tinyfw", "stage=bench", "experiment=smoke",
         f"hydra.run.dir={run_dir}", f"home={home}", *overrides],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((run_dir / "result.json").read_text())
    assert result["status"] == "ok"
    assert Path(result["outputs"]["markdown"]) == run_dir / "bench.md"
    return result


COLUMNS = ["model", "layers×hidden", "params M total / non-emb", "size MB", "GFLOPs/seq",
           "latency ms/ex (b=1)", "throughput ex/s (b=4)", "s/example (b=4)", "speed-up", "FLOPs ratio",
           "accuracy"]


def _table_rows(md: str) -> list[list[str]]:
    """The rows of the main (first) table; the isolated timing's sections follow it."""
    md = md.split("## CPU, each model in its own worker process")[0]
    rows = [ln for ln in md.splitlines() if ln.startswith("| ")]
    return [[c.strip() for c in ln.strip("|").split("|")] for ln in rows]


def _tiny_classifier(out: Path) -> Path:
    """A 1-layer, 2-label BertForSequenceClassification with the built-in tiny tokenizer."""
    from tinyfw.models.load import tiny_vocab, write_tiny_tokenizer

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tiny_vocab()), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, num_labels=2)
    BertForSequenceClassification(cfg).save_pretrained(out)
    write_tiny_tokenizer(out)
    return out


@pytest.mark.slow
def test_smoke_bench_writes_table_with_all_rows(tmp_path):
    clf = _tiny_classifier(tmp_path / "clf")
    result = _run_bench(tmp_path, f"bench.models=['{clf}']")
    md = (tmp_path / "run" / "bench.md").read_text()
    header, *rows = _table_rows(md)
    for col in COLUMNS:
        assert any(h.startswith(col) for h in header), (col, header)
    assert [r[0] for r in rows] == ["teacher (random)", "student (random, cfg.student.shape)", "clf"]
    for r in rows:  # every numeric cell parses and is positive
        for cell in r[2:10]:
            for num in cell.replace("×", "").replace("(", " ").replace(")", " ").replace("/", " ").split():
                assert float(num) > 0, (r[0], cell)
    assert "2 torch threads" in md or f"{torch.get_num_threads()} torch threads" in md

    models = result["metrics"]["models"]
    assert list(models) == ["teacher", "student", "model_clf"]
    t, s, c = models["teacher"], models["student"], models["model_clf"]
    assert t["accuracy"] is None and s["accuracy"] is None  # encoders without a head
    if importlib.util.find_spec("tinyfw.data.tasks"):  # dev accuracy of the classifier on the smoke task
        assert 0 <= c["accuracy"] <= 1 and c["dev"]["accuracy"] == c["accuracy"]
        assert rows[2][-1] == f"{100 * c['accuracy']:.1f}"
    assert c["class"] == "BertForSequenceClassification"
    assert c["flops_counted"] == c["flops_per_seq"]["total"]  # pooler + classifier head counted
    assert t["shape"] == {"layers": 2, "hidden": 64, "ffn": 128, "heads": 4, "vocab": t["shape"]["vocab"]}
    assert s["shape"]["vocab"] == t["shape"]["vocab"]  # the student uses the teacher's vocabulary
    for m in (t, s):
        assert m["params_total"] == m["params_embedding"] + m["params_non_embedding"] > 0
        assert m["flops_counted"] == m["flops_per_seq"]["total"]
        assert set(m["devices"]["cpu"]) == {"b1", "b4"}
        assert all(v["median_s"] > 0 and v["examples_per_s"] > 0 for v in m["devices"]["cpu"].values())
    assert t["speedup"]["cpu"]["b1"] == 1.0 and t["flops_ratio"] == 1.0
    assert s["flops_ratio"] > 1 and s["size_ratio"] > 1  # the student is smaller


@pytest.mark.slow
def test_bench_paper_shapes_only(tmp_path):
    have_ort = importlib.util.find_spec("onnxruntime") is not None
    result = _run_bench(tmp_path, "bench.config_models=false", "bench.paper_shapes=true", f"bench.onnx={have_ort}",
                        "bench.batch_sizes=[1]", "bench.repeats=1", "bench.warmup=0", "bench.seq_len=8")
    models = result["metrics"]["models"]
    onnx = ["paper_tinybert4_onnx", "paper_tinybert4_onnx_int8"] if importlib.util.find_spec("onnxruntime") else []
    assert list(models) == ["paper_bert_base", "paper_tinybert4", "paper_tinybert6", *onnx]
    base, tb4 = models["paper_bert_base"], models["paper_tinybert4"]
    assert base["params_non_embedding"] == 85_054_464 + 590_592  # 12 layers + pooler
    assert tb4["params_total"] == pytest.approx(14.35e6, rel=0.01)  # paper: 14.5M with its 312→768 fit layer
    assert base["size_mb"] / tb4["size_mb"] == pytest.approx(base["params_total"] / tb4["params_total"], rel=0.01)
    assert tb4["reference"] == "paper_bert_base"


def test_bad_bench_config_fails_early(tmp_path):
    from hydra import compose, initialize_config_dir

    from tinyfw import config
    from tinyfw.stages import RunContext, bench
    from tinyfw.tracking import Tracker

    config.register()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=smoke", "bench.batch_sizes=[]"])
    ctx = RunContext(run_dir=tmp_path, home=tmp_path / "home", tracker=Tracker())
    with pytest.raises(ValueError, match="bench.batch_sizes"):
        bench.run(cfg, ctx)
    cfg.bench.batch_sizes = [1]
    cfg.bench.ort_tune = -1
    with pytest.raises(ValueError, match="bench.ort_tune=-1"):
        bench.run(cfg, ctx)
    cfg.bench.ort_tune = 10
    cfg.bench.student_path = str(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="bench.student_path"):
        bench.run(cfg, ctx)


def test_bench_devices_default_and_explicit():
    from hydra import compose, initialize_config_dir
    from hydra.errors import ConfigCompositionException

    from tinyfw import config
    from tinyfw.__main__ import CONF_DIR
    from tinyfw.bench.compare import bench_devices

    gpu = torch.cuda.is_available()
    assert bench_devices([]) == [torch.device("cpu")] + ([torch.device("cuda")] if gpu else [])
    assert bench_devices([config.Device.cpu, "cpu"]) == [torch.device("cpu")]
    if gpu:
        assert bench_devices(["cuda"]) == [torch.device("cuda")]
    else:
        with pytest.raises(ValueError, match="bench.devices asks for cuda.*drop cuda"):
            bench_devices(["cuda"])
    config.register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["experiment=smoke", "bench.devices=[cpu]"])
        assert [str(d) for d in cfg.bench.devices] == ["cpu"]
        with pytest.raises(ConfigCompositionException) as err:
            compose("config", overrides=["bench.devices=[tpu]"])
    assert "cuda" in str(err.value.__cause__ or err.value)
