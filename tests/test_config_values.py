"""Values in one place: the composed configs stay what they were (cache keys are built from
them), and no YAML file under conf/ restates a value the schema (tinyfw/config.py) already holds."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("config_values", ROOT / "scripts" / "config_values.py")
values = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(values)


def test_composed_configs_match_the_frozen_expectation():
    """Default + every group option, alone and with preset=paper / experiment=smoke, composed
    as tests/data/composed_configs.json froze them (`python scripts/config_values.py freeze`
    after a deliberate change of a value)."""
    frozen = json.loads(values.FROZEN.read_text())
    now = values.snapshot()
    assert now["default"] == frozen["default"], values.delta(frozen["default"], now["default"])
    assert sorted(now["options"]) == sorted(frozen["options"])
    changed = {k: (frozen["options"][k], v) for k, v in now["options"].items() if frozen["options"][k] != v}
    assert not changed, changed
    assert sorted(now["combos"]) == sorted(frozen["combos"])
    assert [k for k, v in now["combos"].items() if frozen["combos"][k] != v] == []



def test_no_yaml_value_restates_the_schema_default():
    """A YAML leaf equal to the schema default at its key, which no earlier file in any
    composition overrides, says nothing: it goes (a value lives in one place)."""
    restated = {(f, k) for f, k, _ in values.restated()}
    assert [(f, k, v) for f, k, v in values.redundant() if (f, k) in restated] == []


def test_augmenter_defaults_are_the_configs():
    """``augment.Augmenter(...)`` used alone behaves as ``stage=augment`` at its defaults."""
    import inspect

    from augment import TARGET_RULES, Augmenter
    from augment.augmenter import MODES
    from tinyfw.choices import AugmentMode, TargetRule, values as choices
    from tinyfw.config import AugmentCfg

    cfg = AugmentCfg()
    params = {k: p.default for k, p in inspect.signature(Augmenter).parameters.items()
              if p.default is not inspect.Parameter.empty}
    shared = sorted(set(params) & {f.name for f in dataclasses.fields(AugmentCfg)})
    assert len(shared) >= 13, shared
    differ = {k: (params[k], getattr(cfg, k)) for k in shared
              if params[k] != (getattr(cfg, k).value if hasattr(getattr(cfg, k), "value") else getattr(cfg, k))}
    assert differ == {}, f"Augmenter default vs augmenter.* default: {differ}"
    assert TARGET_RULES == choices(TargetRule) and MODES == choices(AugmentMode)


def test_string_choices_live_in_the_enums():
    """The functions that take a choice as a plain string check it against the enum: a bad one
    fails naming the key and the enum's values."""
    import pytest
    import torch

    from tinyfw.choices import LayerMap, values as choices
    from tinyfw.distill.losses import prediction_variant
    from tinyfw.models.student import layer_mapping
    from tinyfw.precision import PRECISIONS
    from tinyfw.train.optim import make_scheduler

    with pytest.raises(ValueError, match=r"unknown distill.pred_loss 'ce': use one of soft_ce, kl, mse"):
        prediction_variant(torch.zeros(2, 3), torch.zeros(2, 3), kind="ce")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match=r"unknown schedule 'cosine': use one of linear, constant"):
        make_scheduler(opt, "cosine", 0, 10)
    with pytest.raises(ValueError, match=r"use one of uniform, nearest, top, bottom"):
        layer_mapping("middle", 2, 4)
    assert PRECISIONS == ("fp32", "bf16", "fp16") and choices(LayerMap)[0] == "uniform"


def test_token_tasks_share_one_td_budget():
    """conll2003 and pos take TD's budget from conf/td_budget/token.yaml (one place), and a
    custom token task gets the same budget with ``+td_budget=token``."""
    td = lambda *o: values.composed(values.entry.CONF_DIR, list(o))["task_distill"]
    conll, pos = td("task=conll2003"), td("task=pos")
    assert conll == pos and conll != td("task=mr")
    assert (conll["step1"]["max_steps"], conll["step2"]["max_steps"], conll["finetune"]["max_steps"]) == (1800, 1800, 3600)
    # the set with DA is capped at one pass of step 2 (1800 x 32); sentence tasks keep 19,200
    assert conll["max_train_examples"] == conll["step2"]["max_steps"] * conll["step2"]["batch_size"] == 57600
    assert td("task=mr")["max_train_examples"] == 19200
    assert td("task=custom", "task.type=token", "+td_budget=token") == conll
