"""Joint vs text-only vs numeric-only optimization on the flagship triage task.

For each mode and seed: validation accuracy before and after, LLM calls, tokens and wall
time, from one Trainer run (examples/joint_prompt_and_hyperparameters.py). Writes JSON.

    .venv/bin/python benchmarks/joint.py                      # 3 seeds, 5 steps, embedded model
    .venv/bin/python benchmarks/joint.py --steps 3 --candidates 1 --out joint.json   # ~15 min
    .venv/bin/python benchmarks/joint.py --base-url URL --model NAME   # any OpenAI-compatible server
"""

from __future__ import annotations

import argparse
import json
import platform
import runpy
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "joint_prompt_and_hyperparameters.py"


def run_one(ns: dict, mode: str, seed: int, steps: int, candidates: int, llm: object) -> dict:
    trainer = ns["build_trainer"](steps=steps, mode=mode, seed=seed, llm=None if mode == "numeric" else llm,
                                  progress=False, candidates=candidates)
    before = trainer.evaluate().score
    start = time.perf_counter()
    result = trainer.fit()
    seconds = time.perf_counter() - start
    return {"mode": mode, "seed": seed, "val_before": before, "val_after": result.best_score,
            "llm_calls": result.llm_calls, "tokens": result.prompt_tokens + result.completion_tokens,
            "seconds": round(seconds, 2),
            "params": {n: p.data for n, p in trainer.workflow.named_parameters()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--candidates", type=int, default=2)
    parser.add_argument("--modes", default="joint,text,numeric")
    parser.add_argument("--base-url")
    parser.add_argument("--model")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()

    ns = runpy.run_path(str(EXAMPLE), run_name="joint_example")  # before tracekit.training is imported
    llm = ns["make_llm"](args.base_url, args.model)
    runs = []
    for mode in args.modes.split(","):
        for seed in range(args.seeds):
            row = run_one(ns, mode, seed, args.steps, args.candidates, llm)
            runs.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    summary = {}
    for mode in args.modes.split(","):
        rows = [r for r in runs if r["mode"] == mode]
        summary[mode] = {
            "val_before": statistics.mean(r["val_before"] for r in rows),
            "val_after_mean": statistics.mean(r["val_after"] for r in rows),
            "val_after_min": min(r["val_after"] for r in rows),
            "val_after_max": max(r["val_after"] for r in rows),
            "llm_calls_mean": statistics.mean(r["llm_calls"] for r in rows),
            "tokens_mean": statistics.mean(r["tokens"] for r in rows),
            "seconds_mean": round(statistics.mean(r["seconds"] for r in rows), 2),
        }
    out = {"task": "ticket triage (examples/data/tickets.jsonl), validation accuracy, higher is better",
           "llm": getattr(llm, "model", type(llm).__name__), "steps": args.steps,
           "candidates": args.candidates, "seeds": args.seeds, "machine": platform.machine(),
           "cpus": __import__("os").cpu_count(), "summary": summary, "runs": runs}
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
