"""Active-set Newton polishing of an augmented-Lagrangian iterate (ALGENCAN's acceleration):
Newton's method on the KKT system of the constraints and bounds the iterate identifies,
with a second-order check so that saddles and maxima are not returned."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch

from ..batched_vjp import batched_vjp
from ..constraints import Evaluator
from .inner import AugmentedLagrangian, project


class Lagrangian(AugmentedLagrangian):
    """The scaled Lagrangian ``sf f + lam.g_s + mu.h_s`` (same derivative machinery)."""

    newton_steps = 0  # Newton steps taken by the polishing phase (counted in ``nit``)

    def value(self, X: torch.Tensor) -> torch.Tensor:
        f, g, h = self.ev.evaluate(X)
        L = self.sf * f
        if g.shape[1]:
            L = L + (self.lam * g * self.sg).sum(1)
        if h.shape[1]:
            L = L + (self.mu * h * self.sh).sum(1)
        return L


def scaled_jacobian(ev: Evaluator, X: torch.Tensor, sc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Scaled constraint values ``[g, h] * sc`` ``(B, m)`` and their Jacobian ``(B, m, n)``."""
    B, n = X.shape
    Xr = X.detach().requires_grad_(True)
    with torch.enable_grad():
        _, g, h = ev.evaluate(Xr)
        c = torch.cat([g, h], dim=1) * sc
        m = c.shape[1]
        if not c.requires_grad:
            return c.detach(), X.new_zeros(B, m, n)
        try:
            eye = torch.eye(m, dtype=X.dtype, device=X.device).unsqueeze(1).expand(m, B, m)
            J = batched_vjp(c, Xr, eye)
            J = X.new_zeros(B, m, n) if J is None else J.permute(1, 0, 2)
        except RuntimeError:
            rows = []
            for i in range(m):
                (r,) = torch.autograd.grad(c[:, i].sum(), Xr, retain_graph=True, allow_unused=True)
                rows.append(torch.zeros_like(X) if r is None else r)
            J = torch.stack(rows, dim=1)
    return c.detach(), J.detach()


def _same(A: torch.Tensor, B: torch.Tensor) -> bool:
    """Equal up to rounding (1e-13 of the largest entry) everywhere in the batch, and finite."""
    if A.numel() == 0:
        return True
    if not bool(torch.isfinite(A).all()):
        return False
    return float((A - B).abs().amax()) <= 1e-13 * max(float(A.abs().amax()), 1.0)


