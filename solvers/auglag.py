"""Augmented Lagrangian method on torch: batched, GPU-ready, second order inside.

Problem: ``min f(x)  s.t.  g(x) <= 0, h(x) = 0, lo <= x <= hi`` for a batch of ``B``
independent instances stacked in ``X (B, n)``; every step below is one torch computation
over the whole batch, so it runs on the GPU when the tensors are on CUDA.

Method (in the spirit of ALGENCAN / LANCELOT, Powell-Hestenes-Rockafellar form):

* Scaling: objective and each constraint row are scaled so that their gradients at
  ``x0`` have infinity norm at most 100 (as IPOPT does); results are unscaled.
* Outer loop: the bound-constrained subproblem
  ``min_x L(x) = f + mu.h + rho/2 |h|^2 + 1/(2 rho) sum(max(0, lam + rho g)^2 - lam^2)``
  is solved, then the first-order updates ``lam <- max(0, lam + rho g)`` and
  ``mu <- mu + rho h`` are applied. The penalty ``rho`` (per instance) grows 10x when the
  infeasibility-complementarity measure did not fall by 4x.
* Inner loop: projected Newton (Bertsekas' active-set variant). The exact Hessian of
  ``L`` comes from autograd (``n`` batched Hessian-vector products; finite differences of
  gradients if a function is not twice differentiable), its eigenvalues are replaced by
  their absolute values (floored) so that the step is a descent direction even where
  ``L`` is not convex, and a projected Armijo backtracking line search keeps iterates in
  the box. Above ``dense_max`` (400) variables the step is truncated Newton-CG on
  Hessian-vector products instead (experimental: known to stall on some problems). Newton converges quadratically, which is what makes
  1e-8 accuracy affordable where first-order AL stalls near 1e-5.
* Stop per instance when ``max_violation <= tol`` and ``kkt_residual <= tol`` (see
  ``solvers.kkt``). ``infeasible``: the violation stopped decreasing while ``rho`` was
  already large. ``unbounded``: the objective fell below ``-1e20`` or ``|x| > 1e20``.
  ``nan``: a function returned NaN/inf at a point the method could not step away from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .constraints import Evaluator
from .kkt import measures
from .krylov import cg

__all__ = ["AugLagOptions", "AugLagOutput", "auglag"]


@dataclass
class AugLagOptions:
    """Tuning knobs; the defaults aim at 1e-8 violation and KKT residual."""

    tol: float = 1e-8
    max_outer: int = 60
    max_inner: int = 60
    rho0: float | None = None
    rho_max: float = 1e12
    rho_growth: float = 10.0
    decrease: float = 0.25
    dense_max: int = 400
    unbounded: float = 1e20
    grad_scale: float = 100.0
    infeasible_tol: float = 1e-6


@dataclass
class AugLagOutput:
    X: torch.Tensor
    lam: torch.Tensor
    mu: torch.Tensor
    z: torch.Tensor
    f: torch.Tensor
    violation: torch.Tensor
    kkt: torch.Tensor
    status: list[str]
    messages: list[str]
    nit: int
    outer: int
    rho: torch.Tensor
    info: dict = field(default_factory=dict)


class _AL:
    """The scaled augmented Lagrangian of a batch, with value, gradient and Hessian."""

    def __init__(self, ev: Evaluator, sf: torch.Tensor, sg: torch.Tensor, sh: torch.Tensor) -> None:
        self.ev, self.sf, self.sg, self.sh = ev, sf, sg, sh
        self.hess_mode = "autograd-batched" if ev.exact_hessian else "fd"
        self.lam = self.mu = self.rho = None  # set per outer iteration

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
                    (H,) = torch.autograd.grad(G, Xr, grad_outputs=eye, is_grads_batched=True,
                                               retain_graph=True, allow_unused=True)
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


def _project(X: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    return torch.minimum(torch.maximum(X, lo), hi)


def _newton(
    al: _AL,
    X: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    inner_tol: torch.Tensor,
    running: torch.Tensor,
    opts: AugLagOptions,
) -> tuple[torch.Tensor, int, torch.Tensor]:
    """Projected Newton on the AL for the rows in ``running``; returns X, steps, diverged."""
    B, n = X.shape
    diverged = torch.zeros(B, dtype=torch.bool, device=X.device)
    steps = 0
    todo = running.clone()
    for _ in range(opts.max_inner):
        dense = n <= opts.dense_max
        if dense:
            L, G, H = al.hessian(X)
        else:
            L, G, hvp = al.hvp_operator(X)
        pg = X - _project(X - G, lo, hi)
        pgn = pg.abs().amax(1)
        todo &= (pgn > inner_tol) & torch.isfinite(pgn)
        if not todo.any():
            break
        steps += 1
        eps = torch.clamp(pgn, max=1e-3)[:, None]
        fixed = ((X <= lo + eps) & (G > 0)) | ((X >= hi - eps) & (G < 0))
        free = (~fixed).to(X.dtype)
        Gf = G * free
        if dense:
            Hm = H * free[:, :, None] * free[:, None, :] + torch.diag_embed(1.0 - free)
            Hm = torch.where(torch.isfinite(Hm), Hm, torch.zeros_like(Hm))
            e, V = torch.linalg.eigh(Hm)
            floor = 1e-10 * e.abs().amax(1, keepdim=True).clamp(min=1.0)
            emod = torch.maximum(e.abs(), floor)
            D = -(V @ ((V.transpose(1, 2) @ Gf[:, :, None]) / emod[:, :, None]))[:, :, 0]
        else:
            def op(P: torch.Tensor, hvp=hvp, free=free) -> torch.Tensor:
                return hvp(P * free) * free + P * (1.0 - free)

            gnorm = Gf.norm(dim=1)
            rtol = float(torch.clamp(gnorm.max().sqrt(), max=0.5))
            D, _ = cg(op, -Gf, rtol=max(rtol, 1e-12), maxiter=min(2 * n, 500),
                      stop_on_negative_curvature=True)
        D = D * free - G * (1.0 - free)
        # a free variable sitting on a bound whose Newton component points out of the box
        # while its gradient points in would never move: give it a scaled gradient step
        wrong = ((X <= lo) & (D < 0) & (G < 0)) | ((X >= hi) & (D > 0) & (G > 0))
        if wrong.any():
            hdiag = torch.diagonal(H, dim1=1, dim2=2).abs().clamp(min=1e-8) if dense else torch.ones_like(G)
            D = torch.where(wrong, -G / hdiag, D)
        D = torch.where(todo[:, None], D, torch.zeros_like(D))
        # curvature along the step: ~0 means a flat (possibly unbounded) direction
        Df = D * free
        curv = (Df * (H @ Df[:, :, None])[:, :, 0]).sum(1) if dense else (Df * hvp(Df)).sum(1)
        flat_dir = curv.abs() <= 1e-12 * (G * D).sum(1).abs()
        # cap very long steps (near-singular curvature) at 1e3 max(1, |x|)
        cap = 1e3 * X.abs().amax(1).clamp(min=1.0)
        dlen = D.abs().amax(1)
        D = D * torch.where(dlen > cap, cap / dlen.clamp(min=1e-300), torch.ones_like(dlen))[:, None]
        # Line search, per row. First the projected full step (it may change many active
        # bounds at once); if it fails Armijo, a feasible-direction search: the free part of
        # the step, cut at the first bound it meets, then halved (no projection, so the
        # descent property of the Newton direction is kept on ill-conditioned problems).
        slack = 1e-14 * (1 + L.abs())  # roundoff in L: accept steps that only lose that much
        Xt = _project(X + D, lo, hi)
        Lt = al.value_nograd(Xt)
        ok = todo & torch.isfinite(Lt) & (Lt <= L + 1e-4 * (G * (Xt - X)).sum(1) + slack)
        ok &= torch.isfinite(Xt).all(1)
        Xnew = torch.where(ok[:, None], Xt, X)
        pending = todo & ~ok
        alpha = torch.where(ok, torch.ones_like(L), torch.zeros_like(L))
        if pending.any():
            Df = D * free
            out_lo = (X <= lo) & (Df < 0)
            out_hi = (X >= hi) & (Df > 0)
            Df = torch.where(out_lo | out_hi, torch.zeros_like(Df), Df)
            room = torch.where(Df > 0, (hi - X) / Df.clamp(min=1e-300),
                               torch.where(Df < 0, (lo - X) / Df.clamp(max=-1e-300), torch.full_like(Df, float("inf"))))
            amax = room.amin(1).clamp(min=0.0, max=1.0)
            a = torch.where(amax > 0, amax, torch.ones_like(amax))
            # variables held near a bound move onto it (a fraction a of the way)
            to_bound = torch.where(X >= hi - eps, hi - X, lo - X)
            Df = torch.where(fixed, to_bound, Df)
            for _ls in range(50):
                Xt = _project(X + a[:, None] * Df, lo, hi)
                Lt = al.value_nograd(Xt)
                ok = pending & torch.isfinite(Lt) & (Lt <= L + 1e-4 * (G * (Xt - X)).sum(1) + slack)
                ok &= torch.isfinite(Xt).all(1)
                Xnew = torch.where(ok[:, None], Xt, Xnew)
                pending &= ~ok
                if not pending.any():
                    break
                a = torch.where(pending, 0.5 * a, a)
        # rows that took the full step on a (nearly) flat direction: extrapolate, so that an
        # unbounded direction is detected in a few steps instead of creeping along it
        grow = todo & ~pending & (alpha == 1.0) & flat_dir
        if grow.any():
            Lbest = al.value_nograd(Xnew)
            lin = (G * (X - Xnew)).sum(1)  # decrease predicted by the linear model
            flat = grow & (lin > 1e-6 * (1 + L.abs()))
            beta = 10.0
            while flat.any() and beta <= 1e12:
                Xt = _project(X + beta * D, lo, hi)
                Lt = al.value_nograd(Xt)
                ok = flat & torch.isfinite(Lt) & (Lt < Lbest) & torch.isfinite(Xt).all(1)
                Xnew = torch.where(ok[:, None], Xt, Xnew)
                Lbest = torch.where(ok, Lt, Lbest)
                flat &= ok
                beta *= 10.0
        # rows whose line search failed are stuck at the current point
        todo &= ~pending
        X = Xnew
        big = (X.abs().amax(1) > opts.unbounded) | (al.value_nograd(X) < -opts.unbounded)
        diverged |= big & running
        todo &= ~big
        if not todo.any():
            break
    return X, steps, diverged


def _row_gradient_norms(ev: Evaluator, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Infinity norms of grad f ``(B,)`` and of each constraint row's gradient ``(B, m)``."""
    Xr = X.detach().requires_grad_(True)
    with torch.enable_grad():
        f, g, h = ev.evaluate(Xr)
        c = torch.cat([g, h], dim=1)
        outs = [f] + [c[:, i] for i in range(c.shape[1])]
        norms = []
        for k, o in enumerate(outs):
            if not o.requires_grad:
                norms.append(torch.zeros_like(o))
                continue
            (gr,) = torch.autograd.grad(o.sum(), Xr, retain_graph=k < len(outs) - 1, allow_unused=True)
            norms.append(torch.zeros_like(o) if gr is None else gr.abs().amax(1))
    N = torch.stack(norms, dim=1).detach()
    N = torch.where(torch.isfinite(N), N, torch.zeros_like(N))
    return N[:, 0], N[:, 1:]


