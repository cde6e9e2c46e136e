"""Constrained portfolio: maximize expected return under a risk limit, through tk.minimize.

    max_w  mu.w   s.t.  w' S w <= sigma^2   (Ineq, nonlinear)
                        sum(w) == 1         (Eq)
                        0 <= w <= cap       (bounds)

First one problem with method="auto" (and the same problem in cvxpy for comparison),
then the efficient frontier: many risk limits solved as one batch (batched=True), each
instance with its own sigma, in one torch computation.

Run: python examples/constrained_portfolio.py [--quick]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import torch

import tracekit as tk


def make_market(n_assets: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected returns and a covariance matrix from a small factor model."""
    g = torch.Generator().manual_seed(seed)
    mu = 0.02 + 0.10 * torch.rand(n_assets, generator=g, dtype=torch.float64)
    F = torch.randn(n_assets, 3, generator=g, dtype=torch.float64) * 0.15
    S = F @ F.T + torch.diag(0.02 + 0.05 * torch.rand(n_assets, generator=g, dtype=torch.float64))
    return mu, S


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer assets and frontier points")
    args = ap.parse_args(argv)
    n, points = (6, 4) if args.quick else (10, 24)
    cap = 0.4
    mu, S = make_market(n)

    # --- one problem ---------------------------------------------------------------------
    sigma = 0.14
    res = tk.minimize(
        lambda w: -(mu @ w),
        torch.full((n,), 1.0 / n, dtype=torch.float64),
        constraints=[tk.Ineq(lambda w: w @ S @ w - sigma**2, name="risk"),
                     tk.Eq(lambda w: w.sum() - 1, name="budget")],
        bounds=(0.0, cap),
    )
    print(f"single problem: solver={res.solver} status={res.status} return={-res.fun:.6f} "
          f"risk={float(res.x @ S @ res.x) ** 0.5:.6f} violation={res.max_violation:.1e} "
          f"kkt={res.kkt_residual:.1e} time={res.time * 1e3:.1f} ms")
    print(f"  risk multiplier (>= 0, active limit): {float(res.multipliers.ineq[0]):.6f}")
    out: dict[str, Any] = {"single": {"return": -res.fun, "success": res.success, "solver": res.solver}}
    try:
        import cvxpy as cp

        w = cp.Variable(n)
        prob = cp.Problem(cp.Maximize(mu.numpy() @ w),
                          [cp.quad_form(w, cp.psd_wrap(S.numpy())) <= sigma**2, cp.sum(w) == 1, w >= 0, w <= cap])
        rc = tk.minimize(prob)
        print(f"  cvxpy ({rc.solver}) return={rc.fun:.6f}  |difference|={abs(rc.fun + res.fun):.1e}")
        out["cvxpy_return"] = rc.fun
    except ImportError:
        pass

    # --- the efficient frontier as one batch ----------------------------------------------
    sigmas = torch.linspace(0.14, 0.22, points, dtype=torch.float64)
    W0 = torch.full((points, n), 1.0 / n, dtype=torch.float64)
    t0 = time.perf_counter()
    frontier = tk.minimize(
        lambda W: -(W @ mu),                                   # (B,)
        W0,
        constraints=[tk.Ineq(lambda W: ((W @ S) * W).sum(-1) - sigmas**2),  # (B,)
                     tk.Eq(lambda W: W.sum(-1) - 1)],
        bounds=(0.0, cap),
        batched=True,
    )
    elapsed = time.perf_counter() - t0
    returns = -frontier.fun
    print(f"frontier: {points} problems in one batch, {frontier.message}, {elapsed:.2f} s "
          f"({frontier.solver})")
    for i in range(0, points, max(1, points // 6)):
        print(f"  sigma={float(sigmas[i]):.3f}  return={float(returns[i]):.5f}  "
              f"status={frontier.status[i]}")
    # returns must not decrease as the risk limit grows
    monotone = bool((returns[1:] >= returns[:-1] - 1e-7).all())
    print(f"  frontier is monotone: {monotone}")
    out.update({"frontier_solved": int(frontier.success.sum()), "points": points, "monotone": monotone})
    return out


if __name__ == "__main__":
    main()
