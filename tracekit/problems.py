"""Constrained and bilevel problems: ``tk.minimize``, ``tk.bilevel``, ``tk.Ineq``, ``tk.Eq``.

The solvers live in the standalone ``solvers`` package; this module is the public face
that tracekit users import. See ``docs/constrained.md`` for the methods, the ``"auto"``
rule, the multiplier convention and what each method guarantees.

``ALPenalty`` is the augmented-Lagrangian term used by ``tk.Optimizer(params,
constraints=[...])`` for gradient-trained parameters.
"""

from __future__ import annotations

from solvers.constrained.bilevel_problem import bilevel
from solvers.constrained.constraints import Eq, Ineq, ProblemError
from solvers.constrained.dispatch import METHODS, minimize
from solvers.constrained.penalty import ALPenalty
from solvers.constrained.result import Multipliers, OptimizeResult

__all__ = [
    "minimize",
    "bilevel",
    "Ineq",
    "Eq",
    "OptimizeResult",
    "Multipliers",
    "ALPenalty",
    "ProblemError",
    "METHODS",
]
