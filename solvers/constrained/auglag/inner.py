"""The inner solve of the augmented Lagrangian method: the scaled AL function of a batch
(value, gradient, exact or finite-difference Hessian) and a projected trust-region Newton
method for ``min L(x)`` over a box (dense eigen-based steps, Steihaug CG when large).
See ``solvers.constrained.auglag`` for the method as a whole."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch

from ..batched_vjp import batched_vjp
from ..constraints import Evaluator
from ..krylov import steihaug
from .options import AugLagOptions


class AugmentedLagrangian:
    """The scaled augmented Lagrangian of a batch, with value, gradient and Hessian."""

    lam: torch.Tensor  # the multipliers and penalties: set per outer iteration, before use
    mu: torch.Tensor
    rho: torch.Tensor

    def __init__(self, ev: Evaluator, sf: torch.Tensor, sg: torch.Tensor, sh: torch.Tensor) -> None:
        self.ev, self.sf, self.sg, self.sh = ev, sf, sg, sh
        self.hess_mode = "autograd-batched" if ev.exact_hessian else "fd"
        self.lam = self.mu = self.rho = None  # type: ignore[assignment]  # set per outer iteration
        self.cg_limited = False  # truncated CG ran out of iterations on this function

    def value(self, X: torch.Tensor) -> torch.Tensor:
        f, g, h = self.ev.evaluate(X)
        L = self.sf * f
        rho = self.rho
        if h.shape[1]:
            hs = h * self.sh
            L = L + (self.mu * hs).sum(1) + 0.5 * rho * (hs * hs).sum(1)
        if g.shape[1]:
            gs = g * self.sg
            lam = self.lam
            L = L + (0.5 / rho) * ((lam + rho[:, None] * gs).clamp(min=0) ** 2 - lam**2).sum(1)
        return L

    def value_nograd(self, X: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.value(X)

    def grad(self, X: torch.Tensor, create_graph: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        Xr = X.detach().requires_grad_(True)
        with torch.enable_grad():
            L = self.value(Xr)
            if L.requires_grad:
                (G,) = torch.autograd.grad(L.sum(), Xr, create_graph=create_graph, allow_unused=True)
                G = torch.zeros_like(Xr) if G is None else G
            else:
                G = torch.zeros_like(Xr)
        return L.detach(), G, Xr

    def _fd_hvp(self, X: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        scale = V.abs().amax(1, keepdim=True).clamp(min=1e-300)
        eps = 1e-5 * X.abs().amax(1, keepdim=True).clamp(min=1.0) / scale
        Gp = self.grad(X + eps * V)[1]
        Gm = self.grad(X - eps * V)[1]
        return (Gp - Gm) / (2 * eps)

    def hessian(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Value, gradient and dense Hessian ``(B, n, n)`` at ``X``."""
        B, n = X.shape
        if self.hess_mode != "fd":
            L, G, Xr = self.grad(X, create_graph=True)
            if not G.requires_grad:
                return L, G.detach(), X.new_zeros(B, n, n)
            if self.hess_mode == "autograd-batched":
                try:
                    eye = torch.eye(n, dtype=X.dtype, device=X.device).unsqueeze(1).expand(n, B, n)
                    H = batched_vjp(G, Xr, eye)
                    H = X.new_zeros(B, n, n) if H is None else H.permute(1, 0, 2)
                    return L, G.detach(), 0.5 * (H + H.transpose(1, 2))
                except RuntimeError:
                    self.hess_mode = "autograd-loop"
            if self.hess_mode == "autograd-loop":
                try:
                    cols = []
                    for j in range(n):
                        e = torch.zeros_like(X)
                        e[:, j] = 1.0
                        (c,) = torch.autograd.grad(G, Xr, grad_outputs=e, retain_graph=True, allow_unused=True)
                        cols.append(torch.zeros_like(X) if c is None else c)
                    H = torch.stack(cols, dim=2)
                    return L, G.detach(), 0.5 * (H + H.transpose(1, 2))
                except RuntimeError:
                    self.hess_mode = "fd"
        L, G, _ = self.grad(X)
        cols = []
        for j in range(n):
            e = torch.zeros_like(X)
            e[:, j] = 1.0
            cols.append(self._fd_hvp(X, e))
        H = torch.stack(cols, dim=2)
        return L, G, 0.5 * (H + H.transpose(1, 2))

    def hvp_operator(self, X: torch.Tensor):
        """Value, gradient and a Hessian-vector-product closure at ``X``."""
        if self.hess_mode != "fd":
            L, G, Xr = self.grad(X, create_graph=True)
            if not G.requires_grad:
                return L, G.detach(), (lambda V: torch.zeros_like(V))

            def hvp(V: torch.Tensor) -> torch.Tensor:
                (Hv,) = torch.autograd.grad(G, Xr, grad_outputs=V, retain_graph=True, allow_unused=True)
                return torch.zeros_like(V) if Hv is None else Hv

            try:
                hvp(torch.zeros_like(X))
                return L, G.detach(), hvp
            except RuntimeError:
                self.hess_mode = "fd"
        L, G, _ = self.grad(X)
        return L, G, (lambda V: self._fd_hvp(X, V))


