"""Batched conjugate gradient on matrix-free operators (Hessian-vector products).

Each row of ``b`` (shape ``(B, n)``) is its own system; rows stop independently. Used by
the Newton-CG inner solver of the augmented Lagrangian and by implicit differentiation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["cg"]


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
