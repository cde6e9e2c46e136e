"""The result of a constrained or bilevel solve, shared by every method.

One type for all back ends so that callers never branch on the method: the fields are
computed by our own checks (violation, KKT residual) after the back end returns, never
copied from a back end's success flag.

Multiplier convention (all methods): at a KKT point

    grad f(x) + J_g(x)^T ineq + J_h(x)^T eq + bounds = 0,

with ``ineq >= 0`` (one per component of every ``g(x) <= 0``), ``eq`` of any sign, and
``bounds`` a signed vector shaped like ``x``: ``<= 0`` at an active lower bound, ``>= 0``
at an active upper bound, ``0`` for free variables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The statuses a solve can end with.
STATUSES = (
    "optimal",  # violation and KKT residual within tolerance
    "infeasible",  # locally infeasible, any method: the violation stopped decreasing above
    # feas_tol (x is the least-violation point, max_violation its violation; infeasibility.py)
    "unbounded",  # objective fell below -1e20 or iterates diverged on a feasible path
    "nan",  # a function returned NaN/inf where it must be finite
    "max_iter",  # the iteration limit was hit before the tolerances were met
    "not_converged",  # the back end stopped without meeting the tolerances
)


@dataclass
class Multipliers:
    """Lagrange multipliers in the one convention documented in this module.

    ``ineq`` and ``eq`` are lists with one tensor per constraint object, in the order
    given; each tensor has the constraint's output shape (a leading batch dimension
    when the solve was batched).
    """

    ineq: list[Any] = field(default_factory=list)
    eq: list[Any] = field(default_factory=list)
    bounds: Any = None


@dataclass
class OptimizeResult:
    """Outcome of ``minimize`` / ``bilevel``.

    In a batched solve, ``fun``, ``success``, ``max_violation`` and ``kkt_residual`` are
    tensors with one entry per instance and ``status`` is a list of strings.
    """

    x: Any
    fun: Any
    success: Any
    status: Any
    message: str
    max_violation: Any
    kkt_residual: Any
    multipliers: Multipliers
    nit: int
    nfev: int
    solver: str
    time: float
    derivatives: str = "autograd"  # "autograd" | "finite-differences" | "mixed" | "none"
    y: Any = None  # bilevel: the inner solution at x
    info: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        def short(v: Any) -> str:
            text = repr(v)
            return text if len(text) < 80 else text[:77] + "..."

        rows = [
            f"  {name}={short(getattr(self, name))}"
            for name in (
                "solver",
                "status",
                "success",
                "fun",
                "max_violation",
                "kkt_residual",
                "nit",
                "nfev",
                "time",
                "derivatives",
                "x",
            )
        ]
        if self.y is not None:
            rows.append(f"  y={short(self.y)}")
        rows.append(f"  message={self.message!r}")
        return "OptimizeResult(\n" + ",\n".join(rows) + "\n)"
