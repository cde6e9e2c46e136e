"""method="ipopt" (IPOPT through CasADi), the symbolic capture, and the second-order grade.

Everything runs the real IPOPT bundled in CasADi's wheel; the capture is compared with
the torch functions it stands for, and every result is graded by the shared checks.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tracekit as tk
from solvers.constrained.constraints import ProblemError
from solvers.constrained.symbolic import Sym, Unsupported, capture

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import hock_schittkowski as HS  # noqa: E402
import scalable_problems as SP  # noqa: E402


def hs71():
    f = lambda x: x[0] * x[3] * (x[0] + x[1] + x[2]) + x[2]  # noqa: E731
    cons = [tk.Ineq(lambda x: 25 - x.prod()), tk.Eq(lambda x: (x**2).sum() - 40)]
    return f, cons


# ---- IPOPT behind tk.minimize -------------------------------------------------------------

def test_ipopt_solves_hs71_with_the_shared_multiplier_convention():
    f, cons = hs71()
    res = tk.minimize(f, [1.0, 5.0, 5.0, 1.0], cons, bounds=(1.0, 5.0), method="ipopt")
    ref = tk.minimize(f, [1.0, 5.0, 5.0, 1.0], cons, bounds=(1.0, 5.0), method="auglag")
    assert res.success and res.status == "optimal", res.message
    assert res.solver == "ipopt" and res.info["ipopt_derivatives"] == "captured"
    assert res.fun == pytest.approx(17.0140172891563, abs=1e-7)
    assert float(res.multipliers.ineq[0]) == pytest.approx(float(ref.multipliers.ineq[0]), rel=1e-5)
    assert float(res.multipliers.eq[0]) == pytest.approx(float(ref.multipliers.eq[0]), rel=1e-5)
    assert float(res.multipliers.bounds[0]) < 0  # x0 sits on its lower bound


@pytest.mark.parametrize("problem", [p for p in HS.PROBLEMS if not p.degenerate], ids=lambda p: p.name)
def test_auto_solves_the_hock_schittkowski_set(problem):
    f, cons, bounds, x0 = HS.torch_problem(problem)
    res = tk.minimize(f, x0, cons, bounds=bounds)
    assert res.success, f"{problem.name}: {res.message}"
    assert res.solver.startswith("auto: ipopt")
    assert abs(res.fun - problem.fstar) <= 1e-6 * max(1.0, abs(problem.fstar))


def test_functions_the_capture_cannot_model_run_on_torch_callbacks():
    # a data-dependent branch (torch.where) and a numpy round trip are not captured;
    # IPOPT then gets torch derivatives and still solves the problem
    f = lambda x: torch.where(x[0] > -100, x[0] * x[3] * (x[0] + x[1] + x[2]) + x[2], x[0])  # noqa: E731
    _, cons = hs71()
    res = tk.minimize(f, [1.0, 5.0, 5.0, 1.0], cons, bounds=(1.0, 5.0), method="ipopt")
    assert res.success and res.info["ipopt_derivatives"] == "torch", res.message
    assert res.fun == pytest.approx(17.0140172891563, abs=1e-7)


def test_a_capture_that_disagrees_with_torch_is_discarded():
    # the function behaves differently when it is not handed a tensor: the value check sees it
    def f(x):
        shift = 0.0 if torch.is_tensor(x) else 1.0
        return ((x - 1) ** 2).sum() + shift

    res = tk.minimize(f, [3.0, -2.0], [tk.Ineq(lambda x: x[0] + x[1] - 1)], method="ipopt")
    assert res.success and res.info["ipopt_derivatives"] == "torch"
    assert res.fun == pytest.approx(0.5, abs=1e-8)


def test_float_functions_get_a_quasi_newton_hessian():
    f = lambda x: float((x[0] - 1) ** 2 + (x[1] - 2.5) ** 2)  # noqa: E731
    res = tk.minimize(f, [2.0, 0.0], [tk.Ineq(lambda x: x[0] + x[1] - 3)], method="ipopt")
    assert res.success and res.info["ipopt_derivatives"] == "torch, quasi-Newton"
    assert res.derivatives == "mixed"  # the constraint is a torch function
    assert res.x.tolist() == pytest.approx([0.75, 2.25], abs=1e-5)


def test_float32_start_is_captured_and_keeps_its_dtype():
    x0 = torch.tensor([0.5, 0.5, 0.5])
    res = tk.minimize(lambda x: ((x - torch.tensor([1.0, 2.0, 3.0])) ** 2).sum(), x0,
                      [tk.Eq(lambda x: x.sum() - 3)], method="ipopt", tol=1e-6)
    assert res.success and res.info["ipopt_derivatives"] == "captured"
    assert res.x.dtype == torch.float32
    assert res.x.tolist() == pytest.approx([0.0, 1.0, 2.0], abs=1e-4)


def test_ipopt_iteration_limit_is_reported():
    f, cons = hs71()
    res = tk.minimize(f, [1.0, 5.0, 5.0, 1.0], cons, bounds=(1.0, 5.0), method="ipopt", max_iter=2)
    assert not res.success and res.status == "max_iter"


def test_ipopt_bad_input_is_explained():
    f, cons = hs71()
    with pytest.raises(ProblemError, match="one instance.*auglag"):
        tk.minimize(lambda x: (x**2).sum(-1), torch.ones(3, 2, dtype=torch.float64), method="ipopt", batched=True)
    with pytest.raises(ProblemError, match="IPOPT rejected"):
        tk.minimize(f, [1.0, 5.0, 5.0, 1.0], cons, bounds=(1.0, 5.0), method="ipopt",
                    options={"no_such_option": 3})
    with pytest.raises(ProblemError, match="option names are strings"):
        tk.minimize(f, [1.0, 5.0, 5.0, 1.0], cons, bounds=(1.0, 5.0), method="ipopt", options={1: 2})


def test_infeasible_problem_is_not_called_unbounded():
    # x0^2 + 1 = 0 has no solution while x1 can run to -inf: IPOPT's iterates diverge
    res = tk.minimize(lambda x: x.sum(), [0.5, 0.5], [tk.Eq(lambda x: x[0] ** 2 + 1)], method="ipopt")
    assert not res.success and res.status == "infeasible" and res.max_violation > 0.5


# ---- the symbolic stand-in ----------------------------------------------------------------

A = torch.tensor([[1.0, 2.0, 0.5], [-1.0, 0.0, 3.0]], dtype=torch.float64)
EXPRESSIONS = {
    "arithmetic": lambda x: (2 * x[0] - x[1] / 3 + 1) ** 2 - x[2] * x[0] + 1 / (1 + x[1] ** 2),
    "reductions": lambda x: x.sum() + x.mean() * x.prod() + (x**2).sum().sqrt() + torch.linalg.norm(x),
    "slices": lambda x: ((x[1:] - x[:-1] ** 2) ** 2).sum() + x[::2].sum() + x[torch.tensor([2, 0])].sum(),
    "matmul": lambda x: (A @ x).sum() + x @ x + torch.dot(x, x) + (A.T @ (A @ x))[1],
    "unary": lambda x: torch.sin(x[0]) + torch.exp(x[1]) * torch.log(1 + x[2] ** 2) + torch.tanh(x).sum()
    + x.abs().sum() + torch.sigmoid(x[0]) + x.cos().sum(),
    "stack_cat": lambda x: torch.stack([x[0] * x[1], x[2] - 1]).sum() + torch.cat([x, x[:1]]).prod(),
    "clamp": lambda x: torch.clamp(x, min=-0.5, max=0.7).sum() + torch.maximum(x, 0.1 * x).sum(),
    "batch_spelling": lambda x: x[..., 0] * x[..., 2] + x[..., 1:].sum(-1) + x.prod(-1),
    "tensor_left": lambda x: (torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64) * x).sum() - 2.0 ** x[0],
}


@pytest.mark.parametrize("name", sorted(EXPRESSIONS))
def test_capture_matches_torch(name):
    import casadi as ca

    fn = EXPRESSIONS[name]
    got = capture([fn], (3,))
    assert got is not None, name
    x, (expr,) = got
    F = ca.Function("f", [x], [expr])
    for pt in ([0.3, -1.2, 2.0], [1.5, 0.25, -0.75]):
        t = torch.tensor(pt, dtype=torch.float64)
        assert float(F(np.array(pt))) == pytest.approx(float(fn(t)), rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("fn", [
    lambda x: x[0] if x[1] > 0 else x[1],  # a Python branch on a value
    lambda x: x[0].item() + x[1],  # leaves autograd
    lambda x: torch.as_tensor(np.asarray(x)).sum(),  # numpy
    lambda x: x.max(),  # not modeled
], ids=["branch", "item", "numpy", "max"])
def test_capture_refuses_what_it_cannot_model(fn):
    assert capture([fn], (3,)) is None


def test_sym_rejects_writes_and_large_dense_constants():
    import casadi as ca

    X = Sym(ca.SX.sym("x", 3), (3,))
    with pytest.raises(Unsupported):
        X[0] = 1.0
    big = torch.ones(60, 60, dtype=torch.float64)
    Y = Sym(ca.SX.sym("y", 60), (60,))
    with pytest.raises(Unsupported, match="dense constant"):
        big @ Y


# ---- second-order and degeneracy grading ---------------------------------------------------

@pytest.mark.parametrize("method", ["auto", "ipopt", "auglag", "slsqp"])
def test_stationary_start_of_an_unbounded_problem_is_never_success(method):
    res = tk.minimize(lambda x: -(x**2).sum(), [0.0, 0.0], method=method)
    assert not res.success
    assert res.status in ("unbounded", "not_converged", "max_iter", "nan")


@pytest.mark.parametrize("method", ["auto", "ipopt", "auglag", "slsqp"])
def test_an_inflection_point_is_not_a_minimum(method):
    # x^3 at 0: stationary, Hessian 0 (second order cannot tell), the objective falls along it
    res = tk.minimize(lambda x: (x**3).sum(), [0.0], method=method)
    assert not res.success
    assert res.status == "unbounded" or "not a minimum" in res.message


def test_a_flat_valley_of_minima_stays_optimal():
    res = tk.minimize(lambda x: (x[0] - x[1]) ** 2, [0.0, 0.0])
    assert res.success and res.solver == "auto: ipopt"


@pytest.mark.parametrize("method", ["auto", "ipopt", "slsqp"])
def test_a_saddle_is_left_for_the_minimum_beside_it(method):
    # (0, 0) is stationary (a saddle); the minima are (0, +-1) on the bounds, f = -1
    res = tk.minimize(lambda x: x[0] ** 2 - x[1] ** 2, [0.0, 0.0], bounds=(-1.0, 1.0), method=method)
    assert res.success, res.message
    assert res.fun == pytest.approx(-1.0, abs=1e-7) and abs(abs(float(res.x[1])) - 1) < 1e-7
    assert "saddle" in res.solver


def test_a_maximum_along_an_equality_is_flagged_when_no_step_helps():
    # on the circle, (0, 1) is the maximum of x1; from there no step off stays feasible to
    # first order, so the point is reported, not accepted
    cons = [tk.Eq(lambda x: (x**2).sum() - 1)]
    res = tk.minimize(lambda x: x[1], [0.0, 1.0], cons, method="ipopt")
    assert res.success and res.fun == pytest.approx(-1.0, abs=1e-7) or (
        not res.success and "not a minimum" in res.message)


@pytest.mark.parametrize("method", ["auto", "ipopt", "auglag"])
def test_hs13_cusp_is_not_called_optimal(method):
    p = HS.get("HS13")
    f, cons, bounds, x0 = HS.torch_problem(p)
    res = tk.minimize(f, x0, cons, bounds=bounds, method=method)
    assert not res.success and res.status == "not_converged"
    assert "multipliers" in res.message


def test_large_but_settled_multipliers_are_accepted():
    # CUTEst SNAKE: nearly parallel constraint gradients, multipliers 1e4 at a regular point
    cons = [tk.Ineq(lambda x: torch.sin(x[0]) - x[1]), tk.Ineq(lambda x: x[1] - torch.sin(x[0]) - 1e-4 * x[0])]
    res = tk.minimize(lambda x: x[0], torch.tensor([1.0, 5.0], dtype=torch.float64), cons)
    assert res.success, res.message
    assert abs(res.fun) < 1e-3  # multipliers 1e4 x violation 1e-8: objective within ~1e-4


# ---- n = 1000 ---------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("family", ["qp_banded", "rosenbrock_ball"])
def test_auglag_and_auto_converge_at_n_1000(family):
    ops = SP.torch_ops()
    f, ineq, eq, lo, hi, x0 = SP.FAMILIES[family](1000)
    cons = [tk.Ineq(lambda x: ineq(x, ops))] + ([tk.Eq(lambda x: eq(x, ops))] if eq else [])
    bounds = (torch.tensor(lo), torch.tensor(hi))
    auto = tk.minimize(lambda x: f(x, ops), torch.tensor(x0), cons, bounds=bounds)
    al = tk.minimize(lambda x: f(x, ops), torch.tensor(x0), cons, bounds=bounds, method="auglag")
    assert auto.success and al.success, (auto.message, al.message)
    assert auto.info["ipopt_derivatives"] == "captured"
    assert math.isclose(auto.fun, al.fun, rel_tol=1e-6) or family == "rosenbrock_ball"
