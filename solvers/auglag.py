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
  ``dense_max`` (400) variables the step is Steihaug-Toint truncated CG on
  Hessian-vector products, with the same radius and acceptance test. Newton converges
  quadratically, which is what makes 1e-8 accuracy affordable where first-order AL
  stalls near 1e-5.
* Polishing (ALGENCAN's acceleration; up to ``dense_max`` variables and ``2 dense_max``
  variables + constraints, the size of its dense KKT matrix): after each outer
  iteration, Newton's method on the KKT system of the active set the AL iterate
  identifies (with a primal-dual active-set update). Its point is kept only if it passes
  the same violation / KKT test and has no negative curvature along the active manifold.
  This gives quadratic convergence once the active set is right, instead of the linear
  rate of the multiplier updates, and solves problems whose solution is pinned by the
  constraints (a vertex) even from far away.
* Stop per instance when ``max_violation <= tol`` and ``kkt_residual <= tol`` (see
  ``solvers.kkt``). ``infeasible``: the violation stopped decreasing while ``rho`` was
  already large. ``unbounded``: the objective fell below ``-1e20`` or ``|x| > 1e20``.
  ``nan``: a function returned NaN/inf at a point the method could not step away from.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .constraints import Evaluator
from .kkt import measures
from .krylov import steihaug

__all__ = ["AugLagOptions", "AugLagOutput", "auglag"]


@dataclass
class AugLagOptions:
    """Tuning knobs; the defaults aim at 1e-8 violation and KKT residual.

    ``grad_scale`` / ``grad_scale_up``: row scaling (see the module docstring); ``polish``:
    the active-set Newton-KKT phase; ``verbose``: 1 prints one line per outer iteration
    (first instance of the batch), 2 also one per inner step.
    """

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
    grad_scale_up: float = 100.0
    polish: bool = True
    verbose: int = 0


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


class _Lagrangian(_AL):
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


