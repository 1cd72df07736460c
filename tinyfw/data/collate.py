"""Batch collation for token-id segments: pad to the longest row, build the masks."""

from __future__ import annotations

from typing import Any, Dict, List, Mapping

import torch


class PadCollate:
    """``rows`` with ``input_ids`` (and optionally other integer/float fields) -> a batch
    with ``input_ids``, ``attention_mask``, ``token_type_ids`` padded to the longest row.
    Extra scalar fields (``labels``) become tensors; extra list fields are padded with
    ``-100`` when named ``labels``, else 0."""

    def __init__(self, pad_token_id: int = 0):
        self.pad = int(pad_token_id)

    def __call__(self, rows: List[Mapping[str, Any]]) -> Dict[str, torch.Tensor]:
        n = len(rows)
        L = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((n, L), self.pad, dtype=torch.long)
        mask = torch.zeros((n, L), dtype=torch.long)
        types = torch.zeros((n, L), dtype=torch.long)
        for i, r in enumerate(rows):
            k = len(r["input_ids"])
            ids[i, :k] = torch.as_tensor(r["input_ids"], dtype=torch.long)
            mask[i, :k] = 1
            if "token_type_ids" in r:
                types[i, :k] = torch.as_tensor(r["token_type_ids"], dtype=torch.long)
        out = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        for key in rows[0]:
            if key in out or key == "attention_mask":
                continue
            vals = [r[key] for r in rows]
            if isinstance(vals[0], (list, tuple)):
                fill = -100 if key == "labels" else 0
                t = torch.full((n, L), fill, dtype=torch.long)
                for i, v in enumerate(vals):
                    t[i, : len(v)] = torch.as_tensor(v)
                out[key] = t
            elif isinstance(vals[0], (int, float, bool)):
                out[key] = torch.tensor(vals)
        return out
