"""The "bayesian" route of `tk.Optimizer`: Python numbers (float, int) and categoricals
whose path to the loss has no gradient, tuned by Bayesian search (Optuna; TPE by
default) through `solvers.search`. See docs/numeric.md.

Two modes, per step:

- with `objective=`: the current values are scored once (if not scored yet), then
  `trials_per_step` new trials are asked, scored by the objective and told; the best
  values seen so far are proposed, so a step never makes the objective worse.
- without one, from the feedback's numeric loss: the study is told what the trial now in
  the parameters scored (the mean loss of their feedback records), and one new trial is
  asked and proposed (ask/tell across steps: the next backward scores it).

A NaN/inf loss is told as a failed trial and the values are kept.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, cast

from solvers.search import BayesianSearch, Categorical, Float, Int, TrialResult, check_state
from tracekit.errors import TrialsSpent
from tracekit.nodes import ParameterNode
from tracekit.options import SEARCH_DEFAULTS  # sampler="tpe", trials_per_step=4, search_seed=0
from tracekit.seam import (
    UNCHANGED,
    ParamUpdate,
    StepContext,
    nonfinite_loss,
    trials_left,
    values_objective,
)


class BayesianSolver:
    """Numbers and categoricals without a gradient path -> one Optuna study per set of
    parameters stepped together (see the module doc for the two modes).

    Options: `sampler` ("tpe" | "cmaes" | "gp" | "random" | "qmc" | an Optuna sampler),
    `trials_per_step` (objective calls per step besides the current values' first
    score), `search_seed` (None: not reproducible).
    """

    name = "bayesian"

    def __init__(self, params: list[ParameterNode], llm: Any = None, **options: Any) -> None:
        settings = {**SEARCH_DEFAULTS, **{k: options[k] for k in SEARCH_DEFAULTS if k in options}}
        self.sampler = settings["sampler"]
        self.trials_per_step = settings["trials_per_step"]
        self.seed = settings["search_seed"]
        self._searches: dict[str, BayesianSearch] = {}
        self._saved: dict[str, dict[str, Any]] = {}  # loaded states, used at their first step

    def step(self, params: list[ParameterNode], context: StepContext) -> list[ParamUpdate]:
        updates: dict[int, ParamUpdate] = {}
        active: list[ParameterNode] = []
        for p in params:
            name = context.name_of(p)
            if not searchable(p):
                what = "a tensor" if p.kind == "numeric" else f"a {p.kind} parameter"
                updates[id(p)] = ParamUpdate(name, self.name, reason=f"{what}: not searched "
                                             f"(numbers and categoricals only)")
            elif context.objective is None and not has_numeric_loss(p, finite=False):
                updates[id(p)] = ParamUpdate(name, self.name, reason="no objective callable "
                                             "and no numeric loss in the feedback")
            else:
                active.append(p)
        if active:
            names = [context.name_of(p) for p in active]
            search, note = self._search(active, names)
            if context.objective is not None:
                self._step_objective(active, names, search, context.objective, updates)
            else:
                self._step_feedback(active, names, search, context, updates)
            if note:
                for p in active:
                    updates[id(p)].info["restarted"] = note
        return [updates[id(p)] for p in params]

    # --- the two modes ---------------------------------------------------------------------
    def _step_objective(self, params: list[ParameterNode], names: list[str], search: BayesianSearch,
                        objective: Callable, updates: dict[int, ParamUpdate]) -> None:
        current = _values(params, names)
        if any(nonfinite_loss(p) for p in params):
            told = search.tell(current, None)
            return self._report(params, names, search, updates, None,
                                f"NaN/inf loss: told as failed trial {told.number}, value kept",
                                {"mode": "objective", "trial": told.number, "loss": None,
                                 "skipped": "non-finite loss"})
        evaluate = _evaluator(params, names, objective)
        evals = 0
        scored = search.lookup(current)
        if scored is None:
            try:
                loss = evaluate(current)
            except TrialsSpent as exc:
                return self._report(params, names, search, updates, None, f"value kept: {exc}",
                                    {"mode": "objective", "evals": 0, "skipped": "no trials left"})
            scored = search.tell(current, loss)
            evals += 1
        left = trials_left(objective)  # a step's share of max_metric_calls caps the trials
        trials = self.trials_per_step if left is None else min(self.trials_per_step, left)
        for _ in range(trials):
            values = search.ask()
            known = search.lookup(values)  # a point scored before: its loss, no objective call
            if known is not None:
                search.tell(values, known.loss)
                continue
            try:
                loss = evaluate(values)
            except TrialsSpent:
                search.tell(values, None)  # not scored: a failed trial, which TPE skips
                break
            except BaseException:
                search.tell(values, None)  # the trial failed; the error propagates
                raise
            evals += 1
            search.tell(values, loss)
        best = search.best
        was = scored.loss
        info = {"mode": "objective", "evals": evals, "loss_before": was}
        if best is None:
            return self._report(params, names, search, updates, None,
                                f"{search.label}: no trial has a finite loss yet, value kept", info)
        if best.values == current or (was is not None and best.loss >= was):  # type: ignore[operator]
            reason = (f"{search.label}: {trials} new trials, none better than the "
                      f"current values (loss {_fmt(was)})")
            return self._report(params, names, search, updates, None, reason,
                                {**info, "trial": scored.number, "loss": was})
        reason = f"{search.label} trial {best.number}: loss {_fmt(best.loss)} (was {_fmt(was)})"
        self._report(params, names, search, updates, best.values, reason,
                     {**info, "trial": best.number, "loss": best.loss})

    def _step_feedback(self, params: list[ParameterNode], names: list[str], search: BayesianSearch,
                       context: StepContext, updates: dict[int, ParamUpdate]) -> None:
        current = _values(params, names)
        losses = [cast(float, r.feedback.loss_value) for r in context.records(params)]  # routed: a loss
        loss = sum(losses) / len(losses)
        if not math.isfinite(loss):
            told = search.tell(current, None)
            return self._report(params, names, search, updates, None,
                                f"NaN/inf loss: told as failed trial {told.number}, value kept",
                                {"mode": "feedback", "trial": told.number, "loss": None,
                                 "skipped": "non-finite loss"})
        told = search.tell(current, loss)
        proposal = search.ask()
        best = cast(TrialResult, search.best)  # a finite loss was just told
        reason = f"{search.label} trial {told.number}: loss {_fmt(loss)} (best {_fmt(best.loss)})"
        self._report(params, names, search, updates, proposal, reason,
                     {"mode": "feedback", "trial": told.number, "loss": loss,
                      "next_trial": search.n_trials - 1})

    def _report(self, params: list[ParameterNode], names: list[str], search: BayesianSearch,
                updates: dict[int, ParamUpdate], values: dict[str, Any] | None, reason: str,
                info: dict[str, Any]) -> None:
        """One ParamUpdate per parameter: the proposal (None: keep), reason and info."""
        best = search.best
        shared = {"best_loss": None if best is None else best.loss,
                  "best_trial": None if best is None else best.number,
                  "sampler": search.label, "n_trials": search.n_trials, **info}
        for p, name in zip(params, names):
            new = UNCHANGED if values is None or values[name] == p.raw else values[name]
            updates[id(p)] = ParamUpdate(name, self.name, new_value=new, reason=reason,
                                         info=dict(shared))

    # --- searches and state -------------------------------------------------------------------
    def _search(self, params: list[ParameterNode], names: list[str]) -> tuple[BayesianSearch, str]:
        """The study of this set of parameters: existing, loaded from a saved state at its
        first step, or new. A saved state that does not fit (the space changed) is set
        aside and a new study starts; the returned note says so."""
        key = "|".join(names)
        if key in self._searches:
            return self._searches[key], ""
        search = BayesianSearch({n: dimension(p) for n, p in zip(names, params)},
                                sampler=self.sampler, seed=self.seed,
                                start={n: p.raw for n, p in zip(names, params)
                                       if p.kind != "categorical"})
        note = ""
        if key in self._saved:
            try:
                search.load_state_dict(self._saved.pop(key))
            except ValueError as exc:
                note = f"saved search state not used, new study: {exc}"
        self._searches[key] = search
        return search, note

    def state_dict(self) -> dict[str, Any]:
        """One search state per set of parameters stepped together (plain JSON)."""
        return {**self._saved, **{key: s.state_dict() for key, s in self._searches.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Check every saved search first, then swap them in (all or nothing). A live
        search loads its state now; the others are loaded at their first step."""
        if not isinstance(state, dict):
            raise ValueError(f"bayesian route state must be a dict, got {type(state).__name__}")
        loaded: dict[str, BayesianSearch] = {}
        saved: dict[str, dict[str, Any]] = {}
        for key, s in state.items():
            check_state(s)
            if key in self._searches:
                live = self._searches[key]
                loaded[key] = BayesianSearch(live.space, sampler=live.sampler, seed=live.seed)
                loaded[key].load_state_dict(s)
            else:
                saved[key] = s
        self._searches.update(loaded)
        self._saved.update(saved)


