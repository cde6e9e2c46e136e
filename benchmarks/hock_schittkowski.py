"""Hock-Schittkowski problems written once for torch and for CasADi.

Each function takes ``x`` and a module ``m`` that provides ``sin``, ``cos``, ``exp``,
``log`` and ``sqrt`` (``torch`` or ``casadi``), and uses only indexing and arithmetic
otherwise, so the same text gives tracekit its torch functions and gives IPOPT, used
directly, its CasADi expressions: both solvers see the same problem. Constraints are in
the library's form, ``g(x) <= 0`` and ``h(x) == 0`` (Hock and Schittkowski write
``g >= 0``; the signs are flipped here). ``fstar`` is the published optimal value.

Reference: W. Hock and K. Schittkowski, Test Examples for Nonlinear Programming Codes,
Lecture Notes in Economics and Mathematical Systems 187, Springer, 1981.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

INF = math.inf
S2 = math.sqrt(2.0)


@dataclass
class HS:
    name: str
    x0: list[float]
    f: Callable[[Any, Any], Any]
    ineq: Callable[[Any, Any], list] | None = None  # g(x) <= 0, a list of scalars
    eq: Callable[[Any, Any], list] | None = None  # h(x) == 0
    lo: list[float] = field(default_factory=list)  # empty: unbounded
    hi: list[float] = field(default_factory=list)
    fstar: float = float("nan")
    degenerate: bool = False  # no KKT point at the solution (constraint qualifications fail)

    @property
    def n(self) -> int:
        return len(self.x0)


def _b(n: int, v: float) -> list[float]:
    return [v] * n


PROBLEMS: list[HS] = [
    HS("HS6", [-1.2, 1.0], lambda x, m: (1 - x[0]) ** 2, eq=lambda x, m: [10 * (x[1] - x[0] ** 2)], fstar=0.0),
    HS("HS7", [2.0, 2.0], lambda x, m: m.log(1 + x[0] ** 2) - x[1],
       eq=lambda x, m: [(1 + x[0] ** 2) ** 2 + x[1] ** 2 - 4], fstar=-math.sqrt(3)),
    HS("HS9", [0.0, 0.0], lambda x, m: m.sin(math.pi * x[0] / 12) * m.cos(math.pi * x[1] / 16),
       eq=lambda x, m: [4 * x[0] - 3 * x[1]], fstar=-0.5),
    HS("HS10", [-10.0, 10.0], lambda x, m: x[0] - x[1],
       ineq=lambda x, m: [3 * x[0] ** 2 - 2 * x[0] * x[1] + x[1] ** 2 - 1], fstar=-1.0),
    HS("HS11", [4.9, 0.1], lambda x, m: (x[0] - 5) ** 2 + x[1] ** 2 - 25,
       ineq=lambda x, m: [x[0] ** 2 - x[1]], fstar=-8.498464223),
    HS("HS12", [0.0, 0.0], lambda x, m: 0.5 * x[0] ** 2 + x[1] ** 2 - x[0] * x[1] - 7 * x[0] - 7 * x[1],
       ineq=lambda x, m: [4 * x[0] ** 2 + x[1] ** 2 - 25], fstar=-30.0),
    HS("HS13", [-2.0, -2.0], lambda x, m: (x[0] - 2) ** 2 + x[1] ** 2,
       ineq=lambda x, m: [x[1] - (1 - x[0]) ** 3], lo=[0.0, 0.0], hi=[INF, INF], fstar=1.0, degenerate=True),
    HS("HS14", [2.0, 2.0], lambda x, m: (x[0] - 2) ** 2 + (x[1] - 1) ** 2,
       ineq=lambda x, m: [0.25 * x[0] ** 2 + x[1] ** 2 - 1], eq=lambda x, m: [x[0] - 2 * x[1] + 1],
       fstar=9 - 2.875 * math.sqrt(7)),
    HS("HS15", [-2.0, 1.0], lambda x, m: 100 * (x[1] - x[0] ** 2) ** 2 + (1 - x[0]) ** 2,
       ineq=lambda x, m: [1 - x[0] * x[1], -x[0] - x[1] ** 2], lo=[-INF, -INF], hi=[0.5, INF], fstar=306.5),
    HS("HS18", [2.0, 2.0], lambda x, m: 0.01 * x[0] ** 2 + x[1] ** 2,
       ineq=lambda x, m: [25 - x[0] * x[1], 25 - x[0] ** 2 - x[1] ** 2], lo=[2.0, 0.0], hi=[50.0, 50.0],
       fstar=5.0),
    HS("HS21", [-1.0, -1.0], lambda x, m: 0.01 * x[0] ** 2 + x[1] ** 2 - 100,
       ineq=lambda x, m: [10 - 10 * x[0] + x[1]], lo=[2.0, -50.0], hi=[50.0, 50.0], fstar=-99.96),
    HS("HS22", [2.0, 2.0], lambda x, m: (x[0] - 2) ** 2 + (x[1] - 1) ** 2,
       ineq=lambda x, m: [x[0] + x[1] - 2, x[0] ** 2 - x[1]], fstar=1.0),
    HS("HS23", [3.0, 1.0], lambda x, m: x[0] ** 2 + x[1] ** 2,
       ineq=lambda x, m: [1 - x[0] - x[1], 1 - x[0] ** 2 - x[1] ** 2, 9 - 9 * x[0] ** 2 - x[1] ** 2,
                          x[1] - x[0] ** 2, x[0] - x[1] ** 2], lo=_b(2, -50.0), hi=_b(2, 50.0), fstar=2.0),
    HS("HS26", [-2.6, 2.0, 2.0], lambda x, m: (x[0] - x[1]) ** 2 + (x[1] - x[2]) ** 4,
       eq=lambda x, m: [(1 + x[1] ** 2) * x[0] + x[2] ** 4 - 3], fstar=0.0),
    HS("HS27", [2.0, 2.0, 2.0], lambda x, m: 0.01 * (x[0] - 1) ** 2 + (x[1] - x[0] ** 2) ** 2,
       eq=lambda x, m: [x[0] + x[2] ** 2 + 1], fstar=0.04),
    HS("HS29", [1.0, 1.0, 1.0], lambda x, m: -x[0] * x[1] * x[2],
       ineq=lambda x, m: [x[0] ** 2 + 2 * x[1] ** 2 + 4 * x[2] ** 2 - 48], fstar=-16 * S2),
    HS("HS35", [0.5, 0.5, 0.5],
       lambda x, m: 9 - 8 * x[0] - 6 * x[1] - 4 * x[2] + 2 * x[0] ** 2 + 2 * x[1] ** 2 + x[2] ** 2
       + 2 * x[0] * x[1] + 2 * x[0] * x[2],
       ineq=lambda x, m: [x[0] + x[1] + 2 * x[2] - 3], lo=_b(3, 0.0), hi=_b(3, INF), fstar=1 / 9),
    HS("HS39", [2.0, 2.0, 2.0, 2.0], lambda x, m: -x[0],
       eq=lambda x, m: [x[1] - x[0] ** 3 - x[2] ** 2, x[0] ** 2 - x[1] - x[3] ** 2], fstar=-1.0),
    HS("HS40", [0.8, 0.8, 0.8, 0.8], lambda x, m: -x[0] * x[1] * x[2] * x[3],
       eq=lambda x, m: [x[0] ** 3 + x[1] ** 2 - 1, x[0] ** 2 * x[3] - x[2], x[3] ** 2 - x[1]], fstar=-0.25),
    HS("HS43", [0.0, 0.0, 0.0, 0.0],
       lambda x, m: x[0] ** 2 + x[1] ** 2 + 2 * x[2] ** 2 + x[3] ** 2 - 5 * x[0] - 5 * x[1] - 21 * x[2] + 7 * x[3],
       ineq=lambda x, m: [x[0] ** 2 + x[1] ** 2 + x[2] ** 2 + x[3] ** 2 + x[0] - x[1] + x[2] - x[3] - 8,
                          x[0] ** 2 + 2 * x[1] ** 2 + x[2] ** 2 + 2 * x[3] ** 2 - x[0] - x[3] - 10,
                          2 * x[0] ** 2 + x[1] ** 2 + x[2] ** 2 + 2 * x[0] - x[1] - x[3] - 5], fstar=-44.0),
    HS("HS46", [0.5 * S2, 1.75, 0.5, 2.0, 2.0],
       lambda x, m: (x[0] - x[1]) ** 2 + (x[2] - 1) ** 2 + (x[3] - 1) ** 4 + (x[4] - 1) ** 6,
       eq=lambda x, m: [x[0] ** 2 * x[3] + m.sin(x[3] - x[4]) - 1, x[1] + x[2] ** 4 * x[3] ** 2 - 2], fstar=0.0),
    HS("HS48", [3.0, 5.0, -3.0, 2.0, -2.0], lambda x, m: (x[0] - 1) ** 2 + (x[1] - x[2]) ** 2 + (x[3] - x[4]) ** 2,
       eq=lambda x, m: [x[0] + x[1] + x[2] + x[3] + x[4] - 5, x[2] - 2 * (x[3] + x[4]) + 3], fstar=0.0),
    HS("HS60", [2.0, 2.0, 2.0], lambda x, m: (x[0] - 1) ** 2 + (x[0] - x[1]) ** 2 + (x[1] - x[2]) ** 4,
       eq=lambda x, m: [x[0] * (1 + x[1] ** 2) + x[2] ** 4 - 4 - 3 * S2], lo=_b(3, -10.0), hi=_b(3, 10.0),
       fstar=0.03256820025),
    HS("HS63", [2.0, 2.0, 2.0],
       lambda x, m: 1000 - x[0] ** 2 - 2 * x[1] ** 2 - x[2] ** 2 - x[0] * x[1] - x[0] * x[2],
       eq=lambda x, m: [8 * x[0] + 14 * x[1] + 7 * x[2] - 56, x[0] ** 2 + x[1] ** 2 + x[2] ** 2 - 25],
       lo=_b(3, 0.0), hi=_b(3, INF), fstar=961.7151721),
    HS("HS65", [-5.0, 5.0, 0.0], lambda x, m: (x[0] - x[1]) ** 2 + (x[0] + x[1] - 10) ** 2 / 9 + (x[2] - 5) ** 2,
       ineq=lambda x, m: [x[0] ** 2 + x[1] ** 2 + x[2] ** 2 - 48], lo=[-4.5, -4.5, -5.0], hi=[4.5, 4.5, 5.0],
       fstar=0.9535288567),
    HS("HS71", [1.0, 5.0, 5.0, 1.0], lambda x, m: x[0] * x[3] * (x[0] + x[1] + x[2]) + x[2],
       ineq=lambda x, m: [25 - x[0] * x[1] * x[2] * x[3]],
       eq=lambda x, m: [x[0] ** 2 + x[1] ** 2 + x[2] ** 2 + x[3] ** 2 - 40], lo=_b(4, 1.0), hi=_b(4, 5.0),
       fstar=17.0140173),
    HS("HS76", [0.5, 0.5, 0.5, 0.5],
       lambda x, m: x[0] ** 2 + 0.5 * x[1] ** 2 + x[2] ** 2 + 0.5 * x[3] ** 2 - x[0] * x[2] + x[2] * x[3]
       - x[0] - 3 * x[1] + x[2] - x[3],
       ineq=lambda x, m: [x[0] + 2 * x[1] + x[2] + x[3] - 5, 3 * x[0] + x[1] + 2 * x[2] - x[3] - 4,
                          1.5 - x[1] - 4 * x[2]], lo=_b(4, 0.0), hi=_b(4, INF), fstar=-4.681818181),
    HS("HS77", [2.0] * 5,
       lambda x, m: (x[0] - 1) ** 2 + (x[0] - x[1]) ** 2 + (x[2] - 1) ** 2 + (x[3] - 1) ** 4 + (x[4] - 1) ** 6,
       eq=lambda x, m: [x[0] ** 2 * x[3] + m.sin(x[3] - x[4]) - 2 * S2, x[1] + x[2] ** 4 * x[3] ** 2 - 8 - S2],
       fstar=0.24150513),
    HS("HS78", [-2.0, 1.5, 2.0, -1.0, -1.0], lambda x, m: x[0] * x[1] * x[2] * x[3] * x[4],
       eq=lambda x, m: [x[0] ** 2 + x[1] ** 2 + x[2] ** 2 + x[3] ** 2 + x[4] ** 2 - 10,
                        x[1] * x[2] - 5 * x[3] * x[4], x[0] ** 3 + x[1] ** 3 + 1], fstar=-2.919700),
    HS("HS79", [2.0] * 5,
       lambda x, m: (x[0] - 1) ** 2 + (x[0] - x[1]) ** 2 + (x[1] - x[2]) ** 2 + (x[2] - x[3]) ** 4
       + (x[3] - x[4]) ** 4,
       eq=lambda x, m: [x[0] + x[1] ** 2 + x[2] ** 3 - 2 - 3 * S2, x[1] - x[2] ** 2 + x[3] + 2 - 2 * S2,
                        x[0] * x[4] - 2], fstar=0.0787768209),
    HS("HS80", [-2.0, 2.0, 2.0, -1.0, -1.0], lambda x, m: m.exp(x[0] * x[1] * x[2] * x[3] * x[4]),
       eq=lambda x, m: [x[0] ** 2 + x[1] ** 2 + x[2] ** 2 + x[3] ** 2 + x[4] ** 2 - 10,
                        x[1] * x[2] - 5 * x[3] * x[4], x[0] ** 3 + x[1] ** 3 + 1],
       lo=[-2.3, -2.3, -3.2, -3.2, -3.2], hi=[2.3, 2.3, 3.2, 3.2, 3.2], fstar=0.0539498478),
    HS("HS100", [1.0, 2.0, 0.0, 4.0, 0.0, 1.0, 1.0],
       lambda x, m: (x[0] - 10) ** 2 + 5 * (x[1] - 12) ** 2 + x[2] ** 4 + 3 * (x[3] - 11) ** 2 + 10 * x[4] ** 6
       + 7 * x[5] ** 2 + x[6] ** 4 - 4 * x[5] * x[6] - 10 * x[5] - 8 * x[6],
       ineq=lambda x, m: [2 * x[0] ** 2 + 3 * x[1] ** 4 + x[2] + 4 * x[3] ** 2 + 5 * x[4] - 127,
                          7 * x[0] + 3 * x[1] + 10 * x[2] ** 2 + x[3] - x[4] - 282,
                          23 * x[0] + x[1] ** 2 + 6 * x[5] ** 2 - 8 * x[6] - 196,
                          4 * x[0] ** 2 + x[1] ** 2 - 3 * x[0] * x[1] + 2 * x[2] ** 2 + 5 * x[5] - 11 * x[6]],
       fstar=680.6300573),
    HS("HS106", [5000.0, 5000.0, 5000.0, 200.0, 350.0, 150.0, 225.0, 425.0], lambda x, m: x[0] + x[1] + x[2],
       ineq=lambda x, m: [0.0025 * (x[3] + x[5]) - 1, 0.0025 * (x[4] + x[6] - x[3]) - 1, 0.01 * (x[7] - x[4]) - 1,
                          -(x[0] * x[5] - 833.33252 * x[3] - 100 * x[0] + 83333.333),
                          -(x[1] * x[6] - 1250 * x[4] - x[1] * x[3] + 1250 * x[3]),
                          -(x[2] * x[7] - 1250000 - x[2] * x[4] + 2500 * x[4])],
       lo=[100.0, 1000.0, 1000.0] + _b(5, 10.0), hi=[10000.0] * 3 + _b(5, 1000.0), fstar=7049.24802),
    HS("HS113", [2.0, 3.0, 5.0, 5.0, 1.0, 2.0, 7.0, 3.0, 6.0, 10.0],
       lambda x, m: x[0] ** 2 + x[1] ** 2 + x[0] * x[1] - 14 * x[0] - 16 * x[1] + (x[2] - 10) ** 2
       + 4 * (x[3] - 5) ** 2 + (x[4] - 3) ** 2 + 2 * (x[5] - 1) ** 2 + 5 * x[6] ** 2 + 7 * (x[7] - 11) ** 2
       + 2 * (x[8] - 10) ** 2 + (x[9] - 7) ** 2 + 45,
       ineq=lambda x, m: [4 * x[0] + 5 * x[1] - 3 * x[6] + 9 * x[7] - 105, 10 * x[0] - 8 * x[1] - 17 * x[6] + 2 * x[7],
                          -8 * x[0] + 2 * x[1] + 5 * x[8] - 2 * x[9] - 12,
                          3 * (x[0] - 2) ** 2 + 4 * (x[1] - 3) ** 2 + 2 * x[2] ** 2 - 7 * x[3] - 120,
                          5 * x[0] ** 2 + 8 * x[1] + (x[2] - 6) ** 2 - 2 * x[3] - 40,
                          0.5 * (x[0] - 8) ** 2 + 2 * (x[1] - 4) ** 2 + 3 * x[4] ** 2 - x[5] - 30,
                          x[0] ** 2 + 2 * (x[1] - 2) ** 2 - 2 * x[0] * x[1] + 14 * x[4] - 6 * x[5],
                          -3 * x[0] + 6 * x[1] + 12 * (x[8] - 8) ** 2 - 7 * x[9]], fstar=24.3062091),
]


def get(name: str) -> HS:
    for p in PROBLEMS:
        if p.name == name:
            return p
    raise KeyError(name)


def torch_problem(p: HS):
    """``(f, constraints, bounds, x0)`` for ``tk.minimize``."""
    import torch

    import tracekit as tk

    def f(x):
        return p.f(x, torch)

    cons = []
    if p.ineq is not None:
        cons.append(tk.Ineq(lambda x: torch.stack(p.ineq(x, torch)),
                            name="g"))
    if p.eq is not None:
        cons.append(tk.Eq(lambda x: torch.stack(p.eq(x, torch)),
                          name="h"))
    bounds = (p.lo, p.hi) if p.lo else None
    return f, cons, bounds, torch.tensor(p.x0, dtype=torch.float64)
