"""What of the offline default assets is present under ``<home>/assets``, and its size."""

from __future__ import annotations

from tinyfw import paths
from tinyfw.assets import container
from tinyfw.fsutil import dir_size, human_size


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
