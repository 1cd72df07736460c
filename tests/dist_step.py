"""GD steps with :func:`tinyfw.train.loop.fit` on a tiny teacher/student, for the distributed
equivalence test (tests/test_distributed.py). Run it with N processes::

    ACCELERATE_USE_CPU=true OMP_NUM_THREADS=1 \\
      torchrun --nproc_per_node=2 tests/dist_step.py --batch-size 4 --out OUT_DIR

or import :func:`run_gd` and call it in a single process with ``batch_size x N``. Every rank
sees a slice of the same global batch, so both must give the same losses and parameters.

Each ``--phase`` (comma-separated, in order, in the same processes) writes ``OUT_DIR/<phase>.pt``
from rank 0: ``full`` (uninterrupted), ``stopped`` (raises on every rank after
``--stop-after`` optimizer steps, having checkpointed each step) and ``resumed`` (fresh
modules, same ``out_dir`` as ``stopped``: resumes from its last checkpoint). GD runs without
``find_unused_parameters``. ``unused-flag`` / ``unused-noflag`` train a classifier on its
hidden states alone (:func:`run_unused`, with and without ``find_unused_parameters``; the
failure's message is recorded).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from torch import nn

VOCAB, SEQ, ROWS = 60, 12, 48
MAPPING = [2]


class Stop(RuntimeError):
    """Simulated crash, raised on every rank at the same step."""


def tiny_models(seed: int = 0):
    """A 2-layer teacher (hidden 32) and a 1-layer student (hidden 16), dropout off (ranks
    draw different dropout masks than one process would), plus the GD Distiller."""
    from transformers import BertConfig, BertModel

    from tinyfw.config import ShapeCfg
    from tinyfw.distill.objective import Distiller
    from tinyfw.models.student import build_student

    torch.manual_seed(seed)
    tcfg = BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=SEQ, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0, attn_implementation="eager")
    teacher = BertModel(tcfg).eval()
    student = build_student(ShapeCfg(1, 16, 32, 2, SEQ), teacher, "random", MAPPING)
    for m in student.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    distiller = Distiller(16, 32, MAPPING, {"embd": 1.0, "attn": 1.0, "hidn": 1.0, "pred": 0.0})
    return teacher, student, distiller


def dataset() -> List[Dict[str, List[int]]]:
    """Full-length rows (no padding): per-token loss means are then equal per example."""
    g = torch.Generator().manual_seed(7)
    return [{"input_ids": torch.randint(5, VOCAB, (SEQ,), generator=g).tolist()} for _ in range(ROWS)]


def collate(rows: List[Dict[str, List[int]]]) -> Dict[str, torch.Tensor]:
    ids = torch.tensor([r["input_ids"] for r in rows])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}


def run_gd(out_dir: Optional[Path], batch_size: int, steps: int, save_every: int = 1,
           stop_after: Optional[int] = None, precision: str = "fp32", grad_checkpointing: bool = False) -> Dict[str, Any]:
    """``steps`` GD optimizer steps; returns {world, history, params (student + distiller)}."""
    from tinyfw.config import TrainCfg
    from tinyfw.distill.steps import feature_loss_fn
    from tinyfw.train.loop import fit

    teacher, student, distiller = tiny_models()
    base = feature_loss_fn(need_scores=True)
    calls = {"n": 0}
    seen: Dict[str, str] = {}

    def loss_fn(modules, batch):
        seen.update({k: type(m).__name__ for k, m in modules.items()})  # DDP-wrapped or not
        if stop_after is not None and calls["n"] == stop_after:
            raise Stop(f"stopped after {stop_after} steps")
        calls["n"] += 1
        return base(modules, batch)

    cfg = TrainCfg(batch_size=batch_size, lr=1e-3, max_steps=steps, warmup_ratio=0.0, save_every=save_every,
                   log_every=1, grad_checkpointing=grad_checkpointing)
    res = fit({"student": student, "distiller": distiller}, loss_fn, dataset(), collate, cfg, precision=precision,
              out_dir=out_dir, seed=3, frozen={"teacher": teacher}, desc="dist-step")
    params = {f"student.{k}": v.detach().cpu().clone() for k, v in student.state_dict().items()}
    params.update({f"distiller.{k}": v.detach().cpu().clone() for k, v in distiller.state_dict().items()})
    from accelerate import PartialState

    return {"world": PartialState().num_processes, "history": res.history, "params": params,
            "resumed_from": res.resumed_from, "module_types": seen,
            "teacher_requires_grad": any(p.requires_grad for p in teacher.parameters())}


def tiny_classifier(seed: int = 0):
    """A 1-layer BertForSequenceClassification (hidden 16), dropout off."""
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    return BertForSequenceClassification(BertConfig(
        vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=SEQ, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, num_labels=2))


def hidden_states_loss(modules, batch):
    """TD step 1's shape: a loss on the encoder's hidden states alone; the pooler and the
    classification head run in the forward but get no gradient."""
    out = modules["student"](**batch, output_hidden_states=True)
    return sum(h.pow(2).mean() for h in out.hidden_states), {}


def run_unused(out_dir: Optional[Path], batch_size: int, steps: int, find_unused: bool) -> Dict[str, Any]:
    """``steps`` optimizer steps of :func:`hidden_states_loss`; {world, history, params, init}."""
    from tinyfw.config import TrainCfg
    from tinyfw.train.loop import fit

    student = tiny_classifier()
    init = {k: v.detach().clone() for k, v in student.state_dict().items()}
    cfg = TrainCfg(batch_size=batch_size, lr=1e-2, max_steps=steps, warmup_ratio=0.0, log_every=1)
    res = fit({"student": student}, hidden_states_loss, dataset(), collate, cfg, out_dir=out_dir, seed=3,
              desc="unused", find_unused_parameters=find_unused)
    from accelerate import PartialState

    return {"world": PartialState().num_processes, "history": res.history, "init": init,
            "params": {k: v.detach().cpu().clone() for k, v in student.state_dict().items()}}


def main(argv: Optional[List[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--stop-after", type=int, default=2)
    ap.add_argument("--phase", default="full,stopped,resumed")
    a = ap.parse_args(argv)
    rank = int(os.environ.get("RANK", "0"))
    for phase in a.phase.split(","):
        if phase.startswith("unused-"):
            try:
                rec = run_unused(None, a.batch_size, a.steps, find_unused=phase == "unused-flag")
            except RuntimeError as exc:  # DDP, at the next forward, on every rank
                rec = {"error": str(exc)}
            if rank == 0:
                torch.save(rec, a.out / f"{phase}.pt")
            continue
        work = a.out / ("work-full" if phase == "full" else "work-resume")
        try:
            rec = run_gd(work, a.batch_size, a.steps, stop_after=a.stop_after if phase == "stopped" else None)
        except Stop:
            rec = {"stopped": True}
        if rank == 0:
            torch.save(rec, a.out / f"{phase}.pt")
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
