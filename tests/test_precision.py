"""`precision: auto` follows the hardware (tinyfw/precision.py): bf16 where native (CUDA with bf16,
a CPU whose oneDNN has bf16), fp32 elsewhere, never fp16; explicit bf16 on a CPU without native
bf16 runs with a one-line warning; cache keys hold the resolved value. The hardware is
monkeypatched at torch's own probes."""

from __future__ import annotations

import logging

import pytest
import torch

from tinyfw import precision


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.setattr(precision, "_MADE", {})


def _cpu(monkeypatch, native: bool, cap: str) -> None:
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: native)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: cap)


def _cuda(monkeypatch, bf16: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Test GPU")


def test_auto_on_a_cpu_without_native_bf16_is_fp32(monkeypatch, caplog):
    _cpu(monkeypatch, native=False, cap="AVX2")
    with caplog.at_level(logging.INFO, logger="tinyfw.precision"):
        c = precision.resolve("auto", "cpu", "task_distill.precision")
        precision.resolve("auto", "cpu", "task_distill.precision")  # logged once
    assert (c.requested, c.resolved) == ("auto", "fp32")
    assert "AVX2" in c.reason and "not native" in c.reason
    assert len([r for r in caplog.records if "task_distill.precision" in r.getMessage()]) == 1
    assert precision.key_value("auto", "cpu") == "fp32"
    assert precision.choices()["task_distill.precision"]["resolved"] == "fp32"


def test_auto_on_a_cpu_with_native_bf16_is_bf16(monkeypatch):
    _cpu(monkeypatch, native=True, cap="AVX512")
    c = precision.resolve(precision.AUTO, "cpu", "mlm.precision")
    assert c.resolved == "bf16" and "native" in c.reason
    # the key of `auto` is the key of the precision it chose: today's bf16 defaults keep theirs
    assert precision.key_value("auto", "cpu") == precision.key_value("bf16", "cpu") == "bf16"
    assert precision.key_value(None, "cpu") is None  # null (= the global precision) stays null


def test_auto_on_cuda_follows_its_bf16_support(monkeypatch):
    _cpu(monkeypatch, native=False, cap="AVX2")  # the CPU does not matter for a GPU run
    _cuda(monkeypatch, bf16=True)
    assert precision.resolved("auto", "cuda") == "bf16"
    _cuda(monkeypatch, bf16=False)  # an old GPU: fp32, never fp16 by default
    assert precision.resolved("auto", "cuda:0", "x") == "fp32"


def test_explicit_bf16_without_native_support_runs_and_warns_in_one_line(monkeypatch, caplog):
    _cpu(monkeypatch, native=False, cap="AVX2")
    with caplog.at_level(logging.WARNING, logger="tinyfw.precision"):
        assert precision.resolved("bf16", "cpu", "mlm.precision") == "bf16"
    warn = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warn) == 1 and "\n" not in warn[0] and "slower" in warn[0] and "mlm.precision=auto" in warn[0]
    caplog.clear()
    _cpu(monkeypatch, native=True, cap="AVX512")
    with caplog.at_level(logging.WARNING, logger="tinyfw.precision"):
        precision.resolved("bf16", "cpu", "other")
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]


def test_explicit_choices_pass_through_and_bad_ones_fail(monkeypatch):
    _cpu(monkeypatch, native=True, cap="AVX512")
    assert precision.resolved("fp32", "cpu") == "fp32"
    with pytest.raises(ValueError, match="x.precision='fp8': use one of auto, fp32, bf16, fp16"):
        precision.resolve("fp8", "cpu", "x.precision")


def test_the_defaults_are_auto_where_today_bf16_and_fp32_where_today_fp32():
    from tinyfw.choices import Precision
    from tinyfw.config import AugmentCfg, Config, MlmCfg, TaskDistillCfg

    assert MlmCfg().precision == Precision.auto and TaskDistillCfg().precision == Precision.auto
    assert Config().precision == Precision.fp32  # GD / teacher: fp32 until bf16 GD is shown not to hurt
    assert AugmentCfg().precision == Precision.fp32  # bf16 changes the augmenter's candidates
