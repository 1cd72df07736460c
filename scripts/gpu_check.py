"""The GPU check's parts and its summary (``scripts/gpu_check.sh`` sets up Python, then runs this).

    python scripts/gpu_check.py --out DIR [--work DIR] [--parts tests,gd,augment,bench,pipeline]
                                [--small] [--budget 450]

Parts (README, "GPU check"), in order, each in its own process group with its own timeout, cut
to what is left of ``--budget`` seconds; one that fails or times out leaves the others running:
``env`` (Python, torch, the GPU, package versions), ``tests`` (``pytest -m cuda``), ``gd``
(bench_train.py at the paper's shapes), ``augment`` (bench_augment.py, reference vs exact),
``bench`` (``stage=bench`` on the GPU), ``pipeline`` (``stage=pipeline experiment=smoke`` on
tests/kwtask.py's keyword task, as tests/test_pipeline.py; every result.json must say
``device: cuda``).

Without a GPU ``tests`` and ``pipeline`` are skipped, and so is everything else unless
``--small`` (tiny sizes on whatever device there is: the CPU dry run the test suite makes).
Writes ``gpu_check.json``, ``gpu_check.md`` and ``gpu_check.log`` (every part's output) in
``--out``. Uses only the standard library itself: every part is a subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
PARTS = ["tests", "gd", "augment", "bench", "pipeline"]
TIMEOUT = {"env": 60, "tests": 150, "gd": 150, "augment": 200, "bench": 180, "pipeline": 240}
GPU_ONLY = {"tests", "pipeline"}  # nothing to learn from them on the CPU here
PACKAGES = ["torch", "transformers", "accelerate", "datasets", "gensim", "hydra", "omegaconf", "tokenizers",
            "safetensors", "numpy", "scipy", "sklearn", "pyarrow", "fsspec", "huggingface_hub", "matplotlib",
            "pytest"]
AUGMENT_SETTINGS = ["reference (2 segments, fp32)", "exact (2 segments, fp32)", "exact (2 segments, bf16)",
                    "exact, 1 segment (bf16)", "exact, 1 segment + multi-mask (bf16)"]
GOAL_SPEEDUP = 20.0

ENV_CODE = r"""
import importlib, json, platform, sys
out = {"python": platform.python_version(), "executable": sys.executable, "packages": {}, "missing": {}}
for name in PACKAGES:
    try:
        out["packages"][name] = getattr(importlib.import_module(name), "__version__", "?")
    except Exception as exc:
        out["missing"][name] = f"{type(exc).__name__}: {exc}"[:200]
import torch
out["cuda"] = torch.cuda.is_available()
out["torch_cuda"] = torch.version.cuda
if out["cuda"]:
    p = torch.cuda.get_device_properties(0)
    out["gpu"] = {"name": p.name, "memory_gib": round(p.total_memory / 2**30, 1),
                  "multiprocessors": p.multi_processor_count, "capability": f"{p.major}.{p.minor}",
                  "bf16": torch.cuda.is_bf16_supported()}
