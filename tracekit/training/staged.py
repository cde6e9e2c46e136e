"""Staged validation: successive halving for one candidate against the best parameters.

A full validation after every step is what makes a step expensive under a small
`max_metric_calls`. Staged validation scores a changed candidate on growing slices of the
validation set (a fixed shuffled order; each slice about twice the last, the last the whole
set) and stops at the first slice where its mean is below the best parameters' mean on the
*same* examples (their per-example scores are kept from their own validation). Only a
candidate that holds up on every slice is fully validated and can become the best, so a
losing step costs a slice, not the set, as in successive halving (Jamieson and Talwalkar,
2016) and GEPA's minibatch screening.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: the smallest first slice; smaller slices are too noisy to reject a candidate on
MIN_FIRST = 8


def rungs(size: int, first: int = MIN_FIRST, factor: int = 2) -> list[int]:
    """Slice sizes: `first`, then about `factor` times more each time, ending at `size`
    (just `[size]` when the set is too small to stage)."""
    if size < 2 * first:
        return [size]
    sizes = [first]
    while sizes[-1] * factor < size:
        sizes.append(sizes[-1] * factor)
    if size - sizes[-1] < first // 2 and len(sizes) > 1:
        sizes.pop()  # a last slice of a few examples decides nothing: validate the rest at once
    return [*sizes, size]


@dataclass
class Staged:
    """The outcome of a staged validation: the per-example results scored so far (in the
    validation set's order when complete), whether every slice was passed, and the slices."""

    results: dict[int, Any]
    complete: bool
    slices: list[dict[str, Any]] = field(default_factory=list)


def order(size: int, seed: int) -> list[int]:
    """The fixed order in which the validation examples are scored (a seeded shuffle)."""
    indices = list(range(size))
    random.Random(seed).shuffle(indices)
    return indices


def run(evaluate: Callable[[list[int]], Sequence[Any]], best_scores: Sequence[float], indices: list[int],
        oriented: Callable[[Any], float]) -> Staged:
    """Score a candidate slice by slice (`evaluate(indices)` -> results in that order;
    `oriented(result)` -> its score, higher is better) against `best_scores` (oriented
    per-example scores of the best parameters); stop at the first slice it loses."""
    done: dict[int, Any] = {}
    slices: list[dict[str, Any]] = []
    for size in rungs(len(indices)):
        todo = [i for i in indices[:size] if i not in done]
        for i, result in zip(todo, evaluate(todo)):
            done[i] = result
        seen = indices[:size]
        mine = _mean([oriented(done[i]) for i in seen])
        best = _mean([best_scores[i] for i in seen])
        slices.append({"examples": size, "score": mine, "best": best})
        if mine < best and size < len(indices):
            return Staged(done, False, slices)
    return Staged(done, True, slices)


def _mean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else -math.inf


# --- a Trainer step's validation ---------------------------------------------------------------
#: the trainer's type, named in annotations only (this module never imports the trainer)
Trainer = Any
MODES = ("auto", "full", "staged")


def enabled(trainer: Trainer) -> bool:
    """Whether the trainer stages its validations: `validation="staged"`, or "auto" under a
    metric-call budget (where a full validation per step is what limits the steps)."""
    mode = trainer.validation
    return mode == "staged" or (mode == "auto" and trainer.budget.max_metric_calls is not None)


def validate_step(trainer: Trainer, state: dict[str, Any], report: Any) -> tuple[Any, dict[str, Any] | None]:
    """The validation of one greedy step: `(EvalResult, screen)` when it ran in full (screen:
    the slices passed, or None), `(None, screen)` when it did not: the step changed nothing
    (the best parameters' score stands) or it lost a slice (see module doc). Only a full
    result enters the Pareto front of `objectives=` (`tracekit.training.front.observe`)."""
    from tracekit.training.callbacks import notify
    from tracekit.training.pool import same_value
    from tracekit.training.results import EvalResult, oriented
    from tracekit.training.scoring import _mean

    changed = report is not None and any(c.changed for c in report.changes)
    best = state["best_params"]
    if not changed and all(same_value(p.raw, best.get(name)) for name, p in trainer.named_params):
        return None, {"skipped": "the step changed nothing"}
    best_val = state.get("best_val")
    data = trainer.validation_set
    if not enabled(trainer) or best_val is None or len(rungs(len(data))) == 1:
        return trainer._validate(), None

    def evaluate(indices: list[int]) -> list[Any]:
        return trainer._evaluate_items([(i, data[i]) for i in indices]).results

    def score(result: Any) -> float:
        return oriented(result.score, trainer.higher_is_better, trainer.error_score)

    staged = run(evaluate, best_val, order(len(data), trainer.seed), score)
    screen: dict[str, Any] = {"slices": staged.slices}
    if not staged.complete:
        screen["rejected"] = f"worse than the best on the first {staged.slices[-1]['examples']} examples"
        return None, screen
    results = [staged.results[i] for i in range(len(data))]
    result = EvalResult(_mean([r.score for r in results]), results)
    if result.score is None:
        return trainer._validate(), None  # text-only scores: the full validation says why
    notify(trainer, "on_validation", state["step"], result)
    return result, screen


def score_after(val: Any, screen: dict[str, Any] | None, state: dict[str, Any]) -> float | None:
    """The validation score a step's record shows: the measured one; the best's when the step
    changed nothing (the same parameters); None when it lost a slice (never fully scored)."""
    if val is not None:
        return float(val.score)
    return state["best_score"] if screen is not None and "skipped" in screen else None
