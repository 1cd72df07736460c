"""Training-step throughput of GD and TD steps 1 and 2, per precision, with achieved GFLOP/s.

    python scripts/bench_train.py [--phases gd,step1,step2] [--precisions fp32,bf16]
                                  [--group-by-length on,off] [--steps 8] [--warmup 2] [--threads 2]
                                  [--teacher minilm-l6-shape|minilm-l6|bert-base] [--batch N] [--seq N]
                                  [--device auto|cpu|cuda] [--against-baseline | --path fast|former]

First line: the machine's capability (CPU ISA, native bf16 or not; what ``precision: auto``
picks). ``--against-baseline``: each process times the default (fast) step and the former one
(``fast_path=false``) in turns, the order alternating each round so a shared machine's load hits
both alike; the last lines are one ``speed-up <phase> <precision>: N.NN×`` per phase (ratio of
the median s/step). ``--path former`` times the former step alone.

The real steps of the embedded default: a MiniLM-L6-shaped teacher (6 x 384, random weights;
``--teacher minilm-l6``: the asset; ``--teacher bert-base``: a random BERT-base-shaped teacher,
12 x 768, FFN 3072, vocab 30522, the paper's) and
TinyBERT4-shaped student (4 x 312, FFN 1200, 12 heads); student layer m learns from teacher
layer 2, 3, 5, 6 (MiniLM) or 3, 6, 9, 12 (BERT-base).

* ``gd``: batch 16 (``--batch``) of full-length random-token segments of 128 (``--seq``; the GD
  corpus is packed): teacher capture (no grad) + student capture + Distiller
  (embd+attn+hidn) + backward + AdamW.
* ``step1``: TD step 1 on movie-review training sentences (max 64 word pieces, batch 32, padded
  to the batch's longest): the same losses with the classifier teacher and student.
* ``step2``: TD step 2: the student classifier forward/backward with soft cross-entropy to
  (random) teacher logits + AdamW.

TD batches are drawn in the training loop's order, plain or length-grouped
(``--group-by-length``). FLOPs of every timed batch are counted once with
``torch.utils.flop_counter.FlopCounterMode`` (forward + backward, teacher included); achieved
GFLOP/s = counted FLOPs / measured seconds, set against a square matmul's rate at the same
precision (n = 1024 on the CPU, at the same thread count; n = 8192 on a GPU: the practical
peak). ``--device auto`` is the GPU when torch sees one. Each (phase, precision, grouping) runs
in its own process. Prints a Markdown table; ``--json`` also writes the rows. No assets are
needed: TD batches are movie-review sentences when the offline assets are there (``python -m
tinyfw stage=assets``), else random ones of their lengths; ``--teacher minilm-l6`` needs the asset.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def matmul_gflops(dtype, device: str = "cpu", n: int = 0, reps: int = 20) -> float:
    """A square n x n matmul's rate (GFLOP/s): the practical peak the step is set against."""
    import torch

    n = n or (8192 if device == "cuda" else 1024)
    a, b = torch.randn(n, n, dtype=dtype, device=device), torch.randn(n, n, dtype=dtype, device=device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync()
    return 2 * n ** 3 * reps / (time.perf_counter() - t0) / 1e9


TEACHERS = {"minilm-l6": [2, 3, 5, 6], "minilm-l6-shape": [2, 3, 5, 6], "bert-base": [3, 6, 9, 12]}  # -> layer map
SHAPES = {"minilm-l6-shape": (6, 384, 1536, 12), "bert-base": (12, 768, 3072, 12)}  # random weights


def models(home: Path, classifier: bool, teacher_name: str = "minilm-l6"):
    import torch
    from transformers import AutoModel, AutoModelForSequenceClassification, BertConfig

    from tinyfw import paths
    from tinyfw.config import ShapeCfg
    from tinyfw.models.load import bert_config
    from tinyfw.models.student import build_student

    torch.manual_seed(0)
    if teacher_name in SHAPES:
        from transformers import BertForSequenceClassification, BertModel

        config = bert_config(ShapeCfg(*SHAPES[teacher_name]), 30522, num_labels=2)
        teacher = (BertForSequenceClassification if classifier else BertModel)(config)
    else:
        base = paths.asset_path("minilm-l6", home)
        if classifier:
            teacher = AutoModelForSequenceClassification.from_pretrained(str(base), num_labels=2,
                                                                         attn_implementation="eager")
        else:
            teacher = AutoModel.from_pretrained(str(base), attn_implementation="eager")
    teacher.eval().requires_grad_(False)
    mapping = TEACHERS[teacher_name]
    encoder = build_student(ShapeCfg(4, 312, 1200, 12), teacher, "random", mapping)
    if not classifier:
        return teacher, encoder, mapping
    from transformers import BertForSequenceClassification

    config: BertConfig = encoder.config
    config.num_labels = 2
    student = BertForSequenceClassification(config)
    student.bert.load_state_dict(encoder.state_dict())
    student.requires_grad_(True)
    return teacher, student, mapping


def batches(phase: str, n: int, group: bool, home: Path, batch: int = 0, seq: int = 128):
    """``n`` batches (input_ids, attention_mask) of the phase's data, in the loop's order."""
    import torch

    if phase == "gd":
        g = torch.Generator().manual_seed(0)
        for _ in range(n):
            ids = torch.randint(1000, 30000, (batch or 16, seq), generator=g)
            ids[:, 0], ids[:, -1] = 101, 102
            yield ids, torch.ones_like(ids)
        return
    from tinyfw import paths
    from tinyfw.train.batches import Batches

    try:
        from datasets import load_from_disk
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(paths.asset_path("minilm-l6", home)))
        texts = list(load_from_disk(str(paths.asset_path("mr", home)))["train"]["text"])
        enc = tok(texts, truncation=True, max_length=64)["input_ids"]
    except Exception:  # no assets: random sentences of movie-review lengths (8..64 word pieces, mean ~28)
        g = torch.Generator().manual_seed(0)
        lengths = (torch.randn(8000, generator=g) * 11 + 28).clamp(8, 64).long().tolist()
        enc = [[101] + torch.randint(1000, 30000, (n - 2,), generator=g).tolist() + [102] for n in lengths]
    plan = Batches(len(enc), batch or 32, 1, 0, seed=1, shuffle=True,
                   lengths=[len(x) for x in enc] if group else None).epoch(0)
    for idx in itertools.islice(itertools.cycle(plan), n):
        rows = [enc[i] for i in idx]
        T = max(map(len, rows))
        ids = torch.tensor([r + [0] * (T - len(r)) for r in rows])
        yield ids, (ids != 0).long()


