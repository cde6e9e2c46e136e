"""Derivatives of one instance from torch, computed once per point and only when asked.

An interior-point solver asks, at each trial point, for some of: ``f``, the constraints
``c = [g, h]``, ``grad f``, the Jacobian of ``c`` and the Hessian of the Lagrangian
``sigma f + y.c``. ``TorchOracle`` answers from one recorded forward pass per point:

* ``values(x)`` runs the functions without a graph (line-search points need nothing more);
* ``first(x)`` records the graph once and takes ``grad f`` and every Jacobian row from it
  in one batched backward pass (``is_grads_batched``; a loop of backward passes where a
  function cannot be vmapped);
* ``hessian(x, sigma, y)`` differentiates ``sigma f + y.c`` through the same graph with
  ``create_graph`` and takes all Hessian columns in a second batched pass.

A new point discards the previous graph. Functions that are finite-differenced (they
return floats) or declare ``autograd_hessian = False`` have no exact Hessian; callers
then use a quasi-Newton approximation (``exact_hessian`` is False).

**Structure** (``structure()``, once, at the first point): torch's graph says which parts
may be affine or quadratic. A gradient taken with ``create_graph=True`` that does not
require grad does not depend on ``x`` through any differentiable path: then every
constraint is affine and its Jacobian a constant (computed once; its exact zeros are its
sparsity). The objective's Hessian is a candidate constant whatever the graph says (a
quadratic written ``(x - 2)**2`` records a backward graph that depends on ``x``).
Piecewise functions (``clamp``, ``where``, ``max``, indexing by ``argmax``) look affine to
the graph too, so a constant is kept only if torch's derivatives at a second point are
the same, and IPOPT's solution is checked once more: where they differ there, it is
solved again without constants (``solvers.constrained.ipopt``). Every returned point is
graded with torch's own derivatives. Constant parts are never recomputed:
on a QP with linear constraints a point costs one forward and one backward pass, however
many constraints there are.
"""

from __future__ import annotations

import numpy as np
import torch

from .batched_vjp import batched_vjp
from .constraints import Evaluator

__all__ = ["TorchOracle"]


