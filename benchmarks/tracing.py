"""Tracing benchmark: tracekit vs Microsoft Trace (trace-opt 0.1.3.8) in one run.

For chains of 1k and 10k `y = y + x` ops and of bundled calls, measures build time,
backward time, subgraph extraction, memory per node and memory retained after the
outputs are dropped, plus import time. Trace runs in its own virtualenv (created by
`--setup-trace`, or pass `--trace-python PATH`); each library runs in a fresh process.
Prints JSON with both sides and the ratios.

    .venv/bin/python benchmarks/tracing.py [--sizes 1000 10000] [--setup-trace]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRACE_VENV = ROOT / ".bench-venv" / "trace"


# --- one library, run inside a worker process -------------------------------------------
def _api(lib: str):
    if lib == "tracekit":
        import tracekit as tk

        def backward(out, params):
            tk.backward(out, "make the output larger", params=params)

        def zero(params):
            for p in params:
                p.feedback.clear()

        return dict(param=lambda v: tk.param(v, name="x"), node=tk.node, bundle=tk.bundle,
                     backward=backward, zero=zero, subgraph=lambda out, ps: tk.subgraph(out, ps))
    from opto import trace  # noqa: F401  (Trace's package name)
    from opto.trace import bundle, node

    def backward(out, params):
        out.backward("make the output larger")

    def zero(params):
        for p in params:
            p.zero_feedback()

    return dict(param=lambda v: node(v, trainable=True, name="x"), node=node, bundle=bundle,
                backward=backward, zero=zero, subgraph=None)


def _build(api: dict, n: int, shape: str):
    x = api["param"](1.0)
    y = api["node"](0.0)
    if shape == "op":
        t0 = time.perf_counter()
        for _ in range(n):
            y = y + x
        return x, y, time.perf_counter() - t0

    @api["bundle"]()
    def step(a, b):
        """Add two numbers."""
        return a + b

    t0 = time.perf_counter()
    for _ in range(n):
        y = step(y, x)
    return x, y, time.perf_counter() - t0


def _measure(lib: str, n: int, shape: str) -> dict:
    api = _api(lib)
    gc.collect()
    x, y, build = _build(api, n, shape)  # timed without tracemalloc (it slows allocation)
    subgraph_s = None
    if api["subgraph"] is not None:
        t0 = time.perf_counter()
        api["subgraph"](y, [x])
        subgraph_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    api["backward"](y, [x])
    backward_s = time.perf_counter() - t0
    api["zero"]([x])
    del x, y
    gc.collect()

    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    x, y, _ = _build(api, n, shape)
    built_bytes = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del x, y
    return {
        "n": n, "shape": shape,
        "build_us_per_op": build / n * 1e6,
        "backward_us_per_node": backward_s / n * 1e6,
        "subgraph_us_per_node": None if subgraph_s is None else subgraph_s / n * 1e6,
        "bytes_per_node": built_bytes / n,
        "retained_bytes_after_drop": _retained_after_drop(api, n, shape),
    }


def _retained_after_drop(api: dict, n: int, shape: str) -> int:
    """Build, backward, zero feedback, drop the output: bytes still allocated."""
    x, y, _ = _build(api, 10, shape)  # warm up caches so only the graph is measured
    api["backward"](y, [x])
    api["zero"]([x])
    del x, y
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    x, y, _ = _build(api, n, shape)
    api["backward"](y, [x])
    api["zero"]([x])
    del y
    gc.collect()
    retained = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    del x
    return max(retained, 0)


def worker(lib: str, sizes: list[int]) -> None:
    for shape in ("op", "bundle"):  # warm-up: lazy imports and first-call costs
        _measure(lib, 10, shape)
    results = [_measure(lib, n, shape) for shape in ("op", "bundle") for n in sizes]
    print(json.dumps(results))


# --- driver -----------------------------------------------------------------------------
def _import_seconds(python: str, module: str, repeats: int = 3) -> float:
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    times = []
    for _ in range(repeats):
        out = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, timeout=300)
        if out.returncode != 0:
            raise RuntimeError(out.stderr[-2000:])
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def _run_worker(python: str, lib: str, sizes: list[int]) -> list[dict]:
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True", PYTHONPATH=str(ROOT))
    cmd = [python, __file__, "--worker", lib, "--sizes", *map(str, sizes)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"{lib} worker failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def setup_trace_venv() -> Path:
    """Create the Trace virtualenv as the issue prescribes (no-deps install + its imports)."""
    python = TRACE_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(TRACE_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q"]
        subprocess.run(pip + ["--no-deps", "trace-opt==0.1.3.8", "graphviz"], check=True)
        subprocess.run(pip + ["numpy", "pyyaml", "black", "litellm"], check=True)
    return python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--worker", choices=["tracekit", "trace"], help=argparse.SUPPRESS)
    parser.add_argument("--trace-python", default=str(TRACE_VENV / "bin" / "python"))
    parser.add_argument("--setup-trace", action="store_true", help="create the Trace venv if missing")
    parser.add_argument("--out", help="also write the JSON to this file")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.sizes)
        return
    if args.setup_trace:
        args.trace_python = str(setup_trace_venv())

    report: dict = {"sizes": args.sizes, "tracekit": {}, "trace": {}, "ratios": {}}
    report["tracekit"]["runs"] = _run_worker(sys.executable, "tracekit", args.sizes)
    report["tracekit"]["import_s"] = _import_seconds(sys.executable, "tracekit")
    if Path(args.trace_python).exists():
        report["trace"]["runs"] = _run_worker(args.trace_python, "trace", args.sizes)
        report["trace"]["import_s"] = _import_seconds(args.trace_python, "opto.trace")
    else:
        report["trace"] = {"skipped": f"no Trace venv at {args.trace_python}; run with --setup-trace"}

    big, small = max(args.sizes), min(args.sizes)
    ours = {(r["shape"], r["n"]): r for r in report["tracekit"]["runs"]}
    for shape in ("op", "bundle"):
        r_big, r_small = ours[(shape, big)], ours[(shape, small)]
        report["ratios"][f"tracekit_{shape}_backward_{big}_vs_{small}_total"] = (
            r_big["backward_us_per_node"] * big) / (r_small["backward_us_per_node"] * small)
    if "runs" in report["trace"]:
        theirs = {(r["shape"], r["n"]): r for r in report["trace"]["runs"]}
        for (shape, n), mine in ours.items():
            other = theirs[(shape, n)]
            for metric in ("build_us_per_op", "backward_us_per_node", "bytes_per_node"):
                report["ratios"][f"trace_over_tracekit_{shape}_{n}_{metric}"] = other[metric] / mine[metric]
        report["ratios"]["trace_over_tracekit_import"] = report["trace"]["import_s"] / report["tracekit"]["import_s"]
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
