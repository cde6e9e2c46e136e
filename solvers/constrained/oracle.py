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
"""

from __future__ import annotations

import numpy as np
import torch

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
        if self._first is None:
            X, f, c = self._record()
            out = torch.cat([f.reshape(1), c])
            rows = self._rows(out, X, retain=True)
            R = rows.cpu().numpy().astype(np.float64)
            self._first = (R[0], R[1:])
        return self._first

    def hessian(self, x: np.ndarray, sigma: float, y: np.ndarray) -> np.ndarray:
        """Dense Hessian of ``sigma f + y.c`` ``(n, n)``."""
        self._at(x)
        X, f, c = self._record()
        yt = torch.as_tensor(np.asarray(y, dtype=np.float64), dtype=self.dtype, device=self.device)
        with torch.enable_grad():
            L = sigma * f + (yt * c).sum() if self.m else sigma * f
            if not L.requires_grad:
                return np.zeros((self.n, self.n))
            (G,) = torch.autograd.grad(L, X, create_graph=True, retain_graph=True, allow_unused=True)
        if G is None or not G.requires_grad:
            return np.zeros((self.n, self.n))
        H = self._rows(G.reshape(-1), X, retain=True).cpu().numpy().astype(np.float64)
        return 0.5 * (H + H.T)

    def _rows(self, out: torch.Tensor, X: torch.Tensor, retain: bool) -> torch.Tensor:
        J, self._batched = jacobian_rows(out, X, retain, self._batched)
        return J


def jacobian_rows(out: torch.Tensor, X: torch.Tensor, retain: bool, batched: bool = True
                  ) -> tuple[torch.Tensor, bool]:
    """Jacobian ``(len(out), X.numel())`` of a vector ``out`` recorded on ``X``: one batched
    backward pass (``is_grads_batched``), or one pass per row where vmap cannot batch a
    function (then ``batched`` comes back False, so callers stop trying)."""
    k, n = out.shape[0], X.numel()
    if not out.requires_grad:
        return X.new_zeros(k, n), batched
    if batched:
        try:
            eye = torch.eye(k, dtype=out.dtype, device=out.device)
            (J,) = torch.autograd.grad(out, X, grad_outputs=eye, is_grads_batched=True,
                                       retain_graph=retain, allow_unused=True)
            return (X.new_zeros(k, n) if J is None else J.reshape(k, n).detach()), True
        except RuntimeError:
            batched = False
    rows = []
    for i in range(k):
        r = torch.autograd.grad(out[i], X, retain_graph=True, allow_unused=True)[0] if out[i].requires_grad else None
        rows.append(X.new_zeros(n) if r is None else r.reshape(n).detach())
    return torch.stack(rows), batched
