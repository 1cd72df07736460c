"""``stage=info``: print the resolved config and the asset inventory (proves the install)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from tinyfw.assets.inventory import inventory, print_inventory
from tinyfw.stages import RunContext, StageResult


def run(cfg: DictConfig, ctx: RunContext) -> StageResult:
    print(OmegaConf.to_yaml(cfg, resolve=True))
    inv = inventory(ctx.home)
    print_inventory(inv)
    return StageResult(metrics={"assets_present": sum(a["present"] for a in inv.values())},
                       outputs={"home": str(ctx.home), "assets": inv})
