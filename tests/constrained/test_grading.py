"""The shared grade on IPOPT's captured path: torch's forward values confirm the compiled
graph, whose derivatives then stand in for torch's backward pass; any disagreement
falls back to torch (solvers.constrained.kkt)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tracekit as tk
from solvers.constrained import dispatch, ipopt
from solvers.constrained.constraints import Evaluator, Problem
from solvers.constrained.kkt import Compiled, measures


def hs71_problem():
    f = lambda x: x[0] * x[3] * (x[0] + x[1] + x[2]) + x[2]  # noqa: E731
    cons = [tk.Ineq(lambda x: 25 - x.prod()), tk.Eq(lambda x: (x**2).sum() - 40)]
    return f, cons


def solved():
    """IPOPT's raw output on HS71 and the evaluator it was graded with."""
    f, cons = hs71_problem()
    prob, X0 = Problem.build(f, torch.tensor([1.0, 5.0, 5.0, 1.0], dtype=torch.float64), cons, (1.0, 5.0))
    ev = Evaluator(prob, X0)
    lo, hi = dispatch._bounds(prob)
    out = ipopt.solve_ipopt(prob, ev, X0, lo, hi, tol=1e-8)
    return ev, out, lo, hi


def test_the_compiled_grade_is_the_torch_grade():
    ev, out, lo, hi = solved()
    assert out.derivatives == "captured" and out.values is not None
    compiled = dispatch._compiled(out)
    fast = measures(ev, out.X, out.lam, out.mu, lo, hi, compiled=compiled)
    slow = measures(ev, out.X, out.lam, out.mu, lo, hi)
    for name in ("f", "g", "h", "violation", "bound_multipliers"):
        assert torch.allclose(getattr(fast, name), getattr(slow, name), rtol=1e-9, atol=1e-12), name
    assert float(fast.kkt[0]) == pytest.approx(float(slow.kkt[0]), abs=1e-10)
    assert float(fast.kkt[0]) <= 1e-6


def test_values_that_disagree_send_the_grade_back_to_torch():
    """A compiled graph that is not the user's function at the point (here: its values
    shifted, its gradients garbage) is not trusted: the grade is torch's own."""
    ev, out, lo, hi = solved()
    good = dispatch._compiled(out)
    wrong = Compiled(good.values + np.r_[1e-3, np.zeros(good.values.size - 1)], good.gf * 0 + 7.0, good.gl * 0 + 7.0)
    reference = measures(ev, out.X, out.lam, out.mu, lo, hi)
    assert good.agrees(reference.f, reference.g, reference.h)
    assert not wrong.agrees(reference.f, reference.g, reference.h)
    graded = measures(ev, out.X, out.lam, out.mu, lo, hi, compiled=wrong)
    assert float(graded.kkt[0]) == pytest.approx(float(reference.kkt[0]), abs=1e-12)
    assert float(graded.kkt[0]) <= 1e-6  # with the garbage gradients it would be about 7


def test_float32_values_are_graded_by_torch():
    f, cons = hs71_problem()
    res = tk.minimize(f, torch.tensor([1.0, 5.0, 5.0, 1.0]), cons, bounds=(1.0, 5.0), method="ipopt")
    assert res.success and res.x.dtype == torch.float32
