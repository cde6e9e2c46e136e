"""The cvxpy path: solve a ``cp.Problem`` as given, or build one from callables.

* ``solve_problem(prob)`` solves the user's own problem object in place. cvxpy caches the
  compiled problem on that object, so changing a ``cp.Parameter``'s value and solving
  again skips canonicalization (the fast re-solve path: keep the same ``Problem``).
* ``build_problem(f, ineq, eq, shape, lo, hi)`` calls the user's functions on a
  ``cp.Variable`` of the shape of ``x0``; they must return cvxpy expressions that follow
  the DCP rules (convex objective, convex ``g`` for ``g <= 0``, affine ``h``).

cvxpy's dual values already follow the library convention (``>= 0`` for ``g <= 0``,
Lagrangian ``f + y.g + v.h``), so they are passed through unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import describe, message_of
from .constraints import ProblemError

__all__ = ["is_cvxpy_object", "solve_problem", "build_problem", "ConvexOutput"]

_STATUS = {
    "optimal": "optimal",
    "optimal_inaccurate": "not_converged",
    "infeasible": "infeasible",
    "infeasible_inaccurate": "infeasible",
    "unbounded": "unbounded",
    "unbounded_inaccurate": "unbounded",
}


def is_cvxpy_object(obj: Any) -> bool:
    """True for cvxpy problems and expressions, without importing cvxpy otherwise."""
    return type(obj).__module__.split(".")[0] == "cvxpy"


@dataclass
class ConvexOutput:
    values: dict[str, np.ndarray | None]  # None: the variable has no value (not solved)
    fun: float
    status: str
    cvxpy_status: str
    violation: float
    ineq_duals: list[Any] = field(default_factory=list)
    eq_duals: list[Any] = field(default_factory=list)
    other_duals: list[Any] = field(default_factory=list)
    solver: str = ""
    time: float = 0.0
    iterations: int = 0


def solve_problem(prob: Any, solver: str | None = None, warm_start: bool = True, **kwargs: Any) -> ConvexOutput:
    """Solve ``prob`` (kept as is so that cvxpy's compilation cache is reused)."""
    import cvxpy as cp

    if not isinstance(prob, cp.Problem):
        raise ProblemError(f"expected a cvxpy Problem, got {type(prob).__name__}.")
    if not prob.is_dcp() and not prob.is_dgp() and not prob.is_dqcp():
        raise ProblemError(
            "the cvxpy problem does not follow the DCP rules, so cvxpy cannot solve it; "
            "rewrite it (see cvxpy's DCP guide) or pass torch callables to method='auglag'."
        )
    t0 = time.perf_counter()
    try:
        prob.solve(solver=solver, warm_start=warm_start, **kwargs)
        cstatus = str(prob.status)
    except cp.error.SolverError as exc:
        cstatus = f"solver_error: {message_of(exc)}"
    elapsed = time.perf_counter() - t0
    status = _STATUS.get(cstatus, "not_converged")
    ineq, eq, other = [], [], []
    viol = 0.0
    for c in prob.constraints:
        dual = c.dual_value
        if isinstance(c, (cp.constraints.Inequality, cp.constraints.NonPos)):
            ineq.append(dual)
        elif isinstance(c, (cp.constraints.Equality, cp.constraints.Zero)):
            eq.append(dual)
        else:
            other.append(dual)
        if status == "optimal":
            v = c.violation()
            viol = max(viol, float(np.max(v)) if np.size(v) else 0.0)
    values = {v.name(): (None if v.value is None else np.asarray(v.value, dtype=float)) for v in prob.variables()}
    stats = prob.solver_stats
    return ConvexOutput(
        values=values,
        fun=float(prob.value) if prob.value is not None else float("nan"),
        status=status,
        cvxpy_status=cstatus,
        violation=viol if status == "optimal" else float("nan"),
        ineq_duals=ineq,
        eq_duals=eq,
        other_duals=other,
        solver=(stats.solver_name if stats is not None else str(solver)),
        time=elapsed,
        iterations=int(getattr(stats, "num_iters", 0) or 0) if stats is not None else 0,
    )


def build_problem(
    objective: Callable[[Any], Any],
    ineq: Sequence[Callable[[Any], Any]],
    eq: Sequence[Callable[[Any], Any]],
    shape: tuple[int, ...],
    lo: np.ndarray,
    hi: np.ndarray,
) -> tuple[Any, Any, int, int]:
    """Trace callables with a ``cp.Variable``; returns (problem, variable, #ineq, #eq).

    Bounds become the last constraints (not counted in the two numbers).
    """
    import cvxpy as cp

    x = cp.Variable(shape if shape else ())
    try:
        obj = objective(x)
        gs = [fn(x) for fn in ineq]
        hs = [fn(x) for fn in eq]
    except Exception as exc:
        raise ProblemError(
            f"method='cvxpy' calls the functions with a cvxpy Variable and that failed "
            f"({describe(exc)}); write them with cvxpy-compatible operations "
            "(@, sum, cp.sum_squares, ...) or use method='auglag'."
        ) from exc
    for what, e in [("objective", obj)] + [("Ineq", g) for g in gs] + [("Eq", h) for h in hs]:
        if not is_cvxpy_object(e):
            raise ProblemError(
                f"method='cvxpy': the {what} returned {type(e).__name__}, not a cvxpy "
                "expression; write it with cvxpy-compatible operations or use method='auglag'."
            )
    cons = [g <= 0 for g in gs] + [h == 0 for h in hs]
    lo_r, hi_r = lo.reshape(shape), hi.reshape(shape)
    if np.isfinite(lo_r).any():
        cons.append(x >= np.where(np.isfinite(lo_r), lo_r, -1e300) if shape else float(lo_r))
    if np.isfinite(hi_r).any():
        cons.append(x <= np.where(np.isfinite(hi_r), hi_r, 1e300) if shape else float(hi_r))
    prob = cp.Problem(cp.Minimize(obj), cons)
    if not prob.is_dcp():
        raise ProblemError(
            "method='cvxpy': the problem built from the functions is not DCP (the objective "
            "must be convex, each Ineq convex, each Eq affine); use method='auglag' for "
            "nonconvex problems."
        )
    return prob, x, len(gs), len(hs)
