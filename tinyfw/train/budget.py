"""Training budgets of the TD phases: steps or epochs (``task_distill.budget``), and the
examples a finished phase drew."""

from __future__ import annotations

from typing import Any, Dict, Sequence

from omegaconf import DictConfig, OmegaConf


def phase_budgets(td: DictConfig, names: Sequence[str] = ("step1", "step2", "finetune")) -> Dict[str, Any]:
    """The train settings of the phases ``names`` under ``task_distill.budget``: ``steps`` keeps
    ``max_steps`` (which must be set), ``epochs`` drops it so ``epochs`` counts. Checked before
    any work."""
    budget = str(td.budget)
    out = {}
    for name in names:
        tc = td[name]
        if budget == "steps" and tc.max_steps <= 0:
            raise ValueError(f"task_distill.budget=steps needs task_distill.{name}.max_steps > 0 (it is "
                             f"{tc.max_steps}): set it, or count epochs with task_distill.budget=epochs")
        out[name] = OmegaConf.merge(tc, {"max_steps": -1}) if budget == "epochs" else tc
    return out


def examples_seen(res: Any, tc: Any) -> int:
    """Training examples a phase drew (optimizer steps x batch x accumulation x processes)."""
    from tinyfw import dist

    return int(res.steps * tc.batch_size * max(1, tc.grad_accum) * dist.world_size())
