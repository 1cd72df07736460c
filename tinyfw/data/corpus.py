"""The unlabeled corpus for general distillation (and MLM adaptation): :func:`load_corpus` turns
a source (``offline``, ``smoke``, local files, a hub dataset) into a dataset with one ``text``
column; :func:`tokenize_and_segment` packs it into ``max_seq_len`` segments with a held-out
part, cached on disk by the source's identity. Sources and cache key: docs/internals.md,
"The unlabeled corpus".
"""

from __future__ import annotations

import glob as _glob
import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from tinyfw import cache, paths
from tinyfw.data import textfile

log = logging.getLogger("tinyfw.data")

BUILDERS = {".txt": "text", ".text": "text", ".cor": "text", ".json": "json", ".jsonl": "json",
            ".parquet": "parquet", ".csv": "csv"}
SOURCES_HELP = ("corpus.source must be `offline`, `smoke`, a hub dataset name, or local "
                ".txt/.json/.jsonl/.parquet/.csv file(s) (a file, a directory or a glob)")


class CorpusError(ValueError):
    pass


def _smoke_path() -> Path:
    from gensim.test.utils import datapath

    return Path(datapath("lee_background.cor"))


def local_files(source: str, home: Path) -> Optional[List[Path]]:
    """The local files ``source`` names, or None when it is a hub name."""
    if source == "offline":
        return [paths.resolve_asset("offline", home)]
    if source == "smoke":
        return [_smoke_path()]
    p = Path(source).expanduser()
    if any(c in source for c in "*?["):
        files = sorted(Path(f) for f in _glob.glob(str(p), recursive=True) if Path(f).is_file())
        if not files:
            raise FileNotFoundError(f"corpus glob '{source}' matches no file. {SOURCES_HELP}")
        return files
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in BUILDERS)
        if not files:
            raise FileNotFoundError(
                f"corpus directory '{source}' holds no {'/'.join(sorted(BUILDERS))} file. {SOURCES_HELP}"
            )
        return files
    if p.is_file():
        return [p]
    if source.startswith((".", "/", "~")) or p.suffix.lower() in BUILDERS:
        raise FileNotFoundError(f"corpus file '{source}' does not exist. {SOURCES_HELP}")
    return None


def _builder(files: List[Path]) -> str:
    kinds = {BUILDERS.get(f.suffix.lower()) for f in files}
    if None in kinds:
        bad = [str(f) for f in files if f.suffix.lower() not in BUILDERS][:3]
        raise CorpusError(f"unsupported corpus file type: {bad}. {SOURCES_HELP}")
    if len(kinds) > 1:
        raise CorpusError(f"corpus files mix formats {sorted(kinds)}; point corpus.source at one format")
    return kinds.pop()


def source_identity(source: str, home: Path, config_name: Optional[str] = None, split: str = "train") -> Dict[str, Any]:
    """What the corpus content depends on: file paths + sizes + mtimes, or the hub name."""
    files = local_files(source, home)
    if files is None:
        return {"hub": source, "config": config_name, "split": split}
    return {"files": [[str(f.resolve()), f.stat().st_size, int(f.stat().st_mtime)] for f in files]}


def load_corpus(
    source: str,
    home: Path,
    config_name: Optional[str] = None,
    split: str = "train",
    text_column: str = "text",
    streaming: bool = False,
    max_docs: int = -1,
):
    """A ``Dataset`` (or ``IterableDataset`` when streaming) with one column ``text``,
    empty documents dropped; see the module docstring for ``source``."""
    from datasets import load_dataset

    files = local_files(source, home)
    if files is None:
        ds = load_dataset(source, config_name, split=split, streaming=streaming)
        where = f"hub dataset '{source}'"
    else:
        builder = _builder(files)
        for f in files:  # empty, not UTF-8, ...: named before datasets fails obscurely
            try:
                textfile.check(f, "corpus file")
            except textfile.DataFileError as exc:
                raise CorpusError(f"{exc} (corpus.source={source})") from None
        try:
            ds = load_dataset(builder, data_files=[str(f) for f in files], split="train", streaming=streaming,
                              cache_dir=str(home / "cache" / "hf-datasets"))
        except Exception as exc:  # noqa: BLE001 - name the file when the cause is known
            known = textfile.explain_read_error(files, exc)
            if known is None:
                raise
            raise CorpusError(f"{known} (corpus.source={source})") from exc
        where = f"corpus file(s) {', '.join(str(f) for f in files[:3])}{' ...' if len(files) > 3 else ''}"
    cols = list(ds.column_names or []) if ds.column_names is not None else None
    if cols is not None and text_column not in cols:
        raise CorpusError(
            f"{where} has no column '{text_column}' (columns: {cols}); set corpus.text_column to one of them"
        )
    if cols is not None:
        drop = [c for c in cols if c != text_column]
        if drop:
            ds = ds.remove_columns(drop)
        if text_column != "text":
            ds = ds.rename_column(text_column, "text")
    ds = ds.filter(lambda b: [bool(t and t.strip()) for t in b["text"]], batched=True)
    if max_docs and max_docs > 0:
        ds = ds.take(max_docs) if streaming else ds.select(range(min(max_docs, len(ds))))
    if not streaming and len(ds) == 0:
        raise CorpusError(f"{where} holds no non-empty document; give corpus.source a corpus with text")
    return ds


