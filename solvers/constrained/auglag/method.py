"""Augmented Lagrangian method on torch: batched, GPU-ready, second order inside.

Problem: ``min f(x)  s.t.  g(x) <= 0, h(x) = 0, lo <= x <= hi`` for a batch of ``B``
independent instances stacked in ``X (B, n)``; every step below is one torch computation
over the whole batch, so it runs on the GPU when the tensors are on CUDA.

Method (in the spirit of ALGENCAN / LANCELOT, Powell-Hestenes-Rockafellar form):

* Scaling: objective and each constraint row are scaled so that their gradients at
  ``x0`` have infinity norm in ``[1, 100]`` (down to 100 as IPOPT does; up to 1 by at
  most 100x, so that a small objective is not swamped by the penalty and constraints
  with small gradients do not need huge multipliers); results are unscaled.
* Outer loop: the bound-constrained subproblem
  ``min_x L(x) = f + mu.h + rho/2 |h|^2 + 1/(2 rho) sum(max(0, lam + rho g)^2 - lam^2)``
  is solved, then the first-order updates ``lam <- max(0, lam + rho g)`` and
  ``mu <- mu + rho h`` are applied. The penalty ``rho`` (per instance) grows 10x when the
  infeasibility-complementarity measure did not fall by 4x.
* Inner loop: projected trust-region Newton. The exact Hessian of ``L`` comes from
  autograd (``n`` batched Hessian-vector products; finite differences of gradients if a
  function is not twice differentiable). Bertsekas' epsilon-active bounds are fixed; on
  the free variables the step solves the trust-region subproblem exactly from an
  eigendecomposition (More-Sorensen shift, so negative curvature is used, not just
  flipped), is projected onto the box and accepted on the ratio of actual to predicted
  decrease. A free variable on a bound whose Newton component points outward is held
  and the step recomputed without it (otherwise the projection cuts the step into a
  non-descent direction and the iteration zigzags on degenerate bounds). Above
  ``dense_max`` (400) variables and up to ``factor_max`` (1500) the Hessian is still
  formed (one batched pass of Hessian-vector products): a positive definite one gives
  the Newton step by Cholesky, an indefinite one Steihaug-Toint CG on it. Above
  ``factor_max`` the step is Steihaug-Toint truncated CG on Hessian-vector products,
  with the same radius and acceptance test (unpreconditioned CG stalls on the
  ill-conditioned subproblems of large penalties, which is why the factored tier exists). Newton converges
  quadratically, which is what makes 1e-8 accuracy affordable where first-order AL
  stalls near 1e-5.
* Polishing (ALGENCAN's acceleration): after each outer iteration, Newton's method on
  the KKT system of the active set the AL iterate identifies (with a primal-dual
  active-set update). Up to ``factor_max`` variables and ``2 factor_max`` variables +
  constraints the KKT matrix is formed and solved (``polish``); above, nothing is formed:
  MINRES on Hessian- and Jacobian-vector products (``operator_polish``). There a failed
  polish still warm-starts the next subproblem where it lowers the augmented Lagrangian
  (truncated CG alone creeps on large subproblems with many active bounds). Above
  ``dense_max`` variables a polish costs hundreds of products, so a row waits 2, 4, 8,
  ... outer iterations after each failed polish before the next. A
  polished point is kept only if it passes the same violation / KKT test and has no negative curvature along the active manifold.
  This gives quadratic convergence once the active set is right, instead of the linear
  rate of the multiplier updates, and solves problems whose solution is pinned by the
  constraints (a vertex) even from far away.
* Stop per instance when ``max_violation <= tol`` and ``kkt_residual <= tol`` (see
  ``solvers.constrained.kkt``). ``infeasible``: the violation stopped decreasing while ``rho`` was
  already large. ``unbounded``: the objective fell below ``-1e20`` or ``|x| > 1e20``.
  ``nan``: a function returned NaN/inf at a point the method could not step away from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..constraints import Evaluator
from ..kkt import Measures, measures
from ..row_norms import row_max_abs
from .inner import AugmentedLagrangian, newton_solve, project
from .operator_polish import polish_operator
from .options import AugLagOptions
from .polish import Lagrangian, polish

__all__ = ["AugLagOptions", "AugLagOutput", "auglag"]


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


def _row_gradient_norms(ev: Evaluator, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Infinity norms of grad f ``(B,)`` and of each constraint row's gradient ``(B, m)``."""
    Xr = X.detach().requires_grad_(True)
    with torch.enable_grad():
        f, g, h = ev.evaluate(Xr)
        N = row_max_abs(torch.cat([f.reshape(-1, 1), g, h], dim=1), Xr)
    return N[:, 0], N[:, 1:]


