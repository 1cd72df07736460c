"""Values in one place: the composed configs stay what they were (cache keys are built from
them), and no YAML file under conf/ restates a value the schema (tinyfw/config.py) already holds."""

from __future__ import annotations

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
