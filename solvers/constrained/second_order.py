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

import torch

from .constraints import Evaluator

__all__ = ["curvature", "cancellation", "DENSE_MAX", "CANCELLATION_MAX"]

DENSE_MAX = 3000
CANCELLATION_MAX = 1e3


def _active(ev: Evaluator, X: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, tol: float):
    with torch.no_grad():
        _, g, _ = ev.evaluate(X)
    act_g = g > -tol * (1 + g.abs())
    at_bound = (torch.isfinite(lo) & ((X - lo) <= tol * (1 + lo.abs()))) | (
        torch.isfinite(hi) & ((hi - X) <= tol * (1 + hi.abs())))
    return act_g, at_bound


def _row(o: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    r = torch.autograd.grad(o, X, retain_graph=True, allow_unused=True)[0] if o.requires_grad else None
    return torch.zeros_like(X) if r is None else r


def _derivatives(ev: Evaluator, x: torch.Tensor, lam: torch.Tensor, mu: torch.Tensor):
    """Gradient of f, constraint Jacobian ``(m, n)`` and Lagrangian Hessian ``(n, n)`` at one point."""
    n = x.shape[1]
    X = x.detach().requires_grad_(True)
    with torch.enable_grad():
        f, g, h = ev.evaluate(X)
        c = torch.cat([g, h], dim=1).reshape(-1)
        y = torch.cat([lam, mu], dim=1).reshape(-1).to(c.dtype)
        out = torch.cat([f.reshape(1), c])
        if out.requires_grad:
            eye = torch.eye(out.shape[0], dtype=X.dtype, device=X.device)
            try:
                (J,) = torch.autograd.grad(out, X, eye, is_grads_batched=True, retain_graph=True,
                                           allow_unused=True)
            except RuntimeError:  # not vmappable: one backward pass per row
                J = torch.stack([_row(o, X) for o in out])
            J = X.new_zeros(out.shape[0], n) if J is None else J.reshape(out.shape[0], n)
        else:
            J = X.new_zeros(out.shape[0], n)
        L = f.sum() + (y * c).sum()
        H = X.new_zeros(n, n)
        if L.requires_grad:
            (G,) = torch.autograd.grad(L, X, create_graph=True, allow_unused=True)
            if G is not None and G.requires_grad:
                try:
                    (H,) = torch.autograd.grad(G.reshape(-1), X, torch.eye(n, dtype=X.dtype, device=X.device),
                                               is_grads_batched=True, allow_unused=True)
                    H = H.reshape(n, n)
                except RuntimeError:
                    G = G.reshape(-1)
                    H = torch.stack([torch.autograd.grad(G[i], X, retain_graph=True)[0].reshape(n)
                                     for i in range(n)])
    return J[0].detach(), J[1:].detach(), 0.5 * (H + H.T).detach()


def curvature(ev: Evaluator, X: torch.Tensor, lam: torch.Tensor, mu: torch.Tensor, lo: torch.Tensor,
              hi: torch.Tensor, rows: list[int], tol: float = 1e-6) -> dict[int, torch.Tensor]:
    """Rows (of ``rows``) with negative curvature along the active manifold, mapped to a
    unit direction of negative curvature (in ``x``'s flat coordinates)."""
    B, n = X.shape
    out: dict[int, torch.Tensor] = {}
    if n > DENSE_MAX or not ev.exact_hessian:
        return out
    act_g, at_bound = _active(ev, X, lo, hi, tol)
    for b in rows:
        if ev.problem.batch is not None:
            continue  # functions take the whole batch; per-row Hessians are not separable here
        _, Jc, H = _derivatives(ev, X[b:b + 1], lam[b:b + 1], mu[b:b + 1])
        if not bool(torch.isfinite(H).all()) or not bool(torch.isfinite(Jc).all()):
            continue
        free = ~at_bound[b]
        if not bool(free.any()):
            continue
        Hf = H[free][:, free]
        scale = max(1.0, float(Hf.abs().max()))
        shift = 1e-8 * scale
        eye = torch.eye(Hf.shape[0], dtype=Hf.dtype, device=Hf.device)
        if int(torch.linalg.cholesky_ex(Hf + shift * eye).info) == 0:
            continue  # positive (semi)definite on every free direction
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
        if float(e[0]) < -1e-6 * scale:
            d = torch.zeros(n, dtype=X.dtype, device=X.device)
            d[free] = Z @ V[:, 0]
            out[b] = d / d.norm()
    return out


def cancellation(ev: Evaluator, X: torch.Tensor, lam: torch.Tensor, mu: torch.Tensor,
                 z: torch.Tensor, rows: list[int]) -> dict[int, float]:
    """The multiplier cancellation ratio per row (see the module docstring)."""
    out: dict[int, float] = {}
    if ev.m_ineq + ev.m_eq == 0 and not bool((z != 0).any()):
        return {b: 0.0 for b in rows}
    for b in rows:
        if ev.problem.batch is not None:
            continue
        x = X[b:b + 1]
        s = x.detach().abs().clamp(min=1.0).reshape(-1)
        Xr = x.detach().requires_grad_(True)
        with torch.enable_grad():
            f, g, h = ev.evaluate(Xr)
            y = torch.cat([lam[b], mu[b]]).to(Xr.dtype)
            c = torch.cat([g, h], dim=1).reshape(-1)
            gf = torch.autograd.grad(f.sum(), Xr, retain_graph=True, allow_unused=True)[0]
            total = 0.0
            if c.numel():
                w = y.abs()
                for i in torch.nonzero(w > 0).flatten().tolist():
                    if not c[i].requires_grad:
                        continue
                    (r,) = torch.autograd.grad(c[i], Xr, retain_graph=True, allow_unused=True)
                    if r is not None:
                        total += float(w[i]) * float((r.reshape(-1) * s).abs().max())
        zb = z[b].reshape(-1) * s
        total += float(zb.abs().max()) if zb.numel() else 0.0
        gnorm = 0.0 if gf is None else float((gf.reshape(-1) * s).abs().max())
        out[b] = total / max(1.0, gnorm)
    return out