def _scaled_jacobian(ev: Evaluator, X: torch.Tensor, sc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
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
            (J,) = torch.autograd.grad(c, Xr, grad_outputs=eye, is_grads_batched=True, retain_graph=True,
                                       allow_unused=True)
            J = X.new_zeros(B, m, n) if J is None else J.permute(1, 0, 2)
        except RuntimeError:
            rows = []
            for i in range(m):
                (r,) = torch.autograd.grad(c[:, i].sum(), Xr, retain_graph=True, allow_unused=True)
                rows.append(torch.zeros_like(X) if r is None else r)
            J = torch.stack(rows, dim=1)
    return c.detach(), J.detach()


def _polish(
    lag: _Lagrangian,
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
    y = torch.cat([lam, mu], dim=1)
    c, _ = _scaled_jacobian(lag.ev, X, sc)
    act = torch.ones_like(y, dtype=torch.bool)
    act[:, :mI] = (lam + rho[:, None] * c[:, :mI]) > 0
    y = torch.where(act, y, torch.zeros_like(y))
    rel = max(1e-10, 100 * torch.finfo(dt).eps)
    fin_lo, fin_hi = torch.isfinite(lo), torch.isfinite(hi)

    def on_bounds(Z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (fin_lo & (Z <= lo + rel * (1 + lo.abs())), fin_hi & (Z >= hi - rel * (1 + hi.abs())))

    def kkt_matrix(H, J, free, a):
        Hm = H * free[:, :, None] * free[:, None, :] + torch.diag_embed(1.0 - free)
        Jm = J * a[:, :, None] * free[:, None, :]
        K = torch.cat([torch.cat([Hm, Jm.transpose(1, 2)], 2), torch.cat([Jm, torch.diag_embed(1.0 - a)], 2)], 1)
        return torch.where(torch.isfinite(K), K, torch.zeros_like(K))

    rows = rows.clone()
    best_r = torch.full((B,), float("inf"), dtype=dt, device=X.device)
    best_X, best_y, best_act = X.clone(), y.clone(), act.clone()
    worse = torch.zeros(B, dtype=torch.long, device=X.device)
    fixed = torch.zeros_like(X, dtype=torch.bool)
    for it in range(max_iter):
        lag.newton_steps += 1
        lag.lam, lag.mu = y[:, :mI], y[:, mI:]
        _, G, H = lag.hessian(X)
        c, J = _scaled_jacobian(lag.ev, X, sc)
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
        # KKT residual independent of the active set
        res = (X - _project(X - G, lo, hi)).abs().amax(1)
        if mI:
            res = torch.maximum(res, torch.minimum(-c[:, :mI], y[:, :mI]).abs().amax(1))
        if mE:
            res = torch.maximum(res, c[:, mI:].abs().amax(1))
        res = torch.where(torch.isfinite(res) & torch.isfinite(X).all(1), res, torch.full_like(res, float("inf")))
        better = rows & (res < best_r)
        best_X = torch.where(better[:, None], X, best_X)
        best_y = torch.where(better[:, None], y, best_y)
        best_act = torch.where(better[:, None], act, best_act)
        worse = torch.where(better, torch.zeros_like(worse), worse + 1)
        best_r = torch.where(better, res, best_r)
        rows &= (worse < 2) & (res > 1e-15 * (1 + G.abs().amax(1))) & torch.isfinite(res)
        if not rows.any():
            break
        free = (~fixed).to(dt)
        a = act.to(dt)
        K = kkt_matrix(H, J, free, a)
        rhs = -torch.cat([G * free, c * a + y * (1.0 - a)], 1)
        reg = 1e-12 * K.abs().amax((1, 2)).clamp(min=1.0)
        D = torch.cat([free, -a], 1) * reg[:, None]
        try:
            sol = torch.linalg.solve(K + torch.diag_embed(D), rhs[:, :, None])[:, :, 0]
        except RuntimeError:
            sol = torch.linalg.lstsq(K, rhs[:, :, None]).solution[:, :, 0]
        ok = torch.isfinite(sol).all(1) & rows
        Xn = X + sol[:, :n] * free
        fixed |= ((Xn < lo) | (Xn > hi)) & ok[:, None]  # stays on the bound it crossed
        X = torch.where(ok[:, None], _project(Xn, lo, hi), X)
        y = torch.where(ok[:, None], y + sol[:, n:], y)
        rows &= ok
    second_order = torch.zeros(B, dtype=torch.bool, device=X.device)
    near = best_r <= max(1e4 * tol, 1e-6)
    if near.any():  # inertia of the KKT matrix at the returned point
        lag.lam, lag.mu = best_y[:, :mI], best_y[:, mI:]
        _, G, H = lag.hessian(best_X)
        _, J = _scaled_jacobian(lag.ev, best_X, sc)
        at_lo, at_hi = on_bounds(best_X)
        free = (~((at_lo & (G > 0)) | (at_hi & (G < 0)))).to(dt)
        ev = torch.linalg.eigvalsh(kkt_matrix(H, J, free, best_act.to(dt)))
        neg = (ev < -1e-9 * ev.abs().amax(1, keepdim=True)).sum(1)
        second_order = near & (neg <= best_act.sum(1))
    return best_X, best_y[:, :mI], best_y[:, mI:], second_order


def _project(X: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
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
                n: int) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """Trust-region Newton step on the free variables: returns ``step(radius)`` and the first
    radius (``inf`` keeps a positive definite Newton step whole; otherwise the length of the
    |eigenvalue|-modified Newton step, or of the truncated-CG step, capped at ``cap``)."""
    Gf = torch.where(todo[:, None], G * free, torch.zeros_like(G))
    if dense:
        Hm = H * free[:, :, None] * free[:, None, :] + torch.diag_embed(1.0 - free)
        e, V = torch.linalg.eigh(Hm)
        a = (V.transpose(1, 2) @ Gf[:, :, None])[:, :, 0]
        floor = 1e-10 * e.abs().amax(1).clamp(min=1.0)
        pd = e[:, 0] > floor
        s_abs = (V @ (a / torch.maximum(e.abs(), floor[:, None]))[:, :, None])[:, :, 0]
        r0 = s_abs.norm(dim=1).clamp(max=cap)
        delta = torch.where(torch.isinf(delta) & ~pd, r0, delta)

        def step(radius: torch.Tensor) -> torch.Tensor:
            return _eig_tr_step(e, V, a, radius, floor, Gf) * free
        return step, delta

    def op(P: torch.Tensor) -> torch.Tensor:
        return hmv(P * free) * free + P * (1.0 - free)

    gnorm = Gf.norm(dim=1)
    rtol = torch.clamp(gnorm.sqrt(), min=1e-12, max=0.5)
    S_cg, info = steihaug(op, Gf, delta, rtol=rtol, maxiter=min(2 * n, 500))
    S_cg = S_cg * free
    lens = S_cg.norm(dim=1)
    big = lens > cap
    S_cg = torch.where(big[:, None], S_cg * (cap / lens.clamp(min=1e-300))[:, None], S_cg)
    delta = torch.where(torch.isinf(delta) & (info["negative_curvature"] | big), S_cg.norm(dim=1), delta)

    def step(radius: torch.Tensor) -> torch.Tensor:
        ln = S_cg.norm(dim=1)
        f = torch.where(ln > radius, radius / ln.clamp(min=1e-300), torch.ones_like(ln))
        return S_cg * f[:, None]
    return step, delta


def _newton(
    al: _AL,
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
    verbose = opts.verbose > 1
    for _ in range(opts.max_inner):
        if dense:
            L, G, H = al.hessian(X)
            H = torch.where(torch.isfinite(H), H, torch.zeros_like(H))

            def hmv(P: torch.Tensor, H=H) -> torch.Tensor:
                return (H @ P[:, :, None])[:, :, 0]
        else:
            L, G, hmv = al.hvp_operator(X)
        pg = X - _project(X - G, lo, hi)
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
            step, delta0 = _model_step(G, free_b.to(dt), todo, delta, cap, dense, H if dense else None, hmv, n)
            S0 = step(delta0)
            clip = free_b & todo[:, None] & (((X + S0 < lo) & (X <= lo + eps)) | ((X + S0 > hi) & (X >= hi - eps)))
            if not clip.any():
                break
            free_b &= ~clip
        delta = delta0

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
            Xt = _project(X + S, lo, hi)
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
                Xt = _project(X + beta * P_acc, lo, hi)
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
        pg = X - _project(X - al.grad(X)[1], lo, hi)
        converged |= todo & (pg.abs().amax(1) <= inner_tol)
    return X, steps, diverged, converged


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

    al = _AL(ev, sf, sg, sh)
    lag = _Lagrangian(ev, sf, sg, sh)
    polished = torch.zeros(B, dtype=torch.bool, device=dev)
    npolish = 0
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
        X, steps, diverged, inner_ok = _newton(al, X, lo, hi, inner_tol, running, opts)
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
        if opts.polish and n + mI + mE <= 2 * opts.dense_max and n <= opts.dense_max and try_polish.any():
            Xp, lp, mp, so = _polish(lag, X, lam_s, mu_s, rho, lo, hi, try_polish, opts.tol)
            mpol = measures(ev, Xp, lp * sg / sf[:, None], mp * sh / sf[:, None], lo, hi)
            good = try_polish & so & mpol.finite & (mpol.violation <= opts.tol) & (mpol.kkt <= opts.tol)
            npolish += int(try_polish.sum())
            if opts.verbose:
                print(f"  polish: tried {bool(try_polish[0])} accepted {bool(good[0])} viol {float(mpol.violation[0]):.2e} "
                      f"kkt {float(mpol.kkt[0]):.2e} second-order {bool(so[0])} f {float(mpol.f[0]):.10g}")
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
