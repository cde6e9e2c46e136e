"""Batched Krylov solvers on matrix-free operators (Hessian-vector products).

Each row of ``b`` (shape ``(B, n)``) is its own system; rows stop independently. CG and
Steihaug-Toint CG serve the Newton-CG inner solver of the augmented Lagrangian and
implicit differentiation; MINRES the symmetric indefinite KKT systems of the matrix-free
polish (``auglag.operator_polish``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["cg", "minres", "steihaug"]


def cg(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    rtol: float = 1e-10,
    atol: float = 0.0,
    maxiter: int | None = None,
    stop_on_negative_curvature: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Solve ``A x = b`` for symmetric ``A`` given by ``matvec`` (batched over rows).

    Stops a row when ``||r|| <= max(rtol ||b||, atol)``. With
    ``stop_on_negative_curvature`` a row whose search direction has ``p^T A p <= 0``
    stops with its current iterate (or ``b`` itself on the first iteration, the
    steepest-descent fallback of truncated Newton). Returns ``x`` and an info dict with
    ``iterations``, ``residual`` and ``negative_curvature`` per row.
    """
    B, n = b.shape
    maxiter = maxiter or 2 * n + 10
    x = torch.zeros_like(b)
    r = b.clone()
    p = r.clone()
    rs = (r * r).sum(1)
    bnorm = rs.sqrt()
    target = torch.maximum(rtol * bnorm, torch.full_like(bnorm, atol))
    active = rs.sqrt() > target
    neg = torch.zeros(B, dtype=torch.bool, device=b.device)
    its = torch.zeros(B, dtype=torch.long, device=b.device)
    for k in range(maxiter):
        if not active.any():
            break
        Ap = matvec(p)
        pAp = (p * Ap).sum(1)
        if stop_on_negative_curvature:
            curv_bad = active & (pAp <= 1e-30 * (p * p).sum(1))
            if curv_bad.any():
                if k == 0:
                    x = torch.where(curv_bad[:, None], b, x)
                neg |= curv_bad
                active &= ~curv_bad
        safe = torch.where(pAp.abs() > 0, pAp, torch.ones_like(pAp))
        alpha = torch.where(active, rs / safe, torch.zeros_like(rs))
        x = x + alpha[:, None] * p
        r = r - alpha[:, None] * Ap
        rs_new = (r * r).sum(1)
        its += active.long()
        active &= rs_new.sqrt() > target
        beta = torch.where(rs > 0, rs_new / torch.where(rs > 0, rs, torch.ones_like(rs)), torch.zeros_like(rs))
        p = torch.where(active[:, None], r + beta[:, None] * p, p)
        rs = rs_new
    return x, {"iterations": its, "residual": rs.sqrt(), "negative_curvature": neg}


