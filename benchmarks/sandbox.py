"""Benchmark of the sandbox for proposed code: sandboxed calls side by side with the same
code run in-process (`sandbox=False`); prints JSON.

- `start`: a new worker, from spawn to locked down (median of `--starts`), with numpy and
  torch loaded (this script imports both, as a tensor user's process does).
- `small`: one call with small arguments (an int in, an int out), steady state.
- `tensor_4mb`: a 4 MB float32 tensor in and a scalar out, and a 4 MB tensor both ways.
- `train_step`: steps of `examples/trainable_agent.py` (its agent, its objective, 4
  candidates a step) with a scripted model that proposes a new version of the code every
  step (each one defined in the worker, scored on the tickets, then run); `--real` adds
  steps on the embedded model, where the model's own time dominates.

    .venv/bin/python benchmarks/sandbox.py
    .venv/bin/python benchmarks/sandbox.py --real
"""

from __future__ import annotations

import argparse
import json
import runpy
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import tracekit as tk  # noqa: E402
from tracekit.sandbox import client  # noqa: E402


def per_call(fn: Any, arg: Any, calls: int) -> float:
    """Median seconds per call over 5 rounds of `calls` calls (after a warm-up)."""
    for _ in range(min(calls, 50)):
        fn(arg)
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(calls):
            fn(arg)
        rounds.append((time.perf_counter() - start) / calls)
    return statistics.median(rounds)


def pair(body: str) -> tuple[Any, Any]:
    """The same proposed code (the body of `original(x)`) as a sandboxed and as an
    in-process callable."""
    def original(x):  # noqa: ANN001 - the shape every proposal keeps
        return x

    source = f"def original(x):\n    return {body}\n"
    fns = []
    for sandbox in (True, False):
        fn = tk.bundle(trainable=True, sandbox=sandbox)(original)
        fn.parameters()[0].data = source
        fns.append(fn.versions.function_for(fn.parameters()[0].raw))
    return fns[0], fns[1]


def bench_start(n: int) -> dict[str, Any]:
    worker = client.worker_for(tk.sandbox.defaults())
    times = []
    for _ in range(n):
        with worker.lock:
            worker.stop()
            start = time.perf_counter()
            worker.ensure(set(), set())
            times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "runs": [round(t, 3) for t in times],
            "preloaded": sorted(worker.preloaded | {"numpy"})}


def bench_calls(calls: int) -> dict[str, Any]:
    import warnings

    warnings.simplefilter("ignore")
    sandboxed, local = pair("x + 1")
    out: dict[str, Any] = {}
    s, loc = per_call(sandboxed, 41, calls), per_call(local, 41, calls)
    out["small"] = {"sandboxed_us": s * 1e6, "in_process_us": loc * 1e6, "target_us": 100}
    x = torch.randn(1 << 20)  # 4 MB of float32
    sandboxed, local = pair("float(x.sum())")
    s, loc = per_call(sandboxed, x, max(calls // 20, 20)), per_call(local, x, max(calls // 20, 20))
    out["tensor_4mb_in"] = {"sandboxed_ms": s * 1e3, "in_process_ms": loc * 1e3, "target_ms": 5}
    sandboxed, local = pair("x * 2")
    s, loc = per_call(sandboxed, x, max(calls // 20, 20)), per_call(local, x, max(calls // 20, 20))
    out["tensor_4mb_both_ways"] = {"sandboxed_ms": s * 1e3, "in_process_ms": loc * 1e3, "target_ms": 5}
    a = np.random.default_rng(0).random(1 << 19)  # 4 MB of float64
    sandboxed, local = pair("x - x.mean()")
    s, loc = per_call(sandboxed, a, max(calls // 20, 20)), per_call(local, a, max(calls // 20, 20))
    out["ndarray_4mb_both_ways"] = {"sandboxed_ms": s * 1e3, "in_process_ms": loc * 1e3}
    return out


VARIANTS = [
    "def parse_amount(text):\n    for w in text.split():\n        if w.isdigit():\n            return int(w)\n    return None  # v{i}\n",
    "def parse_amount(text):\n    return int(text.split()[0])  # v{i}\n",
]


def scripted_llm() -> Any:
    """Proposes new keywords and a new version of parse_amount on every call."""
    count = [0]

    def llm(messages: list[dict], **kwargs: Any) -> str:
        count[0] += 1
        i = count[0]
        return json.dumps({"reasoning": "try digits", "suggestion": {
            "keywords": ["refund, charged, invoice", "refund, invoice", "charged, dollars"][i % 3],
            "parse_amount": VARIANTS[i % 2].format(i=i)}})

    return llm


def bench_train_step(sandbox: bool, steps: int, llm: Any) -> dict[str, Any]:
    ns = runpy.run_path(str(ROOT / "examples" / "trainable_agent.py"), run_name="agent_example")
    parse_amount = ns["parse_amount"]
    parse_amount.sandbox = sandbox
    parse_amount._versions = None  # rebuilt with the chosen setting
    agent = ns["SupportAgent"]()
    params = [agent.keywords, *parse_amount.parameters()]
    errors = ns["errors"]
    opt = tk.Optimizer([{"params": params, "objective": lambda: errors(agent)}], llm=llm,
                       n_candidates=4, max_reasks=0)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        opt.zero_feedback()
        notes = []
        for ticket, want_label, want_amount in ns["TICKETS"]:
            label, amount = agent(ticket)
            notes += ns["feedback_for"](label, amount, want_label, want_amount)
        for out, text in notes or [(agent(ns["TICKETS"][0][0])[1], "keep it right")]:
            opt.backward(out, text)
        opt.step()
        errors(agent)
        times.append(time.perf_counter() - start)
    steady = times[1:] if len(times) > 1 else times
    return {"first_step_s": times[0], "steady_step_ms": statistics.median(steady) * 1e3,
            "steps": len(times)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=2000, help="calls per round for the small case")
    ap.add_argument("--starts", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--real", action="store_true", help="also time steps on the embedded model")
    args = ap.parse_args()
    if tk.sandbox.status() is not None:
        print(json.dumps({"error": f"no sandbox here: {tk.sandbox.status()}"}))
        return
    result: dict[str, Any] = {"machine": {"cpus": __import__("os").cpu_count(), "torch": torch.__version__}}
    result["start"] = bench_start(args.starts)
    result.update(bench_calls(args.calls))
    import warnings

    warnings.simplefilter("ignore")
    step = {}
    for sandbox in (False, True, False, True):  # interleaved: each setting twice
        key = "sandboxed" if sandbox else "in_process"
        run = bench_train_step(sandbox, args.steps, scripted_llm())
        step.setdefault(key, []).append(run["steady_step_ms"])
    ratio = statistics.median(step["sandboxed"]) / statistics.median(step["in_process"])
    result["train_step_scripted"] = {"sandboxed_ms": statistics.median(step["sandboxed"]),
                                     "in_process_ms": statistics.median(step["in_process"]),
                                     "ratio": ratio, "target_ratio": 1.5}
    if args.real:
        real = {}
        for sandbox in (False, True):
            llm = tk.llm.EmbeddedLLM(cache=False)
            real["sandboxed" if sandbox else "in_process"] = bench_train_step(sandbox, 3, llm)
        real["ratio"] = real["sandboxed"]["steady_step_ms"] / real["in_process"]["steady_step_ms"]
        result["train_step_real_model"] = real
    for key, value in result.items():
        if isinstance(value, dict):
            result[key] = {k: round(v, 3) if isinstance(v, float) else v for k, v in value.items()}
    print(json.dumps(result, indent=2))
    client.shutdown()


if __name__ == "__main__":
    main()
