"""Where assets and cached artefacts live, and how short names resolve to them.

Root: ``home`` from config, else ``$TINYFW_HOME``, else ``~/.cache/tinyfw``.
Assets (made by ``stage=assets``) live under ``<root>/assets/<name>``; content-addressed
artefacts (fine-tuned teachers, GD students, masked LMs, augmented sets) under
``<root>/cache/<kind>/<hash>``.
"""

from __future__ import annotations

import os
from pathlib import Path

# short asset name -> path below <root>/assets
ASSETS = {
    "minilm-l6": "minilm-l6",  # teacher encoder (HF BertModel dir)
    "glove-50d": "glove-50d/vectors.kv",  # gensim KeyedVectors
    "mr": "mr",  # movie-review polarity task (datasets DatasetDict on disk)
    "offline": "corpus/corpus.txt",  # unlabeled corpus, one paragraph per line
    "conll2003": "conll2003",  # CoNLL-2003 English NER (datasets DatasetDict on disk: tokens, ner_tags)
    "pos": "pos",  # OANC part-of-speech sentences + WSJ as test_wsj (DatasetDict: tokens, pos_tags)
}


class MissingAssetError(FileNotFoundError):
    pass


class HomeError(ValueError):
    """The cache root cannot be written."""


def home(configured: str = "") -> Path:
    root = configured or os.environ.get("TINYFW_HOME") or "~/.cache/tinyfw"
    return Path(root).expanduser().resolve()


def asset_path(name: str, root: Path) -> Path:
    return root / "assets" / ASSETS[name]


def resolve_asset(name: str, root: Path) -> Path:
    """Path of the asset called ``name``; a clear error when it was never provisioned."""
    path = asset_path(name, root)
    if not path.exists():
        raise MissingAssetError(
            f"asset '{name}' is not provisioned (expected {path}). "
            f"Run `python -m tinyfw stage=assets` first (or set TINYFW_HOME to where it lives)."
        )
    return path


def resolve_name_or_path(name_or_path: str, root: Path, key: str = "") -> str:
    """An asset short name -> its local path; an existing path -> itself; else a hub name.
    ``key``: the config key it came from, named when a path does not exist."""
    if name_or_path in ASSETS:
        return str(resolve_asset(name_or_path, root))
    p = Path(name_or_path).expanduser()
    if p.exists():
        return str(p.resolve())
    if name_or_path.startswith((".", "/", "~")):
        where = f"{key}: " if key else ""
        raise FileNotFoundError(f"{where}path '{name_or_path}' does not exist")
    return name_or_path  # a hub name: from_pretrained / load_dataset fetch it when online


def check_writable(root: Path) -> None:
    """Fail early, naming ``TINYFW_HOME``, when ``root/cache`` cannot be written."""
    import tempfile

    try:
        (root / "cache").mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=root / "cache")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise HomeError(f"TINYFW_HOME={root} is not writable ({exc.strerror or exc}): set TINYFW_HOME "
                        "(or home=) to a writable directory with free space") from exc