class TorchOracle:
    """``f``, ``c``, ``grad f``, ``J`` and the Lagrangian Hessian of row 0 of an evaluator."""

    def __init__(self, ev: Evaluator, like: torch.Tensor) -> None:
        self.ev = ev
        self.dtype, self.device = like.dtype, like.device
        self.n = like.shape[1]
        self.m = ev.m_ineq + ev.m_eq
        self.exact_hessian = ev.exact_hessian
        self._key: bytes | None = None
        self._values: tuple[float, np.ndarray] | None = None
        self._graph: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self._first: tuple[np.ndarray, np.ndarray] | None = None
        self._batched = True
        self.J_const: np.ndarray | None = None  # every constraint affine: the Jacobian
        self.Hf_const: np.ndarray | None = None  # f affine or quadratic: its Hessian

    # ---- the point --------------------------------------------------------------
    def _at(self, x: np.ndarray) -> None:
        key = np.ascontiguousarray(x, dtype=np.float64).tobytes()
        if key != self._key:
            self._key = key
            self._values = self._graph = self._first = None
            self._x = torch.as_tensor(np.array(x, dtype=np.float64), dtype=self.dtype,
                                      device=self.device).reshape(1, self.n)

    def _record(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self._graph is None:
            X = self._x.detach().requires_grad_(True)
            with torch.enable_grad():
                f, g, h = self.ev.evaluate(X)
            self._graph = (X, f.reshape(()), torch.cat([g, h], dim=1).reshape(-1))
            self._values = (float(f.detach()), self._graph[2].detach().cpu().numpy().astype(np.float64))
        return self._graph

    # ---- structure ---------------------------------------------------------------
    def structure(self, x: np.ndarray, x1: np.ndarray, hessian: bool = True) -> None:
        """Find the constant Jacobian and (when ``hessian``: it is a dense ``(n, n)`` array)
        objective Hessian, if any (see the module doc), from the graph recorded at ``x``,
        checked at ``x1``. Needs double backward (``exact_hessian``)."""
        if not self.exact_hessian:
            return
        self._find_constants(x, hessian)
        if self.J_const is not None or self.Hf_const is not None:
            self.constants_hold(x1)

    def constants_hold(self, x: np.ndarray) -> bool:
        """Check the constant parts against torch's derivatives at ``x``, through random
        projections (``J^T w`` by one backward pass, ``H_f v`` by one Hessian-vector
        product: a changed derivative shows in them with probability one); drop those
        that differ (False if any did)."""
        J, Hf = self.J_const, self.Hf_const
        self._key = None  # a fresh graph at x (a cached first() was made with the constants)
        self._at(x)
        X, f, c = self._record()
        gen = np.random.default_rng(0)
        rtol = max(1e-9, 100 * torch.finfo(self.dtype).eps)  # float32 functions round at 1e-7
        with torch.enable_grad():
            if J is not None and self.m:
                w = gen.standard_normal(self.m)
                lin = (torch.as_tensor(w, dtype=c.dtype, device=c.device) * c).sum()
                if not _same(_grad_np(lin, X), J.T @ w, rtol):
                    self.J_const = None
            if Hf is not None:
                v = gen.standard_normal(self.n)
                G = _graph_grad(f, X)
                got = (_grad_np((G.reshape(-1) * torch.as_tensor(v, dtype=G.dtype, device=G.device)).sum(), X)
                       if G is not None else np.zeros(self.n))
                if not _same(got, Hf @ v, rtol):
                    self.Hf_const = None
        self._key = None  # recorded for the check only
        return (J is None or self.J_const is not None) and (Hf is None or self.Hf_const is not None)

    def _find_constants(self, x: np.ndarray, hessian: bool) -> None:
        self._at(x)
        X, f, c = self._record()
        with torch.enable_grad():
            if self.m and c.requires_grad:
                w = torch.linspace(1.0, 2.0, self.m, dtype=c.dtype, device=c.device)
                if _graph_grad((w * c).sum(), X) is None:
                    self.J_const = self._rows(c, X, retain=True).cpu().numpy().astype(np.float64)
            elif self.m:
                self.J_const = np.zeros((self.m, self.n))
            self.Hf_const = self._objective_hessian(X, f) if hessian else None

    def _objective_hessian(self, X: torch.Tensor, f: torch.Tensor) -> np.ndarray:
        """The Hessian of ``f`` at the recorded point: a candidate constant, kept only if it
        is the same at a second point (``(x - 2)**2`` is quadratic, yet its recorded
        backward graph depends on ``x``, so the graph cannot tell)."""
        G = _graph_grad(f, X)
        if G is None:
            return np.zeros((self.n, self.n))
        H = self._rows(G.reshape(-1), X, retain=True).cpu().numpy().astype(np.float64)
        return 0.5 * (H + H.T)

    # ---- what the solver asks for ------------------------------------------------
    def values(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """``f(x)`` and ``c(x) = [g, h]`` (no graph recorded)."""
        self._at(x)
        if self._values is None:
            with torch.no_grad():
                f, g, h = self.ev.evaluate(self._x)
            c = torch.cat([g, h], dim=1).reshape(-1)
            self._values = (float(f), c.cpu().numpy().astype(np.float64))
        return self._values

    def first(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``grad f`` ``(n,)`` and the Jacobian of ``c`` ``(m, n)``."""
        self._at(x)
        if self._first is None and self.J_const is not None:  # only grad f is new here
            X, f, _ = self._record()
            g = self._rows(f.reshape(1), X, retain=True).cpu().numpy().astype(np.float64)
            self._first = (g[0], self.J_const)
        if self._first is None:
            X, f, c = self._record()
            out = torch.cat([f.reshape(1), c])
            rows = self._rows(out, X, retain=True)
            R = rows.cpu().numpy().astype(np.float64)
            self._first = (R[0], R[1:])
        return self._first

    def hessian(self, x: np.ndarray, sigma: float, y: np.ndarray) -> np.ndarray:
        """Dense Hessian of ``sigma f + y.c`` ``(n, n)``; constant parts are not recomputed."""
        known = sigma * self.Hf_const if self.Hf_const is not None else None
        if known is not None and (self.J_const is not None or not self.m):
            return known  # f quadratic (or affine), constraints affine: no graph needed
        self._at(x)
        X, f, c = self._record()
        yt = torch.as_tensor(np.asarray(y, dtype=np.float64), dtype=self.dtype, device=self.device)
        with torch.enable_grad():
            L = f.new_zeros(()) if known is not None else sigma * f
            if self.m and self.J_const is None:
                L = L + (yt * c).sum()
            if not L.requires_grad:
                return known if known is not None else np.zeros((self.n, self.n))
            (G,) = torch.autograd.grad(L, X, create_graph=True, retain_graph=True, allow_unused=True)
        if G is None or not G.requires_grad:
            return known if known is not None else np.zeros((self.n, self.n))
        H = self._rows(G.reshape(-1), X, retain=True).cpu().numpy().astype(np.float64)
        H = 0.5 * (H + H.T)
        return H + known if known is not None else H

    def _rows(self, out: torch.Tensor, X: torch.Tensor, retain: bool) -> torch.Tensor:
        J, self._batched = jacobian_rows(out, X, retain, self._batched)
        return J


def _same(a: np.ndarray, b: np.ndarray, rtol: float) -> bool:
    """Two derivative arrays equal up to rounding (relative to the larger entries)."""
    return bool(np.all(np.abs(a - b) <= rtol * max(1.0, float(np.abs(b).max(initial=0.0)))))


def _graph_grad(out: torch.Tensor, X: torch.Tensor) -> torch.Tensor | None:
    """``d out / d X`` with its own graph (for a Hessian-vector product), or None when it
    does not depend on ``X`` (then ``out`` is affine in ``X``, as far as the graph shows)."""
    if not out.requires_grad:
        return None
    (G,) = torch.autograd.grad(out, X, create_graph=True, retain_graph=True, allow_unused=True)
    return G if G is not None and G.requires_grad else None


def _grad_np(out: torch.Tensor, X: torch.Tensor) -> np.ndarray:
    """``d out / d X`` as a flat float64 array (zeros where ``out`` does not depend on ``X``)."""
    if not out.requires_grad:
        return np.zeros(X.numel())
    (g,) = torch.autograd.grad(out, X, retain_graph=True, allow_unused=True)
    return np.zeros(X.numel()) if g is None else g.detach().reshape(-1).cpu().numpy().astype(np.float64)


def jacobian_rows(out: torch.Tensor, X: torch.Tensor, retain: bool, batched: bool = True
                  ) -> tuple[torch.Tensor, bool]:
    """Jacobian ``(len(out), X.numel())`` of a vector ``out`` recorded on ``X``: one batched
    backward pass (``is_grads_batched``), or one pass per row where vmap cannot batch a
    function (then ``batched`` comes back False, so callers stop trying)."""
    k, n = out.shape[0], X.numel()
    if not out.requires_grad:
        return X.new_zeros(k, n), batched
    if k == 1:  # one row: a plain backward pass (vmap's set-up costs more than it saves)
        (one,) = torch.autograd.grad(out[0], X, retain_graph=retain, allow_unused=True)
        return (X.new_zeros(1, n) if one is None else one.reshape(1, n).detach()), batched
    if batched:
        try:
            eye = torch.eye(k, dtype=out.dtype, device=out.device)
            J = batched_vjp(out, X, eye, retain_graph=retain)
            return (X.new_zeros(k, n) if J is None else J.reshape(k, n).detach()), True
        except RuntimeError:
            batched = False
    rows = []
    for i in range(k):
        r = torch.autograd.grad(out[i], X, retain_graph=True, allow_unused=True)[0] if out[i].requires_grad else None
        rows.append(X.new_zeros(n) if r is None else r.reshape(n).detach())
    return torch.stack(rows), batched
