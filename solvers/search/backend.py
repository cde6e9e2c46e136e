"""Optuna, imported on first use and made quiet.

`import solvers.search` (and so `import tracekit`) does not import Optuna: every module
here calls `load_optuna()` inside the function that needs it. The first call lowers
Optuna's log level to WARNING, since its default INFO logging prints a line per trial.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

_quiet = False


def load_optuna() -> ModuleType:
    """The `optuna` module; on the first call, Optuna's per-trial INFO logging is silenced."""
    global _quiet
    import optuna

    if not _quiet:
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        _quiet = True
    return optuna


@contextmanager
def no_experimental_warnings() -> Iterator[None]:
    """Hide Optuna's ExperimentalWarning (QMC, GP) while a sampler is built or used."""
    optuna = load_optuna()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield
