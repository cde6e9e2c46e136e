"""Problem description for constrained minimization and its evaluation on torch.

``Ineq(g)`` means ``g(x) <= 0`` and ``Eq(h)`` means ``h(x) == 0``, elementwise for vector
outputs. ``Problem`` holds the objective, the constraints and the bounds; ``Evaluator``
calls them on a flat batch ``X`` of shape ``(B, n)`` and returns torch tensors that carry
an autograd graph. A function whose output is not connected to ``x`` by autograd (it
returns a float, a numpy array, or a tensor built from ``.item()``) is wrapped in a
central finite-difference ``autograd.Function``, so every solver sees one interface.

Functions receive ``x`` in the shape of ``x0``. With ``batched=True`` they receive the
whole batch ``(B, *shape)`` and must return ``(B,)`` (objective) or ``(B, ...)``
(constraints): write them with ``x[..., i]`` and ``.sum(-1)`` and the same function works
for one instance and for a batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from ..errors import describe

__all__ = ["Ineq", "Eq", "Problem", "Evaluator", "as_bounds", "ProblemError"]


class ProblemError(ValueError):
    """Bad input to a solver: the message names the problem and the fix."""


class _Constraint:
    kind = "constraint"

    def __init__(self, fn: Callable[..., Any], name: str | None = None) -> None:
        if not callable(fn):
            raise ProblemError(
                f"{type(self).__name__} expects a callable (x -> tensor), got "
                f"{type(fn).__name__}; wrap the expression in a function, e.g. "
                f"{type(self).__name__}(lambda x: x[0] + x[1] - 1)."
            )
        self.fn = fn
        self.name = name or getattr(fn, "__name__", type(self).__name__.lower())

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name})"


class Ineq(_Constraint):
    """Inequality constraint ``fn(x) <= 0`` (elementwise for vector outputs)."""

    kind = "ineq"


class Eq(_Constraint):
    """Equality constraint ``fn(x) == 0`` (elementwise for vector outputs)."""

    kind = "eq"


def _to_tensor(value: Any, dtype: torch.dtype, device: torch.device, what: str) -> torch.Tensor:
    try:
        return torch.as_tensor(np.asarray(value, dtype=float) if not torch.is_tensor(value) else value,
                               dtype=dtype, device=device)
    except (TypeError, ValueError) as exc:
        raise ProblemError(f"{what} must be numeric (scalar or array), got {value!r}.") from exc


def as_bounds(
    bounds: Any, n: int, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalize bounds to two flat tensors ``(lo, hi)`` of length ``n``.

    Accepted: ``None``; ``(lo, hi)`` with each a scalar, an array shaped like one ``x``,
    or ``None``; an object with ``lb``/``ub`` (``scipy.optimize.Bounds``); or a list of
    ``n`` pairs (scipy's older format). ``±inf`` means unbounded.
    """
    inf = math.inf
    if bounds is None:
        lo: Any = -inf
        hi: Any = inf
    elif hasattr(bounds, "lb") and hasattr(bounds, "ub"):
        lo, hi = bounds.lb, bounds.ub
    elif isinstance(bounds, Sequence) and len(bounds) == 2:
        lo, hi = bounds  # always (lo, hi), even when n == 2
    elif isinstance(bounds, Sequence) and len(bounds) == n and all(
        isinstance(b, Sequence) and len(b) == 2 for b in bounds
    ):
        lo = [(-inf if b[0] is None else b[0]) for b in bounds]
        hi = [(inf if b[1] is None else b[1]) for b in bounds]
    else:
        raise ProblemError(
            "bounds must be (lo, hi) with scalars or arrays shaped like x, "
            f"scipy.optimize.Bounds, or a list of {n} (lo, hi) pairs; got {bounds!r}."
        )
    lo = -inf if lo is None else lo
    hi = inf if hi is None else hi
    out = []
    for name, v in (("bounds: the lower bound", lo), ("bounds: the upper bound", hi)):
        t = _to_tensor(v, dtype, device, name)
        if t.numel() == 1:
            t = t.reshape(1).expand(n)
        else:
            try:
                t = torch.broadcast_to(t, shape).reshape(n)
            except RuntimeError as exc:
                raise ProblemError(
                    f"{name} has shape {tuple(t.shape)} but x has shape {shape}; pass a "
                    "scalar or an array shaped like one x (without the batch dimension)."
                ) from exc
        if torch.isnan(t).any():
            raise ProblemError(f"{name} contains NaN; use -inf/inf for a missing bound.")
        out.append(t.clone())
    lo_t, hi_t = out
    bad = (lo_t > hi_t).nonzero().flatten()
    if bad.numel():
        i = int(bad[0])
        raise ProblemError(
            f"bounds have lo > hi at {bad.numel()} position(s), first at flat index {i} "
            f"(lo={float(lo_t[i])}, hi={float(hi_t[i])}); swap them or widen the interval."
        )
    return lo_t, hi_t


