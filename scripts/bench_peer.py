"""GD step of tinyfw against TextBrewer's ``GeneralDistiller`` (the peer), side by side.

    python scripts/bench_peer.py [--precisions fp32,bf16] [--steps 8] [--warmup 2] [--threads 1]
                                 [--batch 16] [--seq 128] [--peer-dir DIR]

The peer is installed at run time into a scratch directory (``pip install --target DIR
textbrewer --no-deps``; its other needs, torch, numpy and tqdm, are tinyfw's own), never into the
project's environment (TensorBoard, which it imports but does not use with logging off, is stubbed
when absent). Both sides get the same random MiniLM-L6-shaped teacher (6 x 384), the
same TinyBERT4-shaped student (4 x 312), the same batch (16 full-length segments of 128) and the
same losses: embedding MSE and hidden-state MSE through linear projections (312 -> 384) and
attention MSE on student layers 1-4 against teacher layers 2, 3, 5, 6, each weight 1; AdamW
(lr 1e-4) over the student and the projections. tinyfw runs its default (fast) step; the peer runs
``GeneralDistiller.train_on_batch`` (teacher under ``no_grad``, its adaptors, its losses
``hidden_mse`` and ``attention_mse`` with the input mask) + backward + ``torch.optim.AdamW`` with
torch's defaults. Differences the peer's design imposes: it compares transformers' returned
attention *probabilities* (tinyfw: the pre-softmax scores, same shape and cost) and keeps one
projection per matched layer (tinyfw: one shared W_h). bf16 is torch's CPU autocast around each
side's step (the peer's own mixed precision is apex fp16, GPU only). The two sides alternate,
round by round; the ratio is of the medians. Prints ``peer gd <precision>: tinyfw N.NN× TextBrewer``.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def install_peer(target: str) -> None:
    """TextBrewer into ``target`` (a scratch directory), importable from there only."""
    if not (Path(target) / "textbrewer").is_dir():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--target", target, "--no-deps",
                        "textbrewer"], check=True)
    sys.path.insert(0, target)
    try:  # the peer imports TensorBoard's writer at import time; logging is off here (log_dir=None)
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        import types

        sys.modules["torch.utils.tensorboard"] = types.SimpleNamespace(SummaryWriter=None)


def peer_step(teacher, student, mapping, bf16: bool):
    import torch
    from textbrewer import DistillationConfig, GeneralDistiller, TrainingConfig

    t, s = teacher, student.train()
    for m in (t, s):
        m.config.output_hidden_states = True
        m.config.output_attentions = True
    hs, ht = s.config.hidden_size, t.config.hidden_size
    matches = [{"layer_T": 0, "layer_S": 0, "feature": "hidden", "loss": "hidden_mse", "weight": 1,
                "proj": ["linear", hs, ht]}]
    for m, n in enumerate(mapping, start=1):
        matches.append({"layer_T": n, "layer_S": m, "feature": "hidden", "loss": "hidden_mse", "weight": 1,
                        "proj": ["linear", hs, ht]})
        matches.append({"layer_T": n - 1, "layer_S": m - 1, "feature": "attention", "loss": "attention_mse",
                        "weight": 1})

    def adaptor(batch, out):
        return {"hidden": out.hidden_states, "attention": out.attentions, "inputs_mask": batch["attention_mask"]}

    distiller = GeneralDistiller(TrainingConfig(device="cpu", log_dir=None, output_dir=tempfile.mkdtemp()),
                                 DistillationConfig(intermediate_matches=matches), t, s, adaptor, adaptor)
    params = list(s.parameters()) + [p for proj in distiller.projs if proj is not None for p in proj.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=0.01)

    def step(batch):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _ = distiller.train_on_batch({k: batch[k] for k in ("input_ids", "attention_mask")}, {})
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--peer-dir", default="", help="scratch directory for the peer (default: a new temporary one)")
    args = ap.parse_args()
    install_peer(args.peer_dir or tempfile.mkdtemp(prefix="tinyfw-peer-"))
    sys.path.insert(0, str(HERE))
    import torch

    import bench_train as bt

    torch.set_num_threads(args.threads)
    print(bt.capability_line())
    teacher, student, mapping = bt.models(Path("."), classifier=False, teacher_name="minilm-l6-shape")
    data = [{"input_ids": i, "attention_mask": m}
            for i, m in bt.batches("gd", args.warmup + args.steps, False, Path("."), args.batch, args.seq)]
    lines = []
    for prec in args.precisions.split(","):
        ns = argparse.Namespace(precision=prec)
        # the peer reads transformers' attention outputs: eager attention (SDPA returns none)
        peer_t, peer_s = copy.deepcopy(teacher), copy.deepcopy(student)
        for m in (peer_t, peer_s):
            m.set_attn_implementation("eager")
        sides = {"tinyfw": bt.make_step(ns, "gd", teacher, student, mapping, True, "cpu"),
                 "TextBrewer": peer_step(peer_t, peer_s, mapping, prec == "bf16")}
        for b in data[: args.warmup]:
            for f in sides.values():
                f(b)
        times = {k: [] for k in sides}
        for i, b in enumerate(data[args.warmup:]):
            for k in (list(sides) if i % 2 == 0 else list(sides)[::-1]):
                t0 = time.perf_counter()
                sides[k](b)
                times[k].append(time.perf_counter() - t0)
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"{prec}: tinyfw {med['tinyfw']:.3f} s/step, TextBrewer {med['TextBrewer']:.3f} s/step "
              f"(all: {times})", flush=True)
        lines.append(f"peer gd {prec}: tinyfw {med['TextBrewer'] / med['tinyfw']:.2f}× TextBrewer")
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.1f}; {args.threads} threads")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
