"""Prompt programs: tracekit's defaults against DSPy 3.4.1 on ticket triage with the LLM inside.

    .venv/bin/python benchmarks/prompt_programs.py                      # budgets 150 and 600, 3 seeds
    .venv/bin/python benchmarks/prompt_programs.py --budgets 300 --seeds 0 1 2
    .venv/bin/python benchmarks/prompt_programs.py --no-dspy            # tracekit only

The task: 30 training and 30 validation support tickets (examples/data/tickets.jsonl), an
LLM call in the workflow answering "urgent" or "routine", scored by exact match. Both tools
use the same llama.cpp server (the embedded SmolLM2-135M that tracekit starts; caches off),
the same splits, the same metric and the same metric-call budget:

- tracekit: `tk.Predict` + `tk.Optimizer(triage.parameters())` + `tk.Trainer(...,
  max_metric_calls=budget)`, everything at its defaults;
- DSPy 3.4.1, in its own venv that this script creates (benchmarks/.venv-dspy): zero-shot,
  BootstrapFewShot, COPRO, MIPROv2 and GEPA (benchmarks/prompt_programs_dspy.py).

One JSON object per run on stdout (validation accuracy before -> after, metric calls, LLM
calls, tokens, seconds), then a summary table (mean over seeds) as JSON and Markdown. The
majority-class baseline is printed with it. Runs take minutes each on 2 CPU cores.
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
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "examples" / "data" / "tickets.jsonl"
VENV = ROOT / "benchmarks" / ".venv-dspy"
DSPY = "dspy==3.4.1"
CHOICES = ["urgent", "routine"]
INSTRUCTION = "Is this support ticket urgent or routine?"
OPTIMIZERS = ["zero-shot", "BootstrapFewShot", "COPRO", "MIPROv2", "GEPA"]


def splits(n_train: int, n_val: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The fixed splits: the first tickets of the file's train and val splits."""
    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    train = [r for r in rows if r["split"] == "train"][:n_train]
    val = [r for r in rows if r["split"] == "val"][:n_val]
    return train, val


def run_tracekit(llm: Any, train: list[dict[str, Any]], val: list[dict[str, Any]], budget: int,
                 seed: int) -> dict[str, Any]:
    """tracekit at its defaults: tk.Predict trained by tk.Trainer within the budget."""
    import tracekit as tk

    triage = tk.Predict("ticket -> label", instruction=INSTRUCTION, output=Literal[tuple(CHOICES)],
                        examples=[{"ticket": r["text"], "label": r["label"]} for r in train], llm=llm)
    opt = tk.Optimizer(triage.parameters(), llm=llm)
    start = time.perf_counter()
    trainer = tk.Trainer(triage, opt, lambda pred, ex: float(pred == ex["label"]), train=train, val=val,
                         call=lambda wf, ex: wf(ticket=ex["text"]), max_metric_calls=budget, seed=seed,
                         progress=False)
    result = trainer.fit()
    return {"tool": "tracekit", "optimizer": "Trainer (defaults)", "budget": budget, "seed": seed,
            "before": result.initial_score, "after": result.best_score, "status": "ok",
            "seconds": round(time.perf_counter() - start, 1),
            "metric_calls": result.budget["spent"]["metric_calls"], "llm_calls": result.llm_calls,
            "tokens": result.prompt_tokens + result.completion_tokens, "steps": result.steps,
            "best_params": {k: str(v)[:80] for k, v in result.best_params.items()}}


def dspy_python() -> Path:
    """DSPy's venv (created on first use)."""
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", DSPY], check=True)
    return python