def searchable(p: ParameterNode) -> bool:
    """A Python number (float or int) or a categorical: what this route searches."""
    return p.kind == "categorical" or (p.kind == "numeric" and not p.is_tensor)


def has_numeric_loss(p: ParameterNode, finite: bool = True) -> bool:
    """Whether `p` has feedback and every record carries a loss (a finite one when `finite`)."""
    return bool(p.feedback) and all(
        r.feedback.loss is not None and (r.loss_is_finite or not finite) for r in p.feedback)


def dimension(p: ParameterNode) -> Float | Int | Categorical:
    """The search dimension of a parameter: its choices, or its bounds (open when absent)."""
    if p.kind == "categorical":
        return Categorical(tuple(p.choices or ()))
    low, high = p.bounds if p.bounds is not None else (None, None)
    return Int(low, high) if p.value_type is int else Float(low, high)


def _values(params: list[ParameterNode], names: list[str]) -> dict[str, Any]:
    return {name: p.raw for p, name in zip(params, names)}


def _fmt(loss: float | None) -> str:
    return "failed" if loss is None else f"{loss:.4g}"


def _evaluator(params: list[ParameterNode], names: list[str],
               objective: Callable) -> Callable[[dict[str, Any]], float]:
    """loss(values): the objective with the parameters holding `values` (then restored),
    or `objective(values)` when it takes an argument; no autograd graph for trial runs."""
    return values_objective(objective, dict(zip(names, params)), no_grad=True)
