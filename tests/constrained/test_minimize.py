"""tk.minimize: accuracy, the multiplier convention, statuses and input errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import tracekit as tk
from solvers.constrained.constraints import ProblemError

HS71_F = 17.0140172891563


def hs71_f(x):
    return x[0] * x[3] * (x[0] + x[1] + x[2]) + x[2]


def hs71_cons():
    return [tk.Ineq(lambda x: 25 - x[0] * x[1] * x[2] * x[3]), tk.Eq(lambda x: (x**2).sum() - 40)]


def stationarity(f, cons, x, res):
    """grad f + J^T ineq + J^T eq + bounds, computed independently of the solver."""
    x = x.detach().clone().requires_grad_(True)
    total = f(x)
    ineq = iter(res.multipliers.ineq)
    eq = iter(res.multipliers.eq)
    for c in cons:
        m = next(ineq) if isinstance(c, tk.Ineq) else next(eq)
        total = total + (c.fn(x) * m).sum()
    (g,) = torch.autograd.grad(total, x)
    return g + res.multipliers.bounds


@pytest.mark.parametrize("method", ["auglag", "slsqp", "auto"])
def test_hs71_exact_to_1e6(method):
    res = tk.minimize(hs71_f, [1.0, 5.0, 5.0, 1.0], hs71_cons(), bounds=(1.0, 5.0), method=method)
    assert res.success and res.status == "optimal"
    assert abs(res.fun - HS71_F) / HS71_F < 1e-6
    assert res.max_violation < 1e-6 and res.kkt_residual < 1e-6
    assert method in res.solver or res.solver.startswith("auto")
    assert res.time > 0 and res.nfev > 0


def test_auglag_reaches_1e8_accuracy():
    res = tk.minimize(hs71_f, [1.0, 5.0, 5.0, 1.0], hs71_cons(), bounds=(1.0, 5.0), method="auglag")
    assert abs(res.fun - HS71_F) < 1e-7
    assert res.max_violation < 1e-8


@pytest.mark.parametrize("method", ["auglag", "slsqp", "trust-constr"])
def test_multiplier_convention_is_shared(method):
    # solution x = (0.6, 0.4, 2): ineq active (lam = 2), eq mu = 0.8, upper bound on x2 (z = 2)
    f = lambda x: (x[0] - 2) ** 2 + (x[1] - 1) ** 2 + (x[2] - 3) ** 2  # noqa: E731
    cons = [tk.Ineq(lambda x: x[0] + x[1] - 1), tk.Eq(lambda x: x[0] - x[1] - 0.2)]
    res = tk.minimize(f, [0.0, 0.0, 0.0], cons, bounds=(-5.0, [5.0, 5.0, 2.0]), method=method)
    # trust-constr's barrier stops about 1e-4 inside the constraints (graded as such)
    acc = 1e-2 if method == "trust-constr" else 1e-5
    assert res.success or method == "trust-constr", res.message
    assert torch.allclose(res.x, torch.tensor([0.6, 0.4, 2.0], dtype=torch.float64), atol=acc)
    assert float(res.multipliers.ineq[0]) == pytest.approx(2.0, abs=acc)
    assert float(res.multipliers.eq[0]) == pytest.approx(0.8, abs=acc)
    assert res.multipliers.bounds.tolist() == pytest.approx([0.0, 0.0, 2.0], abs=acc)
    assert stationarity(f, cons, res.x, res).abs().max() < acc


def test_lower_bound_multiplier_is_negative():
    res = tk.minimize(lambda x: (x + 1) ** 2, 2.0, bounds=(0.0, None), method="auglag")
    assert res.success and abs(float(res.x)) < 1e-12
    assert float(res.multipliers.bounds) == pytest.approx(-2.0, abs=1e-6)


def test_infeasible_problem_reports_infeasible():
    cons = [tk.Ineq(lambda x: x[0] + 1), tk.Ineq(lambda x: 1 - x[0])]  # x <= -1 and x >= 1
    res = tk.minimize(lambda x: (x**2).sum(), [0.0, 0.0], cons, method="auglag")
    assert not res.success
    assert res.status == "infeasible"
    assert res.max_violation > 0.5
    assert "feasible" in res.message


def test_infeasible_auto_is_not_success():
    cons = [tk.Eq(lambda x: x[0] ** 2 + 1)]
    res = tk.minimize(lambda x: x.sum(), [0.5, 0.5], cons)
    assert not res.success and res.status in ("infeasible", "not_converged", "max_iter")


def test_unbounded_problem_reports_unbounded():
    res = tk.minimize(lambda x: -x[0] - x[1], [0.0, 0.0], [tk.Ineq(lambda x: x[1] - 1)],
                      bounds=(0.0, None), method="auglag")
    assert not res.success
    assert res.status == "unbounded"


def test_nan_at_start_reports_nan():
    res = tk.minimize(lambda x: torch.log(x).sum(), [-1.0, 2.0], method="auglag")
    assert res.status == "nan" and not res.success
    assert "NaN" in res.message


def test_nan_region_is_avoided_by_line_search():
    # log is NaN for x < 0; the Newton step from x0 overshoots into it and must backtrack
    res = tk.minimize(lambda x: x[0] - torch.log(x[0]) + (x[1] - 3) ** 2, [5.0, 0.0], method="auglag")
    assert res.success
    assert float(res.x[0]) == pytest.approx(1.0, abs=1e-7)


def test_badly_scaled_problem():
    f = lambda x: 1e6 * ((x[0] - 1) ** 2 + 1e-6 * (x[1] - 2) ** 2)  # noqa: E731
    cons = [tk.Ineq(lambda x: 1e-4 * (x[0] + x[1] - 2)), tk.Eq(lambda x: 1e3 * (x[0] - 2 * x[1] + 1))]
    ref = tk.minimize(f, [0.0, 0.0], cons, method="slsqp")
    res = tk.minimize(f, [0.0, 0.0], cons, method="auglag")
    assert res.success, res.message
    assert res.max_violation < 1e-6
    # the exact solution: x0 = 2 x1 - 1 and x0 + x1 <= 2  ->  active: x1 = 1, x0 = 1
    assert torch.allclose(res.x, torch.tensor([1.0, 1.0], dtype=torch.float64), atol=1e-6)
    assert res.fun <= ref.fun + 1e-6 * max(1, abs(ref.fun))


def test_finite_differences_for_float_functions():
    f = lambda x: float((x[0] - 1) ** 2 + (x[1] - 2.5) ** 2)  # noqa: E731
    g = lambda x: np.array([float(-x[0] + 2 * x[1] - 2), float(x[0] + 2 * x[1] - 6)])  # noqa: E731
    res = tk.minimize(f, [2.0, 0.0], [tk.Ineq(g)], bounds=(0, None), method="auglag")
    assert res.derivatives == "finite-differences"
    assert "finite" in res.message
    assert res.success
    assert torch.allclose(res.x, torch.tensor([1.4, 1.7], dtype=torch.float64), atol=1e-6)


def test_float32_x0_keeps_dtype():
    res = tk.minimize(lambda x: ((x - 1) ** 2).sum(), torch.zeros(3, dtype=torch.float32),
                      [tk.Ineq(lambda x: x.sum() - 1.5)], method="auglag", tol=1e-5)
    assert res.x.dtype == torch.float32
    assert torch.allclose(res.x, torch.full((3,), 0.5), atol=1e-4)


def test_matrix_shaped_variable():
    target = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
    res = tk.minimize(lambda X: ((X - target) ** 2).sum(), torch.zeros(2, 2, dtype=torch.float64),
                      [tk.Eq(lambda X: X.sum(0) - 3)], method="auglag")
    assert res.x.shape == (2, 2) and res.success
    assert res.multipliers.eq[0].shape == (2,)
    assert torch.allclose(res.x.sum(0), torch.tensor([3.0, 3.0], dtype=torch.float64), atol=1e-8)


def test_warm_start_with_primal_and_dual():
    cold = tk.minimize(hs71_f, [1.0, 5.0, 5.0, 1.0], hs71_cons(), bounds=(1.0, 5.0), method="auglag")
    warm = tk.minimize(hs71_f, cold.x, hs71_cons(), bounds=(1.0, 5.0), method="auglag",
                       multipliers0=cold.multipliers)
    assert warm.success
    assert warm.nit < cold.nit
    assert abs(warm.fun - HS71_F) < 1e-7


def test_auto_records_fallback_when_ipopt_fails():
    # IPOPT's iteration limit of 1 makes it stop far from optimal; auto must notice (by our checks)
    res = tk.minimize(hs71_f, [1.0, 5.0, 5.0, 1.0], hs71_cons(), bounds=(1.0, 5.0), max_iter=1)
    assert res.solver.startswith("auto: ipopt")
    bad = tk.minimize(hs71_f, [1.0, 5.0, 5.0, 1.0], hs71_cons(), bounds=(1.0, 5.0), method="ipopt", max_iter=1)
    assert not bad.success and bad.status == "max_iter"
    assert "auglag" in res.solver


# ---- bad input -------------------------------------------------------------------------

def test_unknown_method():
    with pytest.raises(ProblemError, match="unknown method 'newton'.*auglag"):
        tk.minimize(lambda x: x.sum(), [1.0], method="newton")


def test_bounds_lo_above_hi():
    with pytest.raises(ProblemError, match="lo > hi"):
        tk.minimize(lambda x: x.sum(), [1.0, 1.0], bounds=([0, 2], [1, 1]))


def test_bounds_wrong_shape():
    with pytest.raises(ProblemError, match="shape"):
        tk.minimize(lambda x: x.sum(), [1.0, 1.0, 1.0], bounds=([0, 0], [1, 1]))


def test_non_callable_objective_and_constraint():
    with pytest.raises(ProblemError, match="callable"):
        tk.minimize(3.0, [1.0])
    with pytest.raises(ProblemError, match="callable"):
        tk.Ineq("x <= 1")
    with pytest.raises(ProblemError, match="Ineq"):
        tk.minimize(lambda x: x.sum(), [1.0], constraints=[lambda x: x])


def test_vector_objective_rejected():
    with pytest.raises(ProblemError, match="one scalar"):
        tk.minimize(lambda x: x**2, [1.0, 2.0])


def test_nan_x0_and_missing_x0():
    with pytest.raises(ProblemError, match="NaN"):
        tk.minimize(lambda x: x.sum(), [math.nan])
    with pytest.raises(ProblemError, match="x0 is required"):
        tk.minimize(lambda x: x.sum())


def test_function_error_is_explained():
    with pytest.raises(ProblemError, match="objective raised"):
        tk.minimize(lambda x: x[5], [1.0, 2.0])


def test_import_order_keeps_minimize_callable():
    assert callable(tk.Ineq) and callable(tk.minimize)
    res = tk.minimize(lambda x: (x - 3) ** 2, 0.0, [tk.Ineq(lambda x: x - 1)])
    assert isinstance(res, tk.OptimizeResult) and float(res.x) == pytest.approx(1.0, abs=1e-8)


def test_newton_cg_path_matches_dense_path():
    # the Steihaug-CG trust-region path (n > dense_max) and the dense eigendecomposition path
    # reach the same point; degenerate bounds (|x_i| = 0.3 at the solution) included
    g = torch.Generator().manual_seed(3)
    M = torch.randn(30, 30, generator=g, dtype=torch.float64)
    Q = M @ M.T / 30 + torch.eye(30, dtype=torch.float64)
    c = torch.randn(30, generator=g, dtype=torch.float64)
    f = lambda x: 0.5 * x @ Q @ x + c @ x  # noqa: E731
    cons = [tk.Eq(lambda x: x.sum() - 1), tk.Ineq(lambda x: (x**2).sum() - 2)]
    dense = tk.minimize(f, torch.zeros(30, dtype=torch.float64), cons, bounds=(-0.3, 0.3), method="auglag")
    krylov = tk.minimize(f, torch.zeros(30, dtype=torch.float64), cons, bounds=(-0.3, 0.3), method="auglag",
                         options={"dense_max": 5})  # force truncated Newton-CG on Hessian-vector products
    assert dense.success and krylov.success, krylov.message
    assert abs(dense.fun - krylov.fun) < 1e-8 * max(1, abs(dense.fun))
    assert torch.allclose(dense.x, krylov.x, atol=1e-6)
    assert int(((dense.x.abs() - 0.3).abs() < 1e-9).sum()) >= 5  # many active bounds
