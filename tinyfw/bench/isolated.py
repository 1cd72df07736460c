"""CPU timing with every model in its own worker process, the rounds alternating between them,
so that no other runtime's thread pool is busy while a model is timed; also batch-1 timings
at real text lengths (``dynamic``), ONNX Runtime thread / graph-level tuning and a
back-to-back check. Every function takes explicit arguments (no config). Why and how:
docs/internals.md, "Isolated CPU timing".
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import torch

from tinyfw.bench.measure import _stats, example_inputs

# Pause before asking a worker for a timed round: the previous worker's idle thread pool (ONNX
# Runtime's intra-op threads, OpenMP's) keeps spinning for tens of ms after its call and would
# take the cores from the next model. Measured (BENCHMARKS.md, "Isolated timing: the settle
# pause"): int8 TinyBERT4 right after the ONNX fp32 form 13-15 ms with no pause, 10.8 ms after
# 20 ms, 5.4-7.6 ms after 50-200 ms, against 5.1-5.8 ms back to back.
SETTLE_S = 0.1


def _worker(conn: Any, load: Callable, threads: int, attn: str) -> None:
    torch.set_num_threads(threads)
    model, _ = load()
    model.eval()
    onnx = getattr(model, "is_onnx", False)
    if not onnx:
        model.set_attn_implementation(attn)
    vocab = model.config.vocab_size
    cache: Dict[tuple, Dict[str, torch.Tensor]] = {}

    def inputs(bs: int, seq: int) -> Dict[str, torch.Tensor]:
        if (bs, seq) not in cache:
            cache[(bs, seq)] = example_inputs(bs, seq, vocab, torch.device("cpu"))
        return cache[(bs, seq)]

    def timed(x: Dict[str, torch.Tensor], n: int, rewarm: int) -> List[float]:
        out = []
        with torch.inference_mode():
            for _ in range(rewarm):
                model(**x)
            for _ in range(n):
                t0 = time.perf_counter()
                model(**x)
                out.append(time.perf_counter() - t0)
        return out

    conn.send(("ready", None))
    while True:
        cmd, arg = conn.recv()
        if cmd == "stop":
            break
        if cmd == "time":  # (batch, seq, calls, rewarm)
            bs, seq, n, rewarm = arg
            conn.send(("ok", timed(inputs(bs, seq), n, rewarm)))
        elif cmd == "tune":  # (candidates [(threads, level)], seq, calls)
            cands, seq, n = arg
            if not onnx:
                conn.send(("ok", None))
                continue
            tried = []
            for th, level in cands:
                model.reconfigure(th, level)
                timed(inputs(1, seq), 2, 0)
                tried.append({"intra_op_threads": th, "graph_optimization": level,
                              "median_s": _stats(timed(inputs(1, seq), n, 0))["median_s"]})
            best = min(tried, key=lambda t: t["median_s"])
            model.reconfigure(best["intra_op_threads"], best["graph_optimization"])
            conn.send(("ok", {"tried": tried, "chosen": {k: best[k] for k in ("intra_op_threads", "graph_optimization")}}))


class Workers:
    """One worker process per loader; ``ask(i, cmd, arg)`` runs a command in worker ``i`` alone."""

    def __init__(self, loaders: Sequence[Callable], threads: int, attn: str):
        ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
        if ctx.get_start_method() == "forkserver":
            ctx.set_forkserver_preload(["torch", "transformers"])
        self.conns, self.procs = [], []
        try:
            for load in loaders:  # started one after another: each loads alone
                parent, child = ctx.Pipe()
                p = ctx.Process(target=_worker, args=(child, load, threads, attn), daemon=True)
                p.start()
                self.conns.append(parent)
                self.procs.append(p)
                self._reply(len(self.conns) - 1)
        except BaseException:
            self.close()
            raise

    def _reply(self, i: int) -> Any:
        if not self.conns[i].poll(600):
            raise TimeoutError(f"benchmark worker {i} did not answer in 10 minutes")
        try:
            status, val = self.conns[i].recv()
        except EOFError:
            raise RuntimeError(f"benchmark worker {i} died (exit code {self.procs[i].exitcode})") from None
        return val

    def ask(self, i: int, cmd: str, arg: Any = None, settle: float = 0.0) -> Any:
        """Run ``cmd`` in worker ``i``, after ``settle`` seconds for the others' threads to go idle."""
        if settle > 0:
            time.sleep(settle)
        self.conns[i].send((cmd, arg))
        return self._reply(i)

    def close(self) -> None:
        for c, p in zip(self.conns, self.procs):
            try:
                c.send(("stop", None))
            except (OSError, BrokenPipeError):
                pass
            p.join(10)
            if p.is_alive():
                p.terminate()

    def __enter__(self) -> "Workers":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def tune_candidates(cores: int) -> List[tuple]:
    from tinyfw.export.onnx import GRAPH_LEVELS

    threads = sorted({1, max(1, cores)})
    return [(t, level) for t in threads for level in GRAPH_LEVELS]