def tokenizer_identity(tokenizer: Any) -> Dict[str, Any]:
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()))
    return {
        "class": type(tokenizer).__name__,
        "vocab": cache.digest([vocab.encode()]),
        "lower": bool(getattr(tokenizer, "do_lower_case", False)),
    }


def _segmenter(tokenizer: Any, max_seq_len: int):
    cls_id, sep_id = tokenizer.cls_token_id, tokenizer.sep_token_id
    if cls_id is None or sep_id is None:
        raise CorpusError("the tokenizer has no [CLS]/[SEP] token; GD needs a BERT-style tokenizer")
    body = max_seq_len - 2
    if body < 1:
        raise CorpusError(f"corpus.max_seq_len={max_seq_len} is too short; use at least 8")
    min_tail = max(1, body // 4)

    def segment(batch: Dict[str, List[str]]) -> Dict[str, List[List[int]]]:
        ids = tokenizer(batch["text"], add_special_tokens=False, truncation=False)["input_ids"]
        stream = [t for doc in ids for t in doc]
        out = []
        for i in range(0, len(stream), body):
            chunk = stream[i : i + body]
            if len(chunk) == body or len(chunk) >= min_tail:
                out.append([cls_id] + chunk + [sep_id])
        return {"input_ids": out}

    return segment


def tokenize_and_segment(
    ds: Any,
    tokenizer: Any,
    max_seq_len: int = 128,
    num_proc: int = 1,
    heldout_fraction: float = 0.0,
    seed: int = 0,
    home: Optional[Path] = None,
    key: Optional[Dict[str, Any]] = None,
    heldout_stream: int = 256,
    rank: int = 0,
    world_size: int = 1,
) -> Tuple[Any, Any]:
    """(train, heldout) datasets of ``input_ids`` segments (``heldout`` None when fraction 0).

    In-memory: cached under ``home`` when ``home`` and ``key`` (the source identity) are
    given. Streaming: the first ``heldout_stream`` segments are held out and the rest is
    split between ranks (``split_dataset_by_node``).
    """
    from datasets import DatasetDict, IterableDataset, load_from_disk

    segment = _segmenter(tokenizer, max_seq_len)
    if isinstance(ds, IterableDataset):
        from datasets.distributed import split_dataset_by_node

        seg = ds.map(segment, batched=True, batch_size=256, remove_columns=["text"])
        held = None
        if heldout_fraction > 0:
            held, seg = seg.take(heldout_stream), seg.skip(heldout_stream)
        if world_size > 1:
            seg = split_dataset_by_node(seg, rank=rank, world_size=world_size)
        return seg, held

    def build(out: Optional[Path] = None) -> DatasetDict:
        seg = ds.map(segment, batched=True, batch_size=256, remove_columns=ds.column_names,
                     num_proc=num_proc if num_proc and num_proc > 1 else None, desc="tokenize + segment")
        if len(seg) == 0:
            raise CorpusError("the corpus produced 0 segments after tokenisation; give it more text")
        parts = {"train": seg}
        if heldout_fraction > 0:
            if len(seg) < 2:
                raise CorpusError("the corpus has fewer than 2 segments: too small for a held-out split")
            sp = seg.train_test_split(test_size=max(1, int(round(heldout_fraction * len(seg)))), seed=seed)
            parts = {"train": sp["train"], "heldout": sp["test"]}
        dd = DatasetDict(parts)
        if out is not None:
            dd.save_to_disk(str(out / "segments"))
        return dd

    if home is not None and key is not None:
        parts = {**key, "tokenizer": tokenizer_identity(tokenizer), "max_seq_len": max_seq_len,
                 "heldout_fraction": heldout_fraction, "seed": seed, "n_docs": len(ds), "v": 1}
        entry = cache.ensure(home, "corpus", parts, lambda tmp: build(tmp))
        dd = load_from_disk(str(entry / "segments"))
    else:
        dd = build()
    return dd["train"], dd.get("heldout")


def segment_stats(ds: Any) -> Dict[str, int]:
    """Number of segments and tokens of an in-memory segment dataset."""
    lens = [len(x) for x in ds["input_ids"]]
    return {"segments": len(lens), "tokens": int(sum(lens))}
