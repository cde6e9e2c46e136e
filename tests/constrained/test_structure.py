"""Constant derivatives on IPOPT's torch-callback path (`oracle.TorchOracle.structure`):
affine constraints and quadratic objectives are found from torch's graph, checked at a
second point and at the solution, and never recomputed; piecewise functions that only look
constant are caught; results agree with the captured path and with SciPy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import minimize as scipy_minimize

import tracekit as tk
from solvers.constrained.constraints import Evaluator, Problem
from solvers.constrained.oracle import TorchOracle

TORCH = {"capture": False}  # the torch-callback path, as for functions the capture cannot model


def dense_qp(n=30, m=12, seed=0):
    rng = np.random.default_rng(seed)
    M = rng.standard_normal((n, n)) / np.sqrt(n)
    Q, c = M @ M.T + 0.1 * np.eye(n), rng.standard_normal(n)
    A = rng.standard_normal((m, n)) / np.sqrt(n)
    b = A @ np.full(n, 0.1) + 0.1
    return Q, c, A, b


def test_a_qp_with_linear_constraints_gets_constant_derivatives_and_the_same_solution():
    Q, c, A, b = (torch.tensor(v) for v in dense_qp())
    f = lambda x: 0.5 * x @ (Q @ x) + c @ x  # noqa: E731
    cons = [tk.Ineq(lambda x: A @ x - b), tk.Eq(lambda x: x[:3].sum() - 0.2)]
    x0 = torch.zeros(30, dtype=torch.float64)
    res = tk.minimize(f, x0, cons, bounds=(-1, 1), method="ipopt", options=TORCH)
    assert res.success, res.message
    assert res.info["ipopt_derivatives"] == "torch"
    assert res.info["ipopt_constant"] == ["Jacobian", "objective Hessian"]
    captured = tk.minimize(f, x0, cons, bounds=(-1, 1), method="ipopt")
    assert captured.info["ipopt_derivatives"] == "captured"
    assert res.fun == pytest.approx(captured.fun, abs=1e-8)
    ref = scipy_minimize(lambda v: float(f(torch.tensor(v))), np.zeros(30), method="SLSQP",
                         jac=lambda v: (Q.numpy() @ v + c.numpy()), bounds=[(-1, 1)] * 30,
                         constraints=[{"type": "ineq", "fun": lambda v: -(A.numpy() @ v - b.numpy())},
                                      {"type": "eq", "fun": lambda v: v[:3].sum() - 0.2}], tol=1e-12)
    assert res.fun == pytest.approx(ref.fun, abs=1e-7)
    plain = tk.minimize(f, x0, cons, bounds=(-1, 1), method="ipopt", options={**TORCH, "structure": False})
    assert "ipopt_constant" not in plain.info and plain.fun == pytest.approx(res.fun, abs=1e-8)


def oracle_for(f, ineq, x0):
    prob, X0 = Problem.build(f, x0, [tk.Ineq(g) for g in ineq])
    ev = Evaluator(prob, X0)
    return TorchOracle(ev, X0), X0[0].numpy()


def test_which_parts_are_constant_is_read_per_part():
    # nonlinear constraint, quadratic objective: only the objective Hessian is constant, and
    # the Lagrangian Hessian still adds the constraint's curvature
    f = lambda x: (x**2).sum() + x[0] * x[1]  # noqa: E731
    g = lambda x: (x[0] ** 3 + x[1]).reshape(1)  # noqa: E731
    oracle, x0 = oracle_for(f, [g], [0.5, -0.2])
    oracle.structure(x0, x0 + 0.3)
    assert oracle.J_const is None and oracle.Hf_const is not None
    x, y = np.array([0.7, 0.1]), np.array([2.0])
    H = oracle.hessian(x, 0.5, y)
    want = 0.5 * np.array([[2.0, 1.0], [1.0, 2.0]]) + 2.0 * np.array([[6 * 0.7, 0.0], [0.0, 0.0]])
    assert H == pytest.approx(want, abs=1e-12)
    # nonquadratic objective, linear constraint: only the Jacobian
    oracle, x0 = oracle_for(lambda x: torch.exp(x).sum(), [lambda x: (2 * x[0] - x[1]).reshape(1)], [0.1, 0.2])
    oracle.structure(x0, x0 + 0.3)
    assert oracle.Hf_const is None and oracle.J_const == pytest.approx(np.array([[2.0, -1.0]]))
    gf, J = oracle.first(np.array([1.0, 2.0]))
    assert gf == pytest.approx(np.exp([1.0, 2.0])) and J is oracle.J_const


def test_a_piecewise_function_that_looks_constant_is_caught():
    # clamp's gradient does not depend on x through the graph, yet it changes at the kinks
    g = lambda x: x.clamp(-0.5, 0.5).sum().reshape(1)  # noqa: E731
    oracle, x0 = oracle_for(lambda x: (x**2).sum(), [g], [0.0, 0.0])
    oracle.structure(x0, np.array([0.9, 0.1]))  # the second point is past a kink
    assert oracle.J_const is None
    oracle, x0 = oracle_for(lambda x: (x**2).sum(), [g], [0.0, 0.0])
    oracle.structure(x0, np.array([0.1, 0.1]))  # the same piece: it looks constant ...
    assert oracle.J_const is not None
    assert not oracle.constants_hold(np.array([0.9, 0.1]))  # ... until checked where it is not
    assert oracle.J_const is None and oracle.first(np.array([0.9, 0.1]))[1].tolist() == [[0.0, 1.0]]


def test_a_solution_past_a_kink_is_solved_again_without_constants():
    # min (x0-2)^2 + (x1+3)^2 with max(x0, 3 x0 - 0.4) + x1 <= 1.5: slope 1 around the start,
    # slope 3 where the solution is, (1.67, -3.11); constants read at the start would be wrong there
    g = lambda x: (torch.maximum(x[0], 3 * x[0] - 0.4) + x[1] - 1.5).reshape(1)  # noqa: E731
    f = lambda x: (x[0] - 2) ** 2 + (x[1] + 3) ** 2  # noqa: E731
    res = tk.minimize(f, [0.0, 0.0], [tk.Ineq(g)], method="ipopt", options=TORCH)
    assert res.success, res.message
    assert res.x.tolist() == pytest.approx([2 - 0.33, -3.11], abs=1e-6)
    assert "ipopt_constant" not in res.info  # solved again without constants


def test_a_float32_qp_and_an_affine_objective_keep_their_constants():
    # float32 derivatives round at 1e-7: the check's tolerance follows the dtype
    Q, c, A, b = (torch.tensor(v, dtype=torch.float32) for v in dense_qp(n=12, m=4))
    res = tk.minimize(lambda x: 0.5 * x @ (Q @ x) + c @ x, torch.zeros(12), [tk.Ineq(lambda x: A @ x - b)],
                      bounds=(-1, 1), method="ipopt", options=TORCH, tol=1e-6)
    assert res.success and res.x.dtype == torch.float32
    assert res.info["ipopt_constant"] == ["Jacobian", "objective Hessian"]
    # an affine objective (its gradient does not depend on x): a zero Hessian, kept
    lin = tk.minimize(lambda x: x.sum(), [0.5, 0.5], [tk.Ineq(lambda x: (x**2).sum().reshape(1) - 1)],
                      method="ipopt", options=TORCH)
    assert lin.success and lin.info["ipopt_constant"] == ["objective Hessian"]
    assert lin.x.tolist() == pytest.approx([-0.5**0.5, -0.5**0.5], abs=1e-6)