def time_group(loaders: Sequence[Callable], batch_sizes: Sequence[int], seq_len: int, repeats: int, warmup: int,
               lengths: Sequence[int] = (), threads: int = 0, attn: str = "sdpa", tune: int = 0,
               check: Optional[int] = None, settle: float = SETTLE_S) -> Dict[str, Any]:
    """Time each loader's model in its own worker: per batch size ``seq_len`` tokens,
    ``repeats`` alternating rounds (``warmup`` untimed calls first, one untimed call before
    each timed one, ``settle`` s after the previous model's call); then batch 1 at each of
    ``lengths`` in alternating rounds; ``tune`` > 0:
    ONNX Runtime options chosen first; ``check``: index of the model also timed back to back.
    Returns ``{"fixed": [{f"b{bs}": stats}], "dynamic": [stats] | None, "ort_options": [...],
    "check": {...} | None}``."""
    threads = threads or torch.get_num_threads()
    n = len(loaders)
    out: Dict[str, Any] = {"fixed": [{} for _ in range(n)], "dynamic": None, "ort_options": [None] * n,
                           "check": None, "threads": threads}
    with Workers(loaders, threads, attn) as w:
        if tune:
            cands = tune_candidates(os.cpu_count() or 1)
            out["ort_options"] = [w.ask(i, "tune", (cands, seq_len, tune), settle) for i in range(n)]
        for bs in batch_sizes:
            for i in range(n):
                w.ask(i, "time", (bs, seq_len, 0, warmup))
            times: List[List[float]] = [[] for _ in range(n)]
            for _ in range(repeats):
                for i in range(n):
                    times[i] += w.ask(i, "time", (bs, seq_len, 1, 1), settle)
            for i in range(n):
                out["fixed"][i][f"b{bs}"] = _stats(times[i])
            if check is not None and bs == min(batch_sizes):
                alone = w.ask(check, "time", (bs, seq_len, repeats, warmup), settle)
                out["check"] = agreement(out["fixed"][check][f"b{bs}"], _stats(alone), bs, seq_len)
        if lengths:
            times = [[] for _ in range(n)]
            for seq in lengths:
                for i in range(n):
                    times[i] += w.ask(i, "time", (1, int(seq), 1, 1), settle)
            out["dynamic"] = [_stats(t) for t in times]
    return out


def agreement(interleaved: Dict[str, float], alone: Dict[str, float], bs: int, seq: int) -> Dict[str, Any]:
    """Whether two timings of one model agree within noise: the medians differ by less than
    the larger interquartile range relative to its median, or 10% (whichever is more)."""
    a, b = interleaved["median_s"], alone["median_s"]
    spread = max((interleaved["p75_s"] - interleaved["p25_s"]) / a, (alone["p75_s"] - alone["p25_s"]) / b, 0.10)
    diff = abs(a - b) / min(a, b)
    return {"batch": bs, "seq_len": seq, "interleaved_median_s": a, "isolated_median_s": b,
            "relative_difference": diff, "tolerance": spread, "agree": bool(diff <= spread)}
