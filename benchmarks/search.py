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

    PYTHONPATH=. .venv/bin/python benchmarks/search.py                # ~40 s
    PYTHONPATH=. .venv/bin/python benchmarks/search.py --seeds 10 --budget 400,800,1600

`--tickets` runs the flagship example's ticket triage AT THE DEFAULTS (`tk.Optimizer(params)`,
`Trainer(...)` with only a seed and `max_metric_calls`) on the embedded model and with random
proposals, `--tickets-seeds` seeds at `--tickets-budget` metric calls each. `--tickets-options`
and `--tickets-trainer` (JSON) change the optimizer's and the Trainer's settings for the
best-settings rows, e.g. `--tickets-trainer '{"strategy": "pareto"}'` or
`--tickets-options '{"budget": 600}'`; `--tickets-methods defaults` skips the random runs.

`--real` adds a short run on the EMBEDDED MODEL (SmolLM2-135M): a keyword list that a
spam filter (code) consumes, 8 training and 8 validation messages, each strategy at the
same `max_metric_calls` (`--real-budget`), `--real-seeds` seeds. `--real-only` skips the
simulation.
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


SPAM_TRAIN = [("win a free prize now", "spam"), ("claim your cash reward", "spam"),
              ("free money, click here", "spam"), ("you won a gift card", "spam"),
              ("lunch at noon?", "ham"), ("the meeting moved to 3pm", "ham"),
              ("see you at the station", "ham"), ("draft attached for review", "ham")]
SPAM_VAL = [("urgent: your prize is waiting", "spam"), ("cash bonus, act now", "spam"),
            ("free vacation offer inside", "spam"), ("winner! claim today", "spam"),
            ("notes from the call", "ham"), ("can you review my PR", "ham"),
            ("dinner on friday?", "ham"), ("the report is attached", "ham")]


@tk.bundle()
def spam_filter(message, keywords):
    """Label the message spam if it contains any of the comma-separated keywords, else ham."""
    words = [w.strip().lower() for w in keywords.split(",") if w.strip()]
    return "spam" if any(w in message.lower() for w in words) else "ham"


def real_once(llm: Any, strategy: str, seed: int, budget: int) -> dict[str, Any]:
    """One run on the embedded model: the best validation accuracy within the budget."""
    keywords = tk.param("hello, thanks", name="keywords",
                        description="comma-separated words; a message containing any of them is spam")

    def metric(prediction, example):
        return 1.0 if prediction == example[1] else (0.0, f"labeled {prediction}, expected {example[1]}")

    opt = tk.Optimizer([keywords], llm=llm, max_reasks=1)
    name = strategy.split(" ")[0]
    start = time.perf_counter()
    result = Trainer(lambda m: spam_filter(m, keywords), opt, metric, train=SPAM_TRAIN, val=SPAM_VAL,
                     batch_size=4, max_steps=100, seed=seed, progress=False, executor="serial",
                     batch_objective=False, strategy=STRATEGIES.get(strategy, lambda: name)(),
                     max_metric_calls=budget).fit()
    print(f"[search] embedded model, {strategy}, seed {seed}: {result.initial_score} -> {result.best_score} "
          f"in {result.steps} steps, {result.llm_calls} LLM calls, {time.perf_counter() - start:.0f}s; "
          f"keywords {keywords.data!r}", file=sys.stderr)
    return {"best": result.best_score, "initial": result.initial_score, "steps": result.steps,
            "metric_calls": result.budget["spent"]["metric_calls"], "llm_calls": result.llm_calls,
            "tokens": result.prompt_tokens + result.completion_tokens,
            "seconds": time.perf_counter() - start, "keywords": keywords.data}


