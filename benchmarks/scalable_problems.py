"""Scalable constrained families (CUTEst-like), written once for torch and for CasADi.

``m`` is ``torch_ops()`` or ``casadi_ops()`` (``sum``, ``dot``, ``const``); the rest is indexing,
slicing, ``@`` and arithmetic, valid for both, so tracekit and IPOPT used directly solve
the same problem. Each family returns ``(f, ineq, eq, lo, hi, x0)`` for a given ``n`` with
``f(x, m)``, ``ineq(x, m)`` (``<= 0``) and ``eq(x, m)`` (``== 0``) returning one vector,
or ``None``.

* ``qp_banded``: convex QP, tridiagonal Hessian, ``n/2`` pair constraints
  ``x[2i] + x[2i+1] <= 1``, one equality ``sum(x) = n/4``, bounds ``[0, 1]``.
* ``qp_dense``: convex QP with a dense Hessian and ``n/2`` dense linear inequalities,
  bounds ``[-1, 1]`` (the shape of a portfolio or MPC problem).
* ``rosenbrock_ball``: the chained Rosenbrock function with the ball constraint
  ``|x|^2 <= n/2``, which cuts off its minimizer (nonconvex; active at the solution).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np


def casadi_ops():
    import casadi as ca

    return SimpleNamespace(sum=lambda e: ca.sum1(e), dot=ca.dot, const=lambda a: ca.DM(np.asarray(a)))


def torch_ops():
    import torch

    return SimpleNamespace(sum=torch.sum, dot=torch.dot,
                           const=lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64))


def qp_banded(n: int):
    rng = np.random.default_rng(n)
    d = 1.0 + (np.arange(n) % 7) / 7.0
    c = rng.uniform(-1.0, 1.0, n)

    def f(x, m):
        return 0.5 * m.sum(m.const(d) * x**2) + 0.5 * m.sum((x[1:] - x[:-1]) ** 2) + m.sum(m.const(c) * x)

    def ineq(x, m):
        return x[0::2] + x[1::2] - 1.0

    def eq(x, m):
        return m.sum(x) - n / 4.0

    return f, ineq, eq, np.zeros(n), np.ones(n), np.full(n, 0.25)


def qp_dense(n: int):
    rng = np.random.default_rng(1000 + n)
    M = rng.standard_normal((n, n)) / np.sqrt(n)
    Q = M @ M.T + 0.1 * np.eye(n)
    c = rng.standard_normal(n)
    A = rng.standard_normal((n // 2, n)) / np.sqrt(n)
    b = A @ np.full(n, 0.1) + 0.1

    def f(x, m):
        return 0.5 * m.dot(x, m.const(Q) @ x) + m.dot(m.const(c), x)

    def ineq(x, m):
        return m.const(A) @ x - m.const(b)

    return f, ineq, None, -np.ones(n), np.ones(n), np.zeros(n)


def rosenbrock_ball(n: int):
    def f(x, m):
        return m.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)

    def ineq(x, m):
        return m.sum(x**2) - n / 2.0

    x0 = np.tile([-1.2, 1.0], n // 2 + 1)[:n]
    return f, ineq, None, np.full(n, -np.inf), np.full(n, np.inf), x0


FAMILIES = {"qp_banded": qp_banded, "qp_dense": qp_dense, "rosenbrock_ball": rosenbrock_ball}
