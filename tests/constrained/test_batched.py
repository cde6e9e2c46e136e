"""Batched auglag: many instances in one torch computation."""

from __future__ import annotations

import pytest
import torch

import tracekit as tk
from solvers.constrained.constraints import ProblemError


def test_batched_matches_per_instance_slsqp():
    B = 40
    gen = torch.Generator().manual_seed(1)
    a = 25.0 * (1 + 0.2 * torch.rand(B, generator=gen, dtype=torch.float64))
    f = lambda x: x[..., 0] * x[..., 3] * (x[..., 0] + x[..., 1] + x[..., 2]) + x[..., 2]  # noqa: E731
    cons = [tk.Ineq(lambda x: a - x.prod(-1)), tk.Eq(lambda x: (x * x).sum(-1) - 40)]
    X0 = torch.tensor([1.0, 5.0, 5.0, 1.0], dtype=torch.float64).repeat(B, 1)
    res = tk.minimize(f, X0, cons, bounds=(1.0, 5.0), batched=True)
    assert res.solver == "auto: auglag"
    assert res.x.shape == (B, 4) and res.fun.shape == (B,)
    assert bool(res.success.all()), res.message
    assert res.multipliers.ineq[0].shape == (B,)
    for i in (0, 7, B - 1):
        ai = float(a[i])
        one = tk.minimize(lambda x: x[0] * x[3] * (x[0] + x[1] + x[2]) + x[2], [1.0, 5.0, 5.0, 1.0],
                          [tk.Ineq(lambda x, ai=ai: ai - x.prod()), tk.Eq(lambda x: (x * x).sum() - 40)],
                          bounds=(1.0, 5.0), method="slsqp")
        assert one.success
        assert float(res.fun[i]) <= one.fun + 1e-6 * abs(one.fun)
        assert abs(float(res.fun[i]) - one.fun) < 1e-6 * abs(one.fun)


def test_batched_statuses_are_per_instance():
    # instance 1 is infeasible (x <= -1 and x >= 1), the others are fine
    c = torch.tensor([0.0, 2.0, 0.5], dtype=torch.float64)
    cons = [tk.Ineq(lambda x: x[..., 0] - 1 + c), tk.Ineq(lambda x: -x[..., 0] - 1 + c)]
    res = tk.minimize(lambda x: ((x - 0.3) ** 2).sum(-1), torch.zeros(3, 2, dtype=torch.float64), cons,
                      batched=True, method="auglag")
    assert res.success.tolist() == [True, False, True]
    assert res.status[1] == "infeasible"
    assert "2/3 instances solved" in res.message


def test_batched_shape_error_names_the_fix():
    with pytest.raises(ProblemError, match=r"x\[\.\.\., i\]"):
        tk.minimize(lambda x: (x**2).sum(), torch.zeros(5, 3), batched=True)


def test_batched_dual_warm_start_broadcasts():
    X0 = torch.zeros(4, 2, dtype=torch.float64)
    cons = [tk.Eq(lambda x: x.sum(-1) - 1)]
    res = tk.minimize(lambda x: (x**2).sum(-1), X0, cons, batched=True, method="auglag",
                      multipliers0={"eq": [-1.0]})
    assert bool(res.success.all())
    assert torch.allclose(res.multipliers.eq[0], torch.full((4,), -1.0, dtype=torch.float64), atol=1e-7)
