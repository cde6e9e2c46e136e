"""Benchmark of the Trainer's search strategies at equal budgets of metric calls; prints JSON.

SIMULATION (no language model): the workflow is `modules` text parameters of `width` bits
each; validation example i is solved when bit i % width of module i // width is set
(`tests.train.helpers.ModulesModel`). The proposer (`SubsetProposer`, registered as the
text solver) edits one module per step: each unsolved example of it becomes solved with
probability p, each solved one breaks with probability q. A *blind* proposer picks the
module at random; a *reflecting* one picks the module of an example the minibatch
feedback reports as failed (as an LLM reflecting on failures would). The proposer is the
same for every strategy, so what differs between the rows is only the search strategy: which candidate is expanded,
what is kept, whether children are screened on the minibatch and whether candidates are
merged. Every run gets the same `max_metric_calls`; the score is the best validation score
(fraction of examples solved) when the budget is spent.

    PYTHONPATH=. .venv/bin/python benchmarks/search.py                # ~10 s
    PYTHONPATH=. .venv/bin/python benchmarks/search.py --seeds 10 --budget 400,800,1600
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tracekit as tk  # noqa: E402
from tests.train.helpers import ModulesModel, SubsetProposer, solved_metric  # noqa: E402
from tracekit import seam as registry  # noqa: E402
from tracekit.training import Trainer  # noqa: E402
from tracekit.training.strategies import Beam, Greedy, Pareto, Priority  # noqa: E402

STRATEGIES = {
    "greedy": lambda: Greedy(),
    "pareto": lambda: Pareto(),                              # screen + merge every 2 accepted
    "pareto (no merge)": lambda: Pareto(merge_every=0),
    "pareto (no screening)": lambda: Pareto(screen=False),
    "beam (width 4)": lambda: Beam(width=4),
    "priority": lambda: Priority(),
}

SETTINGS = {  # p: chance an unsolved example is fixed, q: chance a solved one breaks
    "reflecting, helpful (p=0.3, q=0.1)": (0.3, 0.1, True),
    "reflecting, noisy (p=0.2, q=0.3)": (0.2, 0.3, True),
    "blind, helpful (p=0.3, q=0.1)": (0.3, 0.1, False),
    "blind, noisy (p=0.2, q=0.3)": (0.2, 0.3, False),
}


def run_once(strategy: str, p: float, q: float, targeted: bool, seed: int, budget: int, modules: int,
             width: int, batch_size: int) -> dict[str, Any]:
    """One simulated training run; the best validation score at the budget."""
    registry._factories.clear()
    registry._BUILTIN.clear()
    tk.register_solver("text", lambda params, **o: SubsetProposer(params, p, q, seed=1000 + seed,
                                                                       targeted=targeted, width=width))
    model = ModulesModel(modules, width, start=seed)
    data = list(range(modules * width))
    trainer = Trainer(model, tk.Optimizer(model.parameters()), solved_metric, train=data, val=data,
                      batch_size=batch_size, max_steps=100_000, seed=seed, progress=False,
                      executor="serial", batch_objective=False, strategy=STRATEGIES[strategy](),
                      max_metric_calls=budget)
    start = time.perf_counter()
    result = trainer.fit()
    return {"best": result.best_score, "initial": result.initial_score, "steps": result.steps,
            "metric_calls": result.budget["spent"]["metric_calls"],
            "seconds": time.perf_counter() - start}


def summarize(rows: list[dict[str, Any]], greedy: list[dict[str, Any]] | None) -> dict[str, Any]:
    best = [r["best"] for r in rows]
    out = {"mean_best": round(statistics.mean(best), 4),
           "std_best": round(statistics.stdev(best), 4) if len(best) > 1 else 0.0,
           "mean_gain": round(statistics.mean(r["best"] - r["initial"] for r in rows), 4),
           "mean_steps": round(statistics.mean(r["steps"] for r in rows), 1),
           "max_metric_calls_spent": max(r["metric_calls"] for r in rows),
           "mean_seconds": round(statistics.mean(r["seconds"] for r in rows), 3)}
    if greedy is not None:
        diffs = [r["best"] - g["best"] for r, g in zip(rows, greedy)]
        out["vs_greedy"] = {"wins": sum(d > 1e-9 for d in diffs), "ties": sum(abs(d) <= 1e-9 for d in diffs),
                            "losses": sum(d < -1e-9 for d in diffs),
                            "mean_diff": round(statistics.mean(diffs), 4)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--budget", default="300,600,1200", help="metric-call budgets, comma-separated")
    ap.add_argument("--modules", type=int, default=4)
    ap.add_argument("--width", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--out", help="also write the JSON here")
    args = ap.parse_args()
    budgets = [int(b) for b in args.budget.split(",")]
    results: dict[str, Any] = {
        "benchmark": "search strategies at equal metric-call budgets -- SIMULATION, no language model",
        "simulation": {"workflow": f"{args.modules} text parameters of {args.width} bits; "
                                   f"{args.modules * args.width} validation examples (= training set)",
                       "proposer": "edits one module per step (blind: a random one; reflecting: the "
                                   "module of a failed minibatch example): unsolved bits fixed with "
                                   "probability p, solved bits broken with probability q",
                       "batch_size": args.batch_size, "seeds": args.seeds},
        "machine": platform.platform(), "python": platform.python_version(), "settings": {}}
    for label, (p, q, targeted) in SETTINGS.items():
        per_budget: dict[str, Any] = {}
        for budget in budgets:
            raw = {name: [run_once(name, p, q, targeted, seed, budget, args.modules, args.width, args.batch_size)
                          for seed in range(args.seeds)] for name in STRATEGIES}
            per_budget[str(budget)] = {name: summarize(rows, None if name == "greedy" else raw["greedy"])
                                       for name, rows in raw.items()}
            print(f"[search] {label} budget {budget}: " +
                  ", ".join(f"{n} {s['mean_best']:.3f}" for n, s in per_budget[str(budget)].items()),
                  file=sys.stderr)
        results["settings"][label] = per_budget
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
