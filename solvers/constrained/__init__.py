"""Constrained, convex and bilevel solvers on torch callables (or cvxpy problems).

``dispatch.minimize`` is the one entry point (validate, choose a method, grade, report);
``auglag`` (a subpackage) is the augmented Lagrangian; ``scipy_methods`` and ``convex``
wrap SciPy and cvxpy; ``kkt`` grades any point; ``bilevel_problem`` solves
``min_x F(x, y*(x))`` by implicit differentiation; ``penalty`` is the AL term used by
gradient training.
"""

from .bilevel_problem import bilevel
from .constraints import Eq, Ineq, ProblemError
from .dispatch import METHODS, minimize
from .penalty import ALPenalty
from .result import Multipliers, OptimizeResult

__all__ = [
    "ALPenalty",
    "Eq",
    "Ineq",
    "METHODS",
    "Multipliers",
    "OptimizeResult",
    "ProblemError",
    "bilevel",
    "minimize",
]
