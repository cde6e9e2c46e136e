"""Regression tests for auglag failure classes (each failed before the fix it guards).

* degenerate active bounds: the projected Newton inner solve cut every step at the first
  bound it met and zigzagged between variables a hair above their bounds (a portfolio
  efficient-frontier instance was reported infeasible);
* a solution pinned by constraints at the end of a long curved valley (CUTEst SNAKE): the
  AL subproblems run away along the valley; Newton on the active-set KKT system
  (polishing) finds the vertex;
* constraints with tiny gradients (HS106-like, multipliers ~1e3): without scaling them up
  the penalty stalls and the problem was reported infeasible;
* polishing must not accept a KKT point that is a maximum along the active manifold;
* the Steihaug-Toint CG used by the large-n inner path.
"""

from __future__ import annotations

import math

import pytest
import torch

import tracekit as tk
from solvers.constrained.auglag.method import AugLagOptions, _scale_factors
from solvers.constrained.auglag.polish import Lagrangian, polish
from solvers.constrained.constraints import Evaluator, Problem
from solvers.constrained.krylov import steihaug


def _market(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    # the factor model of examples/constrained_portfolio.py
    g = torch.Generator().manual_seed(seed)
    mu = 0.02 + 0.10 * torch.rand(n, generator=g, dtype=torch.float64)
    F = torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.15
    S = F @ F.T + torch.diag(0.02 + 0.05 * torch.rand(n, generator=g, dtype=torch.float64))
    return mu, S


def test_portfolio_instance_with_degenerate_bounds():
    # the --quick frontier point sigma = 0.14 + 0.08 / 3: two weights end at 0 with (near)
    # zero bound multipliers, two at the cap; auglag used to stall there ("infeasible")
    mu, S = _market(6)
    sigma = 0.14 + 0.08 / 3
    cons = [tk.Ineq(lambda w: w @ S @ w - sigma**2), tk.Eq(lambda w: w.sum() - 1)]
    w0 = torch.full((6,), 1.0 / 6, dtype=torch.float64)
    res = tk.minimize(lambda w: -(mu @ w), w0, cons, bounds=(0.0, 0.4), method="auglag")
    ref = tk.minimize(lambda w: -(mu @ w), w0, cons, bounds=(0.0, 0.4), method="slsqp")
    assert res.success and res.status == "optimal", res.message
    assert res.max_violation < 1e-8
    assert abs(res.fun - ref.fun) < 1e-8
    assert res.nit < 100


def test_snake_vertex_at_the_end_of_a_curved_valley():
    # CUTEst SNAKE: min x s.t. sin(x) <= y <= sin(x) + 1e-4 x; solution (0, 0), multipliers 1e4
    cons = [tk.Ineq(lambda x: torch.sin(x[0]) - x[1]), tk.Ineq(lambda x: x[1] - torch.sin(x[0]) - 1e-4 * x[0])]
    res = tk.minimize(lambda x: x[0], torch.tensor([1.0, 5.0], dtype=torch.float64), cons, method="auglag")
    assert res.success, res.message
    assert res.max_violation < 1e-8
    assert abs(res.fun) < 1e-8 and res.x.abs().max() < 1e-6


def test_constraints_with_small_gradients_are_scaled_up():
    # gradients ~1e-3 (multipliers 816 and 333): the solution is x0 = sqrt(1.5), x1 = 2 / x0,
    # x2 = (x0 + 1) / 3; without row scaling auglag stopped with "infeasible"
    cons = [tk.Ineq(lambda x: 1e-3 * (2 - x[0] * x[1])), tk.Ineq(lambda x: 1e-3 * (x[0] - 3 * x[2] + 1))]
    res = tk.minimize(lambda x: x.sum(), torch.full((3,), 5.0, dtype=torch.float64), cons, bounds=(0.1, 10.0),
                      method="auglag")
    x0 = math.sqrt(1.5)
    assert res.success, res.message
    assert res.fun == pytest.approx(x0 + 2 / x0 + (x0 + 1) / 3, abs=1e-9)
    assert float(res.multipliers.ineq[0]) == pytest.approx(1e3 / x0, rel=1e-6)
    assert float(res.multipliers.ineq[1]) == pytest.approx(1e3 / 3, rel=1e-6)


def test_scale_factors_bring_gradient_norms_into_range():
    opts = AugLagOptions()
    norms = torch.tensor([0.0, 1e-6, 1e-3, 0.5, 1.0, 50.0, 1e4], dtype=torch.float64)
    s = _scale_factors(norms, opts)
    assert s.tolist() == pytest.approx([1.0, 100.0, 100.0, 2.0, 1.0, 1.0, 0.01])
    assert _scale_factors(norms, AugLagOptions(grad_scale_up=1.0)).tolist() == pytest.approx(
        [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.01])


def _circle_setup(x):
    # min x1 s.t. x0^2 + x1^2 = 1: KKT points (0, -1) (minimum, mu = 1/2) and (0, 1) (maximum)
    prob, X = Problem.build(lambda z: z[1], torch.tensor(x, dtype=torch.float64),
                            [tk.Eq(lambda z: (z**2).sum() - 1)], None)
    ev = Evaluator(prob, X)
    one = torch.ones(1, dtype=torch.float64)
    lag = Lagrangian(ev, one, torch.ones(1, 0, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64))
    return lag, X, prob


@pytest.mark.parametrize("start, mu, is_min", [([0.05, -0.95], 0.5, True), ([0.05, 0.95], -0.5, False)])
def test_polish_converges_and_rejects_a_maximum(start, mu, is_min):
    lag, X, prob = _circle_setup(start)
    lo, hi = prob.lower.expand_as(X), prob.upper.expand_as(X)
    Xp, _, mp, second_order = polish(lag, X, X.new_zeros(1, 0), torch.tensor([[mu]], dtype=torch.float64),
                                      torch.ones(1, dtype=torch.float64), lo, hi, torch.ones(1, dtype=torch.bool), 1e-8)
    target = torch.tensor([[0.0, -1.0 if is_min else 1.0]], dtype=torch.float64)
    assert torch.allclose(Xp, target, atol=1e-12)  # Newton converges to the nearby KKT point
    assert float(mp) == pytest.approx(0.5 if is_min else -0.5, abs=1e-12)
    assert bool(second_order) is is_min  # but the maximum has negative curvature on the circle


def test_steihaug_interior_boundary_and_negative_curvature():
    g = torch.Generator().manual_seed(0)
    M = torch.randn(3, 6, 6, generator=g, dtype=torch.float64)
    A = M @ M.transpose(1, 2) + torch.eye(6, dtype=torch.float64)
    b = torch.randn(3, 6, generator=g, dtype=torch.float64)

    def mv(P):
        return (A @ P[:, :, None])[:, :, 0]

    radius = torch.tensor([float("inf"), 0.05, 1e3], dtype=torch.float64)
    s, info = steihaug(mv, b, radius, rtol=1e-12)
    newton = -torch.linalg.solve(A, b[:, :, None])[:, :, 0]
    assert torch.allclose(s[0], newton[0], atol=1e-9) and torch.allclose(s[2], newton[2], atol=1e-9)
    assert float(s[1].norm()) == pytest.approx(0.05, rel=1e-12) and info["boundary"].tolist() == [False, True, False]
    assert float((b[1] * s[1]).sum()) < 0  # a descent direction
    # indefinite: the step goes to the boundary along a direction of negative curvature
    A2 = A - 20 * torch.eye(6, dtype=torch.float64)
    s, info = steihaug(lambda P: (A2 @ P[:, :, None])[:, :, 0], b, torch.ones(3, dtype=torch.float64))
    assert bool(info["negative_curvature"].any())
    neg = info["negative_curvature"]
    assert torch.allclose(s[neg].norm(dim=1), torch.ones(int(neg.sum()), dtype=torch.float64))
