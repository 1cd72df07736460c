"""The one padding collator: task rows (tokenised text, labels, teacher logits) and corpus
segments (``input_ids`` only) alike.

A hand collator rather than ``transformers.DataCollatorWithPadding``: it needs no tokenizer
(only the pad id), keeps extra numeric columns (teacher logits, row ids) and pads to the
batch's longest row exactly; ``pad_to_multiple_of=8`` would change the padded length and with
it the reference-mode losses (means over padding) and the float sums of every batch.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping

import torch

PAD_KEYS = ("input_ids", "attention_mask", "token_type_ids")


class Collator:
    """``rows`` -> a batch of ``input_ids`` (padded with ``pad_token_id``), ``attention_mask``
    and ``token_type_ids`` (padded with 0; built from the lengths, resp. zeros, when the rows
    have none) to the batch's longest row; ``labels`` as long (float32 with ``regression``);
    every other numeric column (teacher logits, row ids) stacked. Token tasks: ``labels`` (a
    tag per position) padded with -100; ``t_logits`` (a [words, C] list per row) concatenated
    over the rows' word-initial positions in order."""

    def __init__(self, pad_token_id: Any = 0, regression: bool = False):
        self.pad = int(pad_token_id or 0)
        self.regression = regression

    def __call__(self, rows: List[Mapping[str, Any]]) -> Dict[str, Any]:
        n = max(len(r["input_ids"]) for r in rows)
        lengths = [len(r["input_ids"]) for r in rows]
        out: Dict[str, Any] = {}
        for k in PAD_KEYS:
            fill = self.pad if k == "input_ids" else 0
            if k in rows[0]:
                vals = [list(r[k]) + [fill] * (n - len(r[k])) for r in rows]
            else:  # corpus segments: every token real, one segment
                vals = [[int(k == "attention_mask")] * m + [0] * (n - m) for m in lengths]
            out[k] = torch.tensor(vals, dtype=torch.long)
        for k in rows[0]:
            if k in PAD_KEYS:
                continue
            vals = [r[k] for r in rows]
            if k == "labels" and isinstance(vals[0], list):  # token task: a tag per position, -100 = none
                out[k] = torch.tensor([list(v) + [-100] * (n - len(v)) for v in vals], dtype=torch.long)
            elif k == "t_logits" and any(isinstance(v, list) and v and isinstance(v[0], list) for v in vals):
                # token task: the teacher's logits at each row's word-initial positions, rows concatenated
                out[k] = torch.tensor([x for v in vals for x in v], dtype=torch.float32)
            elif k == "labels":
                out[k] = torch.tensor(vals, dtype=torch.float32 if self.regression else torch.long)
            elif isinstance(vals[0], (int, float, list)) and not isinstance(vals[0], bool):
                out[k] = torch.tensor(vals)
        return out