def auglag(
    ev: Evaluator,
    X0: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    lam0: torch.Tensor | None = None,
    mu0: torch.Tensor | None = None,
    options: AugLagOptions | None = None,
) -> AugLagOutput:
    """Solve the batch; ``lam0``/``mu0`` are dual warm starts in the documented convention."""
    opts = options or AugLagOptions()
    B, n = X0.shape
    mI, mE = ev.m_ineq, ev.m_eq
    dt, dev = X0.dtype, X0.device
    lo = lo.to(dt).expand(B, n)
    hi = hi.to(dt).expand(B, n)
    X = _project(X0.detach().clone(), lo, hi)
    status = ["running"] * B
    messages = [""] * B

    with torch.no_grad():
        f0, g0, h0 = ev.evaluate(X)
    bad0 = ~torch.isfinite(f0)
    if mI:
        bad0 |= ~torch.isfinite(g0).all(1)
    if mE:
        bad0 |= ~torch.isfinite(h0).all(1)

    # gradient-based scaling (IPOPT's rule: scale so gradients at x0 are at most 100)
    nf, nc = _row_gradient_norms(ev, X)
    sf = (opts.grad_scale / nf.clamp(min=opts.grad_scale)).to(dt)
    sc = opts.grad_scale / nc.clamp(min=opts.grad_scale)
    sg, sh = sc[:, :mI], sc[:, mI:]

    lam = X.new_zeros(B, mI) if lam0 is None else lam0.to(dt).reshape(B, mI).clamp(min=0)
    mu = X.new_zeros(B, mE) if mu0 is None else mu0.to(dt).reshape(B, mE)
    lam_s = lam * sf[:, None] / sg
    mu_s = mu * sf[:, None] / sh

    c2 = X.new_zeros(B)
    if mI:
        c2 = c2 + ((g0 * sg).clamp(min=0) ** 2).sum(1)
    if mE:
        c2 = c2 + ((h0 * sh) ** 2).sum(1)
    fs0 = (sf * f0).abs()
    if opts.rho0 is not None:
        rho = torch.full((B,), float(opts.rho0), dtype=dt, device=dev)
    else:
        rho = (10 * fs0.clamp(min=1.0) / c2.clamp(min=1.0)).clamp(1e-1, 1e3)
        rho = torch.where(torch.isfinite(rho), rho, torch.full_like(rho, 10.0))

    al = _AL(ev, sf, sg, sh)
    running = ~bad0
    for b in torch.nonzero(bad0).flatten().tolist():
        status[b] = "nan"
        messages[b] = "a function returned NaN or inf at x0 (after projection onto the bounds)"
    inner_tol = torch.full((B,), 1e-2, dtype=dt, device=dev)
    inner_min = 0.1 * opts.tol
    V_prev = torch.full((B,), float("inf"), dtype=dt, device=dev)
    stall = torch.zeros(B, dtype=torch.long, device=dev)
    infeasible = torch.zeros(B, dtype=torch.bool, device=dev)
    nit = 0
    outer = 0
    m = None
    for outer in range(1, opts.max_outer + 1):  # noqa: B007
        if not running.any():
            break
        al.lam, al.mu, al.rho = lam_s, mu_s, rho
        X, steps, diverged = _newton(al, X, lo, hi, inner_tol, running, opts)
        nit += steps
        with torch.no_grad():
            f, g, h = ev.evaluate(X)
        gs = g * sg
        hs = h * sh
        V = X.new_zeros(B)
        if mE:
            V = torch.maximum(V, hs.abs().amax(1))
        if mI:
            V = torch.maximum(V, torch.maximum(gs, -lam_s / rho[:, None]).abs().amax(1))
        new_lam = (lam_s + rho[:, None] * gs).clamp(0, 1e20)
        new_mu = (mu_s + rho[:, None] * hs).clamp(-1e20, 1e20)
        upd = running & torch.isfinite(V)
        lam_s = torch.where(upd[:, None], new_lam, lam_s)
        mu_s = torch.where(upd[:, None], new_mu, mu_s)
        lam_u = lam_s * sg / sf[:, None]
        mu_u = mu_s * sh / sf[:, None]
        m = measures(ev, X, lam_u, mu_u, lo, hi)
        done = running & (m.violation <= opts.tol) & (m.kkt <= opts.tol)
        for b in torch.nonzero(done).flatten().tolist():
            status[b] = "optimal"
        unb = running & ~done & diverged
        for b in torch.nonzero(unb).flatten().tolist():
            status[b] = "unbounded"
            messages[b] = "the objective decreased without bound along feasible iterates (below -1e20 or |x| > 1e20)"
        nanrow = running & ~done & ~m.finite
        for b in torch.nonzero(nanrow).flatten().tolist():
            status[b] = "nan"
            messages[b] = "a function returned NaN or inf at the iterate and no step could avoid it"
        running &= ~(done | unb | nanrow)
        # penalty update and infeasibility detection
        grow = running & (V > opts.decrease * V_prev) & (m.violation > opts.tol)
        rho = torch.where(grow, (rho * opts.rho_growth).clamp(max=opts.rho_max), rho)
        big = rho >= 1e6
        stall = torch.where(running & big & (V >= 0.9 * V_prev), stall + 1, torch.zeros_like(stall))
        stuck = running & (m.violation > opts.tol) & ((stall >= 2) | (rho >= opts.rho_max) & grow)
        infeasible = stuck & (m.violation > opts.infeasible_tol)
        for b in torch.nonzero(stuck & ~infeasible).flatten().tolist():
            status[b] = "not_converged"
            messages[b] = (
                f"progress stalled at violation {float(m.violation[b]):.3g} and KKT residual "
                f"{float(m.kkt[b]):.3g} (penalty {float(rho[b]):.3g}); derivatives may be too "
                "inaccurate for the requested tol"
            )
        for b in torch.nonzero(infeasible).flatten().tolist():
            status[b] = "infeasible"
            messages[b] = (
                f"no feasible point found: the violation stalled at {float(m.violation[b]):.3g} "
                f"while the penalty grew to {float(rho[b]):.3g}; the constraints may be inconsistent"
            )
        running &= ~stuck
        V_prev = torch.where(upd, V, V_prev)
        inner_tol = torch.clamp(torch.minimum(0.1 * inner_tol, V.clamp(min=inner_min)), min=inner_min)
    if m is None:
        lam_u = lam_s * sg / sf[:, None]
        mu_u = mu_s * sh / sf[:, None]
        m = measures(ev, X, lam_u, mu_u, lo, hi)
    for b in torch.nonzero(running).flatten().tolist():
        status[b] = "max_iter"
        messages[b] = (
            f"stopped after {opts.max_outer} outer iterations with violation "
            f"{float(m.violation[b]):.3g} and KKT residual {float(m.kkt[b]):.3g}"
        )
    for b, s in enumerate(status):
        if s == "optimal":
            messages[b] = "violation and KKT residual within tolerance"
    return AugLagOutput(
        X=X, lam=lam_u, mu=mu_u, z=m.bound_multipliers, f=m.f, violation=m.violation,
        kkt=m.kkt, status=status, messages=messages, nit=nit, outer=outer, rho=rho,
        info={"hessian": al.hess_mode, "rho": rho},
    )
