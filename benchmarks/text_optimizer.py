"""Benchmark of the text/code optimizer; prints JSON.

Part 1 (`prompt`): prompt size and build time against graph size (a chain of bundled calls
and a fan-out where one parameter feeds every operator call), tracekit side by side with
Trace's OptoPrime `summarize` + `construct_prompt` (run in the Trace venv as a subprocess).

Part 2 (`tasks`): three tiny tasks on the embedded SmolLM2 model — make y = x*x reach 16
from x = 3; pick the op among add/sub/mul so that op(6, 7) = 42; rewrite a keyword list
that a spam filter (code) consumes — for tracekit (candidate search with an objective),
single-proposal (one LLM suggestion per step, taken as is, like OptoPrime) and a
random-proposal baseline (same number of proposals as tracekit, best kept). Two methods run
at the defaults a new user gets: `defaults` is `tk.Optimizer(params)` with text feedback only
(no objective, no options but the seed) on the embedded model, and `random_defaults` the same
optimizer fed random proposals instead of the model's.

    .venv/bin/python benchmarks/text_optimizer.py                 # a few minutes
    .venv/bin/python benchmarks/text_optimizer.py --full          # 5 seeds x 8 steps
    .venv/bin/python benchmarks/text_optimizer.py --skip-llm --sizes 100,1000,10000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tracekit as tk  # noqa: E402
from benchmarks.baselines import RandomProposals  # noqa: E402
from solvers.text import build_prompt  # noqa: E402
from tracekit.routes.text import build_problem  # noqa: E402

TRACE_PYTHON = ROOT / ".bench-venv" / "trace" / "bin" / "python"

# --- part 1: prompt size and build time ------------------------------------------------------
TRACE_SCRIPT = r'''
import json, sys, time
sys.setrecursionlimit(100000)
from opto.trace import node, bundle
from opto.optimizers import OptoPrime

kind, n = sys.argv[1], int(sys.argv[2])

class NoLLM:
    def __call__(self, *a, **k):
        raise RuntimeError("not called")

if kind == "chain":
    prefix = node("Total:", trainable=True, description="text put before the total")
    step = node(2, trainable=True)

    @bundle()
    def accumulate(total, step):
        """Add the step to the running total."""
        return total + step

    @bundle()
    def render(prefix, total):
        """Render the total after the prefix."""
        return f"{prefix} {total}"

    total = node(0)
    for _ in range(n):
        total = accumulate(total, step)
    out = render(prefix, total)
    params = [prefix, step]
    feedback = "the total should be 100"
else:
    w = node(1.5, trainable=True)
    total = w * 0
    for i in range(n // 2):
        total = total + w * i
    out = total
    params = [w]
    feedback = "make the total smaller"

opt = OptoPrime(params, llm=NoLLM())
opt.zero_feedback()
t0 = time.perf_counter()
opt.backward(out, feedback)
t1 = time.perf_counter()
summary = opt.summarize()
system_prompt, user_prompt = opt.construct_prompt(summary)
t2 = time.perf_counter()
print(json.dumps({"backward_s": t1 - t0, "build_s": t2 - t1,
                  "prompt_chars": len(system_prompt) + len(user_prompt)}))
'''


def tracekit_prompt(kind: str, n: int, budget: int) -> dict[str, Any]:
    """Build the graph, run backward, then time problem extraction + prompt building."""
    if kind == "chain":
        prefix = tk.param("Total:", name="prefix", description="text put before the total")
        step = tk.param(2, name="step", bounds=(0, 100))

        @tk.bundle()
        def accumulate(total, step):
            """Add the step to the running total."""
            return total + step

        @tk.bundle()
        def render(prefix, total):
            """Render the total after the prefix."""
            return f"{prefix} {total}"

        total = tk.node(0, name="start")
        for _ in range(n):
            total = accumulate(total, step)
        out, params, feedback = render(prefix, total), [prefix, step], "the total should be 100"
    else:
        w = tk.param(1.5, name="w", bounds=(-10, 10))
        total = w * 0
        for i in range(n // 2):
            total = total + w * i
        out, params, feedback = total, [w], "make the total smaller"
    t0 = time.perf_counter()
    tk.backward(out, feedback, params=params)
    t1 = time.perf_counter()
    names = {id(p): p.name for p in params}
    problem = build_problem(params, [params[0].feedback[-1]], names)
    prompt = build_prompt(problem, budget)
    t2 = time.perf_counter()
    return {"backward_s": t1 - t0, "build_s": t2 - t1, "prompt_chars": len(prompt.text),
            "prompt_tokens_est": prompt.tokens, "calls_shown": prompt.stats.get("calls_shown"),
            "calls_left_out": prompt.stats.get("calls_left_out")}


def trace_prompt(kind: str, n: int, timeout: float) -> dict[str, Any]:
    if not TRACE_PYTHON.exists():
        return {"error": f"Trace venv not found at {TRACE_PYTHON}"}
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    with tempfile.TemporaryDirectory() as tmp:  # a file: Trace's bundle reads the source
        script = Path(tmp) / "trace_prompt.py"
        script.write_text(TRACE_SCRIPT)
        try:
            done = subprocess.run([str(TRACE_PYTHON), str(script), kind, str(n)], capture_output=True,
                                  text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return {"error": f"timeout after {timeout:g}s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1][:300]}
    return json.loads(lines[-1])


def part_prompt(sizes: list[int], budget: int, trace: bool, trace_timeout: float) -> list[dict[str, Any]]:
    rows = []
    for kind in ("chain", "fanout"):
        for n in sizes:
            row: dict[str, Any] = {"graph": kind, "ops": n, "tracekit": tracekit_prompt(kind, n, budget)}
            if trace:
                row["trace_optoprime"] = trace_prompt(kind, n, trace_timeout)
            rows.append(row)
            print(f"[prompt] {kind} {n}: {json.dumps(row)}", file=sys.stderr)
    return rows


# --- part 2: three tiny tasks on the embedded model ------------------------------------------------
MESSAGES = [("win a free prize now", "spam"), ("claim your cash reward today", "spam"),
            ("lunch at noon?", "ham"), ("the meeting moved to 3pm", "ham")]


def task_square() -> dict[str, Any]:
    x = tk.param(3, name="x", bounds=(-10, 10), description="an integer")

    def run() -> tuple[Any, list[tuple[Any, str]]]:
        y = x * x
        return y, [(y, f"y = {y.data}, but y should be 16")]

    return {"params": [x], "run": run, "loss": lambda: abs(x.data * x.data - 16),
            "solved": lambda: x.data * x.data == 16}


def task_op() -> dict[str, Any]:
    op = tk.param("add", name="op", choices=["add", "sub", "mul"], description="the operation to apply")

    @tk.bundle()
    def apply(op, a, b):
        """Apply the operation named op to a and b."""
        return {"add": a + b, "sub": a - b, "mul": a * b}[op]

    def run() -> tuple[Any, list[tuple[Any, str]]]:
        z = apply(op, 6, 7)
        return z, [(z, f"op(6, 7) = {z.data}, but it should be 42")]

    def value() -> int:
        return {"add": 13, "sub": -1, "mul": 42}[op.data]

    return {"params": [op], "run": run, "loss": lambda: abs(value() - 42), "solved": lambda: value() == 42}


def task_keywords() -> dict[str, Any]:
    keywords = tk.param("hello, thanks", name="keywords",
                        description="comma-separated words; a message containing any of them is spam")

    @tk.bundle()
    def classify(message, keywords):
        """Label the message spam if it contains any of the comma-separated keywords, else ham."""
        words = [w.strip().lower() for w in keywords.split(",") if w.strip()]
        return "spam" if any(w in message.lower() for w in words) else "ham"

    def errors() -> int:
        with tk.no_trace():
            return sum(classify(m, keywords.data) != label for m, label in MESSAGES)

    def run() -> tuple[Any, list[tuple[Any, str]]]:
        outs = []
        for message, label in MESSAGES:
            out = classify(message, keywords)
            verdict = "correct" if out.data == label else f"wrong, expected {label}"
            outs.append((out, f"message {message!r} was labeled {out.data}: {verdict}"))
        return outs[0][0], outs

    return {"params": [keywords], "run": run, "loss": errors, "solved": lambda: errors() == 0}


TASKS = {"square": task_square, "op": task_op, "keywords": task_keywords}
DEFAULTS_OPTIONS: dict[str, Any] = {}  # --defaults-options: a variant of the defaults, to compare


def run_task(task_name: str, method: str, seed: int, steps: int, llm: Any, n_candidates: int) -> dict[str, Any]:
    task = TASKS[task_name]()
    params = task["params"]
    if method == "random":
        backend: Any = tk.llm.as_backend(RandomProposals(params, seed))
        options = {"n_candidates": n_candidates, "objective": task["loss"], "seed": seed}
    elif method == "random_defaults":  # random proposals, one a step, no objective
        backend = tk.llm.as_backend(RandomProposals(params, seed))
        options = {"seed": seed}
    elif method == "defaults":  # what a new user runs: text feedback, nothing else
        backend = llm
        options = {"seed": seed, **DEFAULTS_OPTIONS}
    elif method == "tracekit":
        backend = llm
        options = {"n_candidates": n_candidates, "objective": task["loss"], "seed": seed}
    else:  # single proposal, taken as is
        backend = llm
        options = {"n_candidates": 1, "temperatures": (0.7,), "seed": seed}
    opt = tk.Optimizer([{"params": params, **options}], llm=backend)
    calls = prompt_tokens = completion_tokens = replies = valid = candidates = explored = 0
    problems: list[str] = []
    seconds = 0.0
    solved_at = None
    done_steps = 0
    for step in range(steps):
        if task["solved"]():
            solved_at = step
            break
        _, feedbacks = task["run"]()
        opt.zero_feedback()
        for out, text in feedbacks:
            opt.backward(out, text)
        start = time.perf_counter()
        with backend.accounting.scope() as usage:
            report = opt.step()
        seconds += time.perf_counter() - start
        done_steps += 1
        if not method.startswith("random"):
            calls += usage.calls
            prompt_tokens += usage.prompt_tokens
            completion_tokens += usage.completion_tokens
        info = report.changes[0].info
        explored += bool(info.get("explored"))
        replies += info.get("replies", 0)
        valid += info.get("valid_candidates", 0)
        candidates += info.get("candidates", 0)
        problems += info.get("reply_problems", [])
    if solved_at is None and task["solved"]():
        solved_at = done_steps
    return {"task": task_name, "method": method, "seed": seed, "solved": solved_at is not None,
            "steps": done_steps, "llm_calls": calls, "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens, "seconds": seconds, "replies": replies,
            "valid_replies": valid, "candidates": candidates, "explored_steps": explored,
            "reply_problems": problems,
            "final": {p.name: p.data for p in params}}


def part_tasks(seeds: int, steps: int, n_candidates: int, methods: list[str],
               tasks: list[str] | None = None) -> dict[str, Any]:
    from tracekit.llm import EmbeddedLLM

    llm = EmbeddedLLM(cache=False)
    runs = []
    tasks = tasks or list(TASKS)
    for task_name in tasks:
        for method in methods:
            for seed in range(seeds):
                row = run_task(task_name, method, seed, steps, llm, n_candidates)
                runs.append(row)
                print(f"[tasks] {json.dumps(row, default=str)}", file=sys.stderr)
    summary: dict[str, Any] = {}
    for method in methods:
        rows = [r for r in runs if r["method"] == method]
        step_count = max(sum(r["steps"] for r in rows), 1)
        summary[method] = {
            "success_rate": sum(r["solved"] for r in rows) / len(rows),
            "solved": f"{sum(r['solved'] for r in rows)}/{len(rows)}",
            "per_task": {t: f"{sum(r['solved'] for r in rows if r['task'] == t)}/"
                            f"{sum(1 for r in rows if r['task'] == t)}" for t in tasks},
            "llm_calls_per_step": sum(r["llm_calls"] for r in rows) / step_count,
            "tokens_per_step": sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows) / step_count,
            "seconds_per_step": sum(r["seconds"] for r in rows) / step_count,
            "valid_reply_share": (sum(r["valid_replies"] for r in rows) / max(sum(r["replies"] for r in rows), 1)),
            "explored_steps": sum(r.get("explored_steps", 0) for r in rows),
            "steps": step_count,
        }
    return {"seeds": seeds, "steps": steps, "n_candidates": n_candidates, "summary": summary, "runs": runs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="100,1000,10000", help="graph sizes (ops) for part 1")
    ap.add_argument("--budget", type=int, default=4000, help="prompt budget in tokens")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--candidates", type=int, default=3)
    ap.add_argument("--methods", default="tracekit,single,random")
    ap.add_argument("--tasks", default=",".join(TASKS), help="which tiny tasks, comma-separated")
    ap.add_argument("--full", action="store_true", help="5 seeds x 8 steps")
    ap.add_argument("--skip-trace", action="store_true")
    ap.add_argument("--skip-llm", action="store_true")
    ap.add_argument("--skip-prompt", action="store_true")
    ap.add_argument("--trace-timeout", type=float, default=180.0)
    ap.add_argument("--out", default="", help="also write the JSON to this file")
    ap.add_argument("--defaults-options", default="{}",
                    help='JSON options added to the "defaults" method, e.g. \'{"temperatures": [0.7]}\'')
    args = ap.parse_args()
    DEFAULTS_OPTIONS.update(json.loads(args.defaults_options))
    if args.full:
        args.seeds, args.steps = 5, 8
    result: dict[str, Any] = {"benchmark": "text_optimizer", "python": sys.version.split()[0],
                              "cpus": os.cpu_count(), "defaults_options": DEFAULTS_OPTIONS}
    if not args.skip_prompt:
        sizes = [int(s) for s in args.sizes.split(",") if s]
        result["prompt"] = part_prompt(sizes, args.budget, not args.skip_trace, args.trace_timeout)
    if not args.skip_llm:
        result["tasks"] = part_tasks(args.seeds, args.steps, args.candidates, args.methods.split(","),
                                     args.tasks.split(","))
    text = json.dumps(result, indent=2, default=str)
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
