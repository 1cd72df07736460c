"""The augmented training split: the task's training split expanded by word replacement
(``augment/``), built once into the cache in resumable shards.

:func:`ensure_augmented` is what ``stage=task augment=on`` calls, :func:`ensure_augmented_entry`
what ``stage=augment`` calls. Columns, key, shards and token tasks: docs/internals.md "The
augmented training split"; the window: :mod:`tinyfw.artefacts.augwindow`.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from omegaconf import DictConfig

from tinyfw import cache, dist, paths
from tinyfw.artefacts.augwindow import WindowPlan, is_word_list, window_plan
from tinyfw.artefacts.keys import settings
from tinyfw.fsutil import atomic_dir, atomic_write_json
from tinyfw.precision import key_value, resolved

log = logging.getLogger("tinyfw.augment")
KIND = "augmented"
OUTPUTS = ("data", "stats.json")  # what the cache entry holds (the dataset, its statistics)
NOT_IN_KEY = ("batch_size", "shard_size")  # they change how it is made, not what
KEYED_APART = ("window",)  # enters the key as the window's part, only when a text is cut (augwindow.py)


def text_columns_of(ds, text_columns: Optional[Sequence[str]] = None) -> List[str]:
    """The one or two text columns (or the one words column of a token task): given, or the
    dataset's string columns."""
    cols = list(text_columns) if text_columns else [
        c for c, f in ds.features.items() if getattr(f, "dtype", None) in ("string", "large_string")
    ]
    missing = [c for c in cols if c not in ds.column_names]
    if not missing and any(is_word_list(ds.features[c]) for c in cols) and len(cols) != 1:
        raise ValueError(f"a token task has one words column, got {cols}: set task.text_columns to it alone")
    if missing or not 1 <= len(cols) <= 2:
        raise ValueError(
            f"augmentation needs one or two text columns; got {cols} (dataset columns: {ds.column_names})"
        )
    return cols


def data_fingerprint(ds, columns: Sequence[str]) -> str:
    """A content hash of ``columns`` of ``ds`` (stable across processes, unlike in-memory
    ``datasets`` fingerprints): the JSON of its batches of 10,000 rows."""
    batches = ds.select_columns(list(columns)).iter(batch_size=10_000)
    return cache.digest(json.dumps(b, sort_keys=True, default=str).encode() for b in batches)


def _file_identity(path: Path) -> Dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime": int(st.st_mtime)}


def mlm_identity(cfg: DictConfig, home: Path) -> Dict[str, Any]:
    if cfg.augmenter.mlm == "mlm":
        from tinyfw.artefacts import mlm

        return {"stage_mlm": cache.key_of(mlm.key_parts(cfg, home))}
    return {"name_or_path": paths.resolve_name_or_path(str(cfg.augmenter.mlm), home)}


def vectors_identity(name: str, home: Path) -> Dict[str, Any]:
    if name == "smoke":
        return {"smoke": 1}
    path = Path(paths.resolve_asset(name, home)) if name in paths.ASSETS else Path(name).expanduser()
    if not path.exists():
        raise FileNotFoundError(
            f"augmenter.vectors: {path} does not exist; give `glove-50d` (after `stage=assets`), "
            "a gensim .kv file, a GloVe .txt file, or `smoke`"
        )
    return _file_identity(path)


def is_token(cfg: DictConfig, ds, text_columns: Sequence[str]) -> bool:
    """Whether ``ds`` is a token task's split (its one text column holds word lists); a task
    declared ``task.type=token`` whose column holds text is refused."""
    words = len(text_columns) == 1 and is_word_list(ds.features[text_columns[0]])
    if str(cfg.task.get("type", "sequence")) == "token" and not words:
        raise ValueError(f"task.type=token but column {list(text_columns)} holds text, not lists of words: "
                         "give the tokens column (task.tokens_column) or set task.type=sequence")
    return words


def load_vectors_cfg(name: str, home: Path, texts: Sequence[str] = ()):
    from augment import load_vectors, random_vectors, split_words

    if name == "smoke":  # deterministic random vectors over the data's words + a few common ones
        from tinyfw.models.load import tiny_vocab

        words = {w.lower() for t in texts for w in split_words(t)} | set(tiny_vocab())
        return random_vectors((w for w in words if w.isalpha()), dim=16, seed=0)
    path = paths.resolve_asset(name, home) if name in paths.ASSETS else Path(name).expanduser()
    return load_vectors(path)


