"""Local infeasibility: one test, applied to every method's result the same way.

A solve that ends with violation above ``feas_tol`` is checked by minimizing the
infeasibility ``phi(x) = 1/2 ||max(g, 0)||^2 + 1/2 ||h||^2`` within the bounds from the
point it returned (L-BFGS-B, autograd gradients). If the violation stops decreasing at a
positive value (a stationary point of ``phi`` with violation above ``feas_tol``), the
problem is *locally infeasible* there: the status is ``"infeasible"`` whichever method ran
(auglag, SLSQP, trust-constr, cvxpy), and the result reports that least-violation point
and its violation. If a feasible point turns up instead, the method simply did not
converge, and its status says so.
"""

from __future__ import annotations

import numpy as np
import torch

from .constraints import Evaluator

RESTORE_ITER = 200


def least_violation(ev: Evaluator, X: torch.Tensor, rows: list[int], lo: torch.Tensor,
                    hi: torch.Tensor) -> torch.Tensor:
    """``X`` with ``rows`` moved to a local minimizer of the infeasibility ``phi`` (within
    the bounds); other rows unchanged. Bounded work: at most ``RESTORE_ITER`` iterations."""
    from scipy.optimize import minimize

    X = X.detach().clone()
    if not rows:
        return X
    idx = torch.as_tensor(rows, dtype=torch.long, device=X.device)
    lov = lo.expand_as(X)[idx].detach().cpu().numpy().ravel()
    hiv = hi.expand_as(X)[idx].detach().cpu().numpy().ravel()
    bounds = list(zip(np.where(np.isfinite(lov), lov, None),  # type: ignore[call-overload]  # None: unbounded
                      np.where(np.isfinite(hiv), hiv, None)))  # type: ignore[call-overload]
    start = np.clip(X[idx].cpu().numpy().ravel(), lov, hiv)

    def phi(z: np.ndarray) -> tuple[float, np.ndarray]:
        Z = X.clone()
        Z[idx] = torch.as_tensor(z.reshape(len(rows), -1), dtype=X.dtype, device=X.device)
        Z.requires_grad_(True)
        with torch.enable_grad():
            _, g, h = ev.evaluate(Z)
            value = 0.5 * (g[idx].clamp(min=0) ** 2).sum() + 0.5 * (h[idx] ** 2).sum()
            if not value.requires_grad:
                return float(value.detach()), np.zeros_like(z)
            (grad,) = torch.autograd.grad(value, Z, allow_unused=True)
        grad_rows = np.zeros_like(z) if grad is None else grad[idx].detach().cpu().numpy().ravel()
        number = float(value.detach())
        if not np.isfinite(number) or not np.all(np.isfinite(grad_rows)):
            return float("inf"), np.zeros_like(z)
        return number, grad_rows

    try:
        res = minimize(phi, start, jac=True, method="L-BFGS-B", bounds=bounds,
                       options={"maxiter": RESTORE_ITER, "ftol": 1e-15, "gtol": 1e-12})
        z = np.clip(np.asarray(res.x, dtype=float), lov, hiv)
    except (ValueError, FloatingPointError, RuntimeError):
        return X
    X[idx] = torch.as_tensor(z.reshape(len(rows), -1), dtype=X.dtype, device=X.device)
    return X


def infeasible_message(violation: float, method: str) -> str:
    """The one wording of a locally infeasible result."""
    return (f"locally infeasible: the violation stopped decreasing at {violation:.3g} (a "
            f"stationary point of the constraint violation; {method}); the constraints may be "
            f"inconsistent")
