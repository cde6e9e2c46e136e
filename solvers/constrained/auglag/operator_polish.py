"""The active-set Newton polish without matrices, for problems too large to factor.

The same step as ``polish.polish`` (ALGENCAN's acceleration with a primal-dual active-set
update), but nothing of size ``n x n`` or ``m x n`` is formed: the Lagrangian's Hessian is
applied by Hessian-vector products, the constraint Jacobian by Jacobian-vector products
(``J v``, a double backward pass) and their transposes (``J^T w``, one backward pass), and
each KKT system is solved by MINRES. The second-order check is a Lanczos probe: CG on the
Hessian restricted to the free variables, from a random vector, must meet no negative
curvature; a point it cannot vouch for is not returned as polished (the augmented
Lagrangian then goes on as without a polish).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..constraints import Evaluator
from ..krylov import cg, minres
from .polish import (
    BestIterate,
    Lagrangian,
    active_set_update,
    apply_step,
    bound_test,
    initial_active_set,
)

#: MINRES per Newton step, and the Lanczos probe of the second-order check
KKT_RTOL = 1e-12
KKT_MAXITER = 2000
PROBE_MAXITER = 300
#: Newton steps without a better KKT residual before the polish gives up
PATIENCE = 5

Operator = Callable[[torch.Tensor], torch.Tensor]


def constraint_operators(ev: Evaluator, X: torch.Tensor, sc: torch.Tensor) -> tuple[torch.Tensor, Operator, Operator]:
    """Scaled constraint values ``c = [g, h] * sc`` ``(B, m)`` at ``X`` with ``J v`` and
    ``J^T w`` as closures (no Jacobian is formed)."""
    B, n = X.shape
    Xr = X.detach().requires_grad_(True)
    with torch.enable_grad():
        _, g, h = ev.evaluate(Xr)
        c = torch.cat([g, h], dim=1) * sc
    m = c.shape[1]
    if not c.requires_grad or m == 0:
        return c.detach(), (lambda V: X.new_zeros(B, m)), (lambda W: torch.zeros_like(X))
    with torch.enable_grad():
        u = torch.zeros_like(c).requires_grad_(True)
        (jt_u,) = torch.autograd.grad(c, Xr, grad_outputs=u, create_graph=True, allow_unused=True)

    def jtv(W: torch.Tensor) -> torch.Tensor:
        (r,) = torch.autograd.grad(c, Xr, grad_outputs=W, retain_graph=True, allow_unused=True)
        return torch.zeros_like(X) if r is None else r.detach()

    def jv(V: torch.Tensor) -> torch.Tensor:  # J^T u is linear in u: its derivative in u along V is J V
        if jt_u is None or not jt_u.requires_grad:
            return X.new_zeros(B, m)
        (r,) = torch.autograd.grad(jt_u, u, grad_outputs=V, retain_graph=True, allow_unused=True)
        return X.new_zeros(B, m) if r is None else r.detach()

    return c.detach(), jv, jtv


def polish_operator(
    lag: Lagrangian,
    X: torch.Tensor,
    lam: torch.Tensor,
    mu: torch.Tensor,
    rho: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    rows: torch.Tensor,
    tol: float,
    max_iter: int = 40,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``polish.polish`` on operators: returns the best ``X, lam, mu`` (scaled multipliers)
    and ``second_order`` per row (see the module docstring)."""
    B, n = X.shape
    mI = lam.shape[1]
    dt = X.dtype
    sc = torch.cat([lag.sg, lag.sh], dim=1)
    c, _, _ = constraint_operators(lag.ev, X, sc)
    y, act = initial_active_set(lam, mu, rho, c)
    on_bounds = bound_test(lo, hi, dt)

    tried = rows
    rows = rows.clone()
    best = BestIterate(X, y, act, PATIENCE)
    fixed = torch.zeros_like(X, dtype=torch.bool)
    for it in range(max_iter):
        lag.newton_steps += 1
        lag.lam, lag.mu = y[:, :mI], y[:, mI:]
        _, G, hvp = lag.hvp_operator(X)
        c, jv, jtv = constraint_operators(lag.ev, X, sc)
        X, y, act, fixed, res = active_set_update(it, X, G, c, y, act, fixed, lo, hi, on_bounds, mI)
        rows = best.update(rows, X, y, act, res, G)
        if not rows.any():
            break
        free = (~fixed).to(dt) * rows[:, None]
        a = act.to(dt)

        def kkt(Z: torch.Tensor, free: torch.Tensor = free, a: torch.Tensor = a, hvp: Operator = hvp,
                jv: Operator = jv, jtv: Operator = jtv) -> torch.Tensor:
            dx, dy = Z[:, :n], Z[:, n:]
            fx = free * dx
            top = free * (hvp(fx) + jtv(a * dy)) + (1.0 - free) * dx
            return torch.cat([top, a * jv(fx) + (1.0 - a) * dy], 1)

        rhs = -torch.cat([G * free, c * a + y * (1.0 - a)], 1) * rows[:, None]
        sol, _ = minres(kkt, torch.nan_to_num(rhs), rtol=KKT_RTOL, maxiter=KKT_MAXITER)
        X, y, fixed, rows = apply_step(X, y, sol, free, fixed, rows, lo, hi)
    second_order = torch.zeros(B, dtype=torch.bool, device=X.device)
    best_X, best_y = best.X, best.y
    near = best.near(tried, tol)
    if near.any():
        lag.lam, lag.mu = best_y[:, :mI], best_y[:, mI:]
        _, G, hvp = lag.hvp_operator(best_X)
        at_lo, at_hi = on_bounds(best_X)
        free = (~((at_lo & (G > 0)) | (at_hi & (G < 0)))).to(dt) * near[:, None]
        gen = torch.Generator(device=X.device).manual_seed(0)
        probe = torch.randn(X.shape, generator=gen, dtype=dt, device=X.device) * free
        _, info = cg(lambda V: free * hvp(free * V), probe, rtol=1e-8, maxiter=PROBE_MAXITER,
                     stop_on_negative_curvature=True)
        second_order = near & ~info["negative_curvature"]
    return best_X, best_y[:, :mI], best_y[:, mI:], second_order