def augmenter_settings(cfg: DictConfig, *leave_out: str) -> Dict[str, Any]:
    """``cfg.augmenter`` as a key's part (``NOT_IN_KEY`` and ``leave_out`` aside), its precision
    as resolved."""
    aug = settings(cfg.augmenter, *NOT_IN_KEY, *leave_out)
    aug["precision"] = key_value(cfg.augmenter.precision, where="augmenter.precision")  # auto: as resolved
    return aug


def key_parts(cfg: DictConfig, home: Path, ds, text_columns: Sequence[str],
              plan: Optional[WindowPlan] = None) -> Dict[str, Any]:
    """The key's parts; ``plan``: the window (computed here when not given). The token-task
    and window parts appear only for token tasks / when a text is longer than the window, so
    the keys of sequence tasks whose texts fit are what they were before either existed."""
    label_cols = [c for c in ds.column_names if c not in text_columns]
    aug = augmenter_settings(cfg, *KEYED_APART)
    token = is_token(cfg, ds, text_columns)
    plan = plan if plan is not None else window_plan(cfg, home, ds, text_columns)
    extra: Dict[str, Any] = {}
    if token:
        extra["type"] = "token"
    if plan is not None and plan.texts_cut:
        extra["window"] = plan.key()
    return {**extra,
        "data": data_fingerprint(ds, list(text_columns) + label_cols),
        "rows": len(ds),
        "text_columns": list(text_columns),
        "augmenter": aug,
        "mlm": mlm_identity(cfg, home),
        "vectors": vectors_identity(str(cfg.augmenter.vectors), home),
        "v": 1,
    }


def build_augmenter(cfg: DictConfig, home: Path, texts: Sequence[str], tracker: Any = None, progress: bool = True,
                    plan: Optional[WindowPlan] = None):
    """The ``augment.Augmenter`` for ``cfg.augmenter`` (masked LM built by stage=mlm if needed),
    windowed by ``plan`` when it cuts a text."""
    from augment import STOPWORDS, Augmenter, load_masked_lm

    a = cfg.augmenter
    if a.mlm == "mlm":
        from tinyfw.artefacts.mlm import ensure_mlm

        mlm_path = str(ensure_mlm(cfg, home, tracker))
    else:
        mlm_path = paths.resolve_name_or_path(str(a.mlm), home)
    device = dist.device()  # this rank's device, as training uses it
    model, tok = load_masked_lm(mlm_path, device=device)
    vectors = load_vectors_cfg(str(a.vectors), home, texts)
    aug = Augmenter(
        model, tok, vectors, n_aug=a.n_aug, p_replace=a.p_replace, top_k=a.top_k, seed=a.seed,
        targets=str(a.targets), stopwords=STOPWORDS if a.stopwords else None, alpha_only=a.alpha_only,
        second_segment=a.second_segment, multi_mask=a.multi_mask, multi_mask_gap=a.multi_mask_gap,
        mode=str(a.mode), precision=resolved(a.precision, device, "augmenter.precision"), batch_size=a.batch_size,
        device=device, progress=progress,
        **(plan.augmenter_args() if plan is not None and plan.texts_cut else {}),
    )
    return aug, mlm_path


def _augment_rows(aug, ds, text_columns: Sequence[str], start: int):
    """Augmented rows of ``ds`` (a shard starting at global row ``start``) as a Dataset."""
    from datasets import Dataset

    rows = ds.to_list()
    ids = list(range(start, start + len(rows)))
    others = [c for c in ds.column_names if c not in text_columns]
    out: Dict[str, list] = {c: [] for c in ds.column_names}
    out["source_row"], out["is_original"] = [], []
    words = len(text_columns) == 1 and is_word_list(ds.features[text_columns[0]])
    if words:  # token task: variants carry no gold tag (-1 per word)
        c0 = text_columns[0]
        groups = aug.augment_words([r[c0] for r in rows], row_ids=ids)
        for r, rid, g in zip(rows, ids, groups):
            for j, toks in enumerate(g):
                out[c0].append(toks)
                for c in others:
                    out[c].append(r[c] if j == 0 or c != "label" else [-1] * len(toks))
                out["source_row"].append(rid)
                out["is_original"].append(j == 0)
        return Dataset.from_dict(out, features=None if not len(ds) else _features(ds))
    if len(text_columns) == 1:
        c0 = text_columns[0]
        groups = aug.augment([r[c0] for r in rows], row_ids=ids)
        groups = [[(v,) for v in g] for g in groups]
    else:
        groups = aug.augment_pairs([r[text_columns[0]] for r in rows], [r[text_columns[1]] for r in rows], row_ids=ids)
    for r, rid, g in zip(rows, ids, groups):
        for j, texts in enumerate(g):
            for c, t in zip(text_columns, texts):
                out[c].append(t)
            for c in others:
                out[c].append(r[c])
            out["source_row"].append(rid)
            out["is_original"].append(j == 0)
    return Dataset.from_dict(out, features=None if not len(ds) else _features(ds))


