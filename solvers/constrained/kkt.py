"""Optimality measures shared by every method: violation, KKT residual, multipliers.

All methods are graded by the same code after they return, so ``success`` means the same
thing whichever back end ran. Definitions, per instance:

* ``max_violation = max(max(g, 0), |h|, lo - x, x - hi)`` (absolute, in the units of the
  constraints and variables).
* ``kkt_residual = max(stationarity, complementarity)`` with
  ``stationarity = ||x - clip(x - grad_x l, lo, hi)||_inf / max(1, ||grad f||_inf)``
  (the projected gradient of the Lagrangian ``l = f + ineq.g + eq.h``, relative to the
  objective's gradient) and ``complementarity = max_i |min(-g_i, ineq_i)|``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .constraints import Evaluator

__all__ = ["Compiled", "Measures", "measures", "estimate_multipliers"]


@dataclass
class Measures:
    f: torch.Tensor  # (B,)
    g: torch.Tensor  # (B, mI)
    h: torch.Tensor  # (B, mE)
    violation: torch.Tensor  # (B,)
    stationarity: torch.Tensor  # (B,)
    complementarity: torch.Tensor  # (B,)
    kkt: torch.Tensor  # (B,)
    bound_multipliers: torch.Tensor  # (B, n), signed
    finite: torch.Tensor  # (B,) bool: f, g, h and gradients finite


def _grad(out: torch.Tensor, X: torch.Tensor, retain: bool = False) -> torch.Tensor:
    if not out.requires_grad:
        return torch.zeros_like(X)
    (g,) = torch.autograd.grad(out, X, retain_graph=retain, allow_unused=True)
    return torch.zeros_like(X) if g is None else g


@dataclass
class Compiled:
    """What a compiled graph (IPOPT's captured problem) computed at one point: ``f`` and
    the constraint values (inequalities, then equalities), ``grad f`` and ``grad l``."""

    values: np.ndarray  # (1 + mI + mE,)
    gf: torch.Tensor  # (1, n)
    gl: torch.Tensor  # (1, n)

    def agrees(self, f: torch.Tensor, g: torch.Tensor, h: torch.Tensor) -> bool:
        """Whether torch's values are the compiled ones (up to rounding): then the graph is
        the user's function there and its derivatives can stand in for torch's."""
        mine = torch.cat([f.reshape(1, 1), g, h], dim=1).detach().cpu().double().numpy().ravel()
        return mine.shape == self.values.shape and bool(
            np.all(np.abs(mine - self.values) <= 1e-8 * np.maximum(1.0, np.abs(mine))))


def gradients(
    ev: Evaluator, X: torch.Tensor, lam: torch.Tensor, mu: torch.Tensor, gf: torch.Tensor | None = None,
    compiled: Compiled | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``f, g, h, grad f, grad l`` at ``X`` (all detached), ``l = f + lam.g + mu.h``. With
    ``gf`` given (the compiled gradient IPOPT used), ``grad l`` takes one backward pass;
    with ``compiled`` values that torch's forward pass confirms, none."""
    if compiled is not None:
        with torch.no_grad():
            f, g, h = ev.evaluate(X.detach())
        if compiled.agrees(f, g, h):
            return f, g, h, compiled.gf, compiled.gl
        gf = None  # the graph is not the function here: every derivative from torch
    Xr = X.detach().requires_grad_(True)
    with torch.enable_grad():
        f, g, h = ev.evaluate(Xr)
        lin = (g * lam).sum() + (h * mu).sum() if (g.numel() + h.numel()) else None
        if gf is not None:
            gl = _grad(f.sum() + lin if lin is not None else f.sum(), Xr)
        else:
            gf = _grad(f.sum(), Xr, retain=lin is not None)
            gl = gf + _grad(lin, Xr) if lin is not None else gf
    return f.detach(), g.detach(), h.detach(), gf, gl


def measures(
    ev: Evaluator,
    X: torch.Tensor,
    lam: torch.Tensor,
    mu: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    gf: torch.Tensor | None = None,
    compiled: Compiled | None = None,
) -> Measures:
    """Violation, KKT residual and bound multipliers at ``X`` for given multipliers; ``gf``:
    ``grad f`` at ``X`` when already known (it only scales the stationarity); ``compiled``:
    a compiled graph's values and gradients at ``X``, used when torch's values agree."""
    f, g, h, gf, gl = gradients(ev, X, lam, mu, gf, compiled)
    pg = X - torch.minimum(torch.maximum(X - gl, lo), hi)
    zero = X.new_zeros(X.shape[0])
    viol = torch.maximum(zero, (lo - X).amax(1))
    viol = torch.maximum(viol, (X - hi).amax(1))
    if g.shape[1]:
        viol = torch.maximum(viol, g.clamp(min=0).amax(1))
    if h.shape[1]:
        viol = torch.maximum(viol, h.abs().amax(1))
    stat = pg.abs().amax(1) / gf.abs().amax(1).clamp(min=1.0)
    compl = torch.minimum(-g, lam).abs().amax(1) if g.shape[1] else zero
    finite = torch.isfinite(f) & torch.isfinite(gl).all(1) & torch.isfinite(gf).all(1)
    if g.shape[1]:
        finite &= torch.isfinite(g).all(1)
    if h.shape[1]:
        finite &= torch.isfinite(h).all(1)
    nan = torch.full_like(viol, float("nan"))
    kkt = torch.where(finite, torch.maximum(stat, compl), nan)
    viol = torch.where(finite, viol, nan)
    return Measures(f, g, h, viol, stat, compl, kkt, pg - gl, finite)


def estimate_multipliers(
    ev: Evaluator, X: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, active_tol: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares multipliers at a point returned by a back end without usable duals.

    Solves ``min ||grad f + J_A^T y + bound terms||`` over the near-active inequalities
    (``g_i > -active_tol``), all equalities and the active bounds, with ``y >= 0`` for
    inequalities and bounds (``scipy.optimize.lsq_linear``). One instance at a time.
    """
    from scipy.optimize import lsq_linear

    B, n = X.shape
    mI, mE = ev.m_ineq, ev.m_eq
    lam = X.new_zeros(B, mI)
    mu = X.new_zeros(B, mE)
    if mI + mE == 0:
        return lam, mu
    Xr = X.detach().requires_grad_(True)
    with torch.enable_grad():
        f, g, h = ev.evaluate(Xr)
        gf = _grad(f.sum(), Xr, retain=True).detach().cpu().numpy()
        rows = []
        c = torch.cat([g, h], dim=1)
        for i in range(mI + mE):
            rows.append(_grad(c[:, i].sum(), Xr, retain=True).detach().cpu().numpy())
    J = np.stack(rows, axis=1)  # (B, m, n)
    gv = g.detach().cpu().numpy()
    xv, lov, hiv = X.detach().cpu().numpy(), lo.cpu().numpy(), hi.cpu().numpy()
    for b in range(B):
        best = None
        # interior-point methods stop slightly inside: try widening active thresholds and
        # keep the multipliers with the smallest KKT residual
        for thr in (active_tol, 1e-4, 1e-3):
            act_i = np.nonzero(gv[b] > -thr)[0]
            with np.errstate(invalid="ignore"):
                at_lo = np.nonzero(np.isfinite(lov) & (xv[b] <= lov + thr * np.maximum(1, np.abs(lov))))[0]
                at_hi = np.nonzero(np.isfinite(hiv) & (xv[b] >= hiv - thr * np.maximum(1, np.abs(hiv))))[0]
            cols = [J[b, act_i].T, J[b, mI:].T, -np.eye(n)[:, at_lo], np.eye(n)[:, at_hi]]
            A = np.concatenate(cols, axis=1)
            if A.shape[1] == 0 or not np.all(np.isfinite(A)) or not np.all(np.isfinite(gf[b])):
                continue
            k1, k2 = len(act_i), len(act_i) + mE
            lb = np.full(A.shape[1], 0.0)
            lb[k1:k2] = -np.inf
            sol = lsq_linear(A, -gf[b], bounds=(lb, np.full(A.shape[1], np.inf)), method="bvls")
            y = sol.x
            score = max(np.abs(A @ y + gf[b]).max(), np.abs(y[:k1] * gv[b, act_i]).max() if k1 else 0.0)
            if best is None or score < best[0] * 0.5:
                best = (score, act_i, y[:k1], y[k1:k2])
        if best is None:
            continue
        _, act_i, yi, ye = best
        lam[b, torch.as_tensor(act_i, dtype=torch.long)] = torch.as_tensor(yi, dtype=X.dtype, device=X.device)
        mu[b] = torch.as_tensor(ye, dtype=X.dtype, device=X.device)
    return lam, mu