@dataclass
class Problem:
    """``min f(x)  s.t.  g_i(x) <= 0, h_j(x) == 0, lo <= x <= hi``, possibly batched."""

    objective: Callable[..., Any]
    ineq: list[Ineq] = field(default_factory=list)
    eq: list[Eq] = field(default_factory=list)
    lower: torch.Tensor | None = None  # flat (n,)
    upper: torch.Tensor | None = None
    shape: tuple[int, ...] = ()  # shape of one x
    batch: int | None = None  # None: not batched
    dtype: torch.dtype = torch.float64
    device: torch.device = torch.device("cpu")

    @property
    def n(self) -> int:
        return int(math.prod(self.shape))

    @classmethod
    def build(
        cls,
        objective: Callable[..., Any],
        x0: Any,
        constraints: Sequence[Any] | None = None,
        bounds: Any = None,
        batched: bool = False,
    ) -> tuple[Problem, torch.Tensor]:
        """Validate user input; return the problem and ``x0`` flattened to ``(B, n)``."""
        if not callable(objective):
            raise ProblemError(
                f"the objective must be a callable x -> scalar tensor, got "
                f"{type(objective).__name__}."
            )
        if torch.is_tensor(x0):
            x = x0.detach()
            if not x.is_floating_point():
                x = x.to(torch.float64)
        else:
            try:
                array = np.asarray(x0)
                if array.dtype.kind not in "biuf":  # numeric text ("0") is not a starting point
                    raise TypeError(array.dtype)
                x = torch.as_tensor(array.astype(np.float64))
            except (TypeError, ValueError) as exc:
                raise ProblemError(f"x0 must be numeric (scalar, array or tensor), got {x0!r}.") from exc
        if not torch.isfinite(x).all():
            raise ProblemError("x0 contains NaN or inf; start from finite values.")
        if batched:
            if x.dim() < 1 or x.shape[0] < 1:
                raise ProblemError(
                    "batched=True needs x0 with a leading batch dimension, shape (B, ...); "
                    f"got shape {tuple(x.shape)}."
                )
            shape = tuple(x.shape[1:])
            batch: int | None = int(x.shape[0])
        else:
            shape = tuple(x.shape)
            batch = None
        ineq: list[Ineq] = []
        eq: list[Eq] = []
        for i, c in enumerate(constraints or []):
            if isinstance(c, Ineq):
                ineq.append(c)
            elif isinstance(c, Eq):
                eq.append(c)
            else:
                raise ProblemError(
                    f"constraints[{i}] is a {type(c).__name__}; wrap each constraint as "
                    "Ineq(g) for g(x) <= 0 or Eq(h) for h(x) == 0."
                )
        n = int(math.prod(shape))
        if n == 0:
            raise ProblemError("x0 has no entries; pass at least one variable.")
        lo, hi = as_bounds(bounds, n, shape, x.dtype, x.device)
        prob = cls(objective, ineq, eq, lo, hi, shape, batch, x.dtype, x.device)
        return prob, x.reshape(batch or 1, n).clone()


class _FiniteDifference(torch.autograd.Function):
    """Wrap a non-differentiable ``X (B,n) -> (B,m)`` map; backward by central differences."""

    @staticmethod
    def forward(ctx: Any, X: torch.Tensor, call: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        ctx.call = call
        ctx.save_for_backward(X)
        return call(X)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor, None]:
        (X,) = ctx.saved_tensors
        J = fd_jacobian(ctx.call, X)  # (B, m, n)
        return torch.einsum("bm,bmn->bn", grad_out, J), None


def fd_jacobian(call: Callable[[torch.Tensor], torch.Tensor], X: torch.Tensor) -> torch.Tensor:
    """Central-difference Jacobian of a batched map, shape ``(B, m, n)``."""
    B, n = X.shape
    step = (torch.finfo(X.dtype).eps ** (1 / 3)) * X.abs().clamp(min=1.0)
    cols = []
    for j in range(n):
        e = torch.zeros_like(X)
        e[:, j] = step[:, j]
        cols.append((call(X + e) - call(X - e)) / (2 * step[:, j : j + 1]))
    return torch.stack(cols, dim=-1)


