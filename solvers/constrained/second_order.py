"""Second-order and degeneracy tests: a stationary point is not called a minimum blindly.

First-order conditions (small violation, small KKT residual) hold at minima, saddles and
maxima alike, and at a degenerate point they hold to any tolerance with multipliers that
grow without bound. Two tests, applied by ``dispatch`` to every point that passes the
first-order grade, whatever method produced it:

* ``curvature``: the Hessian of the Lagrangian on the directions tangent to every active
  constraint and bound (the null space of the active Jacobian, on the free variables).
  A negative eigenvalue there means the point is not a local minimum; its eigenvector is
  returned so that the caller can step off the point and solve again. A positive
  definite Hessian on the free variables settles the question with one Cholesky
  factorization; the null-space eigenproblem runs only where that fails. Dense, so it
  runs up to ``DENSE_MAX`` variables.
* ``cancellation``: ``(sum_i |y_i| |grad c_i| + |z|) / max(1, |grad f|)`` with gradients
  measured per unit of relative change of each variable (so that variable scaling does
  not count). It is at most about 10 on the Hock-Schittkowski set; above
  ``CANCELLATION_MAX`` the multipliers cancel each other. That is legitimate where
  constraint gradients are nearly parallel (CUTEst SNAKE, 2e4) and the sign of a point
  stationary only to tolerance where constraint qualifications fail (HS13's cusp, 9e4);
  ``dispatch`` tells the two apart by solving again more tightly.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from .constraints import Evaluator
from .oracle import jacobian_rows
from .row_norms import row_max_abs

__all__ = ["curvature", "cancellation", "DENSE_MAX", "CANCELLATION_MAX"]

DENSE_MAX = 3000
CANCELLATION_MAX = 1e3


def _active(ev: Evaluator, X: torch.Tensor, g: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, tol: float):
    act_g = g > -tol * (1 + g.abs())
    at_bound = (torch.isfinite(lo) & ((X - lo) <= tol * (1 + lo.abs()))) | (
        torch.isfinite(hi) & ((hi - X) <= tol * (1 + hi.abs())))
    return act_g, at_bound


def _diag(v: np.ndarray):
    import scipy.sparse as sp

    return sp.diags(v)


def _derivatives(ev: Evaluator, x: torch.Tensor, lam: torch.Tensor, mu: torch.Tensor, hessian: bool = True):
    """Gradient of f ``(n,)``, constraint Jacobian ``(m, n)`` and (if asked) the Lagrangian
    Hessian ``(n, n)`` at one point, from one recorded forward pass."""
    n = x.shape[1]
    X = x.detach().requires_grad_(True)
    with torch.enable_grad():
        f, g, h = ev.evaluate(X)
        c = torch.cat([g, h], dim=1).reshape(-1)
        J = jacobian_rows(torch.cat([f.reshape(1), c]), X, retain=True)[0]
        H = None
        if hessian:
            y = torch.cat([lam, mu], dim=1).reshape(-1).to(c.dtype)
            L = f.sum() + (y * c).sum()
            H = X.new_zeros(n, n)
            if L.requires_grad:
                (G,) = torch.autograd.grad(L, X, create_graph=True, allow_unused=True)
                if G is not None and G.requires_grad:
                    H = jacobian_rows(G.reshape(-1), X, retain=True)[0]
            H = 0.5 * (H + H.T)
    return J[0], J[1:], H


def _at(ev: Evaluator, X: torch.Tensor, lam: torch.Tensor, mu: torch.Tensor, b: int, hessian: bool,
        compiled: Callable | None):
    """``(grad f, J, H)`` of row ``b``: from ``compiled`` (the captured CasADi graph IPOPT
    used, for a single instance) or from torch."""
    if compiled is not None and X.shape[0] == 1:
        y = torch.cat([lam[0], mu[0]]).detach().cpu().double().numpy()
        gf, J, H = compiled(X[0].detach().cpu().double().numpy(), y, hessian)
        t = lambda a: None if a is None else torch.as_tensor(  # noqa: E731
            a.toarray() if hasattr(a, "toarray") else a, dtype=X.dtype, device=X.device)
        return t(gf), t(J), t(H)
    return _derivatives(ev, X[b:b + 1], lam[b:b + 1], mu[b:b + 1], hessian=hessian)


def curvature(ev: Evaluator, X: torch.Tensor, g: torch.Tensor, lam: torch.Tensor, mu: torch.Tensor,
              lo: torch.Tensor, hi: torch.Tensor, rows: list[int], tol: float = 1e-6,
              compiled: Callable | None = None) -> dict[int, tuple[torch.Tensor, bool]]:
    """Rows (of ``rows``) whose Hessian of the Lagrangian is not positive definite along
    the active manifold, mapped to ``(direction, negative)``: a unit direction (in ``x``'s
    flat coordinates) of negative curvature (``negative`` True: not a minimum) or of zero
    curvature (False: second order cannot tell; the caller probes along it, as for ``x**3``
    at 0). ``g``: the inequality values at ``X`` ``(B, mI)``; ``compiled``: see ``_at``."""
    B, n = X.shape
    out: dict[int, tuple[torch.Tensor, bool]] = {}
    if n > DENSE_MAX or not ev.exact_hessian:
        return out
    act_g, at_bound = _active(ev, X, g, lo, hi, tol)
    for b in rows:
        if ev.problem.batch is not None:
            continue  # functions take the whole batch; per-row Hessians are not separable here
        _, Jc, H = _at(ev, X, lam, mu, b, True, compiled)
        if not bool(torch.isfinite(H).all()) or not bool(torch.isfinite(Jc).all()):
            continue
        free = ~at_bound[b]
        if not bool(free.any()):
            continue
        Hf = H[free][:, free]
        scale = max(1.0, float(Hf.abs().max()))
        shift = 1e-8 * scale
        eye = torch.eye(Hf.shape[0], dtype=Hf.dtype, device=Hf.device)
        if int(torch.linalg.cholesky_ex(Hf - shift * eye).info) == 0:
            continue  # positive definite on every free direction
        act = torch.cat([act_g[b], torch.ones(ev.m_eq, dtype=torch.bool, device=X.device)])
        A = Jc[act][:, free] if Jc.shape[0] else Jc.new_zeros(0, int(free.sum()))
        if A.shape[0]:
            U, S, Vh = torch.linalg.svd(A, full_matrices=True)
            rank = int((S > 1e-10 * max(1.0, float(S.max()) if S.numel() else 1.0)).sum())
            Z = Vh[rank:].T
        else:
            Z = eye
        if Z.shape[1] == 0:
            continue  # a vertex: no feasible direction along the active constraints
        e, V = torch.linalg.eigh(Z.T @ Hf @ Z)
        if float(e[0]) <= 1e-6 * scale:
            d = torch.zeros(n, dtype=X.dtype, device=X.device)
            d[free] = Z @ V[:, 0]
            out[b] = (d / d.norm(), float(e[0]) < -1e-6 * scale)
    return out


def cancellation(ev: Evaluator, X: torch.Tensor, lam: torch.Tensor, mu: torch.Tensor,
                 z: torch.Tensor, rows: list[int], compiled: Callable | None = None) -> dict[int, float]:
    """The multiplier cancellation ratio per row (see the module docstring)."""
    out: dict[int, float] = {}
    for b in rows:
        if ev.problem.batch is not None:
            continue
        y = torch.cat([lam[b], mu[b]]).abs()
        zb = z[b].reshape(-1)
        if not bool((y > 0).any()) and not bool((zb != 0).any()):
            out[b] = 0.0
            continue
        s = X[b].detach().abs().clamp(min=1.0)  # per unit of relative change of each variable
        if compiled is not None and X.shape[0] == 1:  # IPOPT's Jacobian (sparse when large)
            gf_np, Js, _ = compiled(X[0].detach().cpu().double().numpy(),
                                    y.detach().cpu().double().numpy(), False)
            sn = s.cpu().double().numpy()
            if not Js.shape[0]:
                row_max = np.zeros(0)
            elif isinstance(Js, np.ndarray):  # small: dense already
                row_max = np.abs(Js * sn).max(axis=1)
            elif Js.shape[0] * Js.shape[1] <= 1_000_000:  # dense numpy is faster than sparse
                row_max = np.abs(Js.toarray() * sn).max(axis=1)
            else:
                row_max = (abs(Js) @ _diag(sn)).max(axis=1).toarray().ravel()
            total = float((y.cpu().double().numpy() * row_max).sum())
            gmax = float(np.abs(gf_np * sn).max())
        else:  # the rows with a multiplier only, without forming the Jacobian
            Xr = X[b:b + 1].detach().requires_grad_(True)
            act = torch.nonzero(y > 0).flatten()
            with torch.enable_grad():
                f, g, h = ev.evaluate(Xr)
                c = torch.cat([f.reshape(1, 1), g, h], dim=1)
                M = row_max_abs(c, Xr, rows=torch.cat([act.new_zeros(1), act + 1]), weight=s)[0]
            total = float((y[act] * M[1:]).sum())
            gmax = float(M[0])
        total += float((zb * s).abs().max())
        out[b] = total / max(1.0, gmax)
    return out
