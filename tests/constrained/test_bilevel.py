"""tk.bilevel and the implicit-differentiation hypergradient."""

from __future__ import annotations

import pytest
import torch

import tracekit as tk
from solvers.constrained.bilevel_problem import hypergradient, solve_inner

D = torch.float64


def ridge_data(n=60, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n, d, generator=g, dtype=D)
    w = torch.randn(d, generator=g, dtype=D)
    b = A @ w + 1.5 * torch.randn(n, generator=g, dtype=D)
    Av = torch.randn(n, d, generator=g, dtype=D)
    bv = Av @ w + 1.5 * torch.randn(n, generator=g, dtype=D)
    return A, b, Av, bv


def ridge_closed_form(A, b, Av, bv, t):
    lam = torch.exp(t)
    M = A.T @ A + lam * torch.eye(A.shape[1], dtype=D)
    w = torch.linalg.solve(M, A.T @ b)
    dw = -torch.linalg.solve(M, w)
    return w, lam * ((Av @ w - bv) @ (Av @ dw))


@pytest.mark.parametrize("linear_solver", ["dense", "cg"])
def test_ridge_hypergradient_matches_closed_form(linear_solver):
    A, b, Av, bv = ridge_data()
    inner = lambda t, w: 0.5 * ((A @ w - b) ** 2).sum() + 0.5 * torch.exp(t) * (w * w).sum()  # noqa: E731
    outer = lambda t, w: 0.5 * ((Av @ w - bv) ** 2).sum()  # noqa: E731
    t = torch.tensor(0.7, dtype=D)
    w_true, g_true = ridge_closed_form(A, b, Av, bv, t)
    sol = solve_inner(inner, t, torch.zeros(A.shape[1], dtype=D))
    assert sol.success and (sol.y - w_true).abs().max() < 1e-10
    _, g, info = hypergradient(outer, inner, t, sol.y, linear_solver=linear_solver)
    assert info["linear_solver"].startswith(linear_solver)
    assert abs(float(g - g_true)) / abs(float(g_true)) < 1e-8


def test_bilevel_ridge_finds_stationary_lambda():
    A, b, Av, bv = ridge_data()
    inner = lambda t, w: 0.5 * ((A @ w - b) ** 2).sum() + 0.5 * torch.exp(t) * (w * w).sum()  # noqa: E731
    outer = lambda t, w: 0.5 * ((Av @ w - bv) ** 2).sum()  # noqa: E731
    res = tk.bilevel(outer, inner, torch.tensor(0.0, dtype=D), torch.zeros(A.shape[1], dtype=D),
                     bounds=(-8.0, 8.0))
    assert res.success, res.message
    w_true, g = ridge_closed_form(A, b, Av, bv, res.x)
    assert (res.y - w_true).abs().max() < 1e-8
    assert abs(float(g)) < 1e-5 or float(res.x) in (-8.0, 8.0)
    # it is a minimum along lambda: nearby values are not better
    F = lambda t: float(0.5 * ((Av @ ridge_closed_form(A, b, Av, bv, torch.tensor(t, dtype=D))[0] - bv) ** 2).sum())  # noqa: E731
    assert F(float(res.x)) <= min(F(float(res.x) - 0.05), F(float(res.x) + 0.05)) + 1e-9


def fd_outer_value(outer, inner, x, y0, eps=1e-6, **kw):
    def value(xv):
        sol = solve_inner(inner, xv, y0, **kw)
        return float(outer(xv, sol.y))
    grads = []
    for i in range(x.numel()):
        e = torch.zeros_like(x)
        e.view(-1)[i] = eps
        grads.append((value(x + e) - value(x - e)) / (2 * eps))
    return torch.tensor(grads, dtype=D)


def test_hypergradient_with_active_inner_bounds():
    # y*(x) = clip(x * c, 0, 1) elementwise: some coordinates sit on a bound
    c = torch.tensor([0.3, 2.0, -1.0, 0.8], dtype=D)
    inner = lambda x, y: 0.5 * ((y - x * c) ** 2).sum()  # noqa: E731
    outer = lambda x, y: ((y - 0.5) ** 2 * torch.arange(1, 5, dtype=D)).sum() + 0.1 * x**2  # noqa: E731
    x = torch.tensor(0.9, dtype=D)
    kw = {"inner_bounds": (0.0, 1.0)}
    sol = solve_inner(inner, x, torch.full((4,), 0.5, dtype=D), **kw)
    assert torch.allclose(sol.y, (x * c).clamp(0, 1), atol=1e-9)
    _, g, info = hypergradient(outer, inner, x, sol)
    assert info["free"] == 2  # two coordinates are fixed at bounds
    g_fd = fd_outer_value(outer, inner, x.reshape(1), torch.full((4,), 0.5, dtype=D),
                          **kw)
    assert abs(float(g) - float(g_fd)) < 1e-5


def test_hypergradient_with_inner_equality_and_active_inequality():
    # min_y |y - x|^2 s.t. sum(y) == 1, y0 <= 0.1 (active for the x below)
    inner = lambda x, y: ((y - x) ** 2).sum()  # noqa: E731
    outer = lambda x, y: (y**3).sum() + (x**2).sum()  # noqa: E731
    cons = [tk.Eq(lambda x, y: y.sum() - 1), tk.Ineq(lambda x, y: y[0] - 0.1)]
    x = torch.tensor([0.8, 0.1, 0.3], dtype=D)
    y0 = torch.zeros(3, dtype=D)
    sol = solve_inner(inner, x, y0, inner_constraints=cons)
    assert sol.success and abs(float(sol.y[0]) - 0.1) < 1e-8
    _, g, info = hypergradient(outer, inner, x, sol, inner_constraints=cons)
    assert info["active_constraints"] == 2
    g_fd = fd_outer_value(outer, inner, x, y0, inner_constraints=cons)
    assert torch.allclose(g, g_fd, atol=1e-5)


def test_bilevel_bad_input():
    with pytest.raises(ValueError, match="outer must be a callable"):
        tk.bilevel(None, lambda x, y: (y**2).sum(), 0.0, [0.0])