def steihaug(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    g: torch.Tensor,
    radius: torch.Tensor,
    rtol: torch.Tensor | float = 1e-10,
    maxiter: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Steihaug-Toint truncated CG: approximately ``min g.s + s.A s / 2`` s.t. ``|s| <= radius``.

    Batched over rows; ``radius`` is ``(B,)`` and may be ``inf``. A row stops when its
    residual falls below ``rtol |g|``, when the next CG iterate would leave the ball (the
    step is then cut on the boundary), or on nonpositive curvature (the step then goes to
    the boundary along that direction; with an infinite radius the current iterate is kept,
    or ``-g`` on the first iteration). Returns ``s`` and an info dict with ``iterations``,
    ``boundary`` (the step lies on the boundary) and ``negative_curvature`` per row.
    """
    B, n = g.shape
    maxiter = maxiter or 2 * n + 10
    rtol_t = torch.as_tensor(rtol, dtype=g.dtype, device=g.device).expand(B)
    s = torch.zeros_like(g)
    r = -g.clone()
    p = r.clone()
    rs = (r * r).sum(1)
    target = rtol_t * rs.sqrt()
    active = (rs.sqrt() > target) & torch.isfinite(rs)
    neg = torch.zeros(B, dtype=torch.bool, device=g.device)
    bnd = torch.zeros(B, dtype=torch.bool, device=g.device)
    its = torch.zeros(B, dtype=torch.long, device=g.device)
    r2 = radius * radius

    def to_boundary(s: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        # tau >= 0 with |s + tau p| = radius
        pp = (p * p).sum(1).clamp(min=1e-300)
        sp = (s * p).sum(1)
        ss = (s * s).sum(1)
        disc = (sp * sp + pp * (r2 - ss)).clamp(min=0)
        return (-sp + disc.sqrt()) / pp

    for k in range(maxiter):
        if not active.any():
            break
        Ap = matvec(p)
        pAp = (p * Ap).sum(1)
        pp = (p * p).sum(1)
        its += active.long()
        curv_bad = active & ~(pAp > 1e-30 * pp)
        alpha = torch.where(active & ~curv_bad, rs / torch.where(pAp > 0, pAp, torch.ones_like(pAp)),
                            torch.zeros_like(rs))
        s_new = s + alpha[:, None] * p
        leave = active & ~curv_bad & ((s_new * s_new).sum(1) >= r2)
        finite_r = torch.isfinite(radius)
        # nonpositive curvature: to the boundary along p (or keep s / take -g if unbounded)
        tau = to_boundary(s, p)
        s_neg = torch.where(finite_r[:, None], s + tau[:, None] * p,
                            s if k > 0 else p)
        s_cut = s + tau[:, None] * p
        s = torch.where(curv_bad[:, None], s_neg, torch.where(leave[:, None], s_cut, torch.where(
            active[:, None], s_new, s)))
        neg |= curv_bad
        bnd |= leave | (curv_bad & finite_r)
        r = torch.where((active & ~curv_bad & ~leave)[:, None], r - alpha[:, None] * Ap, r)
        rs_new = (r * r).sum(1)
        active &= ~curv_bad & ~leave & (rs_new.sqrt() > target)
        beta = rs_new / rs.clamp(min=1e-300)
        p = torch.where(active[:, None], r + beta[:, None] * p, p)
        rs = torch.where(active, rs_new, rs)
    return s, {"iterations": its, "boundary": bnd, "negative_curvature": neg}


def minres(
    matvec: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    rtol: float = 1e-10,
    maxiter: int | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Solve ``A x = b`` for symmetric, possibly indefinite ``A`` given by ``matvec``
    (Paige and Saunders' MINRES: Lanczos with Givens rotations, batched over rows).

    A row stops when its residual norm (MINRES tracks it without a product) falls below
    ``rtol ||b||``; a row whose ``b`` is zero returns zero. Returns ``x`` and an info dict
    with ``iterations`` and ``residual`` (the estimated residual norm) per row.
    """
    B, n = b.shape
    maxiter = maxiter or 2 * n + 10
    zero = torch.zeros(B, dtype=b.dtype, device=b.device)
    safe = lambda t: torch.where(t > 0, t, torch.ones_like(t))  # noqa: E731
    beta1 = b.norm(dim=1)
    v_old, v = torch.zeros_like(b), b / safe(beta1)[:, None]
    w, w1, x = torch.zeros_like(b), torch.zeros_like(b), torch.zeros_like(b)
    beta = zero.clone()  # the Lanczos coupling of v_old and v (none before the first vector)
    dbar, epsln, cs, sn = zero.clone(), zero.clone(), zero - 1, zero.clone()
    phibar = beta1.clone()  # the residual norm
    target = rtol * beta1
    active = beta1 > 0
    its = torch.zeros(B, dtype=torch.long, device=b.device)
    for _ in range(maxiter):
        if not active.any():
            break
        y = matvec(v)
        alpha = (v * y).sum(1)
        y = y - alpha[:, None] * v - beta[:, None] * v_old
        beta_new = y.norm(dim=1)
        # the previous rotation on the new column of the tridiagonal matrix, then a new one
        oldeps = epsln
        delta = cs * dbar + sn * alpha
        gbar = sn * dbar - cs * alpha
        epsln_new = sn * beta_new
        dbar_new = -cs * beta_new
        gamma = torch.sqrt(gbar * gbar + beta_new * beta_new)
        cs_new, sn_new = gbar / safe(gamma), beta_new / safe(gamma)
        phi = cs_new * phibar
        w_new = (v - oldeps[:, None] * w1 - delta[:, None] * w) / safe(gamma)[:, None]
        keep = active[:, None]
        x = torch.where(keep & (gamma > 0)[:, None], x + phi[:, None] * w_new, x)
        w1, w = torch.where(keep, w, w1), torch.where(keep, w_new, w)
        v_old, v = torch.where(keep, v, v_old), torch.where(keep, y / safe(beta_new)[:, None], v)
        beta = torch.where(active, beta_new, beta)
        epsln, dbar = torch.where(active, epsln_new, epsln), torch.where(active, dbar_new, dbar)
        cs, sn = torch.where(active, cs_new, cs), torch.where(active, sn_new, sn)
        phibar = torch.where(active, sn_new * phibar, phibar)
        its += active.long()
        active &= (phibar > target) & (beta_new > 0) & torch.isfinite(phibar)
    return x, {"iterations": its, "residual": phibar}