class Evaluator:
    """Calls the problem's functions on a flat batch ``X (B, n)``.

    ``evaluate(X)`` returns ``f (B,)``, ``g (B, mI)``, ``h (B, mE)`` (constraint outputs
    flattened and concatenated in the order given), differentiable through autograd or
    the finite-difference wrapper. ``nfev`` counts objective calls.
    """

    def __init__(self, problem: Problem, X: torch.Tensor) -> None:
        self.problem = problem
        self.nfev = 0
        self.B = X.shape[0]
        funcs: list[tuple[str, Callable[..., Any]]] = [("objective", problem.objective)]
        funcs += [(f"Ineq {c.name}", c.fn) for c in problem.ineq]
        funcs += [(f"Eq {c.name}", c.fn) for c in problem.eq]
        self._names = [name for name, _ in funcs]
        self._fns = [fn for _, fn in funcs]
        self._fd: list[bool] = []
        self.initial: list[torch.Tensor] = []  # each function's flat output at X, (B, size)
        self.X_initial = X.detach()
        self.sizes: list[int] = []
        self.out_shapes: list[tuple[int, ...]] = []
        Xp = X.detach().clone().requires_grad_(True)
        for k, (name, fn) in enumerate(funcs):
            try:
                with torch.enable_grad():
                    raw = fn(self._unflatten(Xp))
            except Exception as exc:
                raise ProblemError(
                    f"{name} raised {describe(exc)} when called with a tensor of "
                    f"shape {tuple(self._unflatten(Xp).shape)}. Functions receive torch "
                    "tensors shaped like x0" + (" (with the batch dimension first; index "
                    "with x[..., i] and reduce with .sum(-1))" if problem.batch else "") + "."
                ) from exc
            out = self._convert(raw, k)
            self.initial.append(out.detach())
            self._fd.append(not (torch.is_tensor(raw) and raw.requires_grad))
            self.sizes.append(out.shape[1])
            if k == 0 and out.shape[1] != 1:
                raise ProblemError(
                    f"the objective must return one scalar per instance, got "
                    f"{out.shape[1]} values; sum a vector objective or use a constraint."
                )
            oshape = tuple(raw.shape) if hasattr(raw, "shape") else ()
            if problem.batch and len(oshape) >= 1:
                oshape = oshape[1:]
            self.out_shapes.append(oshape)
        self.m_ineq = sum(self.sizes[1 : 1 + len(problem.ineq)])
        self.m_eq = sum(self.sizes[1 + len(problem.ineq) :])

    # ---- shapes -------------------------------------------------------------
    def _unflatten(self, X: torch.Tensor) -> torch.Tensor:
        p = self.problem
        if p.batch is not None:
            return X.reshape((X.shape[0],) + p.shape)
        return X.reshape(p.shape)

    def _convert(self, raw: Any, k: int) -> torch.Tensor:
        p = self.problem
        if torch.is_tensor(raw):
            out = raw.to(p.dtype)
        else:
            try:
                out = torch.as_tensor(np.asarray(raw, dtype=np.float64), dtype=p.dtype, device=p.device)
            except (TypeError, ValueError) as exc:
                raise ProblemError(
                    f"{self._names[k]} returned {type(raw).__name__}, which is not numeric; "
                    "return a torch tensor (or a float / numpy array)."
                ) from exc
        B = self.B
        if p.batch is None:
            return out.reshape(1, -1)
        if out.dim() == 0 or out.shape[0] != B:
            raise ProblemError(
                f"{self._names[k]} returned shape {tuple(out.shape)} for a batch of {B}; "
                f"with batched=True it must return shape ({B}, ...): index with x[..., i] "
                "and reduce with .sum(-1) instead of .sum()."
            )
        return out.reshape(B, -1)

    # ---- evaluation -----------------------------------------------------------
    @property
    def derivatives(self) -> str:
        if all(self._fd):
            return "finite-differences"
        if any(self._fd):
            return "mixed"
        return "autograd"

    @property
    def has_fd(self) -> bool:
        return any(self._fd)

    @property
    def exact_hessian(self) -> bool:
        """False when a function is finite-differenced or declares
        ``fn.autograd_hessian = False`` (its backward is not itself differentiable, e.g. a
        custom ``autograd.Function``); solvers then difference gradients for curvature."""
        return not self.has_fd and all(getattr(fn, "autograd_hessian", True) for fn in self._fns)

    def _call(self, k: int, X: torch.Tensor) -> torch.Tensor:
        if k == 0:
            self.nfev += 1
        if self._fd[k]:
            def call(Z: torch.Tensor, k: int = k) -> torch.Tensor:
                if k == 0:
                    self.nfev += 1
                with torch.no_grad():
                    return self._convert(self._fns[k](self._unflatten(Z)), k)
            return _FiniteDifference.apply(X, call)
        return self._convert(self._fns[k](self._unflatten(X)), k)

    def evaluate(self, X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Objective ``(B,)``, stacked inequalities ``(B, mI)``, equalities ``(B, mE)``."""
        B = X.shape[0]
        f = self._call(0, X).reshape(B)
        nI = len(self.problem.ineq)
        gs = [self._call(k, X) for k in range(1, 1 + nI)]
        hs = [self._call(k, X) for k in range(1 + nI, len(self._fns))]
        empty = X.new_zeros(B, 0)
        g = torch.cat(gs, dim=1) if gs else empty
        h = torch.cat(hs, dim=1) if hs else empty
        return f, g, h

    def split(self, values: torch.Tensor, kind: str) -> list[torch.Tensor]:
        """Split stacked multipliers ``(B, m)`` back into one tensor per constraint."""
        nI = len(self.problem.ineq)
        ks = range(1, 1 + nI) if kind == "ineq" else range(1 + nI, len(self._fns))
        out, start = [], 0
        for k in ks:
            size = self.sizes[k]
            part = values[:, start : start + size]
            start += size
            shape = self.out_shapes[k]
            if self.problem.batch is None:
                out.append(part.reshape(shape))
            else:
                out.append(part.reshape((values.shape[0],) + shape))
        return out
