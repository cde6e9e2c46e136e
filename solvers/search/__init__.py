"""Bayesian search for black-box floats, integers and categoricals, on Optuna (standalone:
never imports tracekit; Optuna is imported on first use, and made quiet).

- `BayesianSearch`: ask/tell across calls, `best`, `state_dict()` / `load_state_dict()`
  as plain JSON (the same study resumes, pending trials included).
- `Float(low, high, log=False)`, `Int(low, high)`, `Categorical(choices)`: the space; an
  open side (None or +-inf) is searched on an interval that widens (`interval`).
- Samplers: "tpe" (default), "cmaes", "gp", "random", "qmc" or an Optuna sampler
  (`samplers`); `check_sampler` refuses a bad one and names the valid ones.

    search = BayesianSearch({"x": Float(0, 4), "k": Int(1, 8)}, sampler="tpe", seed=0)
    values = search.ask(); search.tell(values, f(**values)); search.best
"""

from solvers.search.bayesian import BayesianSearch, TrialResult, check_state
from solvers.search.samplers import SAMPLERS, check_sampler
from solvers.search.space import Categorical, Float, Int

__all__ = ["BayesianSearch", "TrialResult", "check_state", "SAMPLERS", "check_sampler",
           "Categorical", "Float", "Int"]