def tickets_once(method: str, seed: int, budget: int, llm: Any, options: dict[str, Any] | None = None,
                 trainer_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """One run of the flagship example's ticket triage (examples/joint_prompt_and_hyperparameters.py)
    AT THE DEFAULTS: `tk.Optimizer(params)` and `Trainer(...)` with nothing but the seed and
    `max_metric_calls`; `defaults` proposes with the embedded model, `random` with
    `RandomProposals` (same optimizer, same budget). `options` (optimizer) and
    `trainer_options` (Trainer) change the defaults, for the best-settings runs."""
    from benchmarks.baselines import RandomProposals
    from examples.joint_prompt_and_hyperparameters import Triage, accuracy, load_tickets, run_ticket

    train, val = load_tickets()
    model = Triage()
    params = model.parameters()
    backend = llm if method == "defaults" else tk.llm.as_backend(RandomProposals(params, seed))
    opt = tk.Optimizer(params, llm=backend, seed=seed, **(options or {}))
    start = time.perf_counter()
    result = Trainer(model, opt, accuracy, train=train, val=val, call=run_ticket, seed=seed, progress=False,
                     max_steps=100, max_metric_calls=budget, **(trainer_options or {})).fit()
    seconds = time.perf_counter() - start
    print(f"[tickets] {method}, seed {seed}: {result.initial_score:.3f} -> best {result.best_score:.3f} "
          f"in {result.steps} steps, {result.llm_calls} LLM calls, {seconds:.0f}s; "
          f"cues {model.cue_words.data!r}, match {model.match.data}, threshold {model.threshold.data}",
          file=sys.stderr)
    return {"best": result.best_score, "initial": result.initial_score, "final": result.final_score,
            "steps": result.steps, "metric_calls": result.budget["spent"]["metric_calls"],
            "llm_calls": result.llm_calls if method == "defaults" else 0,
            "tokens": result.prompt_tokens + result.completion_tokens if method == "defaults" else 0,
            "seconds": seconds, "seconds_per_step": seconds / max(result.steps, 1),
            "values": {"cue_words": model.cue_words.data, "match": model.match.data,
                       "threshold": model.threshold.data}}


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
    ap.add_argument("--real", action="store_true", help="also run on the embedded model")
    ap.add_argument("--real-only", action="store_true", help="only the embedded-model runs")
    ap.add_argument("--real-seeds", type=int, default=3)
    ap.add_argument("--real-budget", type=int, default=64)
    ap.add_argument("--real-strategies", default="greedy,pareto,beam (width 4),priority")
    ap.add_argument("--tickets", action="store_true",
                    help="the flagship example's ticket triage at the defaults: embedded model vs random proposals")
    ap.add_argument("--tickets-only", action="store_true", help="only the tickets runs")
    ap.add_argument("--tickets-seeds", type=int, default=5)
    ap.add_argument("--tickets-budget", type=int, default=400, help="max_metric_calls of each tickets run")
    ap.add_argument("--tickets-methods", default="defaults,random", help="defaults and/or random")
    ap.add_argument("--tickets-options", default="{}",
                    help="JSON options for tk.Optimizer in the tickets runs (best settings; default: none)")
    ap.add_argument("--tickets-trainer", default="{}",
                    help='JSON options for the Trainer in the tickets runs, e.g. {"strategy": "pareto"}')
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
    args.tickets = args.tickets or args.tickets_only
    for label, (p, q, targeted) in ({} if args.real_only or args.tickets_only else SETTINGS).items():
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
    if args.real or args.real_only:
        from tracekit.llm import EmbeddedLLM

        llm = EmbeddedLLM(cache=False)
        names = args.real_strategies.split(",")
        raw = {}
        for name in names:
            raw[name] = [real_once(llm, name, seed, args.real_budget) for seed in range(args.real_seeds)]
            print(f"[search] embedded model, {name}: {[r['best'] for r in raw[name]]}", file=sys.stderr)
        results["embedded_model"] = {
            "task": "spam keyword list (8 train / 8 validation messages), SmolLM2-135M",
            "budget": args.real_budget, "seeds": args.real_seeds,
            "strategies": {name: {**summarize(rows, None if name == "greedy" or "greedy" not in raw
                                                else raw["greedy"]),
                                  "mean_llm_calls": round(statistics.mean(r["llm_calls"] for r in rows), 1),
                                  "mean_tokens": round(statistics.mean(r["tokens"] for r in rows)),
                                  "keywords": [r["keywords"] for r in rows]}
                           for name, rows in raw.items()}}
    if args.tickets:
        from tracekit.llm import EmbeddedLLM

        llm = EmbeddedLLM(cache=False)
        options, trainer_options = json.loads(args.tickets_options), json.loads(args.tickets_trainer)
        raw = {m: [tickets_once(m, seed, args.tickets_budget, llm, options, trainer_options)
                   for seed in range(args.tickets_seeds)]
               for m in args.tickets_methods.split(",")}
        results["tickets_at_defaults"] = {
            "task": "ticket triage of examples/joint_prompt_and_hyperparameters.py (60 train / 60 validation), "
                    "tk.Optimizer(params) and Trainer defaults, SmolLM2-135M vs random proposals",
            "optimizer_options": options, "trainer_options": trainer_options,
            "budget": args.tickets_budget, "seeds": args.tickets_seeds,
            "methods": {m: {**summarize(rows, None if m == "defaults" or "defaults" not in raw
                                      else raw["defaults"]),
                            "mean_final": round(statistics.mean(r["final"] for r in rows), 4),
                            "mean_llm_calls": round(statistics.mean(r["llm_calls"] for r in rows), 1),
                            "mean_tokens": round(statistics.mean(r["tokens"] for r in rows)),
                            "mean_seconds_per_step": round(statistics.mean(r["seconds_per_step"] for r in rows), 2),
                            "values": [r["values"] for r in rows]}
                        for m, rows in raw.items()}}
    text = json.dumps(results, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
