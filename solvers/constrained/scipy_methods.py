"""SciPy's SLSQP and trust-constr behind the same problem description.

The torch functions are exposed to SciPy as numpy callables with exact autograd
gradients and Jacobians (finite differences for functions that are not differentiable by
autograd); trust-constr also gets exact Hessian-vector products when autograd can supply
them, quasi-Newton (BFGS) otherwise. SciPy solves one instance at a time, so a batch is a
Python loop over its rows.

SciPy's own duals are not passed through: SLSQP and trust-constr report them with
opposite signs. The caller re-derives multipliers in the single documented convention
(``solvers.constrained.result``) with ``solvers.constrained.kkt.estimate_multipliers``. Dual warm starts are
not supported by either SciPy method and are ignored.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch

from .constraints import Evaluator

__all__ = ["ScipyOutput", "solve_scipy", "SCIPY_METHODS"]

SCIPY_METHODS = ("slsqp", "trust-constr")


@dataclass
class ScipyOutput:
    X: torch.Tensor
    nit: int
    messages: list[str]
    backend_success: list[bool]


class _RowView:
    """Numpy view of row ``b`` of a batched problem, caching the last evaluation."""

    def __init__(self, ev: Evaluator, X: torch.Tensor, b: int) -> None:
        self.ev, self.X, self.b = ev, X.detach().clone(), b
        self._key: bytes | None = None
        self.exact_hessian = ev.exact_hessian

    def _full(self, x: np.ndarray) -> torch.Tensor:
        X = self.X.clone()
        X[self.b] = torch.as_tensor(x, dtype=X.dtype, device=X.device)
        return X

    def _eval(self, x: np.ndarray) -> None:
        key = x.tobytes()
        if key == self._key:
            return
        X = self._full(x).requires_grad_(True)
        with torch.enable_grad():
            f, g, h = self.ev.evaluate(X)
            outs = [f[self.b : self.b + 1]] + [
                t for t in (g[self.b], h[self.b]) if t.numel()
            ]
            c = torch.cat(outs)
            rows = []
            for i in range(c.shape[0]):
                if c[i].requires_grad:
                    (gr,) = torch.autograd.grad(c[i], X, retain_graph=True, allow_unused=True)
                    rows.append(torch.zeros(X.shape[1], dtype=X.dtype) if gr is None else gr[self.b])
                else:
                    rows.append(torch.zeros(X.shape[1], dtype=X.dtype, device=X.device))
        J = torch.stack(rows).detach().cpu().numpy()
        vals = c.detach().cpu().numpy()
        mI = self.ev.m_ineq
        self.f, self.gf = float(vals[0]), J[0]
        self.g, self.Jg = vals[1 : 1 + mI], J[1 : 1 + mI]
        self.h, self.Jh = vals[1 + mI :], J[1 + mI :]
        self._key = key

    def fun(self, x: np.ndarray) -> float:
        self._eval(x)
        return self.f

    def grad(self, x: np.ndarray) -> np.ndarray:
        self._eval(x)
        return self.gf

    def hvp(self, x: np.ndarray, weights: np.ndarray | None, p: np.ndarray, part: str) -> np.ndarray:
        """Hessian-vector product of the objective (``part='f'``) or of ``w . c``."""
        X = self._full(x).requires_grad_(True)
        with torch.enable_grad():
            f, g, h = self.ev.evaluate(X)
            if part == "f":
                s = f[self.b]
            else:
                c = g[self.b] if part == "g" else h[self.b]
                s = (c * torch.as_tensor(weights, dtype=X.dtype, device=X.device)).sum()
            if not s.requires_grad:
                return np.zeros_like(p)
            (G,) = torch.autograd.grad(s, X, create_graph=True, allow_unused=True)
            if G is None or not G.requires_grad:
                return np.zeros_like(p)
            P = torch.zeros_like(X)
            P[self.b] = torch.as_tensor(p, dtype=X.dtype, device=X.device)
            (Hp,) = torch.autograd.grad((G * P).sum(), X, allow_unused=True)
        return np.zeros_like(p) if Hp is None else Hp[self.b].detach().cpu().numpy()


def solve_scipy(
    ev: Evaluator,
    X0: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    method: str,
    tol: float = 1e-10,
    maxiter: int = 1000,
) -> ScipyOutput:
    """Run SLSQP or trust-constr on each row of ``X0`` (a Python loop)."""
    from scipy.optimize import BFGS, Bounds, NonlinearConstraint, minimize
    from scipy.sparse.linalg import LinearOperator

    B, n = X0.shape
    lov, hiv = lo.detach().cpu().numpy(), hi.detach().cpu().numpy()
    X = torch.minimum(torch.maximum(X0.detach().clone(), lo), hi)
    nit, messages, flags = 0, [], []
    mI, mE = ev.m_ineq, ev.m_eq
    for b in range(B):
        view = _RowView(ev, X, b)
        x0 = X[b].cpu().numpy().copy()
        bounds = Bounds(lov, hiv) if np.isfinite(lov).any() or np.isfinite(hiv).any() else None

        def g_fun(x, v=view):
            v._eval(x)
            return v.g

        def g_jac(x, v=view):
            v._eval(x)
            return v.Jg

        def h_fun(x, v=view):
            v._eval(x)
            return v.h

        def h_jac(x, v=view):
            v._eval(x)
            return v.Jh

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if method == "slsqp":
                cons = []
                if mI:
                    cons.append({"type": "ineq", "fun": lambda x, f=g_fun: -f(x), "jac": lambda x, j=g_jac: -j(x)})
                if mE:
                    cons.append({"type": "eq", "fun": h_fun, "jac": h_jac})
                res = minimize(view.fun, x0, jac=view.grad, method="SLSQP", bounds=bounds,
                               constraints=cons, options={"ftol": tol, "maxiter": maxiter})
            elif method == "trust-constr":
                exact = view.exact_hessian
                cons = []
                for part, fun, jac, lb in (("g", g_fun, g_jac, -np.inf), ("h", h_fun, h_jac, 0.0)):
                    m = mI if part == "g" else mE
                    if not m:
                        continue
                    if exact:
                        def chess(x, w, part=part, v=view, n=n):
                            return LinearOperator((n, n), matvec=lambda p: v.hvp(x, w, np.ravel(p), part),
                                                  dtype=float)
                    else:
                        chess = BFGS()
                    cons.append(NonlinearConstraint(fun, np.full(m, lb), np.zeros(m), jac=jac, hess=chess))
                kw = {"hessp": (lambda x, p, v=view: v.hvp(x, None, p, "f"))} if exact else {"hess": BFGS()}
                res = minimize(view.fun, x0, jac=view.grad, method="trust-constr", bounds=bounds,
                               constraints=cons, options={"gtol": tol, "xtol": tol * 1e-2,
                                                          "maxiter": maxiter, "verbose": 0}, **kw)
            else:  # pragma: no cover - guarded by the caller
                raise ValueError(method)
        xb = np.clip(np.asarray(res.x, dtype=float), lov, hiv)
        X[b] = torch.as_tensor(xb, dtype=X.dtype, device=X.device)
        nit += int(getattr(res, "nit", 0) or 0)
        messages.append(str(res.message))
        flags.append(bool(res.success))
    return ScipyOutput(X=X, nit=nit, messages=messages, backend_success=flags)
