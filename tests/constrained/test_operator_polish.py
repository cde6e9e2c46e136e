"""The augmented Lagrangian above its factorization limit: MINRES on KKT operators
(krylov.minres) and the matrix-free active-set polish (auglag.operator_polish)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch

import tracekit as tk
from solvers.constrained.auglag import method
from solvers.constrained.krylov import minres

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import scalable_problems as SP  # noqa: E402


def test_minres_solves_batched_symmetric_indefinite_systems():
    gen = torch.Generator().manual_seed(0)
    B, n = 3, 30
    Q = torch.linalg.qr(torch.randn(B, n, n, generator=gen, dtype=torch.float64)).Q
    eig = torch.linspace(-4.3, 9.0, n, dtype=torch.float64)  # indefinite, nonsingular
    A = Q @ torch.diag_embed(eig.expand(B, n)) @ Q.transpose(1, 2)
    b = torch.randn(B, n, generator=gen, dtype=torch.float64)
    b[2] = 0.0  # a row with nothing to solve stays at zero
    x, info = minres(lambda V: (A @ V[:, :, None])[:, :, 0], b, rtol=1e-12)
    assert torch.allclose(x[:2], torch.linalg.solve(A[:2], b[:2]), atol=1e-9)
    assert bool((x[2] == 0).all()) and int(info["iterations"][2]) == 0
    assert bool((info["residual"][:2] <= 1e-10 * b[:2].norm(dim=1)).all())
    assert bool((info["iterations"][:2] <= n + 5).all())


def banded(n):
    ops = SP.torch_ops()
    f, ineq, eq, lo, hi, x0 = SP.qp_banded(n)
    cons = [tk.Ineq(lambda x: ineq(x, ops)), tk.Eq(lambda x: eq(x, ops))]
    return (lambda x: f(x, ops)), torch.tensor(x0), cons, (torch.tensor(lo), torch.tensor(hi))


def test_the_operator_polish_finds_the_factored_polish_solution(monkeypatch):
    """Below the factorization limit, forcing the operator tier (dense_max and factor_max
    lowered) reaches the same KKT point as the factored tier and as IPOPT."""
    calls = {"dense": 0, "operators": 0}
    for name, key in (("polish", "dense"), ("polish_operator", "operators")):
        original = getattr(method, name)

        def counted(*args, original=original, key=key, **kwargs):
            calls[key] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(method, name, counted)
    f, x0, cons, bounds = banded(200)
    operators = tk.minimize(f, x0, cons, bounds=bounds, method="auglag",
                            options={"dense_max": 50, "factor_max": 50})
    assert calls == {"dense": 0, "operators": calls["operators"]} and calls["operators"] >= 1
    factored = tk.minimize(f, x0, cons, bounds=bounds, method="auglag")
    assert calls["dense"] >= 1
    ipopt = tk.minimize(f, x0, cons, bounds=bounds, method="ipopt")
    assert factored.success and operators.success and ipopt.success, operators.message
    assert math.isclose(operators.fun, ipopt.fun, rel_tol=1e-6)
    assert math.isclose(factored.fun, ipopt.fun, rel_tol=1e-6)
    assert operators.kkt_residual <= 1e-6 and operators.max_violation <= 1e-6


@pytest.mark.slow
def test_auglag_converges_above_the_factorization_limit():
    """n = 2000 (factor_max is 1500): before the operator polish this ended at max_iter
    with a KKT residual of 0.2."""
    f, x0, cons, bounds = banded(2000)
    al = tk.minimize(f, x0, cons, bounds=bounds, method="auglag")
    ref = tk.minimize(f, x0, cons, bounds=bounds, method="ipopt")
    assert al.success and al.status == "optimal", al.message
    assert math.isclose(al.fun, ref.fun, rel_tol=1e-6)
