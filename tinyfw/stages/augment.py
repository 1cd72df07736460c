"""``stage=augment``: the task's training split expanded by word replacement (``augment/``),
built into the cache (or found there) by :mod:`tinyfw.artefacts.augmented`, which describes
the dataset, its cache key, the shards and the distributed build.

result.json ``metrics``: the build's ``stats.json`` (inputs, outputs, originals, shards,
candidates, ...), ``cache_hit``, ``waited_s``, ``wall_s``, ``task``, ``text_columns``; on a cache
hit the builder's timings sit apart under ``build``. ``outputs``: ``{"dataset": path}``.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Dict

from omegaconf import DictConfig

from tinyfw.artefacts.augmented import ensure_augmented_entry
from tinyfw.fsutil import atomic_write_json
from tinyfw.stages import RunContext, StageResult

log = logging.getLogger("tinyfw.augment")
BUILD_TIMINGS = ("seconds", "sentences_per_s", "resumed_shards", "rows_by_rank")  # the builder's, in stats.json


def run(cfg: DictConfig, ctx: RunContext) -> StageResult:
    from datasets import load_from_disk

    from tinyfw.data.tasks import load_task

    task = load_task(cfg.task, ctx.home)
    t0 = time.perf_counter()
    info: Dict[str, Any] = {}
    entry, hit = ensure_augmented_entry(cfg, ctx.home, task.splits["train"], task.text_columns, ctx.tracker, info)
    stats = json.loads((entry / "stats.json").read_text())
    ds = load_from_disk(str(entry / "data"))
    metrics = {**stats, "cache_hit": hit, "waited_s": info["waited_s"], "wall_s": round(time.perf_counter() - t0, 2),
               "task": task.name, "text_columns": task.text_columns}
    if hit:  # the build's timings are the builder's (an earlier or a concurrent job), not this run's
        metrics["build"] = {k: metrics.pop(k) for k in BUILD_TIMINGS if k in metrics}
    if ctx.is_main:
        examples = [ds[i][task.text_columns[0]] for i in range(min(6, len(ds)))]
        examples = [" ".join(x) if isinstance(x, list) else x for x in examples]  # a token task's words
        atomic_write_json(ctx.run_dir / "examples.json", examples)
        if hit:
            log.info("augmented %s: %d rows -> %d, cache hit%s; %s", task.name, stats["inputs"], stats["outputs"],
                     f" after waiting {info['waited_s']:.1f} s for another job's build" if info["waited_s"] else "",
                     entry)
        else:
            log.info("augmented %s: %d rows -> %d (%.1f sentences/s%s); %s", task.name, stats["inputs"],
                     stats["outputs"], stats["sentences_per_s"],
                     f", {stats['resumed_shards']} of {stats['shards']} shards resumed" if stats["resumed_shards"] else "",
                     entry)
    return StageResult(metrics=metrics, outputs={"dataset": str(entry / "data")})
