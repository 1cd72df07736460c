"""GD training throughput at the embedded-default sizes, per precision.

    python scripts/bench_gd.py [--precisions fp32,bf16] [--batch 32] [--seq 128] [--steps 6]
                               [--teacher minilm-l6|random] [--home DIR]

Each precision runs in its own process (so peak RSS is its own) and does ``--warmup`` untimed
steps, then ``--steps`` timed steps of the real GD step: teacher capture under
``inference_mode`` + student capture + :class:`Distiller` (embd+attn+hidn) + backward + AdamW,
on full-length random-token batches (no padding). Prints a Markdown table: tokens/s, seconds
per step, the teacher forward's share of the step, and peak RSS. The teacher is the MiniLM-L6
asset when provisioned, else a random model of its shape (6 x 384, 12 heads, vocab 30522).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def one(args: argparse.Namespace) -> dict:
    import torch
    from transformers import BertConfig, BertModel

    from tinyfw import paths
    from tinyfw.config import ShapeCfg
    from tinyfw.distill.objective import Distiller
    from tinyfw.distill.steps import clone_features
    from tinyfw.models.capture import capture
    from tinyfw.models.load import load_strict
    from tinyfw.models.student import build_student, layer_mapping
    from tinyfw.train.loop import make_accelerator
    from tinyfw.train.optim import param_groups

    home = paths.home(args.home)
    torch.manual_seed(0)
    teacher_name = "random"
    if args.teacher != "random" and paths.asset_path("minilm-l6", home).exists():
        teacher = load_strict(__import__("transformers").AutoModel, str(paths.asset_path("minilm-l6", home)))
        teacher_name = "minilm-l6"
    else:
        teacher = BertModel(BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6,
                                       num_attention_heads=12, intermediate_size=1536,
                                       attn_implementation="eager"))
    teacher.eval().requires_grad_(False)
    shape = ShapeCfg(4, 312, 1200, 12)
    mapping = layer_mapping("uniform", 4, teacher.config.num_hidden_layers) if teacher.config.num_hidden_layers % 4 == 0 \
        else [round((m + 1) * teacher.config.num_hidden_layers / 4) for m in range(4)]
    student = build_student(shape, teacher, "random", mapping)
    distiller = Distiller(312, teacher.config.hidden_size, mapping, {"embd": 1, "attn": 1, "hidn": 1, "pred": 0})
    acc = make_accelerator(args.precision, cpu=True)
    opt = torch.optim.AdamW(param_groups([student, distiller], 0.01), lr=5e-4)
    student, distiller, opt = acc.prepare(student, distiller, opt)
    B, T = args.batch, args.seq
    ids = torch.randint(1000, 30000, (B, T))
    ids[:, 0], ids[:, -1] = 101, 102
    mask = torch.ones_like(ids)
    types = torch.zeros_like(ids)
    t_teacher, t_step = [], []
    for i in range(args.warmup + args.steps):
        t0 = time.perf_counter()
        with acc.autocast():
            with torch.inference_mode():
                t = capture(teacher, ids, mask, types)
            t = clone_features(t, mapping)
            t1 = time.perf_counter()
            s = capture(student, ids, mask, types)
            loss, _ = distiller(s, t)
        acc.backward(loss)
        opt.step()
        opt.zero_grad(set_to_none=True)
        t2 = time.perf_counter()
        if i >= args.warmup:
            t_teacher.append(t1 - t0)
            t_step.append(t2 - t0)
    step = statistics.median(t_step)
    return {
        "precision": args.precision,
        "teacher": teacher_name,
        "batch": B,
        "seq": T,
        "s_per_step": round(step, 3),
        "tokens_per_s": round(B * T / step, 1),
        "teacher_share": round(statistics.median(t_teacher) / step, 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": torch.get_num_threads(),
        "loss_last": round(float(loss), 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--precision", default="", help=argparse.SUPPRESS)  # one child run
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--teacher", default="minilm-l6")
    ap.add_argument("--home", default="")
    ap.add_argument("--json", default="", help="also write the rows to this JSON file")
    args = ap.parse_args()
    if args.precision:
        print(json.dumps(one(args)))
        return
    rows = []
    for p in args.precisions.split(","):
        cmd = [sys.executable, __file__, "--precision", p] + [
            a for k, v in vars(args).items() if k not in ("precisions", "precision", "json")
            for a in (f"--{k}", str(v))
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    load = os.getloadavg()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.1f} (CPU shared with other jobs while measuring)")
    print("| precision | teacher | batch x seq | s/step | tokens/s | teacher share | peak RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['precision']} | {r['teacher']} | {r['batch']}x{r['seq']} | {r['s_per_step']} | "
              f"{r['tokens_per_s']:.0f} | {r['teacher_share']:.0%} | {r['peak_rss_mb']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