def _features(ds):
    from datasets import Features, Value

    return Features({**ds.features, "source_row": Value("int64"), "is_original": Value("bool")})


def _sum_stats(stats: List[Dict[str, Any]]) -> Dict[str, Any]:
    tot: Dict[str, Any] = {}
    for s in stats:
        for k, v in s.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                tot[k] = tot.get(k, 0) + v
    return tot


def _shard_dir(work: Path, i: int) -> Path:
    return work / f"shard-{i:05d}"


def _shards(cfg: DictConfig, ds):
    """(shard size, number of shards) of ``ds``."""
    size = max(1, int(cfg.augmenter.shard_size))
    return size, (len(ds) + size - 1) // size


def augment_shards(cfg: DictConfig, home: Path, ds, text_columns: Sequence[str], work: Path,
                   tracker: Any = None, rank: int = 0, world: int = 1, plan: Optional[WindowPlan] = None) -> int:
    """Augment this rank's shards of ``ds`` (``i % world == rank``) into ``work``, skipping
    finished ones (resumable); each shard's ``stats.json`` records the rank. Returns their count."""
    from tqdm.auto import tqdm

    size, n_shards = _shards(cfg, ds)
    todo = [i for i in range(rank, n_shards, world) if not (_shard_dir(work, i) / "stats.json").exists()]
    if not todo:
        return 0
    texts = [t if isinstance(t, str) else " ".join(t) for c in text_columns for t in ds[c]] \
        if cfg.augmenter.vectors == "smoke" else ()
    aug, _ = build_augmenter(cfg, home, texts, tracker, progress=rank == 0, plan=plan)
    work.mkdir(parents=True, exist_ok=True)
    rows = sum(min(len(ds), (i + 1) * size) - i * size for i in todo)
    bar = tqdm(total=rows, desc=f"augment (rank 0 of {world})" if world > 1 else "augment", unit="sent",
               disable=rank != 0)
    for i in todo:
        part = ds.select(range(i * size, min(len(ds), (i + 1) * size)))
        before = dict(aug.stats())
        s0 = time.perf_counter()
        res = _augment_rows(aug, part, text_columns, i * size)
        after = aug.stats()
        stats = {k: after[k] - before.get(k, 0) for k in after if isinstance(after[k], (int, float))}
        stats.update(rows=len(part), outputs=len(res), seconds=round(time.perf_counter() - s0, 3), rank=rank)
        with atomic_dir(_shard_dir(work, i), overwrite=True) as tmp:
            res.save_to_disk(str(tmp / "data"))
            atomic_write_json(tmp / "stats.json", stats)
        bar.update(len(part))
    bar.close()
    return len(todo)


def build_augmented(cfg: DictConfig, home: Path, ds, text_columns: Sequence[str], work: Path, out: Path,
                    tracker: Any = None, resumed: int = 0, plan: Optional[WindowPlan] = None) -> Dict[str, Any]:
    """Merge the shards in ``work`` in index order into ``out/data`` (augmenting here any not
    done yet: alone, this is the whole build). ``seconds`` is the augmenting time of the
    busiest rank, ``sentences_per_s`` the rows over it."""
    from datasets import concatenate_datasets, load_from_disk

    _, n_shards = _shards(cfg, ds)
    augment_shards(cfg, home, ds, text_columns, work, tracker, plan=plan)
    merged = concatenate_datasets([load_from_disk(str(_shard_dir(work, i) / "data")) for i in range(n_shards)])
    merged.save_to_disk(str(out / "data"))
    per = [json.loads((_shard_dir(work, i) / "stats.json").read_text()) for i in range(n_shards)]
    tot = _sum_stats(per)
    by_rank: Dict[str, Dict[str, float]] = {}
    for s in per:
        r = by_rank.setdefault(str(s.get("rank", 0)), {"rows": 0, "seconds": 0.0})
        r["rows"] += s["rows"]
        r["seconds"] += s["seconds"]
    wall = max(r["seconds"] for r in by_rank.values())
    stats = {
        "inputs": len(ds),
        "outputs": len(merged),
        "originals": int(sum(merged["is_original"])) if len(merged) else 0,
        "sentences_per_s": round(tot.get("rows", 0) / max(wall, 1e-9), 2),
        "seconds": round(wall, 2),
        "resumed_shards": resumed,
        "shards": n_shards,
        "rows_by_rank": {k: v["rows"] for k, v in sorted(by_rank.items())},
        "candidates": {k: tot[k] for k in ("words", "eligible", "mlm_words", "glove_words", "glove_oov",
                                           "with_candidates", "candidates", "mlm_forwards", "mlm_tokens",
                                           "mlm_seconds", "glove_seconds", "texts_cut", "words_beyond_window")
                       if k in tot},
    }
    if plan is not None and plan.texts_cut:
        stats["window"] = plan.describe()
    c = stats["candidates"]
    c["mean_candidates"] = round(c.get("candidates", 0) / max(1, c.get("with_candidates", 0)), 3)
    c["words_with_candidates"] = round(c.get("with_candidates", 0) / max(1, c.get("eligible", 0)), 4)
    atomic_write_json(out / "stats.json", stats)
    return stats


