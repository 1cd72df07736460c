"""``stage=assets``: fetch and build the offline default assets into ``<home>/assets``.

Idempotent: assets already present are skipped, so a second run fetches nothing.
"""

from __future__ import annotations

from omegaconf import DictConfig

from tinyfw.assets import provision
from tinyfw.stages import RunContext, StageResult
from tinyfw.assets.inventory import inventory, print_inventory


def run(cfg: DictConfig, ctx: RunContext) -> StageResult:
    print(f"provisioning assets into {ctx.home / 'assets'} (archives cached in {ctx.home / 'downloads'})")
    metrics, outputs = provision(ctx.home)
    print_inventory(inventory(ctx.home))
    return StageResult(metrics=metrics, outputs=outputs)
