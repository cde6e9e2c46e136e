"""Benchmark of the text/code optimizer; prints JSON.

Part 1 (`prompt`): prompt size and build time against graph size (a chain of bundled calls
and a fan-out where one parameter feeds every operator call), tracekit side by side with
Trace's OptoPrime `summarize` + `construct_prompt` (run in the Trace venv as a subprocess).

Part 2 (`tasks`): tiny tasks on the embedded SmolLM2 model — make y = x*x reach 16
from x = 3 (`square`: an int in [-10, 10]; `square_float`: a float 3.0 with no bounds, the
feedback "y = 9.0, but y should be 16", solved when |x*x - 16| < 1e-2; `square_float_words`:
the same float with only "the result 9.0 is too small" / "too large" / "correct", solved
when |x| is within 1e-2 of 4); pick the op among add/sub/mul so that op(6, 7) = 42; rewrite
a keyword list that a spam filter (code) consumes — for tracekit (candidate search with an objective),
single-proposal (one LLM suggestion per step, taken as is, like OptoPrime) and a
random-proposal baseline (same number of proposals as tracekit, best kept). Two methods run
at the defaults a new user gets: `defaults` is `tk.Optimizer(params)` with text feedback only
(no objective, no options but the seed) on the embedded model, and `random_defaults` the same
optimizer fed random proposals instead of the model's.

Each run row lists every value the optimizer applied (`applied`: step, solver, old -> new,
how; for text values the step's model replies too) and counts `template_copies`: applied
text values holding a `<...>` placeholder, `{` or `}` (JSON debris), an instructions'
placeholder, or a piece of the optimizer prompt's fixed wording (its default instruction,
reply request, titles and notes: `solvers.text.prompt.own_wording`), none of which the
value held before; `prompt_copies` counts applied values holding a piece of the variable's
description or a whole feedback line (a copy of the prompt's data, not of its template).

    .venv/bin/python benchmarks/text_optimizer.py                 # a few minutes
    .venv/bin/python benchmarks/text_optimizer.py --full          # 5 seeds x 8 steps
    .venv/bin/python benchmarks/text_optimizer.py --skip-llm --sizes 100,1000,10000
    TRACEKIT_LLM_CACHE=0 .venv/bin/python benchmarks/text_optimizer.py --skip-prompt --seeds 5 --steps 8 \
        --tasks square_float,square_float_words,keywords --methods defaults,random_defaults
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
from solvers.text.exclude import normal_form  # noqa: E402
from solvers.text.problem import Problem  # noqa: E402
from solvers.text.prompt import own_wording, shorten  # noqa: E402
from solvers.text.reply import is_placeholder  # noqa: E402
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


def task_square_float() -> dict[str, Any]:
    x = tk.param(3.0, name="x")  # a Python float, no bounds: what a user writes

    def run() -> tuple[Any, list[tuple[Any, str]]]:
        y = x * x
        return y, [(y, f"y = {y.data}, but y should be 16")]

    return {"params": [x], "run": run, "loss": lambda: abs(x.data * x.data - 16),
            "solved": lambda: abs(x.data * x.data - 16) < 1e-2}


def task_square_float_words() -> dict[str, Any]:
    """The same float with other wording and no target: only "too small" / "too large"."""
    x = tk.param(3.0, name="x")

    def run() -> tuple[Any, list[tuple[Any, str]]]:
        y = x * x
        verdict = "correct" if abs(abs(x.data) - 4) < 1e-2 else "too small" if y.data < 16 else "too large"
        return y, [(y, f"the result {y.data} is {verdict}")]

    return {"params": [x], "run": run, "loss": lambda: abs(abs(x.data) - 4),
            "solved": lambda: abs(abs(x.data) - 4) < 1e-2}


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


TASKS = {"square": task_square, "square_float": task_square_float,
         "square_float_words": task_square_float_words, "op": task_op, "keywords": task_keywords}
DEFAULTS_OPTIONS: dict[str, Any] = {}  # --defaults-options: a variant of the defaults, to compare


class Random(RandomProposals):
    """`RandomProposals`, also for a number with no bounds (uniform within 10 times its
    size around it) and for the multiple-choice questions of the bracket route (a random
    option)."""

    def __call__(self, messages: list[dict[str, str]], **kwargs: Any) -> str:
        content = messages[-1]["content"]
        if "Answer with one of:" in content:
            options = [o.strip().rstrip(".") for o in content.rsplit("Answer with one of:", 1)[1].split(",")]
            return json.dumps({"answer": self.rng.choice(options)})
        saved = [(p, p.bounds) for p in self.params if p.kind == "numeric" and p.bounds is None]
        try:
            for p, _ in saved:
                size = 10 * max(abs(float(p.raw)), 1.0)
                p.bounds = (float(p.raw) - size, float(p.raw) + size)
            return super().__call__(messages, **kwargs)
        finally:
            for p, bounds in saved:
                p.bounds = bounds


# --- what the optimizer applied: template copies -----------------------------------------------
_ANGLE = re.compile(r"<[^<>\n]{1,80}>")
FIXED_WORDING = own_wording(Problem(variables=[]))  # the default instruction, reply request, notes


def template_copy(new: Any, old: Any) -> str:
    """Why an applied text value copies the reply template or the prompt's fixed wording
    ("" when it does not): what the value held before does not count."""
    if not isinstance(new, str):
        return ""
    before = old if isinstance(old, str) else ""
    if _ANGLE.search(new) and not _ANGLE.search(before):
        return f"a <...> placeholder ({_ANGLE.search(new).group()})"  # type: ignore[union-attr]
    if found := [ch for ch in "{}" if ch in new and ch not in before]:
        return f"JSON debris ({' '.join(found)})"
    if is_placeholder(new):
        return "an instructions' placeholder"
    text, now = normal_form(new), normal_form(before)
    for piece in FIXED_WORDING:
        form = normal_form(piece)
        if form in text and form not in now:
            return f"the prompt's fixed wording ({piece})"
    return ""


def prompt_copy(new: Any, old: Any, p: Any, feedback: list[str]) -> str:
    """Why an applied text value copies the prompt's data: a piece (16+ characters) of the
    variable's description, or a whole feedback line ("" when neither)."""
    if not isinstance(new, str):
        return ""
    text, now = normal_form(new), normal_form(old if isinstance(old, str) else "")
    pieces = [x.strip() for x in re.split(r"[.,;:()\[\]\"#\n]", p.description or "")]
    for piece in [x for x in pieces if len(x) >= 16] + [f.strip() for f in feedback]:
        form = normal_form(piece)
        if form and form in text and form not in now:
            return f"copies {shorten(piece, 80, raw_str=True)}"
    return ""


