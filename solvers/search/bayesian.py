"""`BayesianSearch`: ask/tell Bayesian optimization over named floats, integers and
categoricals, on an Optuna study in memory (minimizing a loss).

    search = BayesianSearch({"x": Float(-5, 5), "k": Int(1, 8), "mode": Categorical(["a", "b"])})
    for _ in range(30):
        values = search.ask()                # {"x": 0.31, "k": 4, "mode": "b"}
        search.tell(values, f(**values))     # a NaN / inf / None loss: a failed trial
    search.best                              # TrialResult(number, values, loss, state)
    state = search.state_dict()              # plain JSON (see `solvers.search.study_state`)
    BayesianSearch(space).load_state_dict(state)   # the same study, resumed

Asking and telling may happen across calls: `tell(values, loss)` scores the latest
pending trial with those values, or adds a finished trial when none was asked (a value
set by hand, a starting point). Pending trials are saved too. Sampling is reproducible:
a named sampler is re-seeded from (seed, number of trials) before each trial
(`solvers.search.samplers`). Open-ended dimensions search a growing interval
(`solvers.search.interval`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from solvers.search.backend import load_optuna, no_experimental_warnings
from solvers.search.interval import covering, first_interval, widened
from solvers.search.samplers import check_sampler, make_sampler, sampler_label
from solvers.search.space import Categorical, Dimension
from solvers.search.study_state import study_from_json, study_to_json, trials_from_json


@dataclass(frozen=True)
class TrialResult:
    """One trial: its number in the study, values, loss (None when failed or pending) and
    state ("COMPLETE", "FAIL" or "RUNNING")."""

    number: int
    values: dict[str, Any]
    loss: float | None
    state: str


class BayesianSearch:
    """Ask/tell search over `space` ({name: Float | Int | Categorical}).

    `sampler`: "tpe" (default), "cmaes", "gp", "random", "qmc" or an Optuna sampler
    instance. `seed`: seeds the named samplers (None: not reproducible). `start`: the
    value each open-ended dimension's first interval is centred on (default 0).
    """

    def __init__(self, space: Mapping[str, Dimension], sampler: Any = "tpe", seed: int | None = 0,
                 start: Mapping[str, Any] | None = None) -> None:
        check_sampler(sampler)
        if not space:
            raise ValueError("a search space needs at least one dimension")
        self.space: dict[str, Dimension] = dict(space)
        self.sampler = sampler.lower() if isinstance(sampler, str) else sampler
        self.seed = seed
        start = dict(start or {})
        unknown = set(start) - set(self.space)
        if unknown:
            raise ValueError(f"start names {sorted(unknown)} that are not in the space")
        self.intervals: dict[str, tuple[float, float]] = {
            name: first_interval(dim, start.get(name))
            for name, dim in self.space.items() if not isinstance(dim, Categorical)}
        self._study, self._storage = study_from_json({"trials": []}, self._sampler_for(0))

    # --- reading ------------------------------------------------------------------------
    @property
    def label(self) -> str:
        """The sampler's short name for reports ("TPE", "CMA-ES", ...)."""
        return sampler_label(self.sampler)

    @property
    def n_trials(self) -> int:
        """Trials in the study: told, failed and pending."""
        return len(self._study.get_trials(deepcopy=False))

    @property
    def study(self) -> Any:
        """The Optuna study (categoricals appear as positions among their choices)."""
        return self._study

    @property
    def best(self) -> TrialResult | None:
        """The completed trial with the lowest loss (the earliest on ties), or None."""
        done = [t for t in self._study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        if not done:
            return None
        return self._result(min(done, key=lambda t: (t.value, t.number)))

    def trial(self, number: int) -> TrialResult:
        """Trial `number` of the study."""
        return self._result(self._study.get_trials(deepcopy=False)[number])

    def lookup(self, values: Mapping[str, Any]) -> TrialResult | None:
        """The latest completed trial with exactly these values, or None."""
        t = self._latest(self._encode(values), "COMPLETE")
        return None if t is None else self._result(t)

    # --- asking and telling ---------------------------------------------------------------
    def ask(self) -> dict[str, Any]:
        """Start a trial and return its values ({name: value}); tell its loss later."""
        self._study.sampler = self._sampler_for(self.n_trials)
        with no_experimental_warnings():
            trial = self._study.ask(self._distributions())
        return self._decode(trial.params)

    def tell(self, trial: Mapping[str, Any] | int, loss: Any) -> TrialResult:
        """Record the loss of a trial, given by its number or its values; a NaN, inf or
        None loss marks it failed. Values that were not asked become a new finished trial
        (an open-ended interval stretches to cover them). Returns the trial told."""
        value = _finite(loss)
        state = load_optuna().trial.TrialState
        number: int | None
        if isinstance(trial, int) and not isinstance(trial, bool):
            number = trial
            if not 0 <= number < self.n_trials or self.trial(number).state != "RUNNING":
                raise ValueError(f"trial {number} is not a pending trial of this search")
        else:
            params = self._encode(cast(Mapping[str, Any], trial))
            pending = self._latest(params, "RUNNING")
            number = None if pending is None else pending.number
        if number is not None:
            if value is None:
                self._study.tell(number, state=state.FAIL)
            else:
                self._study.tell(number, value)
        else:
            number = self._add_finished(params, value)
        self._widen()
        return self.trial(number)

    # --- state -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The study as plain JSON data: trials (pending ones too), intervals, space."""
        return {"space": self._describe(), "sampler": self.label, "seed": self.seed,
                "intervals": {k: list(v) for k, v in self.intervals.items()},
                **study_to_json(self._study, self._storage)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume the study saved by `state_dict` (all or nothing: a state that does not
        fit raises ValueError and the search keeps its own). The space must be the same
        (names, kinds, bounds, number of choices); the sampler and seed are this search's."""
        check_state(state)
        if dict(state["space"]) != self._describe():
            raise ValueError(f"the saved search space {state['space']!r} differs from this one "
                             f"{self._describe()!r}")
        intervals = {name: self._checked_interval(name, state["intervals"].get(name))
                     for name in self.intervals}
        categorical = {name: dim.distribution() for name, dim in self.space.items()
                       if isinstance(dim, Categorical)}
        for t in trials_from_json(state):
            if set(t.params) != set(self.space):
                raise ValueError(f"trial {t.number}: parameters {sorted(t.params)} are not the "
                                 f"space's {sorted(self.space)}")
            for name, dist in categorical.items():
                if t.distributions[name] != dist:
                    raise ValueError(f"trial {t.number}: {name!r} has other choices")
        study, storage = study_from_json(state, self._sampler_for(0))
        self._study, self._storage, self.intervals = study, storage, intervals

    # --- internals -------------------------------------------------------------------------
    def _sampler_for(self, n_trials: int) -> Any:
        return make_sampler(self.sampler, self.seed, n_trials)

    def _distributions(self) -> dict[str, Any]:
        # every numeric dimension has an interval; a categorical one takes None
        return {name: dim.distribution(self.intervals.get(name))  # type: ignore[arg-type]
                for name, dim in self.space.items()}

    def _describe(self) -> dict[str, Any]:
        return {name: dim.describe() for name, dim in self.space.items()}

    def _encode(self, values: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(values, Mapping) or set(values) != set(self.space):
            got = sorted(values) if isinstance(values, Mapping) else type(values).__name__
            raise ValueError(f"expected values for {sorted(self.space)}, got {got}")
        return {name: dim.encode(values[name]) for name, dim in self.space.items()}

    def _decode(self, params: Mapping[str, Any]) -> dict[str, Any]:
        return {name: dim.decode(params[name]) for name, dim in self.space.items()}

    def _result(self, t: Any) -> TrialResult:
        return TrialResult(t.number, self._decode(t.params),
                           t.value if t.state.name == "COMPLETE" else None, t.state.name)

    def _latest(self, params: dict[str, Any], state: str) -> Any:
        for t in reversed(self._study.get_trials(deepcopy=False)):
            if t.state.name == state and t.params == params:
                return t
        return None

    def _add_finished(self, params: dict[str, Any], value: float | None) -> int:
        """Add a trial that was not asked (values given by the caller); returns its number."""
        optuna = load_optuna()
        stretched = {name: covering(self.space[name], interval, params[name])
                     for name, interval in self.intervals.items()}
        if stretched != self.intervals:
            self._rebuild(stretched)
        state = optuna.trial.TrialState.COMPLETE if value is not None else optuna.trial.TrialState.FAIL
        try:
            frozen = optuna.trial.create_trial(state=state, value=value, params=params,
                                               distributions=self._distributions())
        except ValueError as exc:
            raise ValueError(f"cannot tell values {self._decode(params)!r}: {exc}") from None
        self._study.add_trial(frozen)
        return self.n_trials - 1

    def _widen(self) -> None:
        """Widen the open sides that the best trial sits next to (see `interval`)."""
        best = self.best
        if best is None:
            return
        params = self._encode(best.values)
        new = {name: widened(self.space[name], interval, params[name])
               for name, interval in self.intervals.items()}
        if new != self.intervals:
            self._rebuild(new)

    def _rebuild(self, intervals: dict[str, tuple[float, float]]) -> None:
        """Re-add every trial with the distributions of `intervals` (each still contains
        its value: intervals only grow), through the path that loads a saved state."""
        from optuna.distributions import distribution_to_json

        data = study_to_json(self._study, self._storage)
        changed = {name: distribution_to_json(self.space[name].distribution(iv))
                   for name, iv in intervals.items() if iv != self.intervals[name]}
        for t in data["trials"]:
            t["distributions"].update(changed)
        self._study, self._storage = study_from_json(data, self._study.sampler)
        self.intervals = dict(intervals)

    def _checked_interval(self, name: str, saved: Any) -> tuple[float, float]:
        dim = self.space[name]
        if (not isinstance(saved, (list, tuple)) or len(saved) != 2
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                           for v in saved)):
            raise ValueError(f"interval of {name!r}: expected [low, high], got {saved!r}")
        low, high = saved
        if low > high or (dim.low is not None and low < dim.low) or (dim.high is not None and high > dim.high):
            raise ValueError(f"interval of {name!r}: {saved!r} is not inside the bounds "
                             f"({dim.low}, {dim.high})")
        return (int(low), int(high)) if dim.integer else (float(low), float(high))


def check_state(state: Any) -> None:
    """Check a `BayesianSearch.state_dict()` on its own (ValueError naming what is wrong):
    its shape and every trial; whether it fits a space is checked when it is loaded."""
    if not isinstance(state, Mapping):
        raise ValueError(f"a search state must be a dict, got {type(state).__name__}")
    for key in ("space", "intervals"):
        if not isinstance(state.get(key), Mapping):
            raise ValueError(f"a search state needs a {key!r} dict")
    trials_from_json(state)


def _finite(loss: Any) -> float | None:
    """The loss as a finite float, or None (failed) for None, NaN and inf."""
    if loss is None:
        return None
    value = float(loss)
    return value if math.isfinite(value) else None
