"""Constrained and bilevel problems: ``tk.minimize``, ``tk.bilevel``, ``tk.Ineq``, ``tk.Eq``.

The solvers live in the standalone ``solvers`` package; this module is the public face
that tracekit users import. See ``docs/constrained.md`` for the methods, the ``"auto"``
rule, the multiplier convention and what each method guarantees.

``ALPenalty`` is the augmented-Lagrangian term used by ``tk.Optimizer(params,
constraints=[...])`` for gradient-trained parameters.
"""

from __future__ import annotations

import sys

from solvers.bilevel import bilevel
from solvers.constraints import Eq, Ineq, ProblemError
from solvers.minimize import METHODS, minimize
from solvers.penalty import ALPenalty
from solvers.result import Multipliers, OptimizeResult

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


class _CallableModule(type(sys.modules[__name__])):
    """Importing this module makes Python set ``tracekit.minimize`` to the *module*
    (the package attribute shares the function's name), which would shadow the lazily
    exported function once ``tk.Ineq`` is touched first. Calling the module therefore
    forwards to ``minimize`` so that ``tk.minimize(...)`` works in every import order.
    """

    def __call__(self, *args, **kwargs):
        return minimize(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