print(json.dumps(out))
"""


class Runner:
    """Runs the parts under one time budget and collects their records."""

    MIN_LEFT, MARGIN = 20.0, 5.0  # seconds: a part needs MIN_LEFT to start; MARGIN stays for the summary
    LOG_CHARS = 2_000_000  # the end of each command's output kept in gpu_check.log (files back: 16 MB each)

    def __init__(self, out: Path, work: Path, small: bool, budget: float):
        self.out, self.work, self.small = out, work, small
        self.deadline = time.monotonic() + budget
        self.records: Dict[str, Dict[str, Any]] = {}
        self.log = (out / "gpu_check.log").open("w")
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "WANDB_MODE": "disabled", "TOKENIZERS_PARALLELISM": "false",
                    "TINYFW_HOME": str(work / "home")}
        self.env.pop("ACCELERATE_USE_CPU", None)  # every part uses the GPU when there is one
        for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):  # no hub there: fail at once, never wait
            self.env.setdefault(key, "1")

    def run(self, name: str, cmd: List[str], timeout: float) -> str:
        """Run ``cmd``; its output goes into the log and is returned; raise on failure."""
        left = self.deadline - time.monotonic()
        if left < self.MIN_LEFT:
            raise Skip(f"out of the time budget ({left:.0f} s left)")
        timeout = min(timeout, left - self.MARGIN)
        self.log.write(f"\n===== {name}: {' '.join(cmd)} (timeout {timeout:.0f} s)\n")
        self.log.flush()
        # a session of its own, so a timeout ends the part's children too (pipeline steps)
        proc = subprocess.Popen(cmd, cwd=REPO, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, start_new_session=True)
        timed_out = False
        try:
            text, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            text, _ = proc.communicate()
        finally:
            try:  # whatever the part left running (a step of its own) goes with it
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.log.write(text[-self.LOG_CHARS:])
        self.log.flush()
        if timed_out:
            raise Failed(f"timed out after {timeout:.0f} s", text)
        if proc.returncode != 0:
            raise Failed(f"exit code {proc.returncode}", text)
        return text

    def part(self, name: str, fn: Callable[[], Dict[str, Any]], skip: Optional[str] = None) -> None:
        t0 = time.monotonic()
        rec: Dict[str, Any]
        if skip:
            rec = {"status": "skipped", "reason": skip}
        else:
            try:
                rec = {"status": "ok", **fn()}
            except Skip as exc:
                rec = {"status": "skipped", "reason": str(exc)}
            except Failed as exc:
                rec = {"status": "failed", "error": str(exc), "tail": tail(exc.output)}
            except Exception as exc:  # a part's parser broke: keep the others
                rec = {"status": "failed", "error": f"{type(exc).__name__}: {exc}", "tail": ""}
        rec["seconds"] = round(time.monotonic() - t0, 1)
        self.records[name] = rec
        print(f"[gpu_check] {name}: {rec['status']} ({rec['seconds']} s) {rec.get('reason') or rec.get('error') or ''}",
              flush=True)


class Skip(Exception):
    pass


class Failed(Exception):
    def __init__(self, msg: str, output: str = ""):
        super().__init__(msg)
        self.output = output or ""


def tail(text: str, lines: int = 40) -> str:
    return "\n".join((text or "").rstrip().splitlines()[-lines:])


def last_json(text: str) -> Any:
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON line in the output")


# -- the parts ------------------------------------------------------------------------------
def part_env(r: Runner) -> Dict[str, Any]:
    code = ENV_CODE.replace("PACKAGES", repr(PACKAGES))
    env = last_json(r.run("env", [PY, "-c", code], TIMEOUT["env"]))
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        env["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.TimeoutExpired):
        env["nvidia_smi"] = None
    env["cpus"] = os.cpu_count()
    env["machine"] = platform.machine()
    return env


def part_tests(r: Runner) -> Dict[str, Any]:
    import xml.etree.ElementTree as ET

    xml = r.work / "tests.xml"
    try:
        r.run("tests", [PY, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", "-rfEs",
                        f"--junitxml={xml}", "tests/test_cuda.py"], TIMEOUT["tests"])
        failed_run = None
    except Failed as exc:
        if not xml.exists():
            raise
        failed_run = exc
    suite = ET.parse(xml).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    cases = []
    for case in suite.iter("testcase"):
        kind = next((c.tag for c in case if c.tag in ("failure", "error", "skipped")), "passed")
        msg = next((c.get("message", "") for c in case if c.tag in ("failure", "error", "skipped")), "")
        cases.append({"test": case.get("name"), "result": kind, "seconds": float(case.get("time", 0)),
                      "message": msg[:300]})
    counts = {k: sum(c["result"] == k for c in cases) for k in ("passed", "failure", "error", "skipped")}
    if failed_run is not None or counts["failure"] or counts["error"]:
        raise Failed(f"{counts['failure']} failed, {counts['error']} errors, {counts['passed']} passed",
                     failed_run.output if failed_run else "")
    if not counts["passed"]:
        raise Failed(f"no CUDA test ran ({counts['skipped']} skipped)", "")
    return {"counts": counts, "cases": cases}


def per_precision(precisions: List[str], one: Callable[[str], Any]) -> Dict[str, Any]:
    """``one(precision)`` for each precision: a failed one is recorded, the others still run."""
    done, errors = {}, {}
    for prec in precisions:
        try:
            done[prec] = one(prec)
        except Failed as exc:
            errors[prec] = {"error": str(exc), "tail": tail(exc.output, 20)}
    if not done:
        raise Failed("; ".join(f"{p}: {e['error']}" for p, e in errors.items()),
                     "\n".join(e["tail"] for e in errors.values()))
    return {"done": done, "errors": errors}


def part_gd(r: Runner, device: str) -> Dict[str, Any]:
    size = (["--batch", "2", "--seq", "16", "--steps", "1", "--warmup", "1"] if r.small else
            ["--batch", "256", "--seq", "128", "--steps", "10", "--warmup", "3"])

    def one(prec: str) -> Dict[str, Any]:
        out = r.work / f"gd-{prec}.json"
        r.run(f"gd {prec}", [PY, "scripts/bench_train.py", "--phases", "gd", "--teacher", "bert-base",
                             "--device", device, "--precisions", prec, "--threads", str(min(16, os.cpu_count() or 1)),
                             "--json", str(out), *size], TIMEOUT["gd"] / 2)
        (row,) = json.loads(out.read_text())
        row["tflops"] = round(row["gflops"] / 1000, 2)
        row["matmul_tflops"] = round(row["matmul_gflops"] / 1000, 1)
        return row

    res = per_precision(["bf16"] if r.small else ["bf16", "fp32"], one)
    return {"rows": list(res["done"].values()), "errors": res["errors"]}


def augment_inputs(r: Runner) -> List[str]:
    """bench_augment.py's model, tokenizer and texts: tiny ones with --small, else the carried
    ``.gpu-assets/`` or the offline assets of ``$TINYFW_HOME`` (default ~/.cache/tinyfw)."""
    if r.small:
        return ["--mlm", "tiny-random", "--texts", "gensim", "--vector-rows", "20000", "--n", "10", "--n-ref", "10"]
    carried = REPO / ".gpu-assets"
    home = Path(os.environ.get("TINYFW_HOME") or "~/.cache/tinyfw").expanduser()
    if (carried / "tokenizer").is_dir() and (carried / "mr-train.txt").exists():
        src = ["--tokenizer", str(carried / "tokenizer"), "--texts", str(carried / "mr-train.txt")]
    elif (home / "assets" / "minilm-l6").is_dir() and (home / "assets" / "mr").is_dir():
        src = ["--home", str(home), "--tokenizer", str(home / "assets" / "minilm-l6"), "--texts", "mr"]
    else:
        raise Failed("no tokenizer and sentences: run `bash scripts/gpu_check.sh prepare` where the offline "
                     "assets are (python -m tinyfw stage=assets) and carry .gpu-assets", "")
    return ["--mlm", "bert-base-random", *src, "--n", "200", "--n-ref", "200"]


def part_augment(r: Runner, device: str) -> Dict[str, Any]:
    out = r.work / "augment.json"
    settings = AUGMENT_SETTINGS[:3] if r.small else AUGMENT_SETTINGS
    r.run("augment", [PY, "scripts/bench_augment.py", *augment_inputs(r), "--vectors", "random", "--device", device,
                      "--batch-size", "128", "--settings", ";".join(settings), "--out", str(out)], TIMEOUT["augment"])
    data = json.loads(out.read_text())
    res = data["results"]
    exact = {k: v.get("speedup_vs_reference") for k, v in res.items() if k.startswith("exact (2 segments")}
    best = max(exact.values(), default=None)
    return {"device": data.get("device"), "device_name": data.get("device_name"), "results": res,
            "goal_speedup": GOAL_SPEEDUP, "best_exact_speedup": best,
            "goal_met": best is not None and best >= GOAL_SPEEDUP}


def part_bench(r: Runner, device: str) -> Dict[str, Any]:
    lo, hi = (1, 2) if r.small else (1, 256)
    size = (["experiment=smoke", f"bench.batch_sizes=[{lo},{hi}]", "bench.repeats=1", "bench.warmup=0"] if r.small
            else ["bench.config_models=false", "bench.paper_shapes=true", f"bench.batch_sizes=[{lo},{hi}]",
                  "bench.repeats=20", "bench.warmup=3"])

    def one(prec: str) -> Dict[str, Any]:
        run_dir = r.work / f"bench-{prec}"
        r.run(f"bench {prec}", [PY, "-m", "tinyfw", "stage=bench", *size, f"bench.devices=[{device}]",
                                "bench.accuracy=false", "bench.onnx=false",  # ONNX rows: CPU only
                                f"precision={prec}", f"hydra.run.dir={run_dir}",
                                f"home={r.work / 'home'}", "logging.wandb.mode=disabled"], TIMEOUT["bench"] / 2)
        rec = json.loads((run_dir / "result.json").read_text())
        rows = {}
        for key, m in rec["metrics"]["models"].items():
            if device not in m["devices"]:  # a form timed elsewhere (ONNX Runtime: CPU only)
                continue
            t = m["devices"][device]
            rows[key] = {"label": m["label"], "latency_ms_b1": round(1000 * t[f"b{lo}"]["median_s"], 3),
                         f"examples_per_s_b{hi}": round(t[f"b{hi}"]["examples_per_s"], 1),
                         "speedup_b1": round(m["speedup"][device][f"b{lo}"], 2),
                         f"speedup_b{hi}": round(m["speedup"][device][f"b{hi}"], 2),
                         "flops_ratio": round(m["flops_ratio"], 2)}
        return {"devices": rec["metrics"]["env"]["devices"], "batch_sizes": [lo, hi], "models": rows}

    res = per_precision(["fp32"] if r.small else ["fp32", "bf16"], one)
    return {"runs": res["done"], "errors": res["errors"]}


def part_pipeline(r: Runner) -> Dict[str, Any]:
    """The smoke pipeline on tests/kwtask.py's keyword task (experiment=smoke with a task tiny
    models learn, so a collapsed grid job means something; the smoke task stays at chance)."""
    sys.path.insert(0, str(REPO / "tests"))
    from kwtask import kw_overrides, write_kw_task

    run_dir = r.work / "pipeline"
    task = kw_overrides(write_kw_task(r.work / "kw")) + ["task_distill.step2.lr=1e-2", "task_distill.finetune.lr=1e-2"]
    r.run("pipeline", [PY, "-m", "tinyfw", "stage=pipeline", *task, f"home={r.work / 'home'}",
                       f"hydra.run.dir={run_dir}", "logging.wandb.mode=disabled"], TIMEOUT["pipeline"])
    rec = json.loads((run_dir / "result.json").read_text())
    results = [json.loads(p.read_text()) for p in sorted(run_dir.rglob("result.json"))]
    devices = {}
    for res in results:
        devices[res.get("device", "?")] = devices.get(res.get("device", "?"), 0) + 1
    if set(devices) != {"cuda"}:
        raise Failed(f"not every step ran on cuda: {devices}", "")
    failed = [res.get("error") for res in results if res.get("status") != "ok"]
    if rec["status"] != "ok" or failed:
        raise Failed(f"pipeline {rec['status']}; failed steps: {failed[:3]}", "")
    grid = [res for res in results if res.get("stage") == "task"]
    return {"step_seconds": rec["metrics"].get("step_seconds"), "results": len(results), "devices": devices,
            "grid_jobs": len(grid), "collapsed": sum(bool(res["metrics"].get("collapsed")) for res in grid),
            "report": {k: v for k, v in rec["metrics"].items() if k.startswith("report/")}}


# -- the summary ----------------------------------------------------------------------------
def figures(name: str, rec: Dict[str, Any]) -> str:
    """One line of headline figures for the overview table."""
    if rec["status"] != "ok":
        return rec.get("reason") or rec.get("error", "")
    if name == "env":
        gpu = rec.get("gpu") or {}
        return f"{gpu.get('name', 'no GPU')}, torch {rec['packages'].get('torch')}, CUDA {rec.get('torch_cuda')}"
    if name == "tests":
        return f"{rec['counts']['passed']} passed, {rec['counts']['skipped']} skipped"
    if name == "gd":
        return "; ".join(f"{x['precision']}: {x['tokens_per_s']:.0f} tokens/s, {x['tflops']} TFLOP/s "
                         f"({x['share_of_matmul_rate']:.0%} of the matmul rate)" for x in rec["rows"])
    if name == "augment":
        res = rec["results"]
        parts = [f"{k}: {v['sentences_per_s']} sent/s ({v.get('speedup_vs_reference', '?')}×)"
                 for k, v in res.items() if k.startswith("exact (2 segments")]
        return "; ".join(parts) + f"; goal ≥ {GOAL_SPEEDUP:.0f}×: {'met' if rec['goal_met'] else 'not met'}"
    if name == "bench":
        out = []
        for prec, run in rec["runs"].items():
            ms = ", ".join(f"{m['label']} {m['latency_ms_b1']} ms" for m in run["models"].values())
            out.append(f"{prec} b=1: {ms}")
        return "; ".join(out)
    if name == "pipeline":
        return (f"{rec['results']} result.json files, all on cuda; {rec['grid_jobs']} grid jobs, "
                f"{rec['collapsed']} collapsed; steps (s): {rec['step_seconds']}")
    return ""


def render(records: Dict[str, Dict[str, Any]], started: str, small: bool) -> str:
    env = records.get("env", {})
    packages = ", ".join(f"{k} {v}" for k, v in (env.get("packages") or {}).items())
    missing = ", ".join(f"{k} ({v})" for k, v in (env.get("missing") or {}).items()) or "none"
    lines = ["# tinyfw GPU check", "",
             f"- started {started}; {'--small (tiny sizes: a dry run, not a measurement)' if small else 'full sizes'}",
             f"- machine: {env.get('nvidia_smi') or 'no nvidia-smi'}; {env.get('cpus')} CPUs; Python {env.get('python')}",
             f"- packages: {packages}; missing: {missing}",
             "", "| part | status | seconds | figures |", "|---|---|---|---|"]
    for name, rec in records.items():
        lines.append(f"| {name} | {rec['status']} | {rec['seconds']} | {figures(name, rec)} |")
    gd = records.get("gd", {})
    if gd.get("status") == "ok":
        lines += ["", "## GD throughput (scripts/bench_train.py, BERT-base-shaped teacher → TinyBERT4)", "",
                  "| precision | batch × seq | s/step | tokens/s | TFLOP/step | TFLOP/s | matmul TFLOP/s (peak) "
                  "| share | peak GPU MB |", "|---|---|---|---|---|---|---|---|---|"]
        for x in gd["rows"]:
            lines.append(f"| {x['precision']} | {x['batch']} × {x['seq']} | {x['s_per_step']} | {x['tokens_per_s']:.0f} "
                         f"| {x['gflop_per_step'] / 1000:.3g} | {x['tflops']} | {x['matmul_tflops']} "
                         f"| {x['share_of_matmul_rate']:.1%} | {x['peak_gpu_mb'] or '—'} |")
    aug = records.get("augment", {})
    if aug.get("status") == "ok":
        lines += ["", f"## Augmentation (scripts/bench_augment.py, {aug['device_name']})", "",
                  "| setting | sentences | sentences/s | speed-up vs reference | top-15 overlap vs exact fp32 "
                  "| identical lists | forwards |", "|---|---|---|---|---|---|---|"]
        for k, v in aug["results"].items():
            ov = v.get("vs_exact (2 segments, fp32)", {})
            lines.append(f"| {k} | {v['sentences']} | {v['sentences_per_s']} | {v.get('speedup_vs_reference', '')} "
                         f"| {ov.get('topk_overlap', '—')} | {ov.get('identical_lists', '—')} | {v['mlm_forwards']} |")
    bench = records.get("bench", {})
    if bench.get("status") == "ok":
        for prec, run in bench["runs"].items():
            lo, hi = run["batch_sizes"]
            lines += ["", f"## stage=bench, {prec} ({', '.join(run['devices'])})", "",
                      f"| model | latency ms (b={lo}) | examples/s (b={hi}) | speed-up b={lo} | speed-up b={hi} "
                      "| FLOPs ratio |", "|---|---|---|---|---|---|"]
            for m in run["models"].values():
                lines.append(f"| {m['label']} | {m['latency_ms_b1']} | {m[f'examples_per_s_b{hi}']} "
                             f"| {m['speedup_b1']}× | {m[f'speedup_b{hi}']}× | {m['flops_ratio']}× |")
    for name, rec in records.items():
        if rec["status"] == "failed":
            lines += ["", f"## {name} failed: {rec['error']}", "", "```", rec.get("tail", ""), "```"]
        for prec, err in (rec.get("errors") or {}).items():
            lines += ["", f"## {name} {prec} failed: {err['error']}", "", "```", err["tail"], "```"]
    return "\n".join(lines) + "\n"


def pack_assets(dest: Path, n: int = 200) -> None:
    """``dest/tokenizer`` (the minilm-l6 asset's bert-base-uncased tokenizer) and ``dest/mr-train.txt``
    (the first ``n`` sentences of the mr train split): what the augment part needs, ~1 MB."""
    import shutil

    from datasets import load_from_disk

    home = Path(os.environ.get("TINYFW_HOME") or "~/.cache/tinyfw").expanduser() / "assets"
    if not (home / "minilm-l6").is_dir() or not (home / "mr").is_dir():
        sys.exit(f"gpu_check: no minilm-l6 / mr assets in {home}: run `python -m tinyfw stage=assets` first")
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "tokenizer").mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (home / "minilm-l6" / name).exists():
            shutil.copy2(home / "minilm-l6" / name, dest / "tokenizer" / name)
    texts = list(load_from_disk(str(home / "mr"))["train"]["text"])[:n]
    (dest / "mr-train.txt").write_text("\n".join(t.replace("\n", " ") for t in texts) + "\n", encoding="utf-8")
    print(f"[gpu_check] {dest}: tokenizer + {len(texts)} sentences")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pack-assets", default="", help="write the augment part's inputs into this folder and stop")
    ap.add_argument("--out", default="", help="folder for gpu_check.json / .md / .log")
    ap.add_argument("--work", default="", help="scratch folder (homes, run dirs, part outputs)")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {','.join(PARTS)}")
    ap.add_argument("--small", action="store_true", help="tiny sizes on any device (a dry run, not a measurement)")
    ap.add_argument("--budget", type=float, default=450, help="seconds for all parts together")
    args = ap.parse_args()
    if args.pack_assets:
        pack_assets(Path(args.pack_assets))
        return
    if not args.out or not args.work:
        ap.error("--out and --work are required")
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        ap.error(f"unknown parts {unknown}; choose from {PARTS}")
    out, work = Path(args.out), Path(args.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    started = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    r = Runner(out, work, args.small, args.budget)
    r.part("env", lambda: part_env(r))
    env = r.records["env"]
    cuda = bool(env.get("cuda"))
    device = "cuda" if cuda else "cpu"
    jobs = {"tests": lambda: part_tests(r), "gd": lambda: part_gd(r, device),
            "augment": lambda: part_augment(r, device), "bench": lambda: part_bench(r, device),
            "pipeline": lambda: part_pipeline(r)}
    for name in PARTS:
        if name not in parts:
            continue
        skip = None
        if env["status"] != "ok":
            skip = "the env part failed (no working torch)"
        elif not cuda and (name in GPU_ONLY or not args.small):
            skip = "no CUDA device (torch.cuda.is_available() is False)"
        r.part(name, jobs[name], skip)
    r.log.close()
    summary = {"started": started, "small": args.small, "parts": r.records}
    tmp = out / "gpu_check.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2))
    os.replace(tmp, out / "gpu_check.json")
    (out / "gpu_check.md").write_text(render(r.records, started, args.small))
    print(f"[gpu_check] summary: {out / 'gpu_check.md'}, {out / 'gpu_check.json'}")
    failed = [n for n, rec in r.records.items() if rec["status"] == "failed"]
    if failed:
        sys.exit(f"[gpu_check] failed parts: {', '.join(failed)}")


if __name__ == "__main__":
    main()