def run_dspy(base_url: str, model: str, train: list[dict[str, Any]], val: list[dict[str, Any]], budget: int,
             seed: int, optimizers: list[str]) -> list[dict[str, Any]]:
    config = {"base_url": base_url, "model": model, "train": train, "val": val, "choices": CHOICES,
              "instruction": INSTRUCTION, "budget": budget, "seed": seed, "optimizers": optimizers}
    env = {**os.environ, "DSPY_CACHEDIR": str(VENV / "cache"), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    rows = []
    with tempfile.TemporaryFile("w+") as log, subprocess.Popen(
            [str(dspy_python()), str(ROOT / "benchmarks" / "prompt_programs_dspy.py"), json.dumps(config)],
            stdout=subprocess.PIPE, stderr=log, text=True, env=env) as runner:
        assert runner.stdout is not None
        for line in runner.stdout:  # one row per optimizer, as each finishes
            if line.startswith("{"):
                rows.append(json.loads(line))
                print(line.strip(), flush=True)
        runner.wait()
        log.seek(0)
        errors = log.read()
    if runner.returncode != 0 and not rows:
        rows = [{"tool": "dspy", "optimizer": "all", "budget": budget, "seed": seed,
                 "status": f"runner failed: {errors[-400:]}"}]
        print(json.dumps(rows[-1]), flush=True)
    return rows


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean over seeds per (tool, optimizer, budget)."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["tool"], r["optimizer"], r["budget"]), []).append(r)
    table = []
    for (tool, optimizer, budget), runs in groups.items():
        ok = [r for r in runs if r.get("after") is not None]

        def mean(key: str, runs: list[dict[str, Any]] = ok) -> float | None:
            values = [r[key] for r in runs if r.get(key) is not None]
            return round(sum(values) / len(values), 3) if values else None

        table.append({"tool": tool, "optimizer": optimizer, "budget": budget, "seeds": len(runs),
                      "crashed": len(runs) - len(ok), "before": mean("before", runs), "after": mean("after"),
                      "after_each": [r.get("after") for r in runs], "metric_calls": mean("metric_calls", runs),
                      "llm_calls": mean("llm_calls", runs), "tokens": mean("tokens", runs),
                      "seconds": mean("seconds", runs)})
    return table


def markdown(table: list[dict[str, Any]], majority: float) -> str:
    lines = [f"majority-class baseline: {majority:.3f}", "",
             "| tool | optimizer | budget | val before -> after (mean; each seed) | metric calls | LLM calls "
             "| tokens | seconds | crashed |", "|---|---|---|---|---|---|---|---|---|"]
    for t in table:
        each = ", ".join("crash" if a is None else f"{a:.3f}" for a in t["after_each"])
        lines.append(f"| {t['tool']} | {t['optimizer']} | {t['budget']} | {t['before']} -> {t['after']} "
                     f"({each}) | {t['metric_calls']} | {t['llm_calls']} | {t['tokens']} | {t['seconds']} "
                     f"| {t['crashed']}/{t['seeds']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budgets", type=int, nargs="+", default=[150, 600])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--optimizers", nargs="+", default=OPTIMIZERS, choices=OPTIMIZERS)
    parser.add_argument("--no-dspy", action="store_true", help="run tracekit only")
    parser.add_argument("--no-tracekit", action="store_true", help="run DSPy only")
    parser.add_argument("--train", type=int, default=30)
    parser.add_argument("--val", type=int, default=30)
    args = parser.parse_args()
    os.environ["TRACEKIT_LLM_CACHE"] = "0"  # every seed must be a new run, not a replay

    import tracekit as tk
    from tracekit.llm.embedded import MODEL_NAME

    llm = tk.llm.default()
    llm("Say OK.", max_tokens=2)  # start the shared server
    train, val = splits(args.train, args.val)
    majority = max(sum(r["label"] == c for r in val) for c in CHOICES) / len(val)
    rows: list[dict[str, Any]] = []
    for budget in args.budgets:
        for seed in args.seeds:
            if not args.no_tracekit:
                rows.append(run_tracekit(llm, train, val, budget, seed))
                print(json.dumps(rows[-1]), flush=True)
            if not args.no_dspy:
                rows += run_dspy(llm.server.base_url, MODEL_NAME, train, val, budget, seed, args.optimizers)
    table = summary(rows)
    print(json.dumps({"majority_baseline": majority, "summary": table}))
    print(markdown(table, majority))


if __name__ == "__main__":
    main()
