"""Checks of the arguments of `minimize` and `bilevel`, each error naming the argument.

Run before any work, so a wrong argument is a `ProblemError` (a ValueError) or a
TypeError that says which argument and what it accepts, never an error from deep inside
a solve (for `bilevel`, the inner problem's arguments are checked here too, not on the
first inner solve).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

from .auglag import AugLagOptions
from .constraints import Eq, Ineq, ProblemError

LINEAR_SOLVERS = ("auto", "dense", "cg")


def positive(name: str, value: Any) -> float:
    """A positive, finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
            math.isfinite(value) and value > 0):
        raise ProblemError(f"{name} must be a positive finite number, got {value!r}.")
    return float(value)


def iterations(name: str, value: Any) -> int | None:
    """None or a whole number >= 1."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ProblemError(f"{name} must be a whole number >= 1 or None, got {value!r}.")
    return value


def flag(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r}.")
    return value


def constraint_list(name: str, value: Any) -> None:
    """None or a list of Ineq / Eq."""
    if value is None:
        return
    if isinstance(value, (Ineq, Eq)):
        raise ProblemError(f"{name} must be a list of Ineq/Eq, got one {type(value).__name__}: "
                           f"write [{type(value).__name__}(...)].")
    if not isinstance(value, Sequence) or isinstance(value, (str, bytes)):
        raise ProblemError(f"{name} must be a list of Ineq(g) / Eq(h), got {type(value).__name__}.")
    for i, c in enumerate(value):
        if not isinstance(c, (Ineq, Eq)):
            raise ProblemError(f"{name}[{i}] is a {type(c).__name__}; wrap each constraint as "
                               f"Ineq(g) for g <= 0 or Eq(h) for h == 0.")


def options_for(method: str, options: Any) -> None:
    """None, or a dict: AugLagOptions fields for auglag/auto; IPOPT options for ipopt;
    cvxpy solve() keywords for cvxpy; the SciPy methods take none."""
    if options is None:
        return
    if not isinstance(options, dict):
        raise TypeError(f"options must be a dict or None, got {type(options).__name__}.")
    if method in ("auglag", "auto"):
        known = {f.name for f in dataclasses.fields(AugLagOptions)}
        unknown = sorted(str(k) for k in options if k not in known)
        if unknown:
            raise ProblemError(f"options has unknown key(s) {', '.join(map(repr, unknown))} for "
                               f"method {method!r}; accepted: {', '.join(sorted(known))}.")
    elif method == "ipopt":
        bad = [k for k in options if not isinstance(k, str)]
        if bad:
            raise ProblemError(f"IPOPT option names are strings (e.g. 'mu_strategy'), got {bad[0]!r}.")
    elif method in ("slsqp", "trust-constr") and options:
        raise ProblemError(f"options are not used by method {method!r} (they are AugLagOptions "
                           f"fields for 'auglag' or cvxpy solve() keywords for 'cvxpy'); remove them.")


def optional_str(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be a string or None, got {type(value).__name__}.")


def one_of(name: str, value: Any, accepted: Sequence[str]) -> str:
    if not isinstance(value, str) or value.lower() not in accepted:
        raise ProblemError(f"{name} must be one of {', '.join(map(repr, accepted))}, got {value!r}.")
    return value.lower()
