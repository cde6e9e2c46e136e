"""Infeasibility is reported the same way by every method: where the violation stops
decreasing at a positive value, the status is "infeasible" with that violation, at the
least-violation point (solvers/constrained/infeasibility.py)."""

from __future__ import annotations

import pytest
import torch

from solvers.constrained import Eq, Ineq, minimize

X0 = torch.tensor([3.0, 2.0], dtype=torch.float64)


def objective(x):
    return (x ** 2).sum()


INCONSISTENT_INEQ = [Ineq(lambda x: 1 - x[0]), Ineq(lambda x: x[0])]  # x0 >= 1 and x0 <= 0
INCONSISTENT_EQ = [Eq(lambda x: x[0] - 1), Eq(lambda x: x[0] + 1)]  # x0 == 1 and x0 == -1


@pytest.mark.parametrize("method", ["auglag", "slsqp", "trust-constr", "cvxpy", "auto"])
def test_inconsistent_inequalities_are_infeasible_for_every_method(method):
    r = minimize(objective, X0, INCONSISTENT_INEQ, method=method)
    assert r.status == "infeasible" and not r.success, r
    assert r.max_violation == pytest.approx(0.5, abs=1e-4)  # the least violation: x0 = 1/2
    assert float(r.x[0]) == pytest.approx(0.5, abs=1e-3)
    assert r.message.startswith("locally infeasible: the violation stopped decreasing at 0.5")


@pytest.mark.parametrize("method", ["auglag", "slsqp", "trust-constr"])
def test_inconsistent_equalities_are_infeasible_with_the_least_violation(method):
    r = minimize(objective, X0, INCONSISTENT_EQ, method=method)
    assert r.status == "infeasible", r
    assert r.max_violation == pytest.approx(1.0, abs=1e-4)
    assert r.message.startswith("locally infeasible")


def test_infeasible_within_bounds_is_measured_inside_the_bounds():
    # x0 >= 2 cannot hold with x0 in [-1, 1]: the least violation is 1, at the bound
    r = minimize(objective, X0, [Ineq(lambda x: 2 - x[0])], bounds=(-1.0, 1.0), method="slsqp")
    assert r.status == "infeasible" and r.max_violation == pytest.approx(1.0, abs=1e-6)


def test_a_method_stopped_early_on_a_feasible_problem_is_not_called_infeasible():
    cons = [Ineq(lambda x: 1 - x[0])]  # feasible: x0 >= 1
    r = minimize(objective, X0 * 50, cons, method="slsqp", max_iter=1)
    assert r.status != "infeasible", r


def test_a_cvxpy_problem_proved_infeasible_says_so():
    import cvxpy as cp

    x = cp.Variable(2)
    r = minimize(cp.Problem(cp.Minimize(cp.sum_squares(x)), [x[0] >= 1, x[0] <= 0]))
    assert r.status == "infeasible" and r.message.startswith("infeasible")


@pytest.mark.parametrize("method", ["auglag", "auto"])
def test_a_diverged_unbounded_problem_is_never_graded_optimal(method):
    # -sum(x) with no constraints: the iterates run off to 1e21 where the KKT residual
    # reads 0 in floating point; that point is no solution
    res = minimize(lambda x: -x.sum(), [0.0, 0.0], method=method)
    assert not res.success and res.status == "unbounded"
