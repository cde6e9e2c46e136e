"""The cvxpy path: problems as given, callables traced with a cp.Variable, fast re-solve."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import tracekit as tk
from solvers.constrained.constraints import ProblemError

cp = pytest.importorskip("cvxpy")


def test_auto_picks_cvxpy_for_a_problem_and_resolves_with_parameters():
    rng = np.random.default_rng(0)
    A, b = rng.normal(size=(30, 8)), rng.normal(size=30)
    x = cp.Variable(8)
    lam = cp.Parameter(nonneg=True, value=0.1)
    cons = [cp.sum(x) == 1, x >= -0.5]
    prob = cp.Problem(cp.Minimize(cp.sum_squares(A @ x - b) + lam * cp.norm1(x)), cons)
    res = tk.minimize(prob)
    assert res.solver.startswith("cvxpy") and res.success and res.status == "optimal"
    assert abs(float(res.x.sum()) - 1) < 1e-6
    # the equality dual follows the convention: grad f + eq * grad h + ... = 0 (sign checked by cvxpy's own)
    assert res.multipliers.eq[0] is not None and res.multipliers.ineq[0].shape == (8,)
    first = res.fun
    lam.value = 5.0  # same Problem object: cvxpy reuses its compiled form
    res2 = tk.minimize(prob, method="cvxpy")
    assert res2.success and res2.fun > first
    assert res2.info["cvxpy_problem"] is prob


def test_callables_traced_with_cvxpy_match_auglag():
    Q = np.array([[2.0, 0.5], [0.5, 1.0]])
    f = lambda x: 0.5 * (x @ Q @ x) if isinstance(x, torch.Tensor) else 0.5 * cp.quad_form(x, Q)  # noqa: E731
    f_cvx = lambda x: 0.5 * cp.quad_form(x, Q) - x[0] if not isinstance(x, torch.Tensor) else 0.5 * (  # noqa: E731
        x @ torch.as_tensor(Q) @ x) - x[0]
    cons = [tk.Ineq(lambda x: x[0] + x[1] - 0.5), tk.Eq(lambda x: x[0] - 2 * x[1])]
    r_cvx = tk.minimize(f_cvx, [0.0, 0.0], cons, bounds=(-1, 1), method="cvxpy")
    r_al = tk.minimize(f_cvx, [0.0, 0.0], cons, bounds=(-1, 1), method="auglag")
    assert r_cvx.success and r_al.success
    assert np.allclose(r_cvx.x.numpy(), r_al.x.numpy(), atol=1e-6)
    assert np.isfinite(r_cvx.kkt_residual)  # graded with the torch functions too
    assert float(r_cvx.multipliers.ineq[0]) == pytest.approx(float(r_al.multipliers.ineq[0]), abs=1e-5)
    assert float(r_cvx.multipliers.eq[0]) == pytest.approx(float(r_al.multipliers.eq[0]), abs=1e-5)
    del f


def test_cvxpy_infeasible_and_unbounded_statuses():
    x = cp.Variable(2)
    res = tk.minimize(cp.Problem(cp.Minimize(cp.sum(x)), [x >= 1, x <= 0]))
    assert not res.success and res.status == "infeasible"
    res = tk.minimize(cp.Problem(cp.Minimize(cp.sum(x)), [x <= 0]))
    assert not res.success and res.status == "unbounded"


def test_cvxpy_errors_are_explained():
    x = cp.Variable(2)
    with pytest.raises(ProblemError, match="method='cvxpy'"):
        tk.minimize(cp.Problem(cp.Minimize(cp.sum(x))), method="auglag")
    with pytest.raises(ProblemError, match="not DCP|DCP"):
        tk.minimize(lambda x: -cp.sum_squares(x), [0.0, 0.0], method="cvxpy")
    with pytest.raises(ProblemError, match="cvxpy"):
        tk.minimize(lambda x: torch.exp(x).sum(), [0.0, 0.0], method="cvxpy")
