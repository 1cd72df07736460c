"""``stage=info``: print the resolved config and the asset inventory (proves the install)."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from tinyfw import paths
from tinyfw.assets import container
from tinyfw.fsutil import dir_size, human_size
from tinyfw.stages import RunContext, StageResult


def inventory(home) -> dict:
    out = {}
    for name in paths.ASSETS:
        p = paths.asset_path(name, home)
        size = dir_size(container(name, home)) if p.exists() else 0  # e.g. vectors.kv + its .npy
        out[name] = {"path": str(p), "present": p.exists(), "bytes": size}
    return out


def print_inventory(inv: dict) -> None:
    print("asset inventory:")
    for name, a in inv.items():
        state = human_size(a["bytes"]) if a["present"] else "MISSING (run stage=assets)"
        print(f"  {name:<10} {state:>12}  {a['path']}")


def run(cfg: DictConfig, ctx: RunContext) -> StageResult:
    print(OmegaConf.to_yaml(cfg, resolve=True))
    inv = inventory(ctx.home)
    print_inventory(inv)
    return StageResult(metrics={"assets_present": sum(a["present"] for a in inv.values())},
                       outputs={"home": str(ctx.home), "assets": inv})
