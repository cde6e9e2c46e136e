"""An Optuna study as plain JSON data, and back: how a search is saved and resumed.

    {"trials": [{"number": 0, "state": "COMPLETE", "value": 0.31,
                 "params": {"x": 1.5}, "distributions": {"x": "<distribution JSON>"}}, ...],
     "attrs": {...}}

Each trial keeps its parameters as the study stores them, its distributions as JSON
(`optuna.distributions.distribution_to_json`), its value and its state: COMPLETE, FAIL or
RUNNING (asked, not told yet: it is told after loading like any pending trial). "attrs"
are the study's JSON-valued system attributes (QMC's position in its sequence). Trials'
own system attributes are not saved: CMA-ES keeps a pickle there, and a checkpoint is
plain data. Loading builds a fresh in-memory study and adds the trials in order with
Optuna's public `create_trial` / `add_trials`, so the trial numbers are the saved ones.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from solvers.search.backend import load_optuna

STATES = ("COMPLETE", "FAIL", "RUNNING")


def new_study(sampler: Any) -> tuple[Any, Any]:
    """A fresh minimizing study in its own in-memory storage: (study, storage)."""
    optuna = load_optuna()
    storage = optuna.storages.InMemoryStorage()
    return optuna.create_study(storage=storage, sampler=sampler, direction="minimize"), storage


def study_to_json(study: Any, storage: Any) -> dict[str, Any]:
    """Every trial of `study` (all states kept) and its JSON-valued system attributes."""
    from optuna.distributions import distribution_to_json

    trials = []
    for t in study.get_trials(deepcopy=False):
        if t.state.name not in STATES:
            continue  # PRUNED / WAITING: never created by a search
        trials.append({"number": t.number, "state": t.state.name,
                       "value": t.value if t.state.name == "COMPLETE" else None,
                       "params": dict(t.params),
                       "distributions": {k: distribution_to_json(d) for k, d in t.distributions.items()}})
    attrs = storage.get_study_system_attrs(storage.get_study_id_from_name(study.study_name))
    return {"trials": trials, "attrs": {k: v for k, v in attrs.items() if _is_json(v)}}


def trials_from_json(data: Any) -> list[Any]:
    """The saved trials as Optuna `FrozenTrial`s, checked (ValueError naming what is wrong)."""
    from optuna.distributions import json_to_distribution
    from optuna.trial import TrialState, create_trial

    if not isinstance(data, Mapping) or not isinstance(data.get("trials"), list):
        raise ValueError("a search state needs a 'trials' list")
    if not isinstance(data.get("attrs", {}), Mapping):
        raise ValueError("a search state's 'attrs' must be a dict")
    trials = []
    for i, t in enumerate(data["trials"]):
        if not isinstance(t, Mapping) or t.get("number") != i:
            raise ValueError(f"trial {i}: expected a dict with number {i}, got {t!r:.80}")
        if t.get("state") not in STATES:
            raise ValueError(f"trial {i}: state must be one of {STATES}, got {t.get('state')!r}")
        params, dists = t.get("params"), t.get("distributions")
        if not isinstance(params, Mapping) or not isinstance(dists, Mapping):
            raise ValueError(f"trial {i}: 'params' and 'distributions' must be dicts")
        value = t.get("value")
        if t["state"] == "COMPLETE" and (isinstance(value, bool) or not isinstance(value, (int, float))
                                         or not math.isfinite(value)):
            raise ValueError(f"trial {i}: a COMPLETE trial needs a finite value, got {value!r}")
        try:
            trials.append(create_trial(
                state=TrialState[t["state"]], value=value if t["state"] == "COMPLETE" else None,
                params=dict(params),
                distributions={k: json_to_distribution(d) for k, d in dists.items()}))
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(f"trial {i}: {type(exc).__name__}: {exc}") from None
    return trials


def study_from_json(data: Any, sampler: Any) -> tuple[Any, Any]:
    """A fresh in-memory study holding the saved trials and attributes: (study, storage)."""
    trials = trials_from_json(data)
    study, storage = new_study(sampler)
    study.add_trials(trials)
    study_id = storage.get_study_id_from_name(study.study_name)
    for key, value in dict(data.get("attrs", {})).items():
        storage.set_study_system_attr(study_id, str(key), value)
    return study, storage


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True