def reply_log(backend: Any) -> list[str]:
    """The model's raw replies, in order: `_complete` of the backend instance, wrapped once
    (the list grows with every call; a run reads what it added)."""
    log: list[str] | None = getattr(backend, "_bench_replies", None)
    if log is None:
        log = []
        complete = backend._complete

        def logged(request: Any) -> Any:
            completion = complete(request)
            log.append(str(getattr(completion, "text", "")))
            return completion

        backend._bench_replies = log
        backend._complete = logged
    return log


def run_task(task_name: str, method: str, seed: int, steps: int, llm: Any, n_candidates: int) -> dict[str, Any]:
    task = TASKS[task_name]()
    params = task["params"]
    if method == "random":
        backend: Any = tk.llm.as_backend(Random(params, seed))
        options = {"n_candidates": n_candidates, "objective": task["loss"], "seed": seed}
    elif method == "random_defaults":  # random proposals, one a step, no objective
        backend = tk.llm.as_backend(Random(params, seed))
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
    log = reply_log(backend)
    by_name = {p.name: p for p in params}
    applied: list[dict[str, Any]] = []
    template_copies = prompt_copies = 0
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
        before = {p.name: p.data for p in params}
        replies_before = len(log)
        start = time.perf_counter()
        with backend.accounting.scope() as usage:
            report = opt.step()
        seconds += time.perf_counter() - start
        done_steps += 1
        step_replies = log[replies_before:]
        for change in report.changes:
            if not change.changed:
                continue
            p = by_name.get(change.name)
            old = before.get(change.name, change.old)
            new = p.data if p is not None else change.new
            copy = template_copy(new, old)
            data_copy = prompt_copy(new, old, p, [t for _, t in feedbacks]) if p is not None else ""
            template_copies += bool(copy)
            prompt_copies += bool(data_copy)
            entry: dict[str, Any] = {"step": step, "solver": change.solver, "old": old, "new": new,
                                     "how": change.reason[:160]}
            how_explored = change.info.get("explored", {}).get(change.name)
            if how_explored:
                entry["explored"] = how_explored
            if copy:
                entry["template_copy"] = copy
            if data_copy:
                entry["prompt_copy"] = data_copy
            if isinstance(new, str):
                entry["replies"] = [shorten(r, 400, raw_str=True) for r in step_replies]
            applied.append(entry)
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
            "solved_at": solved_at, "template_copies": template_copies, "prompt_copies": prompt_copies,
            "applied": applied, "steps": done_steps, "llm_calls": calls, "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens, "seconds": seconds, "replies": replies,
            "valid_replies": valid, "candidates": candidates, "explored_steps": explored,
            "reply_problems": problems,
            "final": {p.name: p.data for p in params}}


def by_task(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One task's runs for one method: solved, steps to solve, time and calls a step, copies."""
    steps = max(sum(r["steps"] for r in rows), 1)
    return {"solved": f"{sum(r['solved'] for r in rows)}/{len(rows)}",
            "steps_to_solve": [r["solved_at"] for r in rows],
            "seconds_per_step": sum(r["seconds"] for r in rows) / steps,
            "llm_calls_per_step": sum(r["llm_calls"] for r in rows) / steps,
            "applied_values": sum(len(r["applied"]) for r in rows),
            "template_copies": sum(r["template_copies"] for r in rows),
            "prompt_copies": sum(r["prompt_copies"] for r in rows)}


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
            "template_copies": sum(r["template_copies"] for r in rows),
            "by_task": {t: by_task([r for r in rows if r["task"] == t]) for t in tasks},
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
