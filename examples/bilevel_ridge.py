"""Choose a ridge penalty on validation data with tk.bilevel (implicit differentiation).

    min_t  F(t) = 1/2 |X_val w*(t) - y_val|^2
    w*(t) = argmin_w  1/2 |X w - y|^2 + 1/2 e^t |w|^2        (lambda = e^t)

The hypergradient dF/dt comes from the implicit function theorem (a linear solve with
the inner Hessian, by conjugate gradient or Cholesky on Hessian-vector products), and is
checked here against the closed form of ridge regression.

Run: python examples/bilevel_ridge.py [--quick]
"""

from __future__ import annotations

import argparse

import torch

import tracekit as tk
from solvers.constrained.bilevel_problem import hypergradient, solve_inner


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smaller data set")
    args = ap.parse_args(argv)
    n, d = (60, 10) if args.quick else (400, 60)
    g = torch.Generator().manual_seed(0)
    w_true = torch.randn(d, generator=g, dtype=torch.float64)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = X @ w_true + 3.0 * torch.randn(n, generator=g, dtype=torch.float64)
    Xv = torch.randn(n, d, generator=g, dtype=torch.float64)
    yv = Xv @ w_true + 3.0 * torch.randn(n, generator=g, dtype=torch.float64)

    def inner(t, w):
        return 0.5 * ((X @ w - y) ** 2).sum() + 0.5 * torch.exp(t) * (w * w).sum()

    def outer(t, w):
        return 0.5 * ((Xv @ w - yv) ** 2).sum()

    res = tk.bilevel(outer, inner, x0=torch.tensor(0.0, dtype=torch.float64),
                     y0=torch.zeros(d, dtype=torch.float64), bounds=(-10.0, 10.0))
    lam = float(torch.exp(res.x))
    print(f"lambda* = {lam:.6f} (log {float(res.x):.6f}), validation loss {res.fun:.6f}, "
          f"status {res.status}, {res.time:.2f} s, solver {res.solver}")

    # check the hypergradient at t = 0 against the closed form
    t = torch.tensor(0.0, dtype=torch.float64)
    M = X.T @ X + torch.eye(d, dtype=torch.float64)
    w = torch.linalg.solve(M, X.T @ y)
    exact = (Xv @ w - yv) @ (Xv @ -torch.linalg.solve(M, w))
    sol = solve_inner(inner, t, torch.zeros(d, dtype=torch.float64))
    _, hg, info = hypergradient(outer, inner, t, sol.y)
    rel = abs(float(hg - exact)) / abs(float(exact))
    print(f"hypergradient at t=0: {float(hg):.10f}, closed form {float(exact):.10f}, "
          f"relative error {rel:.1e} ({info['linear_solver']})")
    base = float(outer(t, w))
    print(f"validation loss at lambda=1: {base:.6f}  ->  at lambda*: {res.fun:.6f}")
    return {"lambda": lam, "rel_err": rel, "success": bool(res.success), "improved": res.fun <= base + 1e-9}


if __name__ == "__main__":
    main()