def _prepare(cfg: DictConfig, train_dataset, text_columns: Optional[Sequence[str]]):
    cols = text_columns_of(train_dataset, text_columns)
    ds = train_dataset
    n = int(cfg.augmenter.max_examples)
    if n >= 0 and n < len(ds):
        ds = ds.select(range(n))
    if len(ds) == 0:
        raise ValueError("the training split is empty: nothing to augment")
    return ds, cols


def ensure_augmented_entry(cfg: DictConfig, home: Path, train_dataset, text_columns: Optional[Sequence[str]] = None,
                           tracker: Any = None, info: Optional[Dict[str, Any]] = None):
    """(cache entry, hit) of the augmented ``train_dataset``, built when missing; hit is also
    true when another job built it while this one waited. ``info`` (a dict) receives
    ``waited_s`` and ``resumed_shards``. In a distributed run every process must call this:
    all ranks augment, rank 0 merges."""
    info = info if info is not None else {}
    info.update(waited_s=0.0, resumed_shards=0)
    ds, cols = _prepare(cfg, train_dataset, text_columns)
    plan = window_plan(cfg, home, ds, cols)
    parts = key_parts(cfg, home, ds, cols, plan)
    entry = cache.entry(home, KIND, parts)
    if plan is not None and plan.texts_cut and dist.rank() == 0:
        log.info("augment: %s", plan.summary(len(ds)))
    if cache.present(entry):
        return entry, True
    if str(cfg.augmenter.mlm) == "mlm":  # trained by every rank together, before the ranks augment
        from tinyfw.artefacts.mlm import ensure_mlm

        ensure_mlm(cfg, home, tracker)
    size, n_shards = _shards(cfg, ds)
    # finished shards hold rows by shard size: work left with another size is not resumed
    work = cache.work_dir(home, "augment", parts, {"augmenter.shard_size": size}, resume=cfg.resume)
    # shards left by an interrupted run, counted before any rank starts
    resumed = sum((_shard_dir(work, i) / "stats.json").exists() for i in range(n_shards))
    if resumed and dist.rank() == 0:
        log.info("augment: resuming an interrupted build, %d of %d shards already done (%s)", resumed, n_shards, work)
    # every rank of a distributed run augments its shards; rank 0 merges them
    built: Dict[str, Any] = {}
    cache.ensure_made(home, KIND, parts, lambda w: augment_shards(cfg, home, ds, cols, w, tracker, dist.rank(),
                                                                  dist.world_size(), plan),
                      lambda w, tmp: build_augmented(cfg, home, ds, cols, w, tmp, tracker, resumed, plan), work=work,
                      info=built)
    info.update(waited_s=built["waited_s"], resumed_shards=resumed if built["built"] else 0)
    return entry, not built["built"]


def ensure_augmented(cfg: DictConfig, home: Path, train_dataset, text_columns: Optional[Sequence[str]] = None,
                     tracker: Any = None):
    """The augmented training split (``datasets.Dataset``) for ``cfg.augmenter``: from the
    cache, else built now (resumable) and cached. Columns: the input's, plus ``source_row``
    and ``is_original``."""
    from datasets import load_from_disk

    entry, _ = ensure_augmented_entry(cfg, home, train_dataset, text_columns, tracker)
    return load_from_disk(str(entry / "data"))
