"""Collapse detection (tinyfw.train.health): one class for every input, a loss stuck at ln C."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tinyfw.train.health import check


def test_single_class_predictions_are_a_collapse():
    logits = np.tile([0.1, 0.3], (50, 1)) + np.random.default_rng(0).normal(0, 0.01, (50, 2))
    h = check(logits, regression=False, num_labels=2)
    assert h["collapsed"] and h["dev_pred_classes"] == 1 and "class 1" in h["reasons"][0]


def test_loss_that_never_left_ln_c_is_a_collapse_even_with_mixed_predictions():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 1, (40, 5))  # predictions spread over classes
    stuck = [math.log(5) + rng.normal(0, 0.005) for _ in range(100)]
    h = check(logits, regression=False, num_labels=5, losses=stuck)
    assert h["collapsed"] and h["dev_pred_classes"] > 1 and "ln 5" in h["reasons"][0]
    # a loss that starts at ln C and falls is healthy
    falling = list(np.linspace(math.log(5), 0.4, 100))
    assert not check(logits, regression=False, num_labels=5, losses=falling)["collapsed"]


def test_healthy_run_and_regression_and_nan():
    logits = np.array([[2.0, -1.0], [-1.0, 2.0], [0.5, 0.1]])
    h = check(logits, regression=False, num_labels=2, losses=[0.69, 0.5, 0.3, 0.2])
    assert not h["collapsed"] and h["reasons"] == [] and h["dev_pred_classes"] == 2
    assert check(np.full((10, 1), 3.2), regression=True, num_labels=1)["collapsed"]
    assert not check(np.linspace(0, 5, 10)[:, None], regression=True, num_labels=1)["collapsed"]
    bad = check(np.array([[np.nan, 0.0], [np.nan, 0.0]]), regression=False, num_labels=2, losses=[float("nan")])
    assert bad["collapsed"] and any("NaN" in r for r in bad["reasons"])


def test_soft_targets_near_uniform_are_not_a_collapse():
    # an unsure teacher: its soft targets' entropy is close to ln 2, so a healthy student's
    # soft cross-entropy also stays close to ln 2 while its predictions are right
    logits = np.array([[1.0, -1.0], [-1.0, 1.0]] * 10)
    flat = [0.69, 0.685, 0.682, 0.681] * 10
    assert check(logits, regression=False, num_labels=2, losses=flat)["collapsed"]  # hard-label reading
    h = check(logits, regression=False, num_labels=2, losses=flat, loss_floor=0.672)
    assert not h["collapsed"] and h["loss_floor"] == 0.672
    # a confident teacher (floor 0.1) and a loss that never moved: collapsed
    assert check(logits, regression=False, num_labels=2, losses=[0.693] * 20, loss_floor=0.1)["collapsed"]


def test_soft_entropy_matches_hand_values():
    from tinyfw.distill.steps import soft_entropy

    assert soft_entropy(np.zeros((3, 2)), 1.0) == pytest.approx(math.log(2))
    assert soft_entropy(np.array([[50.0, 0.0]]), 1.0) == pytest.approx(0.0, abs=1e-9)