def initial_active_set(lam: torch.Tensor, mu: torch.Tensor, rho: torch.Tensor,
                       c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The multipliers ``y = [lam, mu]`` and active set a polish starts from: every
    equality, and the inequalities with ``lam + rho g > 0`` (the others' multipliers zeroed)."""
    mI = lam.shape[1]
    y = torch.cat([lam, mu], dim=1)
    act = torch.ones_like(y, dtype=torch.bool)
    act[:, :mI] = (lam + rho[:, None] * c[:, :mI]) > 0
    return torch.where(act, y, torch.zeros_like(y)), act


def bound_test(lo: torch.Tensor, hi: torch.Tensor,
               dtype: torch.dtype) -> Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """``Z -> (on lower bound, on upper bound)``, up to rounding of the dtype."""
    rel = max(1e-10, 100 * torch.finfo(dtype).eps)
    fin_lo, fin_hi = torch.isfinite(lo), torch.isfinite(hi)

    def on_bounds(Z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (fin_lo & (Z <= lo + rel * (1 + lo.abs())), fin_hi & (Z >= hi - rel * (1 + hi.abs())))
    return on_bounds


def active_set_update(it: int, X: torch.Tensor, G: torch.Tensor, c: torch.Tensor, y: torch.Tensor,
                      act: torch.Tensor, fixed: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor,
                      on_bounds: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                      mI: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One primal-dual active-set update at a polish iterate (both polishes share it):
    ``X`` with its fixed variables on their bound, ``y``, ``act``, ``fixed``, and the KKT
    residual, which does not depend on the active set (inf where not finite)."""
    mE = c.shape[1] - mI
    at_lo, at_hi = on_bounds(X)
    if it == 0:
        fixed = (at_lo & (G > 0)) | (at_hi & (G < 0))
    else:
        fixed &= ~((at_lo & (G < 0)) | (at_hi & (G > 0)))  # wrong-signed bound multiplier
        if mI:
            gI, yI = c[:, :mI], y[:, :mI]
            actI = act[:, :mI] & ~(yI < 0) | (gI > 0)
            y = torch.cat([torch.where(actI, yI, torch.zeros_like(yI)), y[:, mI:]], 1)
            act = torch.cat([actI, act[:, mI:]], 1)
    X = torch.where(fixed, torch.where(at_lo & fixed, lo, hi), X)
    res = (X - project(X - G, lo, hi)).abs().amax(1)
    if mI:
        res = torch.maximum(res, torch.minimum(-c[:, :mI], y[:, :mI]).abs().amax(1))
    if mE:
        res = torch.maximum(res, c[:, mI:].abs().amax(1))
    res = torch.where(torch.isfinite(res) & torch.isfinite(X).all(1), res, torch.full_like(res, float("inf")))
    return X, y, act, fixed, res


def apply_step(X: torch.Tensor, y: torch.Tensor, sol: torch.Tensor, free: torch.Tensor, fixed: torch.Tensor,
               rows: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One Newton step ``sol = (dx, dy)`` of the KKT system, taken where it is finite on the
    rows still iterating: a free variable pushed out of the box is projected back and fixed
    on the bound it crossed. Returns ``X, y, fixed, rows``."""
    n = X.shape[1]
    ok = torch.isfinite(sol).all(1) & rows
    Xn = X + sol[:, :n] * free
    fixed = fixed | (((Xn < lo) | (Xn > hi)) & ok[:, None])
    X = torch.where(ok[:, None], project(Xn, lo, hi), X)
    y = torch.where(ok[:, None], y + sol[:, n:], y)
    return X, y, fixed, rows & ok


class BestIterate:
    """The lowest-KKT-residual iterate of a polish per row (``X``, ``y``, active set ``act``,
    residual ``r``), and when a row stops: after ``patience`` Newton steps in a row without
    a better one, at a residual at roundoff level, or on a non-finite one."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor, act: torch.Tensor, patience: int) -> None:
        self.X, self.y, self.act = X.clone(), y.clone(), act.clone()
        self.r = torch.full((X.shape[0],), float("inf"), dtype=X.dtype, device=X.device)
        self.worse = torch.zeros(X.shape[0], dtype=torch.long, device=X.device)
        self.patience = patience

    def update(self, rows: torch.Tensor, X: torch.Tensor, y: torch.Tensor, act: torch.Tensor,
               res: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        """Keep the rows' new iterates where they are better; returns the rows that go on."""
        better = rows & (res < self.r)
        self.X = torch.where(better[:, None], X, self.X)
        self.y = torch.where(better[:, None], y, self.y)
        self.act = torch.where(better[:, None], act, self.act)
        self.worse = torch.where(better, torch.zeros_like(self.worse), self.worse + 1)
        self.r = torch.where(better, res, self.r)
        return rows & (self.worse < self.patience) & (res > 1e-15 * (1 + G.abs().amax(1))) & torch.isfinite(res)

    def near(self, tried: torch.Tensor, tol: float) -> torch.Tensor:
        """The rows whose best point is close enough to a solution for a second-order test."""
        return tried & (self.r <= max(1e4 * tol, 1e-6))


def polish(
    lag: Lagrangian,
    X: torch.Tensor,
    lam: torch.Tensor,
    mu: torch.Tensor,
    rho: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    rows: torch.Tensor,
    tol: float,
    max_iter: int = 15,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Newton's method on the KKT system of the active set identified by the AL iterate.

    The acceleration step of ALGENCAN (Birgin & Martinez, 2008), with a primal-dual
    active-set update: inequalities with ``lam + rho g > 0`` start as equalities, variables
    on a bound with the gradient of the Lagrangian pushing outward are fixed, and Newton's
    method is applied to ``grad_x l = 0`` (free variables), ``c_A = 0`` with unit steps. After
    each step an active inequality whose multiplier turned negative is dropped, a violated
    one is added, a fixed variable whose gradient points into the box is released and a
    free one pushed out of the box is fixed on the bound it crossed. It stops when the KKT
    residual (projected gradient of the Lagrangian, |h|, |min(-g, lam)|, scaled units)
    stops decreasing. Returns the best ``X, lam, mu`` (scaled multipliers) and
    ``second_order``: the KKT matrix of the point has no more negative eigenvalues than
    active constraints, i.e. no direction of negative curvature along the active manifold
    (not a saddle or a maximum). The caller grades the point with the shared measures and
    keeps it only if it passes.
    """
    B, n = X.shape
    mI, mE = lam.shape[1], mu.shape[1]
    dt = X.dtype
    sc = torch.cat([lag.sg, lag.sh], dim=1)
    c, _ = scaled_jacobian(lag.ev, X, sc)
    y, act = initial_active_set(lam, mu, rho, c)
    on_bounds = bound_test(lo, hi, dt)

    def kkt_matrix(H, J, free, a):
        H = torch.nan_to_num(H, nan=0.0, posinf=0.0, neginf=0.0)
        J = torch.nan_to_num(J, nan=0.0, posinf=0.0, neginf=0.0)
        Hm = H * free[:, :, None] * free[:, None, :] + torch.diag_embed(1.0 - free)
        Jm = J * a[:, :, None] * free[:, None, :]
        return torch.cat([torch.cat([Hm, Jm.transpose(1, 2)], 2), torch.cat([Jm, torch.diag_embed(1.0 - a)], 2)], 1)

    tried = rows
    rows = rows.clone()
    best = BestIterate(X, y, act, patience=2)
    fixed = torch.zeros_like(X, dtype=torch.bool)
    # Second derivatives that came out identical at two consecutive iterates (a quadratic
    # objective, linear constraints) are kept instead of recomputed: a frozen Hessian or
    # Jacobian only changes the Newton direction, never what is accepted, since every point
    # is graded by its KKT residual and the second-order check below recomputes both.
    H: torch.Tensor | None = None
    J: torch.Tensor | None = None
    frozen_H = frozen_J = False
    for it in range(max_iter):
        lag.newton_steps += 1
        lag.lam, lag.mu = y[:, :mI], y[:, mI:]
        if frozen_H:
            G = lag.grad(X)[1].detach()
        else:
            _, G, H_new = lag.hessian(X)
            frozen_H = H is not None and _same(H, H_new)
            H = H_new
        if frozen_J:
            with torch.no_grad():
                _, g_val, h_val = lag.ev.evaluate(X)
            c = torch.cat([g_val, h_val], dim=1) * sc
        else:
            c, J_new = scaled_jacobian(lag.ev, X, sc)
            frozen_J = J is not None and _same(J, J_new)
            J = J_new
        X, y, act, fixed, res = active_set_update(it, X, G, c, y, act, fixed, lo, hi, on_bounds, mI)
        rows = best.update(rows, X, y, act, res, G)
        if not rows.any():
            break
        free = (~fixed).to(dt)
        a = act.to(dt)
        # the KKT solve only for the rows still iterating (the rest of the batch is done)
        idx = torch.nonzero(rows).flatten()
        K = kkt_matrix(cast(torch.Tensor, H)[idx], cast(torch.Tensor, J)[idx], free[idx], a[idx])  # set above
        rhs = -torch.cat([G[idx] * free[idx], c[idx] * a[idx] + y[idx] * (1.0 - a[idx])], 1)
        reg = 1e-12 * K.abs().amax((1, 2)).clamp(min=1.0)
        D = torch.cat([free[idx], -a[idx]], 1) * reg[:, None]
        try:
            part = torch.linalg.solve(K + torch.diag_embed(D), rhs[:, :, None])[:, :, 0]
        except RuntimeError:
            part = torch.linalg.lstsq(K, rhs[:, :, None]).solution[:, :, 0]
        sol = X.new_zeros(B, n + mI + mE)
        sol[idx] = part
        X, y, fixed, rows = apply_step(X, y, sol, free, fixed, rows, lo, hi)
    second_order = torch.zeros(B, dtype=torch.bool, device=X.device)
    best_X, best_y, best_act = best.X, best.y, best.act
    near = best.near(tried, tol)
    if near.any():  # inertia of the KKT matrix at the returned point (rows near a solution)
        lag.lam, lag.mu = best_y[:, :mI], best_y[:, mI:]
        _, G, H = lag.hessian(best_X)
        _, J = scaled_jacobian(lag.ev, best_X, sc)
        at_lo, at_hi = on_bounds(best_X)
        free = (~((at_lo & (G > 0)) | (at_hi & (G < 0)))).to(dt)
        # A positive definite Hessian on the free variables settles it (the KKT matrix then
        # has one negative eigenvalue per independent active constraint, at most): a
        # Cholesky factorization per row, and eigenvalues only for the rows where it fails.
        fr = free[near]
        Hf = torch.nan_to_num(H[near], nan=0.0, posinf=0.0, neginf=0.0)
        Hf = Hf * fr[:, :, None] * fr[:, None, :] + torch.diag_embed(1.0 - fr)
        shift = 1e-9 * Hf.abs().amax((1, 2)).clamp(min=1e-300)
        pd = torch.linalg.cholesky_ex(Hf - torch.diag_embed(shift[:, None].expand_as(fr))).info == 0
        idx = torch.nonzero(near).flatten()
        second_order[idx[pd]] = True
        idx = idx[~pd]
        if idx.numel():
            ev = torch.linalg.eigvalsh(kkt_matrix(H[idx], J[idx], free[idx], best_act[idx].to(dt)))
            neg = (ev < -1e-9 * ev.abs().amax(1, keepdim=True)).sum(1)
            second_order[idx] = neg <= best_act[idx].sum(1)
    return best_X, best_y[:, :mI], best_y[:, mI:], second_order