def _scale_factors(norms: torch.Tensor, opts: AugLagOptions) -> torch.Tensor:
    """Scale factors for the objective / constraint rows from their gradient infinity norms
    at ``x0``: above ``grad_scale`` (100) scaled down to it (IPOPT's rule), below 1 scaled
    up to 1 by at most ``grad_scale_up`` (100); a zero gradient carries no information and
    is left alone. Balanced rows keep the penalty from swamping a small objective (the
    first subproblems would otherwise be pure feasibility problems) and keep multipliers
    of constraints with small gradients (``1e-3 x <= 1``) from being huge."""
    down = opts.grad_scale / norms.clamp(min=opts.grad_scale)
    up = 1.0 / norms.clamp(min=1.0 / max(opts.grad_scale_up, 1.0))
    return torch.where((norms > 0) & (norms < 1), up, down)


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
    X = project(X0.detach().clone(), lo, hi)
    status = ["running"] * B
    messages = [""] * B

    with torch.no_grad():
        f0, g0, h0 = ev.evaluate(X)
    bad0 = ~torch.isfinite(f0)
    if mI:
        bad0 |= ~torch.isfinite(g0).all(1)
    if mE:
        bad0 |= ~torch.isfinite(h0).all(1)

    # gradient-based scaling: gradient infinity norms at x0 brought into [1, 100]
    nf, nc = _row_gradient_norms(ev, X)
    sf = _scale_factors(nf, opts).to(dt)
    sc = _scale_factors(nc, opts)
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

    al = AugmentedLagrangian(ev, sf, sg, sh)
    lag = Lagrangian(ev, sf, sg, sh)
    polished = torch.zeros(B, dtype=torch.bool, device=dev)
    npolish = 0
    polish_fails = torch.zeros(B, dtype=torch.long, device=dev)  # operator polishes that failed, per row
    polish_next = torch.zeros(B, dtype=torch.long, device=dev)  # the outer iteration of a row's next one
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
    m: Measures | None = None
    for outer in range(1, opts.max_outer + 1):  # noqa: B007
        if not running.any():
            break
        al.lam, al.mu, al.rho = lam_s, mu_s, rho
        X, steps, diverged, inner_ok = newton_solve(al, X, lo, hi, inner_tol, running, opts)
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
        try_polish = running & ~done & m.finite & ~diverged
        if n > opts.dense_max:  # a large KKT factorization only once the iterate is nearly feasible
            try_polish &= m.violation <= 1e-3
        pmax = max(opts.factor_max, opts.dense_max)
        # a dense KKT matrix up to its size limit; operators (MINRES) above it. Above
        # dense_max a polish costs hundreds of products (forming the Hessian, or MINRES):
        # after each failed one a row waits twice as many outer iterations before the next
        dense_kkt = n + mI + mE <= 2 * pmax and n <= pmax
        if n > opts.dense_max:
            try_polish &= outer >= polish_next
        if opts.polish and try_polish.any():
            Xp, lp, mp, so = (polish if dense_kkt else polish_operator)(lag, X, lam_s, mu_s, rho, lo, hi,
                                                                         try_polish, opts.tol)
            mpol = measures(ev, Xp, lp * sg / sf[:, None], mp * sh / sf[:, None], lo, hi)
            good = try_polish & so & mpol.finite & (mpol.violation <= opts.tol) & (mpol.kkt <= opts.tol)
            npolish += int(try_polish.sum())
            if opts.verbose:
                print(f"  polish: tried {bool(try_polish[0])} accepted {bool(good[0])} viol {float(mpol.violation[0]):.2e} "
                      f"kkt {float(mpol.kkt[0]):.2e} second-order {bool(so[0])} f {float(mpol.f[0]):.10g}")
            failed = try_polish & ~good
            polish_fails += failed.long()
            polish_next = torch.where(failed, outer + 2 ** polish_fails, polish_next)
            if not dense_kkt:  # truncated CG converges slowly on large subproblems: a polish that
                # did not finish still starts the next one where it lowers the augmented Lagrangian
                al.lam, al.mu, al.rho = lam_s, mu_s, rho
                lower = failed & (al.value_nograd(Xp) < al.value_nograd(X)) & torch.isfinite(Xp).all(1)
                X = torch.where(lower[:, None], Xp, X)
                if lower.any():  # the tests below read the measures of the point kept
                    m = measures(ev, X, lam_u, mu_u, lo, hi)
            if good.any():
                X = torch.where(good[:, None], Xp, X)
                lam_s = torch.where(good[:, None], lp, lam_s)
                mu_s = torch.where(good[:, None], mp, mu_s)
                lam_u = lam_s * sg / sf[:, None]
                mu_u = mu_s * sh / sf[:, None]
                m = measures(ev, X, lam_u, mu_u, lo, hi)
                done |= good
                polished |= good
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
        if opts.verbose:
            b0 = 0
            print(f"outer {outer:3d} inner {steps:3d} rho {float(rho[b0]):.2e} f {float(m.f[b0]):.10g} "
                  f"V {float(V[b0]):.2e} viol {float(m.violation[b0]):.2e} kkt {float(m.kkt[b0]):.2e} "
                  f"itol {float(inner_tol[b0]):.1e} ok {bool(inner_ok[b0])} |lam| {float(lam_u.abs().amax()) if mI else 0:.2e} "
                  f"|mu| {float(mu_u.abs().amax()) if mE else 0:.2e}")
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
        kkt=m.kkt, status=status, messages=messages, nit=nit + lag.newton_steps, outer=outer, rho=rho,
        info={"hessian": al.hess_mode, "rho": rho, "polished": polished, "polish_attempts": npolish,
              "polish_newton_steps": lag.newton_steps},
    )
