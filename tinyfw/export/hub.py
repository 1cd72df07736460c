"""``export.push_to_hub=REPO``: the exported student to a Hugging Face Hub repository, through
the libraries' plain ``push_to_hub`` (model, tokenizer, model card) and ``upload_folder`` for
the ONNX forms (each in its own folder of the repository). Needs a hub and a token."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


def push(repo: str, main_dir: Path, onnx_dirs: Sequence[Path] = ()) -> None:
    from huggingface_hub import HfApi, ModelCard
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    AutoModelForSequenceClassification.from_pretrained(str(main_dir)).push_to_hub(repo)
    AutoTokenizer.from_pretrained(str(main_dir)).push_to_hub(repo)
    card = Path(main_dir) / "README.md"
    if card.is_file():
        ModelCard.load(card).push_to_hub(repo)
    api = HfApi()
    for d in onnx_dirs:
        api.upload_folder(repo_id=repo, folder_path=str(d), path_in_repo=Path(d).name)