def project(X: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    return torch.minimum(torch.maximum(X, lo), hi)


def _eig_tr_step(e: torch.Tensor, V: torch.Tensor, a: torch.Tensor, delta: torch.Tensor,
                 floor: torch.Tensor, Gf: torch.Tensor) -> torch.Tensor:
    """Trust-region step ``s = -V (a / (e + lam))`` with ``|s| <= delta`` (More-Sorensen on an
    eigendecomposition ``H = V diag(e) V^T``, ``a = V^T g``).

    ``lam = 0`` when ``H`` is positive definite (eigenvalues above ``floor``) and the Newton
    step fits; otherwise ``lam >= max(0, floor - e_min)`` solves ``|s(lam)| = delta`` by
    Newton's method on the secular equation. In the hard case (the shifted step is inside
    the ball and ``H`` has negative curvature) the eigenvector of ``e_min`` fills the step to
    the boundary.
    """
    emin = e[:, 0]
    lam_low = (floor - emin).clamp(min=0.0)
    anorm = a.norm(dim=1)

    def norm_at(lam: torch.Tensor) -> torch.Tensor:
        return (a / (e + lam[:, None])).norm(dim=1)

    n_low = norm_at(lam_low)
    inside = ~(n_low > delta)
    lam = lam_low.clone()
    todo = ~inside
    a2 = a * a
    for _ in range(50):  # Newton on 1/delta - 1/|s(lam)| (convex in lam): lam increases to the root
        if not todo.any():
            break
        d = e + lam[:, None]
        s2 = (a2 / d**2).sum(1)
        s3 = (a2 / d**3).sum(1)
        sn = s2.sqrt()
        upd = (s2 / s3.clamp(min=1e-300)) * (sn - delta) / delta
        lam = torch.where(todo, lam + upd.clamp(min=0), lam)
        todo &= (sn - delta).abs() > 1e-3 * delta
        todo &= torch.isfinite(lam)
    lam = torch.where(torch.isfinite(lam), lam, lam_low + anorm / delta.clamp(min=1e-300))
    s = -(V @ (a / (e + lam[:, None]))[:, :, None])[:, :, 0]
    sn = s.norm(dim=1)
    s = s * torch.where(sn > delta, delta / sn.clamp(min=1e-300), torch.ones_like(sn))[:, None]
    # hard case: step to the boundary along the most negative curvature direction
    hard = inside & (emin < 0) & torch.isfinite(delta)
    if hard.any():
        v = V[:, :, 0]
        rest = (delta**2 - (s * s).sum(1)).clamp(min=0).sqrt()
        sign = torch.where((Gf * v).sum(1) > 0, -torch.ones_like(rest), torch.ones_like(rest))
        s = torch.where(hard[:, None], s + (sign * rest)[:, None] * v, s)
    return s


def _model_step(G: torch.Tensor, free: torch.Tensor, todo: torch.Tensor, delta: torch.Tensor, cap: torch.Tensor,
                dense: bool, H: torch.Tensor | None, hmv: Callable[[torch.Tensor], torch.Tensor],
                n: int, limited: list[bool]) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """Trust-region Newton step on the free variables: returns ``step(radius)`` and the first
    radius (``inf`` keeps a positive definite Newton step whole; otherwise the length of the
    |eigenvalue|-modified Newton step, or of the truncated-CG step, capped at ``cap``).
    ``dense``: exact trust-region steps from an eigendecomposition of ``H``. Otherwise, with
    a formed ``H`` that is positive definite on the free variables, the Newton step from
    its Cholesky factor (cut back to the radius); else Steihaug-Toint CG on ``hmv``
    (``limited[0]`` is set when CG stopped at its iteration limit)."""
    Gf = torch.where(todo[:, None], G * free, torch.zeros_like(G))
    if dense:  # eigendecompositions only for the rows still iterating
        idx = torch.nonzero(todo).flatten()
        fr, Gs = free[idx], Gf[idx]
        Hm = cast(torch.Tensor, H)[idx] * fr[:, :, None] * fr[:, None, :] + torch.diag_embed(1.0 - fr)
        e, V = torch.linalg.eigh(Hm)
        a = (V.transpose(1, 2) @ Gs[:, :, None])[:, :, 0]
        floor = 1e-10 * e.abs().amax(1).clamp(min=1.0)
        pd = e[:, 0] > floor
        s_abs = (V @ (a / torch.maximum(e.abs(), floor[:, None]))[:, :, None])[:, :, 0]
        r0 = s_abs.norm(dim=1).clamp(max=cap[idx])
        delta = delta.clone()
        delta[idx] = torch.where(torch.isinf(delta[idx]) & ~pd, r0, delta[idx])

        def step(radius: torch.Tensor) -> torch.Tensor:
            out = torch.zeros_like(G)
            out[idx] = _eig_tr_step(e, V, a, radius[idx], floor, Gs) * fr
            return out
        return step, delta

    def op(P: torch.Tensor) -> torch.Tensor:
        return hmv(P * free) * free + P * (1.0 - free)

    if H is not None:  # a formed Hessian: Newton by Cholesky where it is positive definite
        idx = torch.nonzero(todo).flatten()
        fr = free[idx]
        Hm = H[idx] * fr[:, :, None] * fr[:, None, :] + torch.diag_embed(1.0 - fr)
        Lc, info = torch.linalg.cholesky_ex(Hm)
        if bool((info == 0).all()):
            S_n = torch.zeros_like(G)
            S_n[idx] = -torch.cholesky_solve(Gf[idx][:, :, None], Lc)[:, :, 0] * fr
            lens = S_n.norm(dim=1)
            big = lens > cap
            S_n = torch.where(big[:, None], S_n * (cap / lens.clamp(min=1e-300))[:, None], S_n)
            delta = torch.where(torch.isinf(delta) & big, S_n.norm(dim=1), delta)

            def step_n(radius: torch.Tensor) -> torch.Tensor:
                ln = S_n.norm(dim=1)
                f = torch.where(ln > radius, radius / ln.clamp(min=1e-300), torch.ones_like(ln))
                return S_n * f[:, None]
            return step_n, delta

    # Forcing term min(0.05, sqrt|g|). The common cap of 0.5 stops CG once the stiff
    # directions a penalty adds are resolved (they dominate the residual), before the
    # rest of the step is: measured, that doubles the Newton steps on large bound-
    # constrained subproblems (627 against 313 on the banded QP at n = 10,000).
    gnorm = Gf.norm(dim=1)
    rtol = torch.clamp(gnorm.sqrt(), min=1e-12, max=0.05)
    maxiter = min(2 * n, 500)
    S_cg, info = steihaug(op, Gf, delta, rtol=rtol, maxiter=maxiter)
    limited[0] = limited[0] or bool((info["iterations"] >= maxiter).any())
    S_cg = S_cg * free
    lens = S_cg.norm(dim=1)
    big = lens > cap
    S_cg = torch.where(big[:, None], S_cg * (cap / lens.clamp(min=1e-300))[:, None], S_cg)
    delta = torch.where(torch.isinf(delta) & (info["negative_curvature"] | big), S_cg.norm(dim=1), delta)

    def step_cg(radius: torch.Tensor) -> torch.Tensor:
        ln = S_cg.norm(dim=1)
        f = torch.where(ln > radius, radius / ln.clamp(min=1e-300), torch.ones_like(ln))
        return S_cg * f[:, None]
    return step_cg, delta


def newton_solve(
    al: AugmentedLagrangian,
    X: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    inner_tol: torch.Tensor,
    running: torch.Tensor,
    opts: AugLagOptions,
) -> tuple[torch.Tensor, int, torch.Tensor, torch.Tensor]:
    """Projected trust-region Newton on the AL for the rows in ``running``.

    Returns ``X``, the number of Newton steps, ``diverged`` and ``converged`` (the projected
    gradient reached ``inner_tol``) per row.

    Each step: Bertsekas' epsilon-active set (variables within ``eps`` of a bound with the
    gradient pushing outward are fixed and moved onto the bound), a trust-region Newton
    step on the free variables (eigendecomposition and More-Sorensen shift up to
    ``dense_max`` variables; Steihaug-Toint truncated CG on Hessian-vector products above),
    projection onto the box, and acceptance on the ratio of actual to predicted decrease
    (the quadratic model evaluated on the projected step). A rejected step shrinks the
    radius and retries without a new Hessian. Projection instead of cutting the step at the
    first bound keeps progress on degenerate bounds (a variable a hair above its bound does
    not block the others); the radius bounds steps along near-singular directions.
    """
    B, n = X.shape
    dt = X.dtype
    diverged = torch.zeros(B, dtype=torch.bool, device=X.device)
    converged = torch.zeros(B, dtype=torch.bool, device=X.device)
    steps = 0
    todo = running.clone()
    delta = torch.full((B,), float("inf"), dtype=dt, device=X.device)
    dense = n <= opts.dense_max
    # The Hessian is formed (n HVPs in one batched pass) up to dense_max, and up to
    # factor_max once truncated CG has hit its iteration limit on this AL function (an
    # ill-conditioned subproblem: a large penalty); CG on HVPs is cheaper otherwise.
    formed = n <= opts.dense_max or (n <= opts.factor_max and al.cg_limited)
    limited = [False]
    verbose = opts.verbose > 1
    for _ in range(opts.max_inner):
        if formed:
            L, G, H = al.hessian(X)
            H = torch.where(torch.isfinite(H), H, torch.zeros_like(H))

            def hmv(P: torch.Tensor, H=H) -> torch.Tensor:
                return (H @ P[:, :, None])[:, :, 0]
        else:
            L, G, hmv = al.hvp_operator(X)
        pg = X - project(X - G, lo, hi)
        pgn = pg.abs().amax(1)
        conv = todo & (pgn <= inner_tol)
        converged |= conv
        todo &= ~conv & torch.isfinite(pgn) & torch.isfinite(L)
        if not todo.any():
            break
        steps += 1
        eps = torch.clamp(pgn, max=1e-3)[:, None]
        fixed = ((X <= lo + eps) & (G > 0)) | ((X >= hi - eps) & (G < 0))
        # fixed variables go onto their bound
        T = torch.where(fixed & todo[:, None], torch.where(G > 0, lo - X, hi - X), torch.zeros_like(X))
        T = torch.where(torch.isfinite(T), T, torch.zeros_like(T))
        cap = 1e3 * X.abs().amax(1).clamp(min=1.0)
        # A free variable on (or within eps of) a bound whose Newton component points out of
        # the box would be cut by the projection, and the rest of the step, computed with it
        # moving, is then often no descent direction (tiny accepted steps, zigzag on
        # degenerate bounds). Such variables are held where they are and the step is
        # recomputed on the others; at the reduced minimizer the Newton component of a held
        # variable points into the box, so it is released again.
        free_b = ~fixed
        for _refine in range(4):
            step, delta0 = _model_step(G, free_b.to(dt), todo, delta, cap, dense, H if formed else None, hmv, n,
                                       limited)
            S0 = step(delta0)
            clip = free_b & todo[:, None] & (((X + S0 < lo) & (X <= lo + eps)) | ((X + S0 > hi) & (X >= hi - eps)))
            if not clip.any():
                break
            free_b &= ~clip
        delta = delta0
        if limited[0] and not formed and n <= opts.factor_max:
            al.cg_limited = formed = True  # form (and factor) the Hessian from the next step on

        slack = 1e-14 * (1 + L.abs())  # roundoff in L: accept steps that only lose that much
        pending = todo.clone()
        Xnew = X.clone()
        P_acc = torch.zeros_like(X)
        first = torch.zeros(B, dtype=torch.bool, device=X.device)
        for trial in range(40):  # 0.25^40 ~ 1e-24: a radius that small means no progress
            S = step(delta)
            tn = T.norm(dim=1)
            Tt = T * torch.where(tn > delta, delta / tn.clamp(min=1e-300), torch.ones_like(tn))[:, None]
            S = torch.where(pending[:, None], S + Tt, torch.zeros_like(S))
            Xt = project(X + S, lo, hi)
            P = Xt - X
            Lt = al.value_nograd(Xt)
            pred = -(G * P).sum(1) - 0.5 * (P * hmv(P)).sum(1)
            ared = L - Lt
            ok = pending & torch.isfinite(Lt) & torch.isfinite(Xt).all(1)
            ok &= (ared >= 1e-4 * pred.clamp(min=0) - slack) & ((pred > 0) | (ared > slack))
            ok &= P.abs().amax(1) > 0
            Xnew = torch.where(ok[:, None], Xt, Xnew)
            P_acc = torch.where(ok[:, None], P, P_acc)
            first |= ok & (trial == 0)
            snorm = (S - Tt * pending[:, None]).norm(dim=1)
            fullnorm = S.norm(dim=1)
            ratio = torch.where(pred > 0, ared / pred.clamp(min=1e-300), torch.ones_like(ared))
            # radius update: expand after a good step on the boundary, shrink after a poor one
            expand = ok & (ratio > 0.75) & (snorm >= 0.9 * delta)
            delta = torch.where(expand, torch.maximum(delta, 3.0 * snorm), delta)
            delta = torch.where(ok & (ratio < 0.1) & (snorm > 0), 0.5 * snorm, delta)
            rej = pending & ~ok
            delta = torch.where(rej, 0.25 * torch.minimum(delta, fullnorm.clamp(min=1e-300)), delta)
            pending &= ~ok
            if not pending.any():
                break
        if verbose:  # first row of the batch
            print(f"    inner: L {float(L[0]):.12g} |pg| {float(pgn[0]):.2e} |step| {float(P_acc[0].abs().max()):.2e} "
                  f"radius {float(delta[0]):.2e} rejected {bool(pending[0])}")
        # rows that took a first-try step along a (nearly) flat direction: extrapolate, so
        # that an unbounded direction is detected in a few steps instead of creeping along it
        curv = (P_acc * hmv(P_acc)).sum(1)
        lin = -(G * P_acc).sum(1)
        grow = todo & first & (curv.abs() <= 1e-12 * lin.abs()) & (lin > 1e-6 * (1 + L.abs()))
        if grow.any():
            Lbest = al.value_nograd(Xnew)
            beta = 10.0
            while grow.any() and beta <= 1e12:
                Xt = project(X + beta * P_acc, lo, hi)
                Lt = al.value_nograd(Xt)
                ok = grow & torch.isfinite(Lt) & (Lt < Lbest) & torch.isfinite(Xt).all(1)
                Xnew = torch.where(ok[:, None], Xt, Xnew)
                Lbest = torch.where(ok, Lt, Lbest)
                grow &= ok
                beta *= 10.0
        # rows whose trust region collapsed are stuck at the current point
        todo &= ~pending
        X = Xnew
        big = (X.abs().amax(1) > opts.unbounded) | (al.value_nograd(X) < -opts.unbounded)
        diverged |= big & running
        todo &= ~big
        if not todo.any():
            break
    else:
        # max_inner steps taken: test the last point
        pg = X - project(X - al.grad(X)[1], lo, hi)
        converged |= todo & (pg.abs().amax(1) <= inner_tol)
    return X, steps, diverged, converged
