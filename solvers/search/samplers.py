"""The samplers a search can use, by name, and how each is seeded.

"tpe" (default) `TPESampler`, "cmaes" `CmaEsSampler` (needs the `cmaes` package), "gp"
`GPSampler` (Optuna >= 3.6; uses torch and scipy), "random" `RandomSampler`, "qmc"
`QMCSampler` (scrambled Sobol), or any `optuna.samplers.BaseSampler` instance, used as it is.

A named sampler is built afresh before every trial, seeded from (seed, number of trials
so far) -- `trial_seed` -- so the next trial depends only on the seed and the trials
told: a search rebuilt from a saved state proposes what the uninterrupted one would.
QMC keeps the seed itself (it fixes the scrambled sequence; the position in it is kept
by the study). A sampler instance keeps its own random state and is not re-seeded.
"""

from __future__ import annotations

import importlib
from typing import Any

from solvers.search.backend import load_optuna, no_experimental_warnings

SAMPLERS = ("tpe", "cmaes", "gp", "random", "qmc")
LABELS = {"tpe": "TPE", "cmaes": "CMA-ES", "gp": "GP", "random": "random", "qmc": "QMC"}
# Random trials before a model-based sampler starts modelling. Optuna's default (10) suits
# budgets of hundreds of trials; a search here often gets a few dozen (a few trials per
# optimizer step), so 5 spread-out points start the model early while still covering the
# box. Told trials (the starting value, loaded trials) count towards the 5.
STARTUP_TRIALS = 5
_PACKAGES = {"cmaes": ("cmaes",), "gp": ("torch", "scipy")}  # optional packages per sampler


def check_sampler(sampler: Any) -> None:
    """Refuse an unknown sampler name (ValueError naming the valid ones), a value that is
    neither a name nor an Optuna sampler (TypeError), or a sampler whose optional package
    is missing (ImportError saying what to install)."""
    if isinstance(sampler, str):
        name = sampler.lower()
        if name not in SAMPLERS:
            raise ValueError(f"unknown sampler {sampler!r}; valid samplers: "
                             f"{', '.join(repr(s) for s in SAMPLERS)}, or an "
                             f"optuna.samplers.BaseSampler instance")
        for package in _PACKAGES.get(name, ()):
            try:
                importlib.import_module(package)
            except ImportError:
                raise ImportError(f"sampler {sampler!r} needs the {package!r} package, which is "
                                  f"not installed: pip install {package} (or pick another "
                                  f"sampler: {', '.join(SAMPLERS)})") from None
        if name == "gp" and not hasattr(load_optuna().samplers, "GPSampler"):
            raise ImportError(f"sampler 'gp' needs optuna >= 3.6 (installed: "
                              f"{load_optuna().__version__}): pip install -U optuna")
        return
    if not isinstance(sampler, load_optuna().samplers.BaseSampler):
        raise TypeError(f"sampler must be one of {', '.join(SAMPLERS)} or an "
                        f"optuna.samplers.BaseSampler instance, got {type(sampler).__name__}")


def sampler_label(sampler: Any) -> str:
    """A short name for reports: "TPE", "CMA-ES", ..., or the instance's class name."""
    if isinstance(sampler, str):
        return LABELS[sampler.lower()]
    return type(sampler).__name__


def trial_seed(seed: int | None, n_trials: int) -> int | None:
    """The seed of the sampler that proposes trial number `n_trials` (None: unseeded)."""
    if seed is None:
        return None
    import numpy as np

    return int(np.random.SeedSequence([int(seed) % 2**63, int(n_trials)]).generate_state(1)[0])


def make_sampler(sampler: Any, seed: int | None, n_trials: int) -> Any:
    """The Optuna sampler that proposes the next trial (see the module doc for seeding)."""
    if not isinstance(sampler, str):
        return sampler
    optuna = load_optuna()
    samplers = optuna.samplers
    name = sampler.lower()
    s = trial_seed(seed, n_trials)
    with no_experimental_warnings():
        if name == "tpe":
            return samplers.TPESampler(seed=s, n_startup_trials=STARTUP_TRIALS)
        if name == "random":
            return samplers.RandomSampler(seed=s)
        if name == "cmaes":  # CMA-ES cannot model categoricals or one dimension: TPE does those
            return samplers.CmaEsSampler(
                seed=s, n_startup_trials=STARTUP_TRIALS, warn_independent_sampling=False,
                independent_sampler=samplers.TPESampler(seed=s, n_startup_trials=STARTUP_TRIALS))
        if name == "gp":
            return samplers.GPSampler(seed=s, n_startup_trials=STARTUP_TRIALS)
        if name == "qmc":
            return samplers.QMCSampler(seed=seed, scramble=True, warn_asynchronous_seeding=False,
                                       warn_independent_sampling=False)
    raise ValueError(f"unknown sampler {sampler!r}; valid samplers: {', '.join(SAMPLERS)}")