def capability_line() -> str:
    """What the machine offers the two precisions (tinyfw/precision.py decides ``auto`` from it)."""
    import torch

    from tinyfw.precision import capability, resolved

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    native, hw = capability(dev)
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", ""), os.environ.get("ATEN_CPU_CAPABILITY", "")
    env = f"; ONEDNN_MAX_CPU_ISA={isa[0]} ATEN_CPU_CAPABILITY={isa[1]}" if any(isa) else ""
    return f"capability: {hw}; precision auto -> {resolved('auto', dev)}{env}"


def make_step(args, phase: str, teacher, student, mapping, fast: bool, device: str):
    """One training step (forward, backward, AdamW) of ``phase`` on a copy of ``student``: the
    fast path (``fast``) or the former one, as the stages run them."""
    import copy

    import torch

    from tinyfw.distill.objective import Distiller
    from tinyfw.distill.steps import feature_loss_fn, prediction_loss_fn
    from tinyfw.train.optim import param_groups

    student = copy.deepcopy(student).to(device).train()
    torch.manual_seed(1)
    distiller = Distiller(student.config.hidden_size, teacher.config.hidden_size, mapping,
                          {"embd": 1, "attn": 1, "hidn": 1}, fast=fast).to(device)
    trainable = [student] if phase == "step2" else [student, distiller]
    opt = torch.optim.AdamW(param_groups(trainable, 0.01), lr=1e-4, fused=True if fast else None)
    bf16 = args.precision == "bf16"
    mods = {"teacher": teacher, "student": student, "distiller": distiller}
    if phase == "step2":
        loss_fn = prediction_loss_fn(1.0, 1.0, regression=False, fast=fast)
    else:
        loss_fn = feature_loss_fn(True, mapping, fast=fast)

    def step(batch):
        with torch.autocast(device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            loss, logs = loss_fn(mods, batch)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def one(args: argparse.Namespace) -> dict:
    import statistics

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from tinyfw import paths
    from tinyfw.bench.measure import cpu_model

    torch.set_num_threads(args.threads)
    home = paths.home(args.home)
    device = args.device
    phase, group = args.phase, args.group_by_length == "on"
    teacher, student, mapping = models(home, classifier=phase != "gd", teacher_name=args.teacher)
    teacher.to(device)
    paths_ = {"fast": make_step(args, phase, teacher, student, mapping, True, device)}
    if args.against_baseline:
        paths_["former"] = make_step(args, phase, teacher, student, mapping, False, device)
    elif args.path == "former":
        paths_ = {"former": make_step(args, phase, teacher, student, mapping, False, device)}
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    data = []
    for ids, mask in batches(phase, args.warmup + args.steps, group, home, args.batch, args.seq):
        b = {"input_ids": ids.to(device), "attention_mask": mask.to(device)}
        if phase == "step2":
            b["t_logits"] = torch.randn(len(ids), 2, generator=torch.Generator().manual_seed(len(data))).to(device)
        data.append(b)
    names = list(paths_)
    for b in data[: args.warmup]:
        for name in names:
            paths_[name](b)
    timed = data[args.warmup:]
    times = {name: [] for name in names}
    for i, b in enumerate(timed):  # in turns, the order alternating: a shared machine's load hits both alike
        for name in (names if i % 2 == 0 else names[::-1]):
            sync()
            t0 = time.perf_counter()
            paths_[name](b)
            sync()
            times[name].append(time.perf_counter() - t0)
    flops = 0
    for b in timed:  # counted apart from the timing (the counter slows the step)
        with FlopCounterMode(display=False) as fc:
            paths_[names[-1]](b)
        flops += fc.get_total_flops()
    flops /= len(timed)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    peak = matmul_gflops(dtype, device)
    tokens = sum(int(b["attention_mask"].sum()) for b in timed) / len(timed)
    padded = sum(b["attention_mask"].numel() for b in timed) / len(timed)
    rows = []
    for name in names:
        med = statistics.median(times[name])
        rows.append({
            "phase": phase, "precision": args.precision, "path": name, "group_by_length": group,
            "threads": args.threads, "teacher": args.teacher, "device": device,
            "device_name": torch.cuda.get_device_name() if device == "cuda" else cpu_model(),
            "batch": int(timed[0]["input_ids"].shape[0]), "seq": int(max(b["input_ids"].shape[1] for b in timed)),
            "s_per_step": round(med, 4), "s_per_step_all": [round(t, 4) for t in times[name]],
            "tokens_per_s": round(tokens / med, 1),
            "padding": round(1 - tokens / padded, 3),
            "gflop_per_step": round(flops / 1e9, 2),
            "gflops": round(flops / med / 1e9, 1),
            "matmul_gflops": round(peak, 1),
            "share_of_matmul_rate": round(flops / med / 1e9 / peak, 4),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2 ** 20, 1) if device == "cuda" else None,
        })
    return {"rows": rows}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--phases", default="gd,step1,step2")
    ap.add_argument("--precisions", default="fp32,bf16")
    ap.add_argument("--group-by-length", default="off,on", help="on, off or both (off,on); TD phases only")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--teacher", default="minilm-l6-shape", choices=sorted(TEACHERS),
                    help="minilm-l6-shape (MiniLM-L6's shape, random weights: no asset), minilm-l6 (the "
                         "asset) or bert-base (random weights, the paper's shape)")
    ap.add_argument("--against-baseline", action="store_true",
                    help="time the fast path (the default) and the former one in turns in each process")
    ap.add_argument("--path", default="fast", choices=["fast", "former"], help="without --against-baseline")
    ap.add_argument("--batch", type=int, default=0, help="batch size (0: 16 for gd, 32 for TD)")
    ap.add_argument("--seq", type=int, default=128, help="GD segment length")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--home", default="")
    ap.add_argument("--json", default="")
    ap.add_argument("--phase", default="", help=argparse.SUPPRESS)  # one child run
    ap.add_argument("--precision", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        print(json.dumps(one(args)))
        return
    print(capability_line(), flush=True)
    if args.device == "auto":
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = []
    for phase in args.phases.split(","):
        groups = ["off"] if phase == "gd" else args.group_by_length.split(",")
        for prec, grp in itertools.product(args.precisions.split(","), groups):
            cmd = [sys.executable, __file__, "--phase", phase, "--precision", prec, "--group-by-length", grp,
                   *(a for k in ("steps", "warmup", "threads", "teacher", "batch", "seq", "device", "home", "path")
                     for a in (f"--{k}", str(getattr(args, k)))),
                   *(["--against-baseline"] if args.against_baseline else [])]
            out = subprocess.run(cmd, capture_output=True, text=True, env=os.environ)
            if out.returncode != 0:
                sys.exit(f"bench_train: {phase} {prec} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
            rows.extend(json.loads(out.stdout.strip().splitlines()[-1])["rows"])
            print(rows[-1], file=sys.stderr)
    load = os.getloadavg()
    print(f"machine: {rows[0]['device_name'] if rows else args.device}, {os.cpu_count()} CPUs, "
          f"load average {load[0]:.1f}; {args.threads} threads")
    print("| phase | path | teacher | precision | batch x seq | length-grouped | s/step (median) | tokens/s | padding | "
          "GFLOP/step | GFLOP/s | matmul GFLOP/s | share of matmul rate | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['phase']} | {r['path']} | {r['teacher']} | {r['precision']} | {r['batch']}x{r['seq']} | "
              f"{'yes' if r['group_by_length'] else 'no'} | {r['s_per_step']} | "
              f"{r['tokens_per_s']:.0f} | {r['padding']:.0%} | {r['gflop_per_step']} | {r['gflops']} | "
              f"{r['matmul_gflops']} | {r['share_of_matmul_rate']:.0%} | {r['peak_rss_mb']:.0f} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    if args.against_baseline:  # the last lines: the ratio of the medians, per phase (and grouping)
        for r in rows:
            if r["path"] != "fast":
                continue
            base = next(b for b in rows if b["path"] == "former" and all(
                b[k] == r[k] for k in ("phase", "precision", "group_by_length")))
            tag = "" if r["phase"] == "gd" or len(args.group_by_length.split(",")) == 1 else \
                f" (length-grouped {'on' if r['group_by_length'] else 'off'})"
            print(f"speed-up {r['phase']} {r['precision']}{tag}: {base['s_per_step'] / r['s_per_step']:.2f}× "
                  f"(share of matmul rate {base['share_of_matmul_rate']:.0%} -> {r['share_of_matmul_rate']:.0%})")


if __name__ == "__main__":
    main()
